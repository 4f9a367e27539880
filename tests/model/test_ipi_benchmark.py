"""The ipi_benchmark workload: call-function IPIs with wait=1, what each target state costs."""

import pytest

from model import apic
from tests.model.conftest import run

# 16 vCPUs on a 1 x 8 x 2 host; targets idle in the guest (idle=poll) unless a test says otherwise
BASE = {"workload.kind": "ipi_benchmark", "vm.vcpus": 16, "topology.cores_per_socket": 8, "vm.idle": "poll",
        "vm.halt_poll_ns": 0, "sim.duration_ms": 2, "sim.warmup_ms": 0.5}


def _exits(result, reason: str, detail: str | None = None) -> int:
    return sum(r.samples for r in result.exits if r.reason == reason and (detail is None or r.detail == detail))


def _ipis(result) -> int:
    return round(result.metrics["ipis_per_s"] * result.metrics["sim_s"])


def _per_op(**kw) -> float:
    return run(**{**BASE, **kw}).metrics["ipi_benchmark_op_ns"]


def test_multicast_cost_grows_with_the_target_count():
    kw = {"workload.ipi_benchmark.mode": "multicast", "vm.apic": "x2apic_phys", "features.pv_send_ipi": False}
    costs = [_per_op(**kw, **{"workload.ipi_benchmark.targets": n}) for n in (2, 6, 14)]
    assert costs[0] < costs[1] < costs[2]
    # one ICR write exit per destination: each further target costs at least one more exit
    skylake_msr_icr_ns = 1100.0
    assert costs[2] - costs[1] > 8 * skylake_msr_icr_ns * 0.8


def test_broadcast_without_shorthand_drops_with_pv_send_ipi_in_physical_mode():
    kw = {"workload.ipi_benchmark.mode": "broadcast", "vm.apic": "x2apic_phys", "features.ipi_shorthand": False}
    off = run(**{**BASE, **kw, "features.pv_send_ipi": False})
    on = run(**{**BASE, **kw, "features.pv_send_ipi": True})
    assert on.metrics["ipi_benchmark_op_ns"] < 0.7 * off.metrics["ipi_benchmark_op_ns"]
    # off: 15 single-destination ICR writes per call; on: one KVM_HC_SEND_IPI per call
    assert _exits(off, "MSR_WRITE", apic.MSR_ICR) == _ipis(off) > 100
    assert _exits(on, "MSR_WRITE", apic.MSR_ICR) == 0
    assert _exits(on, "VMCALL", "SEND_IPI") * 15 == _ipis(on) > 100


def test_broadcast_to_all_but_self_is_one_shorthand_write_pv_or_not():
    kw = {"workload.ipi_benchmark.mode": "broadcast", "vm.apic": "x2apic_phys"}
    for pv in (False, True):
        r = run(**{**BASE, **kw, "features.pv_send_ipi": pv})
        assert _exits(r, "MSR_WRITE", apic.MSR_ICR) * 15 == _ipis(r) > 100
        assert _exits(r, "VMCALL") == 0


def test_no_call_function_single_ipi_to_a_polling_target():
    kw = {**BASE, "workload.ipi_benchmark.mode": "unicast", "vm.apic": "x2apic_phys"}
    polling = run(**kw, **{"features.call_single_if_polling": True})
    assert _ipis(polling) == 0
    assert _exits(polling, "MSR_WRITE", apic.MSR_ICR) == 0
    assert polling.metrics["ipi_benchmark_op_ns"] > 0
    forced = run(**kw, **{"features.call_single_if_polling": False})
    assert _ipis(forced) > 100
    # a target that halts (idle=hlt) is not polling: it gets its IPI
    halting = run(**{**kw, "vm.idle": "hlt", "features.call_single_if_polling": True})
    assert _ipis(halting) > 10


def test_a_halted_target_costs_a_wake_up_a_switch_and_an_entry():
    kw = {**BASE, "workload.ipi_benchmark.mode": "unicast", "vm.apic": "x2apic_phys", "hardware": "skylake",
          "features.call_single_if_polling": False}
    in_guest = run(**kw)
    blocked = run(**{**kw, "vm.idle": "hlt", "vm.halt_poll_ns": 0})
    polled = run(**{**kw, "vm.idle": "hlt", "vm.halt_poll_ns": 200_000})
    # skylake: host_wakeup 1000 + ctx_switch 2000 + vcpu_entry 600 ns instead of the posted delivery
    assert blocked.metrics["ipi_benchmark_op_ns"] > in_guest.metrics["ipi_benchmark_op_ns"] + 2_000
    # the target is switched in on (nearly) every call
    calls_per_s = 1e9 / blocked.metrics["ipi_benchmark_op_ns"]
    assert blocked.metrics["host_context_switches_per_s"] > 0.8 * calls_per_s
    assert in_guest.metrics["host_context_switches_per_s"] == 0
    # a host halt-poll that the IPI ends needs no context switch: far cheaper than blocking
    assert polled.metrics["ipi_benchmark_op_ns"] < blocked.metrics["ipi_benchmark_op_ns"] - 2_000
    assert polled.metrics["halt_poll_success_pct"] > 50
    assert polled.metrics["host_context_switches_per_s"] < 0.1 * calls_per_s


def test_total_is_the_mean_call_times_the_module_loop_count():
    r = run(**{**BASE, "workload.ipi_benchmark.ops": 1000})
    m = r.metrics
    assert m["ipi_benchmark_broadcast_total_ns"] == pytest.approx(1000 * m["ipi_benchmark_op_ns"])
    assert m["ipi_benchmark_unicast_total_ns"] != m["ipi_benchmark_unicast_total_ns"]  # NaN: not this mode


def test_avic_broadcast_takes_no_sender_exit_to_running_targets():
    r = run(**{**BASE, "hardware": "rome", "vm.apic": "xapic", "vm.avic": True, "vm.hlt_passthrough": True})
    assert _ipis(r) > 100
    assert _exits(r, "APIC_WRITE") == 0
    assert _exits(r, "AVIC_INCOMPLETE_IPI") == 0
