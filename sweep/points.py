"""Points: fully resolved scenarios with a replicate number, an identity and a seed.

A point is one design row (minus excluded ones) applied to the base scenario,
times one replicate.  Two rules make a sweep reproducible whatever runs it:

* ``point_id`` is a stable hash of the resolved scenario, the replicate and the
  design index.  The design index is part of it because a sampled design
  (Sobol, Morris, LHS on lists or integers) can resolve two of its rows to the
  same scenario, and the analysis needs a result for each row.  For grids and
  factorials every row is a different scenario anyway.
* ``seed`` comes from ``numpy.random.SeedSequence`` fed with the sweep seed,
  the replicate and a hash of the scenario *without* its ``features.*`` keys.
  Points that differ only in feature toggles therefore share their seed
  (common random numbers): the report pairs feature on/off points that are
  identical otherwise, and their difference is the feature's, not the noise's.
  Nothing about the worker or the order of execution enters a seed.

Points are generated lazily from the design; :func:`check` walks them once up
front so that an impossible combination is a config error, not a failed run.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import ValidationError

from model.scenario import Scenario, describe_errors
from sweep import design
from sweep.config import MAX_POINTS, ConfigError, SweepConfig

POINT_ID_HEX = 32  # 128 bits of sha256: collisions are not a concern
POINT_STREAM = 1  # sub-stream of the sweep seed for point seeds (the design uses 0)
SEED_MASK = (1 << 63) - 1  # seeds are stored as int64: keep them non-negative
CRN_EXCLUDED_PREFIX = "features."  # keys left out of the seed hash (common random numbers)
MAX_LISTED_PROBLEMS = 5  # distinct impossible-combination messages shown in an error


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
    """One design row after exclusions: its index, the values it sets and the merged flat record."""

    design_index: int
    values: dict[str, Any]
    flat: dict[str, Any]


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), allow_nan=True)


def scenario_digest(flat: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(flat).encode()).hexdigest()


def make_point_id(digest: str, replicate: int, design_index: int) -> str:
    return hashlib.sha256(f"{digest}/{replicate}/{design_index}".encode()).hexdigest()[:POINT_ID_HEX]


def derive_seed(sweep_seed: int, replicate: int, flat: dict[str, Any]) -> int:
    """The point's seed: sweep seed x replicate x scenario-without-features."""
    crn = {k: v for k, v in flat.items() if not k.startswith(CRN_EXCLUDED_PREFIX)}
    words = np.frombuffer(hashlib.sha256(canonical_json(crn).encode()).digest()[:16], dtype=np.uint32)
    ss = np.random.SeedSequence(sweep_seed, spawn_key=(POINT_STREAM, replicate, *map(int, words)))
    return int(ss.generate_state(1, dtype=np.uint64)[0]) & SEED_MASK


def excluded(flat: dict[str, Any], rules: list[dict[str, Any]]) -> bool:
    """Whether a merged flat record matches any exclusion rule (all of a rule's keys match)."""
    for rule in rules:
        if all(flat.get(k) in (v if isinstance(v, list) else [v]) for k, v in rule.items()):
            return True
    return False


def design_rows(config: SweepConfig) -> Iterator[Row]:
    """Design rows, lazily, without the excluded ones."""
    base_flat = config.base_scenario().flat()
    rules = config.space.exclude
    for index, values in design.rows(config.space, config.seed):
        flat = {**base_flat, **values}
        if rules and excluded(flat, rules):
            continue
        yield Row(index, values, flat)


def build_scenario(base: dict[str, Any], values: dict[str, Any]) -> Scenario:
    """The base scenario with dotted ``values`` set; pydantic's ValidationError if impossible."""
    tree = _copy_tree(base)
    for key, value in values.items():
        node = tree
        parts = key.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = value
    return Scenario.model_validate(tree)


def _copy_tree(tree: dict[str, Any]) -> dict[str, Any]:
    return {k: _copy_tree(v) if isinstance(v, dict) else v for k, v in tree.items()}


def iter_points(config: SweepConfig, skip: set[str] | frozenset[str] = frozenset()) -> Iterator[Point]:
    """Every point of the sweep in design order (replicates inner), lazily; ``skip`` point ids left out."""
    for row in design_rows(config):
        scenario = build_scenario(config.base, row.values)
        flat = scenario.flat()
        digest = scenario_digest(flat)
        for replicate in range(config.replicates):
            point_id = make_point_id(digest, replicate, row.design_index)
            if point_id in skip:
                continue
            seed = derive_seed(config.seed, replicate, flat)
            yield Point(point_id, row.design_index, replicate, seed, scenario, flat)


def point_ids(config: SweepConfig) -> Iterator[str]:
    """Every point id, without building seeds (for status and resume)."""
    for row in design_rows(config):
        digest = scenario_digest(build_scenario(config.base, row.values).flat())
        for replicate in range(config.replicates):
            yield make_point_id(digest, replicate, row.design_index)


def check(config: SweepConfig) -> int:
    """Walk the design once; return the number of points or raise :class:`ConfigError`.

    An impossible combination (say more vCPUs than the topology and overcommit
    allow) is named with its values and the model's reason, with the hint to
    exclude it.
    """
    n_rows = design.size(config.space)
    if n_rows * config.replicates > MAX_POINTS:
        total = n_rows * config.replicates
        problem = f"space: {n_rows} design rows x {config.replicates} replicates = {total} points"
        raise ConfigError([f"{problem}, more than the limit of {MAX_POINTS}"])
    reasons: Counter[str] = Counter()
    examples: dict[str, dict[str, Any]] = {}
    kept = 0
    for row in design_rows(config):
        try:
            build_scenario(config.base, row.values)
        except ValidationError as err:
            reason = "; ".join(describe_errors(err, Scenario))
            reasons[reason] += 1
            examples.setdefault(reason, row.values)
            continue
        kept += 1
    problems: list[str] = []
    for reason, count in reasons.most_common(MAX_LISTED_PROBLEMS):
        values = ", ".join(f"{k}={v!r}" for k, v in examples[reason].items())
        problems.append(
            f"space.params: {count} combination(s) make an impossible scenario, e.g. {values}: "
            f"{reason}; change the values or add a space.exclude rule"
        )
    if len(reasons) > MAX_LISTED_PROBLEMS:
        problems.append(
            f"space.params: ... and {len(reasons) - MAX_LISTED_PROBLEMS} more kinds of impossible combination"
        )
    if not problems and kept == 0:
        problems.append("space.exclude: the rules exclude every point; nothing would run")
    if problems:
        raise ConfigError(problems)
    return kept * config.replicates


def partition_counts(config: SweepConfig) -> Counter[tuple[str, str]]:
    """Points per (hardware, workload) partition, for ``sweep plan``."""
    counts: Counter[tuple[str, str]] = Counter()
    for row in design_rows(config):
        counts[(str(row.flat["hardware"]), str(row.flat["workload.kind"]))] += config.replicates
    return counts
