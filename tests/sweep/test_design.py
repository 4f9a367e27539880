"""Designs and points: sizes, sample order, identities, seeds (no Ray)."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pytest

from sweep import config as config_mod
from sweep import design, points
from tests.sweep.conftest import tiny_config


def _cfg(space: dict[str, Any], **top: Any) -> config_mod.SweepConfig:
    return config_mod.from_dict(tiny_config(space=space, **top))


SALIB_PARAMS = {
    "vm.halt_poll_ns": {"low": 1000, "high": 400000, "log": True},
    "vm.guest_hz": {"low": 100, "high": 1000},
    "features.ple": [True, False],
}


def test_grid_order_and_exclusions() -> None:
    cfg = _cfg(
        {
            "design": "grid",
            "params": {"hardware": ["cascadelake", "rome"], "features.timer_fastpath": [True, False]},
            "exclude": [{"hardware": "rome", "features.timer_fastpath": True}],
        },
        replicates=2,
    )
    rows = list(points.design_rows(cfg))
    assert [r.design_index for r in rows] == [0, 1, 3]  # index 2 (rome, fastpath on) excluded
    assert points.check(cfg) == 6
    pts = list(points.iter_points(cfg))
    assert [(p.design_index, p.replicate) for p in pts] == [(0, 0), (0, 1), (1, 0), (1, 1), (3, 0), (3, 1)]
    assert len({p.point_id for p in pts}) == 6


def test_grid_range_levels_and_factorial() -> None:
    grid = _cfg(
        {
            "design": "grid",
            "params": {"vm.halt_poll_ns": {"low": 1000, "high": 100000, "log": True, "levels": 3}},
        }
    )
    assert [r.values["vm.halt_poll_ns"] for r in points.design_rows(grid)] == [1000, 10000, 100000]
    fact = _cfg(
        {
            "design": "factorial",
            "params": {"vm.guest_hz": {"low": 100, "high": 1000}, "features.ple": [True, False]},
        }
    )
    assert design.size(fact.space) == 4
    assert [tuple(r.values.values()) for r in points.design_rows(fact)] == list(
        itertools.product([100, 1000], [True, False])
    )


@pytest.mark.parametrize("kind", ["random", "lhs"])
def test_sampled_designs_are_seeded_and_in_bounds(kind: str) -> None:
    cfg = _cfg({"design": kind, "samples": 20, "params": SALIB_PARAMS})
    rows = [r.values for r in points.design_rows(cfg)]
    assert len(rows) == 20
    assert rows == [r.values for r in points.design_rows(cfg)]  # same seed, same rows
    other = _cfg({"design": kind, "samples": 20, "params": SALIB_PARAMS}, seed=8)
    assert rows != [r.values for r in points.design_rows(other)]
    for r in rows:
        assert 1000 <= r["vm.halt_poll_ns"] <= 400000 and isinstance(r["vm.halt_poll_ns"], int)
        assert 100 <= r["vm.guest_hz"] <= 1000
        assert r["features.ple"] in (True, False)


def test_lhs_strata() -> None:
    cfg = _cfg({"design": "lhs", "samples": 10, "params": {"overcommit": {"low": 1.0, "high": 2.0}}})
    xs = sorted(r.values["overcommit"] for r in points.design_rows(cfg))
    assert [math.floor((x - 1.0) * 10) for x in xs] == list(range(10))  # one sample per stratum


def test_sobol_keeps_salib_order_and_problem() -> None:
    from SALib.sample import sobol

    cfg = _cfg({"design": "sobol", "samples": 8, "params": SALIB_PARAMS}, replicates=2)
    problem = design.salib_problem(cfg.space)
    assert problem is not None
    assert problem["names"] == list(SALIB_PARAMS)
    assert problem["num_vars"] == 3 and problem["N"] == 8 and problem["calc_second_order"] is False
    assert problem["bounds"][0] == pytest.approx([3.0, math.log10(400001)])
    assert problem["bounds"][2] == [0.0, 2.0]
    matrix = design.sample_matrix(cfg.space, cfg.seed)
    assert matrix is not None and matrix.shape == (8 * (3 + 2), 3)
    again = sobol.sample(
        {k: problem[k] for k in ("names", "bounds", "num_vars")},
        8,
        calc_second_order=False,
        seed=int(np.random.SeedSequence(cfg.seed, spawn_key=(design.DESIGN_STREAM,)).generate_state(1)[0]),
    )
    assert np.array_equal(matrix, again)
    pts = list(points.iter_points(cfg))
    assert len(pts) == 40 * 2 == points.check(cfg)
    assert sorted({p.design_index for p in pts}) == list(range(40))  # every sample row, even duplicates
    assert len({p.point_id for p in pts}) == len(pts)


def test_morris_size_and_trajectories() -> None:
    cfg = _cfg({"design": "morris", "samples": 4, "params": SALIB_PARAMS})
    assert cfg.space.num_levels == 4
    assert design.size(cfg.space) == 4 * 4
    problem = design.salib_problem(cfg.space)
    assert problem is not None and problem["trajectories"] == 4 and problem["num_levels"] == 4
    matrix = design.sample_matrix(cfg.space, cfg.seed)
    assert matrix is not None
    # In each trajectory consecutive rows differ in exactly one parameter.
    for t in range(4):
        block = matrix[t * 4 : (t + 1) * 4]
        assert all((np.abs(np.diff(block, axis=0)) > 1e-12).sum(axis=1) == 1)


def test_features_only_differences_share_seeds_and_nothing_else_does() -> None:
    cfg = _cfg(
        {
            "design": "grid",
            "params": {
                "features.ipi_fastpath": [True, False],
                "features.ple": [True, False],
                "vm.guest_hz": [100, 250],
            },
        },
        replicates=2,
    )
    pts = list(points.iter_points(cfg))
    by_key: dict[tuple[int, int], set[int]] = {}
    for p in pts:
        by_key.setdefault((p.flat["vm.guest_hz"], p.replicate), set()).add(p.seed)
    assert all(len(seeds) == 1 for seeds in by_key.values())  # 4 feature combos, one seed
    assert len({next(iter(s)) for s in by_key.values()}) == 4  # guest_hz x replicate all differ


def test_point_ids_and_seeds_are_stable() -> None:
    cfg = config_mod.from_dict(tiny_config())
    first = [(p.point_id, p.seed) for p in points.iter_points(cfg)]
    again = [(p.point_id, p.seed) for p in points.iter_points(config_mod.from_dict(tiny_config()))]
    assert first == again
    # Known values: a change here breaks resuming every existing sweep output.
    flat = cfg.base_scenario().flat()
    assert points.derive_seed(7, 0, flat) == points.derive_seed(7, 0, dict(flat))
    assert (
        points.make_point_id("abc", 1, 2)
        == points.make_point_id("abc", 1, 2)
        != points.make_point_id("abc", 2, 1)
    )


def test_seed_hashes_only_the_workloads_the_vms_run() -> None:
    """A knob of a workload no VM runs cannot change a run, so it must not reseed the point; the
    measured VM's knobs and the co-runners' must."""
    from model import Scenario

    def seed(overrides: dict) -> int:
        return points.derive_seed(7, 0, Scenario.build({}, {"workload.kind": "ebizzy", **overrides}).flat())

    base = seed({})
    assert seed({"workload.cyclictest.wakeup_ns": 999}) == base  # nobody runs cyclictest
    assert seed({"workload.pbzip2.block_bytes": 500_000}) == base
    assert seed({"features.boost_ready": True}) == base  # common random numbers
    assert seed({"workload.ebizzy.chunk_kib": 256}) != base  # the measured VM's own knob
    assert seed({"workload.cpu_bound.chunk_us": 500}) != base  # the co-runners' (cpu-bound by default)
    same = seed({"corunner.workload": "same"})
    assert seed({"corunner.workload": "same", "workload.cpu_bound.chunk_us": 500}) == same
    assert seed({"corunner.workload": "hackbench", "workload.hackbench.loops": 7}) != seed(
        {"corunner.workload": "hackbench"}
    )


def test_points_are_lazy() -> None:
    cfg = _cfg(
        {"design": "random", "samples": 100_000, "params": {"vm.guest_hz": {"low": 100, "high": 1000}}}
    )
    head = list(itertools.islice(points.iter_points(cfg), 3))
    assert [p.design_index for p in head] == [0, 0, 1]  # two replicates of row 0, then row 1


def test_skip_leaves_out_done_points() -> None:
    cfg = config_mod.from_dict(tiny_config())
    ids = list(points.point_ids(cfg))
    assert ids == [p.point_id for p in points.iter_points(cfg)]
    rest = [p.point_id for p in points.iter_points(cfg, skip=set(ids[:5]))]
    assert rest == ids[5:]


def test_an_impossible_row_met_while_streaming_is_counted_not_raised(write_conf: Any) -> None:
    """Large designs are checked on a sample: a row found impossible later is left out and counted."""
    cfg = config_mod.load(
        write_conf(tiny_config(replicates=2, space={"design": "grid", "params": {"vm.vcpus": [2, 64]}}))
    )
    invalid = points.Invalid()
    pts = list(points.iter_points(cfg, invalid=invalid))
    assert {p.scenario.vm.vcpus for p in pts} == {2} and len(pts) == 2
    assert invalid.count == 1 and "vm.vcpus=64" in invalid.example and "overcommit" in invalid.example
    with pytest.raises(config_mod.ConfigError):  # the up-front check of a small design names it
        points.check(cfg)
