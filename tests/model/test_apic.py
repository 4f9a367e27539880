"""Interrupt delivery: guest APIC drivers, the xAPIC ICR sequence, IPIv, AVIC IsRunning, PV send-IPI."""

import pytest

from model import apic, guest, kvm
from model.ops import Call, Run
from model.simulate import build
from model.vcpu import RUNNABLE, WORK, Frame, Irq
from tests.model.conftest import run, scenario
from tests.model.scripted import scripted_host

HACKBENCH = {"workload.kind": "hackbench", "vm.vcpus": 8, "workload.hackbench.groups": 1,
             "workload.hackbench.senders": 4, "workload.hackbench.receivers": 4,
             "sim.duration_ms": 20, "sim.warmup_ms": 4}
# ipi_benchmark "Normal IPI" to a target idling in the guest (idle=poll), IPI forced
# (a pre-5.8 guest: no set_nr_if_polling shortcut), so every call is one IPI.
UNICAST = {"workload.kind": "ipi_benchmark", "workload.ipi_benchmark.mode": "unicast", "vm.idle": "poll",
           "vm.halt_poll_ns": 0, "features.call_single_if_polling": False,
           "sim.duration_ms": 2, "sim.warmup_ms": 0.5}


def _exits(result, reason: str, detail: str | None = None) -> int:
    return sum(r.samples for r in result.exits if r.reason == reason and (detail is None or r.detail == detail))


def _ipis(result) -> int:
    return round(result.metrics["ipis_per_s"] * result.metrics["sim_s"])


def _ipi_p50(apic_mode: str, fastpath: bool, **extra) -> float:
    kw = {**HACKBENCH, "vm.apic": apic_mode, "features.ipi_fastpath": fastpath, **extra}
    return run(**kw).metrics["ipi_latency_p50_us"]


def test_ipi_fastpath_lowers_unicast_latency_in_x2apic_physical_mode():
    assert _ipi_p50("x2apic_phys", True) < 0.9 * _ipi_p50("x2apic_phys", False)


@pytest.mark.parametrize("apic_mode", ["x2apic_cluster", "xapic"])
def test_ipi_fastpath_changes_nothing_in_cluster_or_xapic_mode(apic_mode):
    on = run(**{**HACKBENCH, "vm.apic": apic_mode, "features.ipi_fastpath": True})
    off = run(**{**HACKBENCH, "vm.apic": apic_mode, "features.ipi_fastpath": False})
    assert on.metrics == pytest.approx(off.metrics | {"wall_s": on.metrics["wall_s"]}, nan_ok=True)


# -- the guest's APIC driver and the xAPIC ICR sequence ----------------------------


def test_guest_driver_is_flat_up_to_8_cpus_then_physflat():
    small = build(scenario(**{"vm.vcpus": 8, "vm.apic": "xapic"}), 1)
    big = build(scenario(**{"vm.vcpus": 9, "vm.apic": "xapic", "overcommit": 2.0}), 1)
    assert apic.guest_driver(small, small.vcpus[0]) == apic.FLAT
    assert apic.guest_driver(big, big.vcpus[0]) == apic.PHYSFLAT


def test_xapic_unicast_without_avic_takes_two_apic_write_exits_per_ipi_on_intel():
    r = run(**{**UNICAST, "hardware": "skylake", "vm.vcpus": 12, "vm.apic": "xapic", "overcommit": 2.0})
    n = _ipis(r)
    assert n > 100
    # __default_send_IPI_dest_field: ICR2 (0x310) then ICR (0x300), each an APIC_WRITE exit;
    # the ICR-idle read is virtualized by APICv
    assert _exits(r, "APIC_WRITE", apic.APIC_ICR2) == n
    assert _exits(r, "APIC_WRITE", apic.APIC_ICR) == n
    assert _exits(r, "APIC_READ") == 0
    no_apicv = run(**{**UNICAST, "hardware": "skylake", "vm.vcpus": 12, "vm.apic": "xapic", "overcommit": 2.0,
                      "vm.apicv": False})
    assert _exits(no_apicv, "APIC_READ", apic.APIC_ICR) == _ipis(no_apicv) > 100


def test_xapic_without_avic_on_amd_exits_on_the_icr_idle_read_too():
    r = run(**{**UNICAST, "hardware": "rome", "vm.vcpus": 12, "vm.apic": "xapic", "overcommit": 2.0})
    n = _ipis(r)
    assert n > 100
    assert _exits(r, "APIC_READ", apic.APIC_ICR) == _exits(r, "APIC_WRITE", apic.APIC_ICR2) == n


def test_flat_mode_unicast_takes_the_pv_hypercall_physflat_does_not():
    flat = run(**{**UNICAST, "hardware": "skylake", "vm.vcpus": 2, "vm.apic": "xapic"})
    assert _exits(flat, "VMCALL", "SEND_IPI") == _ipis(flat) > 100
    assert _exits(flat, "APIC_WRITE") == 0
    physflat = run(**{**UNICAST, "hardware": "skylake", "vm.vcpus": 12, "vm.apic": "xapic", "overcommit": 2.0})
    assert _exits(physflat, "VMCALL") == 0


# -- Intel IPIv ------------------------------------------------------------------------


def test_ipiv_removes_the_icr_exit_for_physical_unicast_in_xapic_and_x2apic_mode():
    spr = {**UNICAST, "hardware": "sapphirerapids", "vm.vcpus": 12, "overcommit": 2.0}
    x2 = run(**spr, **{"vm.apic": "x2apic_phys"})
    assert _ipis(x2) > 100
    assert _exits(x2, "MSR_WRITE", apic.MSR_ICR) == 0
    xa = run(**spr, **{"vm.apic": "xapic"})
    assert _exits(xa, "APIC_WRITE", apic.APIC_ICR) == 0
    # the ICR2 write before it still takes its APIC-write exit
    assert _exits(xa, "APIC_WRITE", apic.APIC_ICR2) == _ipis(xa) > 100
    # and IPIv is what removed them: Skylake, same scenario, exits on every ICR write
    skx = run(**{**spr, "hardware": "skylake", "vm.apic": "x2apic_phys"})
    assert _exits(skx, "MSR_WRITE", apic.MSR_ICR) == _ipis(skx)


def test_ipiv_does_not_virtualize_logical_destinations():
    spr = {**UNICAST, "hardware": "sapphirerapids"}
    cluster = run(**spr, **{"vm.vcpus": 12, "overcommit": 2.0, "vm.apic": "x2apic_cluster"})
    assert _exits(cluster, "MSR_WRITE", apic.MSR_ICR) == _ipis(cluster) > 100
    flat = run(**spr, **{"vm.vcpus": 2, "vm.apic": "xapic", "features.pv_send_ipi": False})
    assert _exits(flat, "APIC_WRITE", apic.APIC_ICR) == _ipis(flat) > 100


# -- AMD AVIC and IsRunning -----------------------------------------------------------


# 2 vCPUs on 2 pCPUs; PV send-IPI off so that the flat-mode unicast writes the ICR (AVIC sends it)
AVIC = {"hardware": "rome", "vm.apic": "xapic", "vm.avic": True, "vm.vcpus": 2, "costs.exit_cost_jitter": 0.0,
        "topology.cores_per_socket": 2, "topology.threads_per_core": 1, "features.pv_send_ipi": False}


def _send_to(log: dict, before=None, target_index: int = 1):
    """A scripted op: run ``before(h, target)``, then send one IPI to vCPU ``target_index``."""

    def op(h, task):
        target = task.vcpu.vm.vcpus[target_index]
        if before is not None:
            before(h, target)
        log["sent"] = h.engine.now
        log["target_state"] = target.state
        irq = Irq("ipi", 500.0, lambda: log.__setitem__("handled", h.engine.now))
        apic.send(h, task.vcpu, [target], [irq], lambda: guest.advance(h, task), multicast=False)

    return Call(op)


def test_avic_target_in_an_exit_gets_no_incomplete_ipi():
    log: dict = {}
    exit_ns = 40_000

    def long_exit(h, target):
        log["exit_end"] = h.engine.now + exit_ns
        kvm.simple_exit(h, target, "IO_INSTRUCTION", exit_ns)

    h = scripted_host({0: [Run(50_000, True), _send_to(log, long_exit)], 1: [Run(10_000_000, True)]},
                      **AVIC)
    h.stats.start_measuring(0)
    h.engine.run(1_000_000)
    assert log["target_state"] == kvm.EXIT and apic.avic_is_running(h.vms[0].vcpus[1])
    rows = {r.reason: r.samples for r in h.stats.exit_rows()}
    assert "AVIC_INCOMPLETE_IPI" not in rows
    # the IRR bit waits in the backing page: injected when the exit ends
    assert log["handled"] >= log["exit_end"]


def test_avic_target_that_blocked_gets_an_incomplete_ipi_exit():
    log: dict = {}
    h = scripted_host({0: [Run(200_000, True), _send_to(log)]}, **AVIC, **{"vm.halt_poll_ns": 0})
    h.stats.start_measuring(0)
    h.engine.run(1_000_000)
    assert log["target_state"] == kvm.HALTED
    rows = {r.reason: r.samples for r in h.stats.exit_rows()}
    assert rows["AVIC_INCOMPLETE_IPI"] == 1
    assert "handled" in log  # KVM kicked it awake


def test_avic_target_that_is_descheduled_gets_an_incomplete_ipi_exit():
    log: dict = {}

    def wait_until_runnable(h, task):
        target = task.vcpu.vm.vcpus[0]
        if target.state == RUNNABLE:
            guest.advance(h, task)
        else:
            task.vcpu.frames.append(Frame(WORK, remaining=50_000, kernel=True,
                                          on_done=lambda: wait_until_runnable(h, task)))

    # the target (vCPU 0) shares pCPU 0 with a cpu-bound co-runner vCPU; the sender (vCPU 1)
    # has pCPU 1 to itself and sends once the target has been preempted
    h = scripted_host({1: [Call(wait_until_runnable), _send_to(log, target_index=0)],
                       0: [Run(500_000_000, True)]},
                      **{**AVIC, "overcommit": 1.5, "corunner.vcpus": 1})
    h.stats.start_measuring(0)
    h.engine.run(200_000_000)
    assert log["target_state"] == RUNNABLE
    rows = {r.reason: r.samples for r in h.stats.exit_rows()}
    assert rows.get("AVIC_INCOMPLETE_IPI") == 1


def test_avic_removes_sender_exits_to_running_targets():
    kw = {**HACKBENCH, "hardware": "rome", "vm.apic": "xapic", "vm.hlt_passthrough": True,
          "features.pv_send_ipi": False}
    without = run(**kw, **{"vm.avic": False})
    with_avic = run(**kw, **{"vm.avic": True})
    assert _exits(without, "APIC_WRITE") > 100
    assert _exits(with_avic, "APIC_WRITE") == 0
    # every target idles in the guest (HLT passthrough): none is ever not running
    assert _exits(with_avic, "AVIC_INCOMPLETE_IPI") == 0
    assert with_avic.metrics["ipi_latency_p50_us"] < without.metrics["ipi_latency_p50_us"]


def test_avic_is_inhibited_for_x2apic_on_rome_but_not_on_genoa():
    kw = {**HACKBENCH, "vm.apic": "x2apic_phys", "vm.avic": True, "vm.hlt_passthrough": True}
    rome = run(**kw, hardware="rome")
    genoa = run(**kw, hardware="genoa")
    assert _exits(rome, "MSR_WRITE") > 100
    assert _exits(genoa, "MSR_WRITE", apic.MSR_ICR) == 0


def test_hlt_passthrough_removes_hlt_exits():
    kw = {**HACKBENCH, "vm.halt_poll_ns": 0}
    assert _exits(run(**kw), "HLT") > 100
    assert _exits(run(**kw, **{"vm.hlt_passthrough": True}), "HLT") == 0


# -- PV send-IPI and shorthands ---------------------------------------------------------


def test_pv_send_ipi_takes_one_hypercall_per_window_of_128_apic_ids():
    h = build(scenario(**{"vm.vcpus": 200, "vm.apic": "x2apic_phys", "topology.sockets": 2,
                          "topology.cores_per_socket": 64}), 1)
    vcpus = h.vms[0].vcpus
    src = vcpus[0]
    # a mask of 199 destinations (all but self): the shorthand, PV or not
    assert [w.how for w in apic.plan(h, src, vcpus[1:], multicast=True)] == ["x2apic"]
    # a partial mask: APIC IDs 1..150 -> windows [1, 129) and [129, 151)
    writes = apic.plan(h, src, vcpus[1:151], multicast=True)
    assert [(w.how, len(w.group)) for w in writes] == [("vmcall", 128), ("vmcall", 22)]
    # a unicast in x2APIC mode never takes the hypercall (kvm_setup_pv_ipi leaves send_IPI alone)
    assert [w.how for w in apic.plan(h, src, [vcpus[5]], multicast=False)] == ["x2apic"]


def test_cluster_mode_sends_one_write_per_cluster_of_16():
    h = build(scenario(**{"vm.vcpus": 40, "vm.apic": "x2apic_cluster", "features.pv_send_ipi": False,
                          "topology.cores_per_socket": 20}), 1)
    vcpus = h.vms[0].vcpus
    writes = apic.plan(h, vcpus[0], vcpus[1:35], multicast=True)
    assert [len(w.group) for w in writes] == [15, 16, 3]
    assert {w.dest for w in writes} == {"logical"}
