"""TSC-deadline timers and the timer fastpath."""

import pytest

from tests.model.conftest import run

CYCLIC = {"workload.kind": "cyclictest", "vm.vcpus": 4, "vm.idle": "poll", "sim.duration_ms": 60,
          "sim.warmup_ms": 5}


def test_timer_fastpath_lowers_cyclictest_latency_on_intel():
    on = run(**CYCLIC, hardware="skylake", **{"features.timer_fastpath": True})
    off = run(**CYCLIC, hardware="skylake", **{"features.timer_fastpath": False})
    assert on.metrics["timer_latency_avg_us"] < 0.9 * off.metrics["timer_latency_avg_us"]


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
