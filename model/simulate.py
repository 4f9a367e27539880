"""``simulate(scenario, seed) -> Result``: build, wire, run, collect.

A pure function: no I/O, no global state.  The model is elaborated and
checked before time 0 (desmod's ``elaborate()``), run for the warm-up and the
measured duration, and reduced to a flat metrics record and an exit table.
A failure inside the run becomes a failed Result, so a sweep records it as a
row instead of dying.
"""

from __future__ import annotations

import time

from model import kvm, locks, scheduler, spin
from model.host import Host, Snapshot
from model.metrics import compute
from model.result import Result
from model.scenario import Scenario
from model.vcpu import ACCT_RUNNABLE, IDLE, RUNNABLE, Frame, Irq, Vcpu, Vm
from model.workloads import BUILDERS, knobs_of

# Stream ids for SeedSequence spawn keys: one stream per component, so adding
# a component never shifts another one's draws.
STREAM_VCPU = 1
STREAM_WORKLOAD = 2


def vm_sizes(sc: Scenario, pcpus: int) -> list[int]:
    """The measured VM, then co-runner VMs filling the host up to the overcommit ratio."""
    total = round(sc.overcommit * pcpus)
    sizes = [sc.vm.vcpus]
    size = sc.corunner.vcpus or sc.vm.vcpus
    rest = total - sc.vm.vcpus
    while rest > 0:
        sizes.append(min(size, rest))
        rest -= sizes[-1]
    return sizes


def build(sc: Scenario, seed: int) -> Host:
    """Elaborate the model and check its wiring before time 0."""
    h = Host(sc, seed)
    kvm.register(h)  # the vCPU threads' preempt notifiers (preempt_notifier_register in vcpu_load)
    locks.register(h)
    gid = 0
    n = len(h.pcpus)
    for vm_index, size in enumerate(vm_sizes(sc, n)):
        kind = sc.workload.kind if vm_index == 0 or sc.corunner.workload == "same" else sc.corunner.workload
        vm = Vm(vm_index, kind)
        for i in range(size):
            pcpu = h.pcpus[gid % n]
            v = Vcpu(vm, i, gid, pcpu.id if sc.pinning == "dedicated" else None, h.rng(STREAM_VCPU, vm_index, i))
            v.pcpu = pcpu
            v.frames.append(Frame(IDLE, kernel=True))
            spin.reset_window(h, v)
            vm.vcpus.append(v)
            h.vcpus.append(v)
            gid += 1
        BUILDERS[kind](h, vm, knobs_of(sc.workload, kind), h.rng(STREAM_WORKLOAD, vm_index))
        h.vms.append(vm)
    _check_wiring(h)
    return h


def _check_wiring(h: Host) -> None:
    for v in h.vcpus:
        if v.pinned is not None and not 0 <= v.pinned < len(h.pcpus):
            raise ValueError(f"vCPU {v.gid} pinned to missing pCPU {v.pinned}")
    if not h.vms or not h.vms[0].vcpus:
        raise ValueError("no measured VM")


def start(h: Host) -> None:
    """Time 0: every vCPU thread is runnable on its pCPU; each pCPU picks one."""
    for v in h.vcpus:
        v.state = RUNNABLE
        v.account(ACCT_RUNNABLE, 0)
        v.pcpu.rq.append(v)
    for p in h.pcpus:
        scheduler.schedule(h, p)
    if h.sc.pinning == "none":
        scheduler.start_balancing(h)


def _snapshot(h: Host) -> Snapshot:
    now = h.engine.now
    for p in h.pcpus:
        p.flush(now)
    for v in h.vcpus:
        v.account(v.acct_state, now)
    return [list(v.acct) for v in h.vms[0].vcpus], [list(p.acct) for p in h.pcpus]


def _start_measuring(h: Host) -> None:
    h.stats.start_measuring(h.engine.now, int(h.sc.sim.duration_ms * 1e6) - h.engine.now)
    h.warm = _snapshot(h)
    h.warm_switches = sum(p.switches for p in h.pcpus)
    for v in h.vcpus:
        v.spin_ns = v.csfm_ns = v.polls = v.polls_ok = 0


def run(h: Host) -> Snapshot:
    sc = h.sc
    warm_ns = int(sc.sim.warmup_ms * 1e6)
    end_ns = int(sc.sim.duration_ms * 1e6)
    start(h)
    h.engine.run(warm_ns)
    _start_measuring(h)
    h.engine.run(end_ns)
    vcpu_end, pcpu_end = _snapshot(h)
    assert h.warm is not None
    vcpu_warm, pcpu_warm = h.warm
    h.switches_measured = sum(p.switches for p in h.pcpus) - h.warm_switches
    vcpu = [[a - b for a, b in zip(e, w)] for e, w in zip(vcpu_end, vcpu_warm)]
    pcpu = [[a - b for a, b in zip(e, w)] for e, w in zip(pcpu_end, pcpu_warm)]
    return vcpu, pcpu


def _counted_irqs(args: tuple) -> int:
    """IPIs travelling as arguments of a pending event (alone or in a group)."""
    n = 0
    for arg in args:
        if isinstance(arg, Irq):
            n += arg.counted
        elif isinstance(arg, list) and arg and isinstance(arg[0], Irq):
            n += sum(irq.counted for irq in arg)
    return n


def invariants(h: Host, pcpu_totals: list[list[int]]) -> dict[str, float]:
    """Quantities that must balance in every run (checked by the tests)."""
    measured_ns = h.engine.now - h.stats.t_start
    pending = sum(1 for v in h.vcpus for irq in v.irr if irq.counted)
    in_flight = sum(_counted_irqs(entry[3]) for entry in h.engine.pending())
    return {
        "pcpu_time_error_ns": float(max(abs(sum(t) - measured_ns) for t in pcpu_totals)),
        "ipis_sent": float(h.stats.ipi_sent_total),
        "ipis_handled": float(h.stats.ipi_handled_total),
        "ipis_pending": float(pending),
        "ipis_in_flight": float(in_flight),
        "exits_counted": float(h.stats.exits_counted),
        "exit_table_samples": float(sum(r.samples for r in h.stats.exit_rows())),
    }


def simulate(scenario: Scenario, seed: int) -> Result:
    """Run one scenario with one seed; never raises for a failure inside the run."""
    t0 = time.perf_counter()
    try:
        h = build(scenario, seed)
        vcpu_totals, pcpu_totals = run(h)
        wall_s = time.perf_counter() - t0
        metrics = compute(h, vcpu_totals, pcpu_totals, wall_s)
        return Result(
            metrics=metrics,
            exits=h.stats.exit_rows(),
            timer_latencies_us=tuple(x / 1e3 for x in h.stats.timer_latencies),
            invariants=invariants(h, pcpu_totals),
        )
    except Exception as exc:  # noqa: BLE001 - a failed run is data, not a crash
        return Result.failed(exc, time.perf_counter() - t0)


