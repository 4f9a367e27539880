"""TSC-deadline timers and the timer fastpath."""

import pytest

from tests.model.conftest import run

CYCLIC = {"workload.kind": "cyclictest", "vm.vcpus": 4, "vm.idle": "poll", "sim.duration_ms": 60,
          "sim.warmup_ms": 5}


SKX2 = {"hardware": "skylake", "topology.sockets": 1, "topology.cores_per_socket": 2, "topology.threads_per_core": 1,
        "vm.vcpus": 2}


def _rows(result) -> dict:
    return {(row.reason, row.detail): row for row in result.exits}


def test_cyclictest_fastpath_saves_the_clock_event_write_on_the_latency_path():
    # adaptive advance (the default): the expiry exit is hidden by the busy-wait to the deadline, so what the
    # fastpath saves on the latency path is hrtimer_interrupt's TSC-deadline write (tick_program_event)
    kw = {**SKX2, "workload.kind": "cyclictest", "vm.idle": "poll", "sim.duration_ms": 120, "sim.warmup_ms": 10}
    on = run(**kw, **{"features.timer_fastpath": True})
    off = run(**kw, **{"features.timer_fastpath": False})
    from model.hardware import SKYLAKE as P

    for r in (on, off):
        rows = _rows(r)
        expiries = rows[("PREEMPTION_TIMER", "")].samples
        assert rows[("MSR_WRITE", "0x6e0")].samples == 2 * expiries  # the re-arm and the clock-event write
    saved_ns = (off.metrics["timer_latency_avg_us"] - on.metrics["timer_latency_avg_us"]) * 1000
    write_saving = P.exit_msr_tscdeadline_ns - P.exit_msr_tscdeadline_fast_ns
    assert 0.6 * write_saving < saved_ns < 1.6 * write_saving


def test_timer_fastpath_changes_nothing_on_rome():
    on = run(**CYCLIC, hardware="rome", **{"features.timer_fastpath": True})
    off = run(**CYCLIC, hardware="rome", **{"features.timer_fastpath": False})
    assert on.metrics["timer_latency_avg_us"] == off.metrics["timer_latency_avg_us"]
    assert not any(row.reason == "PREEMPTION_TIMER" for row in on.exits)


def test_cpu_bound_corunners_at_overcommit_2_push_cyclictest_p99_to_milliseconds():
    # guest idle=poll keeps the vCPU runnable: it shares the pCPU by CFS slices
    kw = {**CYCLIC, "sim.duration_ms": 200}
    alone = run(**kw)
    crowded = run(**kw, overcommit=2.0)
    assert alone.metrics["timer_latency_p99_us"] < 20
    assert crowded.metrics["timer_latency_p99_us"] > 1000


def test_tick_rearms_with_tsc_deadline_writes_on_busy_vcpus():
    r = run(**{"workload.kind": "cpu-bound", "vm.vcpus": 4, "sim.duration_ms": 50, "sim.warmup_ms": 10})
    writes = sum(row.samples for row in r.exits if row.detail == "0x6e0")
    # HZ=250: one write per tick per busy vCPU over 40 ms
    assert writes == pytest.approx(4 * 250 * 0.040, rel=0.1)


# -- the NOHZ idle tick: stopped for HLT, restarted with a TSC-deadline write (tick_nohz_idle_exit) --


def test_hlt_idle_restarts_the_stopped_tick_with_one_write_per_wake_up_on_the_latency_path():
    # do_idle -> cpuidle_idle_call stops the tick for default_idle (HLT); tick_nohz_idle_exit restarts it
    # before schedule_idle, so each cyclictest wake-up from HLT has two TSC-deadline writes before the
    # thread runs: hrtimer_interrupt's and the tick restart's
    kw = {**SKX2, "workload.kind": "cyclictest", "sim.duration_ms": 120, "sim.warmup_ms": 10}
    hlt = run(**kw, **{"vm.idle": "hlt"})
    poll = run(**kw, **{"vm.idle": "poll"})
    wakeups = 2 * 110  # two threads, 1 ms interval, 110 ms measured
    assert hlt.metrics["tick_restarts_per_s"] * 0.110 == pytest.approx(wakeups, abs=2)
    assert poll.metrics["tick_restarts_per_s"] == 0  # idle=poll never stops the tick
    hlt_writes, poll_writes = (_rows(r)[("MSR_WRITE", "0x6e0")].samples for r in (hlt, poll))
    assert hlt_writes - poll_writes == pytest.approx(wakeups, abs=2)
    from model.hardware import SKYLAKE as P

    added_ns = (hlt.metrics["timer_latency_avg_us"] - poll.metrics["timer_latency_avg_us"]) * 1000
    assert 0.8 * P.exit_msr_tscdeadline_ns < added_ns < 1.3 * P.exit_msr_tscdeadline_ns


def test_the_timer_fastpath_shortens_both_writes_of_a_wake_up_from_hlt():
    kw = {**SKX2, "workload.kind": "cyclictest", "vm.idle": "hlt", "sim.duration_ms": 120, "sim.warmup_ms": 10}
    on = run(**kw, **{"features.timer_fastpath": True})
    off = run(**kw, **{"features.timer_fastpath": False})
    from model.hardware import SKYLAKE as P

    assert not any(row.reason == "PREEMPTION_TIMER" for row in on.exits)  # halted: the host hrtimer fires
    saved_ns = (off.metrics["timer_latency_avg_us"] - on.metrics["timer_latency_avg_us"]) * 1000
    write_saving = P.exit_msr_tscdeadline_ns - P.exit_msr_tscdeadline_fast_ns
    assert 1.6 * write_saving < saved_ns < 2.4 * write_saving


# -- timer fastpath re-entry (vmx_vcpu_run: EXIT_FASTPATH_REENTER_GUEST only if !kvm_vcpu_exit_request) --

IMMED = {"hardware": "skylake", "workload.kind": "vmexit", "workload.vmexit.test": "tscdeadline_immed",
         "vm.vcpus": 2, "vm.apic": "x2apic_phys", "vm.idle": "poll", "vm.halt_poll_ns": 0,
         "sim.duration_ms": 2, "sim.warmup_ms": 0.5}


def _host(**overrides):
    from model.simulate import build, start
    from tests.model.conftest import scenario

    h = build(scenario(**overrides), 1)
    start(h)
    h.stats.start_measuring(0)
    return h


def test_fastpath_reenters_only_without_an_exit_request_and_with_apicv():
    from model import timer

    h = _host(**IMMED)
    v = h.vms[0].vcpus[0]
    assert timer.fastpath_reenters(h, v, expired=True)
    v.pcpu.need_resched = True  # a pending reschedule is an exit request
    assert not timer.fastpath_reenters(h, v, expired=True)
    assert not timer.fastpath_reenters(h, v, expired=False)
    v.pcpu.need_resched = False
    h = _host(**{**IMMED, "vm.apicv": False})
    v = h.vms[0].vcpus[0]
    # without APICv an expiry raises KVM_REQ_PENDING_TIMER; arming a future deadline raises nothing
    assert not timer.fastpath_reenters(h, v, expired=True)
    assert timer.fastpath_reenters(h, v, expired=False)


@pytest.mark.parametrize("apicv", [True, False])
def test_tscdeadline_immed_reenters_with_apicv_and_completes_the_exit_without(apicv):
    h = _host(**{**IMMED, "vm.apicv": apicv})
    h.engine.run(2_000_000)
    c = h.stats.counters
    if apicv:
        assert c["timer_fastpath_reentries"] > 100 and c["timer_fastpath_exit_handled"] == 0
    else:
        assert c["timer_fastpath_exit_handled"] > 100 and c["timer_fastpath_reentries"] == 0


def test_an_exit_that_cannot_reenter_costs_the_way_out_of_vcpu_enter_guest():
    on = run(**{**IMMED, "features.timer_fastpath": True})
    handled = run(**{**IMMED, "features.timer_fastpath": True, "vm.apicv": False})
    prof_extra = 250 / 2.5  # fastpath_exit_handled_extra_ns on skylake
    rows_on = {r.detail: r for r in on.exits if r.reason == "MSR_WRITE"}
    rows_handled = {r.detail: r for r in handled.exits if r.reason == "MSR_WRITE"}
    gap = rows_handled["0x6e0"].avg_ns - rows_on["0x6e0"].avg_ns
    assert gap == pytest.approx(prof_extra, rel=0.5)


# -- the timer advance (lapic.c: vmx_set_hv_timer, __kvm_wait_lapic_expire, adjust_lapic_timer_advance) --

TSCD = {**SKX2, "workload.kind": "vmexit", "workload.vmexit.test": "tscdeadline", "vm.apic": "x2apic_phys",
        "vm.idle": "poll", "vm.halt_poll_ns": 0, "sim.duration_ms": 3, "sim.warmup_ms": 0.5}


@pytest.mark.parametrize("fastpath", [False, True])
def test_tscdeadline_without_advance_is_one_write_and_one_expiry_exit_per_op(fastpath):
    from model.hardware import SKYLAKE as P

    r = run(**{**TSCD, "host.lapic_timer_advance_ns": 0, "features.timer_fastpath": fastpath})
    rows = _rows(r)
    ops = rows[("PREEMPTION_TIMER", "")].samples
    assert abs(rows[("MSR_WRITE", "0x6e0")].samples - ops) <= 1
    assert set(rows) == {("PREEMPTION_TIMER", ""), ("MSR_WRITE", "0x6e0")}
    exit_ns = P.exit_preemption_timer_fast_ns if fastpath else P.exit_preemption_timer_ns
    # the op: the 3000-cycle deadline, the expiry exit, the guest handler (the write returns before the deadline)
    assert r.metrics["vmexit_op_cycles"] == pytest.approx(3000 + (exit_ns + P.guest_irq_ns) * P.tsc_ghz, rel=0.01)


def test_tscdeadline_fastpath_reenters_on_both_exits():
    h = _host(**{**TSCD, "host.lapic_timer_advance_ns": 0, "features.timer_fastpath": True})
    h.engine.run(2_000_000)
    c = h.stats.counters
    ops = h.stats.exits[("PREEMPTION_TIMER", "")][0]
    assert c["timer_fastpath_exit_handled"] == 0
    assert abs(c["timer_fastpath_reentries"] - 2 * ops) <= 2  # handle_fastpath_set_tscdeadline + _preemption_timer


def _advance_host(fastpath: bool, **extra):
    h = _host(**{**TSCD, "host.lapic_timer_advance_ns": -1, "features.timer_fastpath": fastpath,
                 "costs.exit_cost_jitter": 0.0, **extra})
    v = h.vms[0].vcpus[0]
    return h, v


def _deltas_after_warmup(fastpath: bool, monkeypatch) -> tuple[list, list, object]:
    """advance_expire_delta (cycles) and the advance before each later check, exits without spread."""
    from model import timer
    from model.hardware import SKYLAKE as P

    h, v = _advance_host(fastpath)
    h.engine.run(1_000_000)
    deltas, advances = [], []
    orig = timer.wait_to_deadline

    def spy(h_, v_, check, deadline):
        deltas.append((check - deadline) * P.tsc_ghz)
        advances.append(v_.timer_advance_ns)
        return orig(h_, v_, check, deadline)

    monkeypatch.setattr(timer, "wait_to_deadline", spy)
    h.engine.run(1_500_000)
    return deltas, advances, v


def test_adaptive_advance_converges_into_the_dead_band_with_the_fastpath(monkeypatch):
    from model import timer

    deltas, advances, v = _deltas_after_warmup(True, monkeypatch)
    # every check lands within LAPIC_TIMER_ADVANCE_ADJUST_MIN cycles of the deadline: the advance stays put,
    # inside the kernel's bounds, away from where it started
    assert len(deltas) > 100
    assert max(abs(d) for d in deltas) < timer.LAPIC_TIMER_ADVANCE_ADJUST_MIN
    assert set(advances) == {v.timer_advance_ns}
    assert 0 < v.timer_advance_ns <= timer.LAPIC_TIMER_ADVANCE_NS_MAX
    assert v.timer_advance_ns != timer.LAPIC_TIMER_ADVANCE_NS_INIT


def test_slow_arming_exit_makes_the_adaptive_advance_oscillate(monkeypatch):
    # without the fastpath the advanced expiry falls inside the arming exit: a little more advance and it has
    # passed when the timer is programmed (injected in the write exit, check early: advance shrinks), a little
    # less and it expires during the exit and the preemption timer fires right after entry (late: grows)
    from model import timer

    deltas, advances, _ = _deltas_after_warmup(False, monkeypatch)
    late = [d for d in deltas if d > 0]
    early = [d for d in deltas if d < 0]
    assert abs(len(late) - len(early)) <= 2
    assert min(abs(d) for d in deltas) >= timer.LAPIC_TIMER_ADVANCE_ADJUST_MIN
    assert len(set(advances)) == 2


def test_adaptive_advance_hides_the_expiry_exit_behind_a_busy_wait():
    from model.hardware import SKYLAKE as P

    none = run(**{**TSCD, "host.lapic_timer_advance_ns": 0, "features.timer_fastpath": True, "costs.exit_cost_jitter": 0.0})
    adaptive = run(**{**TSCD, "host.lapic_timer_advance_ns": -1, "features.timer_fastpath": True,
                      "costs.exit_cost_jitter": 0.0})
    # converged, the guest takes the interrupt near deadline + VM entry + the wait check, not after the whole exit
    post_deadline_ns = (adaptive.metrics["vmexit_op_cycles"] - 3000) / P.tsc_ghz - P.guest_irq_ns
    assert post_deadline_ns < P.exit_preemption_timer_fast_ns
    assert post_deadline_ns >= P.timer_wait_entry_ns + P.timer_advance_check_ns - 1
    assert post_deadline_ns <= P.timer_wait_entry_ns + P.timer_advance_check_ns + 100 / P.tsc_ghz
    assert adaptive.metrics["vmexit_op_cycles"] < none.metrics["vmexit_op_cycles"]


@pytest.mark.parametrize("advance", [2000, -1])
def test_the_busy_wait_is_the_advance_the_expiry_exit_did_not_use(advance):
    # cyclictest in a polling guest: the timer expires in guest mode well after its arming write; the
    # PREEMPTION_TIMER exit reaches kvm_wait_lapic_expire after its cost less timer_wait_entry_ns, then
    # busy-waits for the rest of the advance.  Adaptive, the advance converges on that cost: no wait left
    from model import timer
    from model.hardware import SKYLAKE as P

    h = _host(**{**SKX2, "workload.kind": "cyclictest", "vm.idle": "poll", "features.timer_fastpath": True,
                 "host.lapic_timer_advance_ns": advance, "costs.exit_cost_jitter": 0.0})
    h.engine.run(20_000_000)
    h.stats.counters.clear()
    h.engine.run(60_000_000)
    c = h.stats.counters
    checks = c["timer_advance_waits"] + c["timer_advance_late"]
    assert checks > 50 and c["timer_advance_late"] == 0
    per_check = c["timer_advance_wait_ns"] / checks - P.timer_advance_check_ns
    before_check = P.exit_preemption_timer_fast_ns - P.timer_wait_entry_ns
    if advance > 0:
        assert per_check == pytest.approx(advance - before_check, abs=2)
    else:
        assert 0 <= per_check < timer.LAPIC_TIMER_ADVANCE_ADJUST_MIN / P.tsc_ghz


def test_slow_arming_exit_outlasts_the_advanced_expiry():
    # fastpath off, adaptive advance: the early expiry (deadline - advance) falls inside the long arming exit:
    # either it has already passed when the timer is programmed (injected in the write exit, no
    # PREEMPTION_TIMER exit) or the preemption timer, loaded with 0 at entry, exits at once
    h, _ = _advance_host(False, **{"costs.exit_cost_jitter": 0.15})
    h.engine.run(3_000_000)
    c = h.stats.counters
    writes = h.stats.exits[("MSR_WRITE", "0x6e0")][0]
    expiries = h.stats.exits[("PREEMPTION_TIMER", "")][0]
    assert expiries < 0.8 * writes
    assert c["timer_hv_expired_at_entry"] > 0.2 * expiries
    assert c["timer_advance_late"] > 0


def test_wait_to_deadline_follows_adjust_lapic_timer_advance():
    from model import timer
    from model.hardware import SKYLAKE as P

    h, v = _advance_host(True)
    g = P.tsc_ghz
    check = 1_000_000
    v.timer_advance_ns = 800
    # early by 1000 ns: waits to the deadline (bounded by the advance), then advance -= 1000 / 8
    wait = timer.wait_to_deadline(h, v, check, check + 600)
    assert wait == int(600 + P.timer_advance_check_ns) and v.timer_advance_ns == 800 - 600 // 8
    v.timer_advance_ns = 500
    wait = timer.wait_to_deadline(h, v, check, check + 900)  # the wait is at most the advance
    assert wait == int(500 + P.timer_advance_check_ns)
    v.timer_advance_ns = 800
    assert timer.wait_to_deadline(h, v, check, check - 400) == int(P.timer_advance_check_ns)  # late: no wait
    assert v.timer_advance_ns == 800 + 400 // 8
    v.timer_advance_ns = 800
    timer.wait_to_deadline(h, v, check, check + int(90 / g))  # under 100 cycles: no adjustment
    timer.wait_to_deadline(h, v, check, check - int(10_100 / g))  # over 10000 cycles: none either
    assert v.timer_advance_ns == 800
    v.timer_advance_ns = 4_990
    timer.wait_to_deadline(h, v, check, check - 1_000)  # past LAPIC_TIMER_ADVANCE_NS_MAX: restart
    assert v.timer_advance_ns == timer.LAPIC_TIMER_ADVANCE_NS_INIT
    h2 = _host(**{**TSCD, "host.lapic_timer_advance_ns": 700})
    v2 = h2.vms[0].vcpus[0]
    v2.timer_advance_ns = 700
    timer.wait_to_deadline(h2, v2, check, check - 1_000)  # a fixed advance is never tuned
    assert v2.timer_advance_ns == 700


def test_a_halted_vcpus_early_hrtimer_waits_to_the_deadline_at_entry():
    # cyclictest with HLT idle and a large fixed advance: the hrtimer fires 3 us early, the wake-up and entry
    # take less, and kvm_wait_lapic_expire holds the entry: the thread never wakes before its deadline
    r = run(**{**SKX2, "workload.kind": "cyclictest", "vm.idle": "hlt", "vm.halt_poll_ns": 0,
               "host.lapic_timer_advance_ns": 3000, "sim.duration_ms": 40, "sim.warmup_ms": 5})
    assert r.metrics["timer_latency_min_us"] > 0
    far = run(**{**SKX2, "workload.kind": "cyclictest", "vm.idle": "hlt", "vm.halt_poll_ns": 0,
                 "host.lapic_timer_advance_ns": 0, "sim.duration_ms": 40, "sim.warmup_ms": 5})
    assert r.metrics["timer_latency_avg_us"] < far.metrics["timer_latency_avg_us"] - 1.0
