"""``sweep plan``: what a sweep would run and how long it would take; writes nothing.

:func:`plan` makes one pass over the design (:func:`sweep.points.census`, constant
memory: a 10^6-row grid takes seconds), then estimates the run time from a
**stratified sample** of timed points.

How the estimate is made (a ratio estimator, stratified by cost):

1. Every design row (or :data:`COST_ROWS` rows spread over a larger design)
   gets a cost proxy, :func:`work_ms`: the guest vCPU-milliseconds the measured
   VM runs, ``vm.vcpus x sim.duration_ms / max(1, overcommit)``.  What a point
   costs grows with it (events scale with running vCPUs and simulated time),
   but the cost per unit differs between workloads and VM shapes by 2-3x, so
   the proxy only orders and weights the rows; timed points set the scale.
2. The rows are grouped into cost classes, :data:`CLASS_KEYS` (hardware,
   workload, overcommit: the cost per proxy unit changes most between them --
   on ROME a hackbench vCPU-ms costs 2-3x more at overcommit 1 than at 2,
   where the co-runners' context switches dominate).  Each class's rows are
   sorted by the proxy and cut into strata of equal summed proxy (equal
   expected cost, so the costly end, which dominates the total, gets as many
   strata as the cheap end).  The ``timed`` points go to the classes in
   proportion to their summed proxy, at least one each while there are enough.
3. One point per stratum -- the row at the stratum's cost midpoint, replicate
   0 -- is simulated here and its **CPU time** measured
   (``time.process_time``: what the point costs a free core, whatever else
   runs on the machine).  A stratum costs its point's CPU seconds per proxy
   unit times its summed proxy, times the replicates.
4. The spread: each stratum's low and high take the lowest and highest ratio
   of itself and its neighbours in the same class (how much the cost per unit
   moves between neighbouring strata); a class with no timed point takes the
   median, lowest and highest ratio of its (hardware, workload) partition's
   timed points, else of all.  One timed point per class gives no spread
   (low = high), and the plan says so.

The wall-time estimate is the CPU total over the workers (``run.num_cpus``,
else the cores here): it assumes each worker has a free core, and leaves out
Ray's start-up and the report (seconds each).
"""

from __future__ import annotations

import os
import statistics
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sweep import design, points
from sweep.config import ConfigError, SweepConfig
from sweep.worker import load_simulator

SAMPLE_POINTS = 5  # points shown
TIMED_POINTS = 8  # points simulated to estimate the run time (one per stratum)
CLASS_KEYS = ("hardware", "workload.kind", "overcommit")  # rows of one class share a cost ratio
COST_ROWS = 2_000  # design rows given a cost proxy: all of a smaller design, spread over a larger one


def work_ms(flat: dict[str, Any]) -> float:
    """Cost proxy of one point: guest vCPU-ms the measured VM runs.

    ``vm.vcpus x sim.duration_ms / max(1, overcommit)``: under overcommit R > 1
    each vCPU thread gets about 1/R of its pCPU (and descheduled vCPUs make few
    events).  Co-runner vCPUs are left out: cpu-bound ones make few events.
    """
    share = 1.0 / max(1.0, float(flat["overcommit"]))
    return float(flat["vm.vcpus"]) * float(flat["sim.duration_ms"]) * share


@dataclass(frozen=True, slots=True)
class TimedPoint:
    """One stratum's timed point: where it lies, its proxy, what it cost here."""

    cost_class: tuple[str, ...]  # the row's CLASS_KEYS values
    stratum: int  # index within the class, cheapest first
    design_index: int
    values: dict[str, Any]
    work_ms: float
    cpu_s: float
    wall_s: float

    @property
    def ratio(self) -> float:
        """CPU seconds per proxy unit."""
        return self.cpu_s / self.work_ms if self.work_ms > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Stratum:
    """Rows of one cost class between two cost quantiles, and their estimated CPU seconds."""

    cost_class: tuple[str, ...]
    rows: float  # design rows it stands for (weighted when the cost rows are a sample)
    work_ms: float  # their summed proxy, one replicate
    cpu_s: float  # estimated CPU seconds, all replicates
    low_s: float
    high_s: float
    timed: TimedPoint | None


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
    strata: list[Stratum] = field(default_factory=list)
    timing_s: float = 0.0  # wall time plan spent simulating the timed points
    cpus: int = 1

    @property
    def timed(self) -> list[TimedPoint]:
        return [s.timed for s in self.strata if s.timed is not None]

    @property
    def cpu_s(self) -> float | None:
        """Estimated CPU seconds of every point of the sweep."""
        return sum(s.cpu_s for s in self.strata) if self.timed else None

    @property
    def cpu_range_s(self) -> tuple[float, float] | None:
        if not self.timed:
            return None
        return sum(s.low_s for s in self.strata), sum(s.high_s for s in self.strata)

    @property
    def has_spread(self) -> bool:
        """Whether some cost class had two or more timed strata (else low = high says nothing)."""
        per_class = Counter(t.cost_class for t in self.timed)
        return any(n >= 2 for n in per_class.values())

    @property
    def mean_point_s(self) -> float | None:
        cpu = self.cpu_s
        return None if cpu is None or not self.total else cpu / self.total

    @property
    def estimate_s(self) -> float | None:
        """Wall time on ``cpus`` workers with a free core each (Ray's start-up and the report left out)."""
        cpu = self.cpu_s
        return None if cpu is None else cpu / self.cpus

    @property
    def estimate_range_s(self) -> tuple[float, float] | None:
        found = self.cpu_range_s
        return None if found is None else (found[0] / self.cpus, found[1] / self.cpus)

    def to_json(self) -> dict[str, Any]:
        low_high = self.estimate_range_s
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
            "cpu_s": self.cpu_s,
            "estimate_s": self.estimate_s,
            "estimate_low_s": low_high[0] if low_high else None,
            "estimate_high_s": low_high[1] if low_high else None,
            "has_spread": self.has_spread,
            "timing_s": self.timing_s,
            "timed": [
                {
                    "cost_class": dict(zip(CLASS_KEYS, t.cost_class, strict=True)),
                    "stratum": t.stratum,
                    "design_index": t.design_index,
                    "work_ms": t.work_ms,
                    "cpu_s": t.cpu_s,
                    "wall_s": t.wall_s,
                    **t.values,
                }
                for t in self.timed
            ],
            "cpus": self.cpus,
            "output": self.output,
        }


@dataclass(slots=True)
class _CostRow:
    row: points.Row
    point: points.Point
    work_ms: float


def plan(
    config: SweepConfig,
    *,
    sample: int = SAMPLE_POINTS,
    timed: int = TIMED_POINTS,
    simulator: str = "model:simulate",
    cpus: int | None = None,
    clock: Callable[[], float] = time.process_time,
) -> Plan:
    """Count, sample and (if ``timed``) time one point per cost stratum (see the module docstring).

    ``clock`` measures a timed point's cost (CPU seconds by default; tests pass
    a fake).  Raises :class:`ConfigError` for an impossible design or simulator.
    """
    found = points.census(config, pick=max(COST_ROWS, sample))
    if found.problems:
        raise ConfigError(found.problems)
    rows = [_cost_row(config, row) for row in found.picked]
    shown = [
        {
            "point_id": c.point.point_id,
            "design_index": c.point.design_index,
            "seed": c.point.seed,
            **{k: c.point.flat[k] for k in config.space.params},
        }
        for c in (rows[i] for i in points._spread(len(rows), sample) if sample)
    ]
    strata: list[Stratum] = []
    start = time.perf_counter()
    if timed and rows:
        try:
            simulate = load_simulator(simulator)
        except ValueError as err:
            raise ConfigError([f"--simulator: {err}"]) from None
        weight = found.kept_rows / len(rows)  # design rows each cost row stands for
        strata = _estimate(rows, timed, weight, config.replicates, simulate, clock)
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
        strata=strata,
        timing_s=time.perf_counter() - start,
        cpus=cpus or config.run.num_cpus or os.cpu_count() or 1,
    )


def _cost_row(config: SweepConfig, row: points.Row) -> _CostRow:
    scenario = points.build_scenario(config.base, row.values)
    flat = scenario.flat()
    point_id = points.make_point_id(points.scenario_digest(flat), 0, row.design_index)
    seed = points.derive_seed(config.seed, 0, flat)
    point = points.Point(point_id, row.design_index, 0, seed, scenario, flat)
    return _CostRow(row, point, work_ms(flat))


def _class(c: _CostRow) -> tuple[str, ...]:
    return tuple(str(c.point.flat[k]) for k in CLASS_KEYS)


def allocate(work: dict[tuple[str, str], float], timed: int) -> dict[tuple[str, str], int]:
    """Timed points per class: proportional to its summed proxy (largest remainder), at least
    one each while ``timed`` allows, the costliest classes first."""
    order = sorted(work, key=lambda p: (-work[p], p))
    if timed <= len(order):
        return {p: int(i < timed) for i, p in enumerate(order)}
    total = sum(work.values()) or 1.0
    spare = timed - len(order)
    share = {p: spare * work[p] / total for p in order}
    counts = {p: 1 + int(share[p]) for p in order}
    left = timed - sum(counts.values())
    for p in sorted(order, key=lambda p: (-(share[p] - int(share[p])), p))[:left]:
        counts[p] += 1
    return counts


def cut(costs: list[float], k: int) -> list[tuple[int, int, int]]:
    """Cut ``costs`` (sorted ascending) into at most ``k`` runs of about equal sum.

    A run ends at the row that brings its cumulative sum nearest to the next
    k-th of the total.  Returns ``(start, stop, pick)`` per run: the pick is
    the index at the run's cost midpoint.
    """
    total = sum(costs)
    k = max(1, min(k, len(costs)))
    stops: list[int] = []
    acc = 0.0
    for i, cost in enumerate(costs):
        boundary = total * (len(stops) + 1) / k
        if len(stops) < k - 1 and acc + cost >= boundary:
            before = i > (stops[-1] if stops else 0) and boundary - acc < acc + cost - boundary
            stops.append(i if before else i + 1)
        acc += cost
    stops = [s for s in stops if s < len(costs)] + [len(costs)]
    starts = [0, *stops[:-1]]
    return [(lo, hi, _midpoint(costs, lo, hi)) for lo, hi in zip(starts, stops, strict=True) if hi > lo]


def _midpoint(costs: list[float], start: int, stop: int) -> int:
    half = sum(costs[start:stop]) / 2
    acc = 0.0
    for i in range(start, stop):
        acc += costs[i]
        if acc >= half:
            return i
    return stop - 1


def _estimate(
    rows: list[_CostRow],
    timed: int,
    weight: float,
    replicates: int,
    simulate: Callable[..., Any],
    clock: Callable[[], float],
) -> list[Stratum]:
    by_class: dict[tuple[str, ...], list[_CostRow]] = {}
    for c in rows:
        by_class.setdefault(_class(c), []).append(c)
    for members in by_class.values():
        members.sort(key=lambda c: (c.work_ms, c.row.design_index))
    work = {k: sum(c.work_ms for c in members) for k, members in by_class.items()}
    counts = allocate(work, timed)
    cuts: dict[tuple[str, ...], list[tuple[int, int, int]]] = {}
    measured: dict[tuple[str, ...], list[TimedPoint]] = {}
    for k in sorted(by_class):
        members = by_class[k]
        cuts[k] = cut([c.work_ms for c in members], counts[k]) if counts[k] else [(0, len(members), -1)]
        measured[k] = [
            _time(k, i, members[pick], simulate, clock) for i, (_, _, pick) in enumerate(cuts[k]) if pick >= 0
        ]
    strata = []
    for k in sorted(by_class):
        members, ts = by_class[k], measured[k]
        for i, (start, stop, _) in enumerate(cuts[k]):
            units = sum(c.work_ms for c in members[start:stop])
            if ts:
                near = [t.ratio for t in ts[max(0, i - 1) : i + 2]]
                mid, low, high = ts[i].ratio, min(near), max(near)
            else:
                mid, low, high = _pooled(k, measured)
            scale = units * weight * replicates
            strata.append(
                Stratum(
                    k,
                    (stop - start) * weight,
                    units,
                    mid * scale,
                    low * scale,
                    high * scale,
                    ts[i] if ts else None,
                )
            )
    return strata


def _pooled(
    untimed: tuple[str, ...], measured: dict[tuple[str, ...], list[TimedPoint]]
) -> tuple[float, float, float]:
    """Median, lowest and highest ratio for a class without a timed point: those of its (hardware,
    workload) partition's timed points if any, else of all."""
    same = [t.ratio for k, ts in measured.items() if k[:2] == untimed[:2] for t in ts]
    ratios = same or [t.ratio for ts in measured.values() for t in ts]
    return statistics.median(ratios), min(ratios), max(ratios)


def _time(
    cost_class: tuple[str, ...],
    stratum: int,
    c: _CostRow,
    simulate: Callable[..., Any],
    clock: Callable[[], float],
) -> TimedPoint:
    wall = time.perf_counter()
    before = clock()
    simulate(c.point.scenario, c.point.seed)
    cpu = clock() - before
    values = dict(c.row.values)
    return TimedPoint(
        cost_class, stratum, c.row.design_index, values, c.work_ms, cpu, time.perf_counter() - wall
    )
