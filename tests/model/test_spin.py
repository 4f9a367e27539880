"""PLE, kvm_vcpu_on_spin and the boost / yield mechanisms (MODEL.md sections 7-8)."""

import pytest

from model import spin
from model.simulate import build, start
from tests.model.conftest import run, scenario

OFF = {"features.boost_ready": False, "features.boost_user_irq": False, "features.pv_tlb_flush": False,
       "features.pv_sched_yield": False, "features.boost_queue_head": False}
EBIZZY = {"workload.kind": "ebizzy", "vm.vcpus": 8, "corunner.workload": "same", "sim.duration_ms": 150,
          "sim.warmup_ms": 20, **OFF}


def _pair(feature: str, overcommit: float, seed: int = 1):
    off = run(seed=seed, overcommit=overcommit, **EBIZZY)
    on = run(seed=seed, overcommit=overcommit, **{**EBIZZY, f"features.{feature}": True})
    return off.metrics, on.metrics


def test_with_one_vm_per_pcpu_every_yield_to_ends_in_esrch():
    # the stock 5.13 feature set; halted shootdown targets make PV yields and boosts try yield_to
    r = run(**{"workload.kind": "ebizzy", "topology.cores_per_socket": 8, "vm.vcpus": 16, "sim.duration_ms": 60,
               "sim.warmup_ms": 10, "features.pv_tlb_flush": False})
    m = r.metrics
    assert m["directed_yield_attempts"] > 0 and m["pv_sched_yields"] > 0
    assert m["directed_yield_esrch"] == m["directed_yield_attempts"]
    assert m["directed_yield_successes"] == 0


@pytest.mark.parametrize("feature", ["boost_ready", "pv_sched_yield"])
def test_boosts_change_throughput_by_a_few_percent_at_most_without_overcommit(feature):
    pairs = [_pair(feature, 1.0, seed) for seed in (1, 2, 3, 4)]
    off = sum(p[0]["records_per_s"] for p in pairs)
    on = sum(p[1]["records_per_s"] for p in pairs)
    assert on == pytest.approx(off, rel=0.08)


def test_boost_ready_raises_ebizzy_throughput_at_overcommit_2():
    off, on = _pair("boost_ready", 2.0)
    assert on["records_per_s"] > 1.5 * off["records_per_s"]
    assert on["smp_call_function_many_pct"] < off["smp_call_function_many_pct"]
    assert on["directed_yield_successes"] > off["directed_yield_successes"]


def test_pv_sched_yield_raises_ebizzy_throughput_at_overcommit_2():
    gains = []
    for seed in (1, 2, 3):
        off, on = _pair("pv_sched_yield", 2.0, seed)
        assert on["pv_sched_yields"] > 0
        gains.append(on["records_per_s"] / off["records_per_s"])
    assert sorted(gains)[1] > 1.0  # median of three seeds


def _on_spin_host(**kw):
    h = build(scenario(**{"workload.kind": "cpu-bound", "vm.vcpus": 8, "overcommit": 2.0, **kw}), seed=1)
    start(h)
    h.engine.run(2_000_000)
    h.stats.start_measuring(h.engine.now)
    return h


def test_on_spin_skips_vcpus_preempted_in_user_mode_without_a_pending_interrupt():
    h = _on_spin_host(**{"features.boost_user_irq": False})
    vm = h.vms[0]
    me = next(v for v in vm.vcpus if h.pcpus[v.pinned].curr is v)
    for v in vm.vcpus:
        if v is not me:
            v.ready, v.preempted, v.preempted_in_kernel = True, True, False
    assert spin.on_spin(h, me, yield_to_kernel_mode=True) is False
    assert h.stats.counters["directed_yield_attempts"] == 0


def test_on_spin_needs_ready_with_boost_ready_and_preempted_without():
    for boost_ready, flags, expect in ((True, (True, False), True), (False, (True, False), False)):
        h = _on_spin_host(**{"features.boost_ready": boost_ready})
        vm = h.vms[0]
        me = next(v for v in vm.vcpus if h.pcpus[v.pinned].curr is v)
        for v in vm.vcpus:
            if v is not me:
                v.ready, v.preempted = flags
                v.preempted_in_kernel = True
        tried = spin.on_spin(h, me, yield_to_kernel_mode=True) or h.stats.counters["directed_yield_attempts"] > 0
        assert tried is expect


def test_spinners_are_candidates_only_every_other_time():
    h = _on_spin_host()
    v = h.vms[0].vcpus[1]
    v.in_spin_loop = True
    v.dy_eligible = False
    picks = [spin._eligible_for_directed_yield(v) for _ in range(4)]
    assert picks == [False, True, False, True]


def test_ple_window_grows_per_exit_and_resets_on_sched_in():
    h = _on_spin_host()
    v = h.vms[0].vcpus[0]
    base = v.ple_window
    spin._grow_window(h, v)
    spin._grow_window(h, v)
    assert v.ple_window == base * 4
    spin.reset_window(h, v)
    assert v.ple_window == base


def test_without_ple_no_pause_exits():
    r = run(overcommit=2.0, **{**EBIZZY, "features.ple": False, "sim.duration_ms": 60})
    assert r.metrics["ple_exits_per_s"] == 0
    assert not any(row.reason == "PAUSE" for row in r.exits)
