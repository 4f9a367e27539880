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
