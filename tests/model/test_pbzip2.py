"""pbzip2: futex queues between reader, compressors and writer; the per-block TLB shootdown; the boost."""

from __future__ import annotations

import pytest

from model import apic, spin
from model.simulate import build
from model.simulate import run as run_host
from model.workloads import pbzip2
from tests.model.conftest import run, scenario

PB = {"workload.kind": "pbzip2"}
# overcommitted: a cpu-bound co-runner VM on the same pCPUs, PV TLB flush off so that the
# shootdowns really wait for targets the host has preempted (the commit's "until the receiver is
# scheduled"); PV sched yield off so that every directed yield is kvm_vcpu_on_spin's
OVER = {**PB, "vm.vcpus": 8, "overcommit": 2.0, "features.pv_tlb_flush": False, "features.pv_sched_yield": False,
        "sim.duration_ms": 400, "sim.warmup_ms": 50}


def test_block_costs_follow_the_published_figures():
    sc = scenario(**PB)
    h = build(sc, 1)
    # lzbench 1.8: bzip2 -9 at 15 MB/s on one 4.7 GHz i7-8700K core, scaled to the profile's 2.5 GHz
    assert pbzip2.compress_ns(h, sc.workload.pbzip2) == pytest.approx(900_000 / (15e6 * 2.5 / 4.7) * 1e9)
    # BZ2_bzCompressInit's arr1 + arr2 + ftab, less glibc's M_TOP_PAD, in 4 KiB pages
    assert pbzip2.trimmed_pages(900_000) == (4 * 900_000 + 4 * 900_034 + 4 * 65_537 - 131_072) // 4096 == 1789


def test_blocks_per_s_match_the_per_core_figure_on_a_dedicated_host():
    # 4 pCPUs without SMT, one 4-vCPU VM pinned: 4 compressors at the single-core rate, less the
    # reader, the writer, the faults and the trims (a few %)
    sc = scenario(**{**PB, "topology.cores_per_socket": 4, "topology.threads_per_core": 1, "vm.vcpus": 4,
                     "sim.duration_ms": 3000, "sim.warmup_ms": 200})
    h = build(sc, 1)
    per_core = 1e9 / pbzip2.compress_ns(h, sc.workload.pbzip2)
    _vcpu_totals, _pcpu_totals = run_host(h)
    work = h.stats.work[0]
    sim_s = 2.8
    rate = work["block_progress"] / sim_s
    assert 0.95 * 4 * per_core < rate < 4 * per_core
    # the writer keeps up: what it wrote is what was compressed, within the blocks in flight
    assert abs(work["blocks_written"] - work["block_progress"]) <= 4 + 2
    # every compressor ran one shootdown per block
    assert h.stats.counters["tlb_shootdowns"] == pytest.approx(work["block_progress"], abs=4 + 2)
    r = run(**{**PB, "topology.cores_per_socket": 4, "topology.threads_per_core": 1, "vm.vcpus": 4,
               "sim.duration_ms": 3000, "sim.warmup_ms": 200})
    assert r.metrics["pbzip2_blocks_per_s"] == pytest.approx(rate)
    blocks = sc.workload.pbzip2.input_bytes / sc.workload.pbzip2.block_bytes
    assert r.metrics["pbzip2_wall_s"] == pytest.approx(blocks / rate)
    assert r.metrics["pbzip2_blocks_per_s_ci95_pct"] < 3


@pytest.mark.parametrize("idle", ["hlt", "poll"])
def test_futex_wakeups_send_resched_ipis_only_to_vcpus_that_do_not_poll(monkeypatch, idle):
    # 2 compressors on 8 vCPUs: the reader and writer sleep on condvars and are woken onto idle vCPUs
    sent_to_polling = []
    real = apic.send_resched

    def spy(h, v, target, then):
        sent_to_polling.append(target.polling)
        return real(h, v, target, then)

    monkeypatch.setattr(apic, "send_resched", spy)
    h = build(scenario(**{**PB, "vm.vcpus": 8, "vm.idle": idle, "workload.pbzip2.threads": 2,
                          "workload.pbzip2.queue_blocks": 1, "sim.duration_ms": 1500, "sim.warmup_ms": 10}), 1)
    run_host(h)
    c = h.stats.counters
    assert not any(sent_to_polling)
    if idle == "poll":
        assert c["resched_ipis"] == 0 and c["wakelist_ipis"] == 0
        assert c["wakeups_polling_no_ipi"] > 0
    else:
        assert c["resched_ipis"] + c["wakelist_ipis"] > 0
        assert c["wakeups_polling_no_ipi"] == 0


def _yield_targets(monkeypatch, boost_user_irq: bool):
    """(preempted in user mode, interrupt pending) of every vCPU kvm_vcpu_on_spin yielded to."""
    seen = []
    real = spin.directed_yield

    def spy(h, me, target):
        user = target.preempted and not target.preempted_in_kernel
        seen.append((user, bool(target.irr) and apic.posted(h)))
        return real(h, me, target)

    monkeypatch.setattr(spin, "directed_yield", spy)
    r = run(**{**OVER, "features.boost_user_irq": boost_user_irq})
    return seen, r.metrics


def test_without_boost_user_irq_on_spin_never_picks_a_vcpu_preempted_in_user_mode(monkeypatch):
    seen, m = _yield_targets(monkeypatch, False)
    assert m["ple_exits_per_s"] > 0 and seen  # the shootdown senders spin and PLE exits
    assert not any(user for user, _ in seen)


def test_with_boost_user_irq_on_spin_picks_user_mode_vcpus_with_an_interrupt_pending(monkeypatch):
    seen, m = _yield_targets(monkeypatch, True)
    user = [pending for u, pending in seen if u]
    assert user  # the compressors preempted while compressing, with the flush IPI in their PIR
    assert all(user)  # never one without a pending interrupt
    _off_seen, off = _yield_targets(monkeypatch, False)
    # the spinners get their acknowledgements sooner: fewer PLE exits, less time in csd_lock_wait
    assert m["ple_exits_per_s"] < off["ple_exits_per_s"]
    assert m["smp_call_function_many_pct"] < off["smp_call_function_many_pct"]
