"""Queued spinlocks, PV spinlock, the queue-head boost, mmap_sem (MODEL.md section 9)."""

import pytest

from tests.model.conftest import run

LOCKBENCH = {"workload.kind": "lockbench", "vm.vcpus": 8, "corunner.workload": "same", "sim.duration_ms": 80,
             "sim.warmup_ms": 10}


def test_lock_waiter_preemption_collapses_fifo_spinlocks_at_overcommit_2():
    kw = {**LOCKBENCH, "features.pv_spinlock": False}
    alone = run(**kw)
    crowded = run(overcommit=2.0, **kw)
    assert crowded.metrics["acquisitions_per_s"] < 0.3 * alone.metrics["acquisitions_per_s"]
    assert crowded.metrics["lock_wait_p99_us"] > 10 * alone.metrics["lock_wait_p99_us"]


def test_pv_wait_early_halts_waiters_behind_a_preempted_vcpu_and_kicks_them():
    kw = {**LOCKBENCH, "overcommit": 2.0, "features.pv_spinlock": True}
    spinning = run(**kw)
    early = run(**kw, **{"features.pv_wait_early": True})
    assert spinning.metrics["kicks"] == 0  # nobody spins 2^15 PAUSEs (1.8 ms on Skylake)
    assert early.metrics["kicks"] > 0
    assert early.metrics["acquisitions_per_s"] > spinning.metrics["acquisitions_per_s"]


def test_queue_head_boost_yields_to_the_kicked_vcpu():
    kw = {**LOCKBENCH, "overcommit": 2.0, "features.pv_spinlock": True, "features.pv_wait_early": True}
    plain = run(**kw)
    boosted = run(**kw, **{"features.boost_queue_head": True})
    assert plain.metrics["queue_head_boosts"] == 0
    assert boosted.metrics["queue_head_boosts"] > 0
    assert boosted.metrics["acquisitions_per_s"] > plain.metrics["acquisitions_per_s"]


def test_queue_head_boost_does_nothing_without_overcommit():
    kw = {**LOCKBENCH, "features.pv_spinlock": True, "features.pv_wait_early": True}
    assert run(**kw).metrics == pytest.approx(
        run(**kw, **{"features.boost_queue_head": True}).metrics | {"wall_s": pytest.approx(0, abs=1e9)},
        nan_ok=True,
    )


def test_kick_sets_pv_unhalted_and_wakes_the_head():
    from model import spin
    from model.simulate import build, start
    from model.vcpu import HALTED
    from tests.model.conftest import scenario

    h = build(scenario(**{"workload.kind": "cpu-bound", "vm.vcpus": 8}), seed=1)
    start(h)
    h.engine.run(1_000_000)
    me, head = h.vms[0].vcpus[0], h.vms[0].vcpus[1]
    head.state = HALTED  # pretend it blocked in pv_wait
    h.pcpus[head.pinned].curr = None
    spin.kick_cpu_hypercall(h, me, head, None)
    assert head.pv_unhalted and head.ready
