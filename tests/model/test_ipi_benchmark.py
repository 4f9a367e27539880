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


# -- the broadcast shorthand on ROME: KVM's slow loop vs AVIC's walk over the destinations --------

ROME_BC = {**BASE, "hardware": "rome", "workload.ipi_benchmark.mode": "broadcast", "vm.apic": "xapic",
           "costs.exit_cost_jitter": 0.0, "sim.duration_ms": 4, "sim.warmup_ms": 1}


def _rome_bc(vcpus: int, **kw):
    return run(**{**ROME_BC, "vm.vcpus": vcpus, "topology.cores_per_socket": vcpus // 2, **kw})


def test_shorthand_broadcast_without_avic_is_one_icr_write_that_kvm_delivers_target_by_target():
    # kvm_irq_delivery_to_apic: the map fast path refuses a shorthand; the slow loop does
    # kvm_apic_set_irq + kick per destination inside the sender's one ICR write exit
    per = 3_000.0
    small, large = (_rome_bc(n, **{"vm.avic": False, "costs.kvm_irq_delivery_ns": per}) for n in (8, 16))
    for r, n in ((small, 8), (large, 16)):
        calls = _exits(r, "APIC_WRITE", apic.APIC_ICR)
        assert calls > 10
        assert _exits(r, "APIC_READ", apic.APIC_ICR) == calls  # __xapic_wait_icr_idle
        assert _exits(r, "APIC_WRITE", apic.APIC_ICR2) == 0  # __default_send_IPI_shortcut: no ICR2
        assert _exits(r, "VMCALL") == 0  # PV send-IPI does not replace the shorthand
        assert _ipis(r) == calls * (n - 1)
        # no posted interrupts: every target takes an EXTERNAL_INTERRUPT exit (kvm_vcpu_kick's host IPI)
        assert _exits(r, "EXTERNAL_INTERRUPT") >= 0.95 * _ipis(r)
    grow = large.metrics["ipi_benchmark_op_ns"] - small.metrics["ipi_benchmark_op_ns"]
    assert 8 * per <= grow < 8 * per + 8 * 2_000  # 8 more destinations in the loop (+ their csd lines)


def test_avic_walks_a_shorthand_broadcast_destination_by_destination_without_an_exit():
    per = 2_000.0
    kw = {"vm.avic": True, "costs.avic_ipi_per_target_ns": per, "costs.accel_ipi_send_ns": per}
    small, large = (_rome_bc(n, **kw) for n in (8, 16))
    for r in (small, large):
        assert _ipis(r) > 50
        assert _exits(r, "APIC_WRITE") == _exits(r, "APIC_READ") == _exits(r, "AVIC_INCOMPLETE_IPI") == 0
        # doorbells to loaded vCPUs: no exit on the targets (the guest tick's host hrtimer may exit once)
        assert _exits(r, "EXTERNAL_INTERRUPT") <= 0.01 * _ipis(r)
    grow = large.metrics["ipi_benchmark_op_ns"] - small.metrics["ipi_benchmark_op_ns"]
    # 8 more destinations of the sender's one write; guest execution, which a busy SMT sibling slows
    assert 8 * per <= grow <= 8 * per / 0.62 + 8 * 2_000


def test_avic_destinations_are_reached_no_earlier_than_the_write_gets_to_them():
    # vCPU 0's SMT sibling runs vCPU 8 (polling), which slows the sender's write to smt_speed;
    # the walk reaches destination j at j/15 of the *stretched* write, so the mean one-way time
    # is about half the call (reaching them at unstretched offsets would give about a third)
    per = 2_000.0
    r = _rome_bc(16, **{"vm.avic": True, "costs.avic_ipi_per_target_ns": per, "costs.accel_ipi_send_ns": per})
    op, oneway = r.metrics["ipi_benchmark_op_ns"], r.metrics["ipi_benchmark_oneway_ns"]
    assert op >= 15 * per / 0.62
    assert 0.45 * op <= oneway < op
