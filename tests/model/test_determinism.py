import math

from tests.model.conftest import run


def _same(a: dict, b: dict) -> bool:
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a if k != "wall_s")


def test_same_scenario_and_seed_give_identical_results():
    kw = {"workload.kind": "hackbench", "workload.hackbench.groups": 1, "vm.vcpus": 8, "sim.duration_ms": 10,
          "sim.warmup_ms": 2}
    a, b = run(seed=7, **kw), run(seed=7, **kw)
    assert _same(a.metrics, b.metrics)
    assert a.exits == b.exits


def test_different_seeds_differ():
    kw = {"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 20, "sim.warmup_ms": 2}
    a, b = run(seed=1, **kw), run(seed=2, **kw)
    assert not _same(a.metrics, b.metrics)


def test_floating_threads_with_newidle_balance_and_hints_are_deterministic():
    kw = {"workload.kind": "ebizzy", "vm.vcpus": 8, "pinning": "none", "overcommit": 2.0,
          "corunner.workload": "cpu-bound", "workload.cpu_bound.threads": 3, "vm.hint_dedicated": True,
          "guest.kernel": "5.4", "host.kernel": "5.8", "sim.duration_ms": 15, "sim.warmup_ms": 2}
    a, b = run(seed=5, **kw), run(seed=5, **kw)
    assert _same(a.metrics, b.metrics) and a.exits == b.exits
    assert a.metrics["records_per_s_ci95_pct"] == b.metrics["records_per_s_ci95_pct"]


def test_pbzip2_with_boosts_and_floating_threads_is_deterministic():
    kw = {"workload.kind": "pbzip2", "workload.pbzip2.compress_speed_mb": 400.0, "vm.vcpus": 8,
          "pinning": "none", "overcommit": 2.0, "corunner.workload": "same", "features.pv_tlb_flush": False,
          "sim.duration_ms": 30, "sim.warmup_ms": 5}
    a, b = run(seed=4, **kw), run(seed=4, **kw)
    assert _same(a.metrics, b.metrics) and a.exits == b.exits
    assert a.metrics["pbzip2_blocks_per_s"] > 0
    c = run(seed=5, **kw)
    assert not _same(a.metrics, c.metrics)
