"""Interrupt delivery: the IPI fastpath's eligibility rules, AVIC, PV send-IPI."""

import pytest

from tests.model.conftest import run

HACKBENCH = {"workload.kind": "hackbench", "vm.vcpus": 8, "workload.hackbench.groups": 1,
             "workload.hackbench.senders": 4, "workload.hackbench.receivers": 4,
             "sim.duration_ms": 20, "sim.warmup_ms": 4}


def _ipi_p50(apic: str, fastpath: bool, **extra) -> float:
    return run(**{**HACKBENCH, "vm.apic": apic, "features.ipi_fastpath": fastpath, **extra}).metrics["ipi_latency_p50_us"]


def test_ipi_fastpath_lowers_unicast_latency_in_x2apic_physical_mode():
    assert _ipi_p50("x2apic_phys", True) < 0.9 * _ipi_p50("x2apic_phys", False)


@pytest.mark.parametrize("apic", ["x2apic_cluster", "xapic"])
def test_ipi_fastpath_changes_nothing_in_cluster_or_xapic_mode(apic):
    on = run(**{**HACKBENCH, "vm.apic": apic, "features.ipi_fastpath": True})
    off = run(**{**HACKBENCH, "vm.apic": apic, "features.ipi_fastpath": False})
    assert on.metrics == pytest.approx(off.metrics | {"wall_s": on.metrics["wall_s"]}, nan_ok=True)


def _exit_samples(result, reason: str) -> int:
    return sum(row.samples for row in result.exits if row.reason == reason)


def test_avic_removes_sender_exits_to_running_targets():
    kw = {**HACKBENCH, "hardware": "rome", "vm.apic": "xapic", "vm.hlt_passthrough": True}
    without = run(**kw, **{"vm.avic": False})
    with_avic = run(**kw, **{"vm.avic": True})
    assert _exit_samples(without, "APIC_WRITE") > 100
    assert _exit_samples(with_avic, "APIC_WRITE") == 0
    # every target idles in the guest (HLT passthrough): none is ever not running
    assert _exit_samples(with_avic, "AVIC_INCOMPLETE_IPI") == 0
    assert with_avic.metrics["ipi_latency_p50_us"] < without.metrics["ipi_latency_p50_us"]


def test_avic_incomplete_ipi_when_targets_are_halted():
    r = run(**{**HACKBENCH, "hardware": "rome", "vm.apic": "xapic", "vm.avic": True, "vm.halt_poll_ns": 0})
    assert _exit_samples(r, "AVIC_INCOMPLETE_IPI") > 0
    assert _exit_samples(r, "APIC_WRITE") == 0


def test_avic_is_inhibited_for_x2apic_on_rome_but_not_on_genoa():
    kw = {**HACKBENCH, "vm.apic": "x2apic_phys", "vm.avic": True, "vm.hlt_passthrough": True}
    rome = run(**kw, hardware="rome")
    genoa = run(**kw, hardware="genoa")
    assert _exit_samples(rome, "MSR_WRITE") > 100
    assert sum(r.samples for r in genoa.exits if r.detail == "0x830") == 0


def test_hlt_passthrough_removes_hlt_exits():
    kw = {**HACKBENCH, "vm.halt_poll_ns": 0}
    assert _exit_samples(run(**kw), "HLT") > 100
    assert _exit_samples(run(**kw, **{"vm.hlt_passthrough": True}), "HLT") == 0


def test_pv_send_ipi_sends_one_hypercall_per_128_targets():
    kw = {"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 10, "sim.warmup_ms": 2,
          "vm.apic": "x2apic_cluster", "features.pv_tlb_flush": False}
    pv = run(**kw)
    assert sum(r.samples for r in pv.exits if r.reason == "VMCALL" and r.detail == "") > 0
    assert pv.metrics["tlb_shootdowns_per_s"] > 0
