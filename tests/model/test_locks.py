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
    plain = run(**kw, **{"features.boost_queue_head": False})  # default since 266e85a5ec91 (5.3): on
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


def _irqsave_script(irqsave: bool, hold_ns: int):
    """vCPU 0 holds the lock ``hold_ns``; vCPU 1 waits for it; vCPU 2 IPIs vCPU 1 meanwhile."""
    from model import locks
    from tests.model.scripted import mark, send_ipi

    lock = locks.QSpinLock()
    log: dict = {}
    scripts = {
        0: [("call", locks.spin_lock, lock), ("run", hold_ns, True), ("call", locks.spin_unlock, lock)],
        1: [("run", 20_000, False), ("call", locks.spin_lock, lock, irqsave), mark(log, "acquired"),
            ("run", 1_000, True), ("call", locks.spin_unlock, lock), mark(log, "restored")],
        2: [("run", hold_ns - 100_000, False), send_ipi(log, "ipi", 1)],
    }
    return scripts, log


@pytest.mark.parametrize("hold_ns", [300_000, 3_000_000])  # spinning; halted in pv_wait (past SPIN_THRESHOLD)
def test_an_irqsave_waiter_takes_no_ipi_until_it_holds_the_lock(hold_ns):
    from model.vcpu import HALTED
    from tests.model.scripted import scripted_host

    scripts, log = _irqsave_script(True, hold_ns)
    h = scripted_host(scripts, **{"vm.vcpus": 8})
    h.engine.run(hold_ns - 50_000)
    waiter = h.vms[0].vcpus[1]
    assert "ipi" not in log and waiter.irr  # delivered, pending in the IRR
    assert waiter.irqs_off
    if hold_ns > 2_500_000:
        assert waiter.state == HALTED  # kvm_wait halted with IF = 0: the IPI did not wake it
    h.engine.run(hold_ns + 1_000_000)
    assert log["acquired"] < log["restored"] <= log["ipi"]  # handled after spin_unlock_irqrestore
    assert not waiter.irqs_off

    scripts, log = _irqsave_script(False, hold_ns)
    h = scripted_host(scripts, **{"vm.vcpus": 8})
    h.engine.run(hold_ns + 1_000_000)
    assert log["ipi_sent"] < log["ipi"] < log["acquired"]  # IF = 1: handled while waiting
