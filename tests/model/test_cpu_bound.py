"""cpu-bound on some vCPUs only (stress --cpu N in a bigger VM)."""

from model.simulate import build
from tests.model.conftest import run, scenario


def test_n_threads_run_on_the_first_n_vcpus_and_the_rest_idle():
    h = build(scenario(**{"workload.kind": "cpu-bound", "workload.cpu_bound.threads": 2, "vm.vcpus": 8}), seed=1)
    assert [len(v.gq) for v in h.vms[0].vcpus] == [1, 1, 0, 0, 0, 0, 0, 0]
    r = run(**{"workload.kind": "cpu-bound", "workload.cpu_bound.threads": 2, "vm.vcpus": 8,
               "sim.duration_ms": 30, "sim.warmup_ms": 5})
    assert 70 < r.metrics["halted_pct"] < 80  # 6 of 8 vCPUs halted
    assert 1.5 < r.metrics["compute_s_per_s"] <= 2.0


def test_a_co_runner_with_two_busy_vcpus_steals_little_from_the_measured_vm():
    kw = {"workload.kind": "cpu-bound", "vm.vcpus": 8, "overcommit": 2.0, "sim.duration_ms": 60,
          "sim.warmup_ms": 10}
    full = run(**kw)
    light = run(**kw, **{"workload.cpu_bound.threads": 2})  # every cpu-bound VM runs stress --cpu 2
    assert full.metrics["steal_pct"] > 30
    assert light.metrics["corunner_compute_s_per_s"] < full.metrics["corunner_compute_s_per_s"] / 2
