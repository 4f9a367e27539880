"""``sweep plan``: what a sweep would run and roughly how long it would take; writes nothing.

:func:`plan` makes one pass over the design (:func:`sweep.points.census`, constant
memory: a 10^6-row grid takes seconds), then builds and times a few points
spread over it.
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sweep import design, points
from sweep.config import ConfigError, SweepConfig
from sweep.worker import load_simulator

SAMPLE_POINTS = 5  # points shown
TIMED_POINTS = 3  # points simulated to estimate the run time


@dataclass(frozen=True, slots=True)
class Plan:
    name: str
    description: str
    output: str
    design: str
    design_rows: int
    kept_rows: int
    checked_rows: int
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

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "design": self.design,
            "design_rows": self.design_rows,
            "kept_rows": self.kept_rows,
            "checked_rows": self.checked_rows,
            "replicates": self.replicates,
            "total": self.total,
            "partitions": [
                {"hardware": h, "workload": w, "points": n} for (h, w), n in sorted(self.partitions.items())
            ],
            "sample": self.sample,
            "problem": self.problem,
            "mean_point_s": self.mean_point_s,
            "estimate_s": self.estimate_s,
            "cpus": self.cpus,
            "output": self.output,
        }


def plan(
    config: SweepConfig,
    *,
    sample: int = SAMPLE_POINTS,
    timed: int = TIMED_POINTS,
    simulator: str = "model:simulate",
    cpus: int | None = None,
) -> Plan:
    """Count, sample and (if ``timed``) time a few points spread over the design.

    Raises :class:`ConfigError` for an impossible design or simulator.
    """
    found = points.census(config, pick=max(sample, timed))
    if found.problems:
        raise ConfigError(found.problems)
    chosen = []
    for row in found.picked:
        scenario = points.build_scenario(config.base, row.values)
        flat = scenario.flat()
        point_id = points.make_point_id(points.scenario_digest(flat), 0, row.design_index)
        seed = points.derive_seed(config.seed, 0, flat)
        chosen.append(points.Point(point_id, row.design_index, 0, seed, scenario, flat))
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
        try:
            simulate = load_simulator(simulator)
        except ValueError as err:
            raise ConfigError([f"--simulator: {err}"]) from None
        for point in chosen[:: max(1, len(chosen) // timed)][:timed]:
            start = time.perf_counter()
            simulate(point.scenario, point.seed)
            walls.append(time.perf_counter() - start)
    return Plan(
        name=config.name,
        description=config.description,
        output=str(config.output),
        design=config.space.design,
        design_rows=found.design_rows,
        kept_rows=found.kept_rows,
        checked_rows=found.checked_rows,
        replicates=config.replicates,
        total=found.total,
        partitions=found.partitions,
        sample=shown,
        problem=design.salib_problem(config.space),
        timed=walls,
        cpus=cpus or config.run.num_cpus or os.cpu_count() or 1,
    )
