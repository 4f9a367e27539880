"""``sweep plan``: what a sweep would run and roughly how long it would take; writes nothing."""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sweep import design, points
from sweep.config import SweepConfig
from sweep.worker import load_simulator

SAMPLE_POINTS = 5  # points shown
TIMED_POINTS = 3  # points simulated to estimate the run time


@dataclass(frozen=True, slots=True)
class Plan:
    design: str
    design_rows: int
    kept_rows: int
    replicates: int
    total: int
    partitions: Counter[tuple[str, str]]
    sample: list[dict[str, Any]]
    problem: dict[str, Any] | None
    timed: list[float] = field(default_factory=list)
    cpus: int = 1

    @property
    def mean_point_s(self) -> float | None:
        return statistics.fmean(self.timed) if self.timed else None

    @property
    def estimate_s(self) -> float | None:
        """Wall time on ``cpus`` workers if the timed points are typical."""
        mean = self.mean_point_s
        return None if mean is None else mean * self.total / self.cpus


def make_plan(
    config: SweepConfig,
    *,
    sample: int = SAMPLE_POINTS,
    timed: int = TIMED_POINTS,
    simulator: str = "model:simulate",
    cpus: int | None = None,
) -> Plan:
    """Count, sample and (if ``timed``) time a few points spread over the design."""
    total = points.check(config)
    kept = total // config.replicates
    picks = _spread(kept, max(sample, timed))
    chosen: list[points.Point] = []
    for i, point in enumerate(p for p in points.iter_points(config) if p.replicate == 0):
        if i in picks:
            chosen.append(point)
    shown = [
        {
            "point_id": p.point_id,
            "design_index": p.design_index,
            "seed": p.seed,
            **{k: p.flat[k] for k in config.space.params},
        }
        for p in chosen[:sample]
    ]
    walls: list[float] = []
    if timed:
        simulate = load_simulator(simulator)
        for point in chosen[:: max(1, len(chosen) // timed)][:timed]:
            start = time.perf_counter()
            simulate(point.scenario, point.seed)
            walls.append(time.perf_counter() - start)
    return Plan(
        design=config.space.design,
        design_rows=design.size(config.space),
        kept_rows=kept,
        replicates=config.replicates,
        total=total,
        partitions=points.partition_counts(config),
        sample=shown,
        problem=design.salib_problem(config.space),
        timed=walls,
        cpus=cpus or config.run.num_cpus or os.cpu_count() or 1,
    )


def _spread(n: int, k: int) -> set[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them if ``n <= k``)."""
    if n <= k:
        return set(range(n))
    return {round(i * (n - 1) / (k - 1)) for i in range(k)} if k > 1 else {0}
