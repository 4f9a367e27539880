"""PLE, kvm_vcpu_on_spin and the boost / yield mechanisms (MODEL.md sections 7-8)."""

import pytest

from model import guest, spin
from model.ops import Call, Run
from model.simulate import build, start
from model.vcpu import RUNNABLE
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
    # one VM per pCPU: PV spinlock waiters behind a long critical section pv_wait (HLT) and are
    # kicked, so they are ready; the PLE spinners' yield_to then finds one task per run queue
    r = run(**{"workload.kind": "lockbench", "topology.cores_per_socket": 8, "vm.vcpus": 16,
               "workload.lockbench.cs_ns": 500_000, "sim.duration_ms": 60, "sim.warmup_ms": 10})
    m = r.metrics
    assert m["kicks"] > 0 and m["directed_yield_attempts"] > 0
    assert m["directed_yield_esrch"] == m["directed_yield_attempts"]
    assert m["directed_yield_successes"] == 0


@pytest.mark.parametrize("feature", ["boost_ready", "pv_sched_yield"])
def test_boosts_change_throughput_by_a_few_percent_at_most_without_overcommit(feature):
    pairs = [_pair(feature, 1.0, seed) for seed in (1, 2, 3, 4)]
    off = sum(p[0]["records_per_s"] for p in pairs)
    on = sum(p[1]["records_per_s"] for p in pairs)
    assert on == pytest.approx(off, rel=0.08)


def test_boost_ready_lets_on_spin_boost_kicked_ebizzy_waiters(monkeypatch):
    # the commit's guest era (4.17-5.3) has pv_wait_early: LRU/zone-lock waiters behind a preempted
    # vCPU halt in pv_wait and are kicked -- ready but not preempted: kvm_vcpu_on_spin may boost them
    # only with boost_ready (d73eb57b80b9); without it every boosted vCPU was preempted.  (The
    # throughput effect is checked by the boost-ready-ebizzy validation case: at this size a 60 ms
    # window is dominated by whether a pv_wait cascade happens.)
    kw = {**EBIZZY, "vm.vcpus": 16, "topology.cores_per_socket": 8, "pinning": "none", "sim.duration_ms": 60,
          "features.pv_wait_early": True, "overcommit": 3.0}
    boosted = []
    real = spin.directed_yield

    def spy(h, me, target):
        if me.in_spin_loop:  # from kvm_vcpu_on_spin
            boosted.append((target.ready, target.preempted))
        return real(h, me, target)

    monkeypatch.setattr(spin, "directed_yield", spy)
    run(**kw)
    assert boosted and all(preempted for _, preempted in boosted)
    boosted.clear()
    run(**{**kw, "features.boost_ready": True})
    assert all(ready for ready, _ in boosted)
    assert any(not preempted for _, preempted in boosted)


def test_pv_sched_yield_yields_only_to_preempted_ipi_targets(monkeypatch):
    # kvm_smp_send_call_func_ipi: after the mask send, SCHED_YIELD to the first IPI'd target whose
    # steal-time preempted bit is set (the throughput effect at this size is within noise)
    calls = []
    real = spin.sched_yield_hypercall

    def spy(h, me, target, cont):
        calls.append((me.vm is target.vm, target.steal_preempted, target is me))
        return real(h, me, target, cont)

    monkeypatch.setattr(spin, "sched_yield_hypercall", spy)
    m = run(overcommit=2.0, **{**EBIZZY, "features.pv_sched_yield": True}).metrics
    assert m["pv_sched_yields"] > 0 and calls  # every VM's calls, warm-up included
    assert all(same_vm and preempted and not self_ for same_vm, preempted, self_ in calls)
    monkeypatch.setattr(spin, "sched_yield_hypercall", real)
    assert run(overcommit=2.0, **EBIZZY).metrics["pv_sched_yields"] == 0


def test_pv_sched_yield_raises_ebizzy_throughput_at_overcommit_2():
    gains, noise = [], []
    for seed in (1, 2, 3):
        off, on = _pair("pv_sched_yield", 2.0, seed)
        assert on["pv_sched_yields"] > 0
        gains.append(on["records_per_s"] / off["records_per_s"])
        noise.append(off["records_per_s_ci95_pct"] / 100)
    # median of three seeds; at this 130 ms window the within-run 95 % half-width of records/s
    # is tens of percent (the old mmap_sem-write ebizzy stalls for whole slices), so only "no
    # regression beyond the noise" can be asserted, not the sign
    assert sorted(gains)[1] > 1.0 - sorted(noise)[1]


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


LOCKBENCH = {"workload.kind": "lockbench", "vm.vcpus": 8, "corunner.workload": "same", "sim.duration_ms": 40,
             "sim.warmup_ms": 10, "overcommit": 2.0, "features.pv_spinlock": False}


def test_queued_spinlock_waiters_pause_at_cpl0_and_take_ple_exits():
    on = run(**LOCKBENCH)
    off = run(**{**LOCKBENCH, "features.ple": False})
    assert on.metrics["ple_exits_per_s"] > 0
    assert sum(row.samples for row in on.exits if row.reason == "PAUSE") > 0
    assert on.metrics["directed_yield_successes"] > 0  # kvm_vcpu_on_spin found ready vCPUs to boost
    assert off.metrics["ple_exits_per_s"] == 0 and off.metrics["directed_yield_attempts"] == 0


def test_a_spinner_re_deciding_keeps_its_ple_window():
    from model import locks
    from model.vcpu import SPIN
    from tests.model.scripted import scripted_host

    lock = locks.QSpinLock()
    scripts = {0: [Call(locks.spin_lock, lock), Run(500_000, True), Call(locks.spin_unlock, lock)],
               1: [Run(20_000, False), Call(locks.spin_lock, lock), Call(locks.spin_unlock, lock)]}
    h = scripted_host(scripts, **{"vm.vcpus": 8})
    v = h.vms[0].vcpus[1]
    h.engine.run(30_000)
    while not (v.frames[-1].kind == SPIN and v.seg_start >= 0):
        h.engine.run(h.engine.now + 100)
    f = v.frames[-1]
    ple_at = f.ple_at
    assert ple_at > h.engine.now
    spin.respin(h, v, f)
    assert f.ple_at == ple_at and v.seg_event.deadline == ple_at  # the PLE exit is still due when it was


@pytest.mark.parametrize("boost_queue_head", [False, True])
def test_kvm_sched_yield_checks_ready_only_with_266e85a5ec91(boost_queue_head):
    h = _on_spin_host(**{"features.boost_queue_head": boost_queue_head})
    vm = h.vms[0]
    me = next(v for v in vm.vcpus if h.pcpus[v.pinned].curr is v)
    target = next(v for v in vm.vcpus if v is not me)
    target.ready = False
    yielded = spin._kvm_sched_yield(h, me, target)
    assert not yielded or not boost_queue_head
    assert h.stats.counters["directed_yield_attempts"] == (0 if boost_queue_head else 1)
    assert spin._kvm_sched_yield(h, me, me) is False  # never to oneself


@pytest.mark.parametrize("bail", [False, True])
def test_kvm_sched_yield_bails_out_from_a_single_task_runqueue_with_72b268a8e930(bail):
    """1x, one vCPU per pCPU: single_task_running() holds on every pCPU.  With the 5.13 rule the
    hypercall yields nothing and never reaches yield_to; without it, yield_to is tried (ESRCH)."""
    h = _on_spin_host(**{"overcommit": 1.0, "features.sched_yield_undercommit_bail": bail})
    vm = h.vms[0]
    me = next(v for v in vm.vcpus if v.pcpu is not None and v.pcpu.curr is v)
    target = next(v for v in vm.vcpus if v is not me)
    target.ready = True
    assert me.pcpu.nr_running == 1
    assert spin._kvm_sched_yield(h, me, target) is False
    counters = h.stats.counters
    assert counters["sched_yield_undercommit_bails"] == (1 if bail else 0)
    assert counters["directed_yield_attempts"] == (0 if bail else 1)
    assert counters["directed_yield_esrch"] == (0 if bail else 1)


def test_the_undercommit_bail_does_not_stop_a_yield_from_a_shared_runqueue():
    """At 2x (16 vCPUs of one VM on 8 pCPUs) the caller's pCPU runs two tasks:
    single_task_running() is false, and the yield to a runnable vCPU happens."""
    h = _on_spin_host(**{"features.sched_yield_undercommit_bail": True, "vm.vcpus": 16})
    vm = h.vms[0]
    me = next(v for v in vm.vcpus if v.pcpu.curr is v and v.pcpu.nr_running > 1)
    target = next(v for v in vm.vcpus if v.state == RUNNABLE)
    target.ready = True
    assert spin._kvm_sched_yield(h, me, target) is True
    assert h.stats.counters["sched_yield_undercommit_bails"] == 0
    assert h.stats.counters["directed_yield_yielded"] == 1


def test_kick_cpu_wakes_a_halted_vcpu_and_forces_an_exit_on_a_running_one():
    from model.vcpu import EXIT, GUEST, HALTED

    h = build(scenario(**{"workload.kind": "lockbench", "vm.vcpus": 8}), seed=1)  # 1x: 8 vCPUs, 8 pCPUs
    start(h)
    h.engine.run(1_000_000)
    h.stats.start_measuring(h.engine.now)
    vm = h.vms[0]
    running = [v for v in vm.vcpus if v.state == GUEST]
    me, target = running[0], running[1]
    spin.kick_cpu_hypercall(h, me, target, None)
    assert target.state == EXIT  # kvm_vcpu_kick(): smp_send_reschedule() to a vCPU in guest mode
    assert h.stats.exits[("EXTERNAL_INTERRUPT", "")][0] == 1 and h.stats.exits[("VMCALL", "KICK_CPU")][0] == 1
    h.engine.run(h.engine.now + 50_000)
    # a vCPU blocked in kvm_vcpu_block (taken off the guest by hand: the guest side is not the point)
    from model import kvm

    sleeper = next(v for v in vm.vcpus if v.state == GUEST and v is not me)
    guest.pause(h, sleeper)
    sleeper.state = EXIT
    kvm.block(h, sleeper)
    assert sleeper.state == HALTED
    waker = next(v for v in vm.vcpus if v.state == GUEST)
    spin.kick_cpu_hypercall(h, waker, sleeper, None)
    assert sleeper.state == RUNNABLE and sleeper.ready and not sleeper.pv_unhalted  # woken; the halt is over
