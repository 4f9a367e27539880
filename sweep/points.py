"""Points: fully resolved scenarios with a replicate number, an identity and a seed.

A point is one design row (minus excluded ones) applied to the base scenario,
times one replicate.  Two rules make a sweep reproducible whatever runs it:

* ``point_id`` is a stable hash of the resolved scenario, the replicate and the
  design index.  The design index is part of it because a sampled design
  (Sobol, Morris, LHS on lists or integers) can resolve two of its rows to the
  same scenario, and the analysis needs a result for each row.  For grids and
  factorials every row is a different scenario anyway.
* ``seed`` comes from ``numpy.random.SeedSequence`` fed with the sweep seed,
  the replicate and a hash of the scenario *without* its ``features.*`` keys
  and without the knob blocks of workloads that no VM of the scenario runs
  (:func:`seed_keys`).  Points that differ only in feature toggles therefore
  share their seed (common random numbers): the report pairs feature on/off
  points that are identical otherwise, and their difference is the feature's,
  not the noise's.  And a change to one workload's default knob reseeds only
  the points that run that workload.  Nothing about the worker or the order of
  execution enters a seed.

Points are generated lazily from the design; :func:`census` walks the design
once up front (in constant memory) so that an impossible combination is a
config error, not a failed run.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from model.scenario import Scenario, describe_errors, set_dotted
from sweep import design
from sweep.config import MAX_POINTS, ConfigError, SweepConfig

POINT_ID_HEX = 32  # 128 bits of sha256: collisions are not a concern
POINT_STREAM = 1  # sub-stream of the sweep seed for point seeds (the design uses 0)
SEED_MASK = (1 << 63) - 1  # seeds are stored as int64: keep them non-negative
CRN_EXCLUDED_PREFIX = "features."  # keys left out of the seed hash (common random numbers)
WORKLOAD_PREFIX = "workload."  # workload.kind, then one knob block per kind: workload.<kind>.<knob>
SAME_AS_MEASURED = "same"  # corunner.workload: the co-runners run the measured VM's workload
MAX_LISTED_PROBLEMS = 5  # distinct impossible-combination messages shown in an error
CHECK_ALL_ROWS = 20_000  # designs up to this many rows have every row checked up front (~1 s)
CHECK_SAMPLE_ROWS = 2_000  # larger ones: this many rows spread over the design
GRID_CHUNK_ROWS = 1 << 16  # rows of a large grid counted at a time (numpy), bounding memory


@dataclass(frozen=True, slots=True)
class Point:
    """One simulation to run: scenario, replicate, identity and seed."""

    point_id: str
    design_index: int
    replicate: int
    seed: int
    scenario: Scenario
    flat: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Row:
    """One design row after exclusions: its index, the values it sets, and the base scenario's flat
    record (shared by every row: the row's own scenario is the base with ``values`` set)."""

    design_index: int
    values: dict[str, Any]
    base_flat: dict[str, Any]

    @property
    def flat(self) -> dict[str, Any]:
        """The row's merged flat record (base values, then the row's)."""
        return {**self.base_flat, **self.values}


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def scenario_digest(flat: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(flat).encode()).hexdigest()


def make_point_id(digest: str, replicate: int, design_index: int) -> str:
    return hashlib.sha256(f"{digest}/{replicate}/{design_index}".encode()).hexdigest()[:POINT_ID_HEX]


def seed_keys(flat: dict[str, Any]) -> dict[str, Any]:
    """The part of a flat scenario that a point's seed hashes.

    Left out: ``features.*`` (common random numbers across feature toggles), and the knob
    blocks ``workload.<kind>.*`` of the kinds that neither the measured VM (``workload.kind``)
    nor the co-runners (``corunner.workload``) run: a VM reads only its own kind's block
    (model.workloads.knobs_of), so those keys cannot change a run."""
    kinds = {flat.get("workload.kind"), flat.get("corunner.workload")}
    if SAME_AS_MEASURED in kinds:
        kinds = (kinds - {SAME_AS_MEASURED}) | {flat.get("workload.kind")}
    blocks = {str(kind).replace("-", "_") for kind in kinds if kind is not None}

    def hashed(key: str) -> bool:
        if key.startswith(CRN_EXCLUDED_PREFIX):
            return False
        parts = key.split(".", 2)
        return not (key.startswith(WORKLOAD_PREFIX) and len(parts) == 3 and parts[1] not in blocks)

    return {k: v for k, v in flat.items() if hashed(k)}


def derive_seed(sweep_seed: int, replicate: int, flat: dict[str, Any]) -> int:
    """The point's seed: sweep seed x replicate x the scenario's :func:`seed_keys`."""
    crn = seed_keys(flat)
    words = np.frombuffer(hashlib.sha256(canonical_json(crn).encode()).digest()[:16], dtype=np.uint32)
    ss = np.random.SeedSequence(sweep_seed, spawn_key=(POINT_STREAM, replicate, *map(int, words)))
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & SEED_MASK


def excluded(values: dict[str, Any], base_flat: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    """Whether a design row matches any exclusion rule (all of a rule's keys match; a key the row
    does not set is the base scenario's)."""
    for rule in rules:
        if all(
            values.get(k, base_flat.get(k)) in (v if isinstance(v, list) else [v]) for k, v in rule.items()
        ):
            return True
    return False


def design_rows(config: SweepConfig) -> Iterator[Row]:
    """Design rows, lazily, without the excluded ones (constant memory for grids)."""
    base_flat = config.base_scenario().flat()
    rules = config.space.exclude
    for index, values in design.rows(config.space, config.seed):
        if rules and excluded(values, base_flat, rules):
            continue
        yield Row(index, values, base_flat)


def build_scenario(base: dict[str, Any], values: dict[str, Any]) -> Scenario:
    """The base scenario with dotted ``values`` set; pydantic's ValidationError if impossible."""
    tree = _copy_tree(base)
    for key, value in values.items():
        set_dotted(tree, key, value)
    return Scenario.model_validate(tree)


def _copy_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


@dataclass
class Invalid:
    """Design rows found impossible while streaming (large designs are checked on a sample only)."""

    count: int = 0
    example: str = ""

    def add(self, values: dict[str, Any], err: ValidationError) -> None:
        self.count += 1
        if not self.example:
            shown = ", ".join(f"{k}={v!r}" for k, v in values.items())
            self.example = f"{shown}: {'; '.join(describe_errors(err, Scenario))}"


def iter_points(
    config: SweepConfig, skip: set[str] | frozenset[str] = frozenset(), invalid: Invalid | None = None
) -> Iterator[Point]:
    """Every point of the sweep in design order (replicates inner), lazily; ``skip`` point ids left
    out.  An impossible row is counted in ``invalid`` and left out (the up-front check of a large
    design is a sample)."""
    for row in design_rows(config):
        try:
            scenario = build_scenario(config.base, row.values)
        except ValidationError as err:
            if invalid is None:
                raise
            invalid.add(row.values, err)
            continue
        flat = scenario.flat()
        digest = scenario_digest(flat)
        for replicate in range(config.replicates):
            point_id = make_point_id(digest, replicate, row.design_index)
            if point_id in skip:
                continue
            seed = derive_seed(config.seed, replicate, flat)
            yield Point(point_id, row.design_index, replicate, seed, scenario, flat)


def point_ids(config: SweepConfig) -> Iterator[str]:
    """Every point id, in design order."""
    return (p.point_id for p in iter_points(config))


@dataclass(frozen=True)
class Census:
    """What one pass over the design finds: rows kept, points per (hardware, workload), the rows
    checked against the model and the problems found, and a few rows spread over the design."""

    design_rows: int
    kept_rows: int
    replicates: int
    partitions: Counter[tuple[str, str]]
    checked_rows: int
    problems: list[str]
    picked: list[Row]

    @property
    def total(self) -> int:
        return self.kept_rows * self.replicates


def _spread(n: int, k: int) -> list[int]:
    """``k`` indices spread evenly over ``range(n)`` (all of them if ``n <= k``)."""
    if n <= k:
        return list(range(n))
    return sorted({round(i * (n - 1) / (k - 1)) for i in range(k)}) if k > 1 else [0]


@dataclass
class _Walk:
    """What :func:`census` accumulates over the rows it visits."""

    config: SweepConfig
    pick: int
    to_pick: list[int]
    reasons: Counter[str] = field(default_factory=Counter)
    examples: dict[str, dict[str, Any]] = field(default_factory=dict)
    partitions: Counter[tuple[str, str]] = field(default_factory=Counter)
    picked: list[Row] = field(default_factory=list)
    kept: int = 0
    checked: int = 0

    def visit(self, row: Row, check: bool, count: bool = True) -> None:
        """Check ``row`` against the model if asked (an impossible row is not kept), count it, pick it."""
        check = check or (bool(self.to_pick) and self.to_pick[0] <= row.design_index)  # picks are checked
        if check:
            self.checked += 1
            try:
                build_scenario(self.config.base, row.values)
            except ValidationError as err:
                reason = "; ".join(describe_errors(err, Scenario))
                self.reasons[reason] += 1
                self.examples.setdefault(reason, row.values)
                return
        if count:
            self.kept += 1
            hardware = row.values.get("hardware", row.base_flat["hardware"])
            workload = row.values.get("workload.kind", row.base_flat["workload.kind"])
            self.partitions[(str(hardware), str(workload))] += self.config.replicates
        while self.to_pick and self.to_pick[0] <= row.design_index:
            self.to_pick.pop(0)
            if len(self.picked) < self.pick:
                self.picked.append(row)

    def problems(self) -> list[str]:
        problems = [
            f"space.params: {count} combination(s) make an impossible scenario, e.g. "
            + ", ".join(f"{k}={v!r}" for k, v in self.examples[reason].items())
            + f": {reason}; change the values or add a space.exclude rule"
            for reason, count in self.reasons.most_common(MAX_LISTED_PROBLEMS)
        ]
        if len(self.reasons) > MAX_LISTED_PROBLEMS:
            problems.append(
                f"space.params: ... and {len(self.reasons) - MAX_LISTED_PROBLEMS} more kinds of impossible combination"
            )
        if not problems and self.kept == 0:
            problems.append("space.exclude: the rules exclude every point; nothing would run")
        return problems


def _grid_walk(config: SweepConfig, walk: _Walk, to_check: list[int]) -> None:
    """A large grid, chunk by chunk with numpy (constant memory, ~0.1 s per 10^6 rows): the rows
    kept and the partition counts from the levels' indices; only the sampled rows are built."""
    axes = design.axes(config.space)
    levels = [a.levels() for a in axes]
    shape = tuple(len(lv) for lv in levels)
    keys = [a.key for a in axes]
    base_flat = config.base_scenario().flat()
    rules = []  # per rule: [(axis, allowed-level mask)], or None where a base value never matches
    for rule in config.space.exclude:
        terms: list[tuple[int, np.ndarray]] | None = []
        for key, value in rule.items():
            allowed = value if isinstance(value, list) else [value]
            if key in keys:
                i = keys.index(key)
                terms.append((i, np.array([lv in allowed for lv in levels[i]], dtype=bool)))  # type: ignore[union-attr]
            elif base_flat.get(key) not in allowed:
                terms = None
                break
        if terms is not None:
            rules.append(terms)
    part_keys = [keys.index(k) if k in keys else None for k in ("hardware", "workload.kind")]
    samples = np.array(sorted(set(to_check) | set(walk.to_pick)), dtype=np.int64)
    n = math.prod(shape)
    for start in range(0, n, GRID_CHUNK_ROWS):
        index = np.arange(start, min(n, start + GRID_CHUNK_ROWS), dtype=np.int64)
        coords = np.unravel_index(index, shape)
        keep = np.ones(len(index), dtype=bool)
        for terms in rules:
            hit = np.ones(len(index), dtype=bool)
            for i, mask in terms:
                hit &= mask[coords[i]]
            keep &= ~hit
        walk.kept += int(keep.sum())
        cols = [coords[i][keep] if i is not None else None for i in part_keys]
        combos = Counter(
            zip(*(c.tolist() if c is not None else [0] * int(keep.sum()) for c in cols), strict=True)
        )
        for (hw, wl), count in combos.items():
            hardware = levels[part_keys[0]][hw] if part_keys[0] is not None else base_flat["hardware"]
            workload = levels[part_keys[1]][wl] if part_keys[1] is not None else base_flat["workload.kind"]
            walk.partitions[(str(hardware), str(workload))] += count * config.replicates
        for j in samples[(samples >= start) & (samples < start + len(index))].tolist():
            if keep[j - start]:
                values = {k: levels[i][int(coords[i][j - start])] for i, k in enumerate(keys)}
                walk.visit(Row(j, values, base_flat), check=True, count=False)


def census(config: SweepConfig, pick: int = 0) -> Census:
    """One pass over the design rows, in constant memory.

    Every row of a design of at most :data:`CHECK_ALL_ROWS` rows is built into
    a scenario (an impossible combination is a problem, named with its values
    and the model's reason); a larger design has :data:`CHECK_SAMPLE_ROWS` rows
    spread over it checked (the axes themselves are checked by the config), and
    an impossible row found later is left out of the run and reported by it.
    A large grid is counted with numpy, without visiting its rows one by one.
    """
    n_rows = design.size(config.space)
    total = n_rows * config.replicates
    if total > MAX_POINTS:
        problem = f"space: {n_rows} design rows x {config.replicates} replicates = {total} points"
        raise ConfigError([f"{problem}, more than the limit of {MAX_POINTS}"])
    walk = _Walk(config, pick, _spread(n_rows, pick))
    if n_rows <= CHECK_ALL_ROWS:  # every row checked; the picks spread over the rows kept
        walk.to_pick = []
        kept: list[Row] = []
        for row in design_rows(config):
            before = walk.kept
            walk.visit(row, check=True)
            if walk.kept > before:
                kept.append(row)
        walk.picked = [kept[i] for i in _spread(len(kept), pick)] if pick else []
    elif config.space.design in ("grid", "factorial"):
        _grid_walk(config, walk, _spread(n_rows, CHECK_SAMPLE_ROWS))
    else:
        to_check = set(_spread(n_rows, CHECK_SAMPLE_ROWS))
        for row in design_rows(config):
            walk.visit(row, check=row.design_index in to_check)
    return Census(
        n_rows, walk.kept, config.replicates, walk.partitions, walk.checked, walk.problems(), walk.picked
    )


def check(config: SweepConfig) -> int:
    """Walk the design once; return the number of points or raise :class:`ConfigError`."""
    found = census(config)
    if found.problems:
        raise ConfigError(found.problems)
    return found.total
