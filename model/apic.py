"""Interrupt delivery: how a guest IPI leaves the sender and reaches the target.

Sender (MODEL.md section 5):
- x2APIC: one ICR write (MSR_WRITE 0x830) per destination in physical mode,
  one per cluster of 16 in cluster mode; multicast with PV send-IPI is one
  VMCALL per 128 destinations (arch/x86/kernel/kvm.c __send_ipi_mask).  The
  *IPI fastpath* (1e9e2622a149, handle_fastpath_set_x2apic_icr_irqoff) takes
  only physical-mode, single-destination, FIXED, no-shorthand writes of a
  non-nested guest: the IPI leaves ``icr_send_fast_ns`` into a cheaper exit.
  A Linux guest in cluster mode sends logical destinations: never eligible.
- xAPIC: ICR2 then ICR MMIO writes per destination (physflat), each an
  APIC_WRITE exit; with AMD AVIC the hardware delivers to running targets with
  no exit and a non-running target costs an AVIC_INCOMPLETE_IPI exit.
- Intel IPIv / AMD x2AVIC: x2APIC ICR writes do not exit.
Receiver: a posted interrupt (APICv / AVIC) reaches a target in GUEST after
``posted_delivery_ns`` without an exit; without posting it forces an
EXTERNAL_INTERRUPT exit and is injected on re-entry; otherwise it waits in the
IRR, and a halted target is kicked.
"""

from __future__ import annotations

from collections.abc import Callable

from model import guest, kvm
from model.host import EXIT as M_EXIT
from model.host import GUEST as M_GUEST
from model.vcpu import GUEST, WORK, Frame, Irq, Vcpu

CLUSTER_SIZE = 16  # x2APIC logical cluster: 16 CPUs (x2apic_cluster.c)
PV_IPI_MAX_TARGETS = 128  # KVM_PV_SEND_IPI bitmap: 128 APIC IDs per hypercall (calibration.md)


def posted(h) -> bool:
    """Does this VM get posted interrupts (APICv on Intel, AVIC on AMD)?"""
    prof, vm = h.prof, h.sc.vm
    if prof.vendor == "intel":
        return vm.apicv and prof.has_apicv
    return avic_active(h)


def avic_active(h) -> bool:
    """AVIC is inhibited for x2APIC guests unless the hardware has x2AVIC."""
    prof, vm = h.prof, h.sc.vm
    if not (vm.avic and prof.has_avic):
        return False
    return vm.apic == "xapic" or prof.has_x2avic


def send_accelerated(h) -> bool:
    """Does the hardware deliver the guest's ICR writes without an exit?"""
    prof, vm = h.prof, h.sc.vm
    if vm.apic == "xapic":
        return prof.vendor == "amd" and avic_active(h)
    if prof.vendor == "intel":
        return prof.has_ipiv and vm.apicv and prof.has_apicv
    return avic_active(h)  # x2AVIC


def send_resched(h, src: Vcpu, target: Vcpu, cont: Callable[[], None]) -> None:
    """A unicast RESCHEDULE IPI (guest try_to_wake_up on an idle remote vCPU)."""
    irq = Irq("resched", h.prof.guest_irq_ns, lambda: guest.preempt_check(h, target))
    send(h, src, [target], [irq], cont, multicast=False)


def send(h, src: Vcpu, targets: list[Vcpu], irqs: list[Irq], cont, multicast: bool) -> None:
    """Send ``irqs[i]`` to ``targets[i]``; ``cont`` runs when the sender is back in the guest."""
    now = h.engine.now
    for irq in irqs:
        irq.sent_ns = now
        irq.counted = True
        h.stats.ipi_sent(src)
    prof, vm, feat = h.prof, h.sc.vm, h.sc.features
    if send_accelerated(h):
        _send_accelerated(h, src, targets, irqs, cont)
        return
    if vm.apic == "xapic":
        exits = [("APIC_WRITE", "", prof.exit_apic_write_ns * prof.xapic_icr_writes,
                  prof.exit_apic_write_ns * prof.xapic_icr_writes, [i]) for i in range(len(targets))]
    elif multicast and feat.pv_send_ipi and len(targets) > 1:
        exits = []
        for first in range(0, len(targets), PV_IPI_MAX_TARGETS):
            group = list(range(first, min(first + PV_IPI_MAX_TARGETS, len(targets))))
            cost = prof.exit_vmcall_ns + prof.vmcall_per_target_ns * len(group)
            exits.append(("VMCALL", "", cost, cost, group))
    elif vm.apic == "x2apic_cluster":
        by_cluster: dict[int, list[int]] = {}
        for i, t in enumerate(targets):
            by_cluster.setdefault(t.index // CLUSTER_SIZE, []).append(i)
        exits = [("MSR_WRITE", "0x830", prof.exit_msr_icr_ns, prof.icr_send_slow_ns, g)
                 for _, g in sorted(by_cluster.items())]
    else:  # x2apic_phys: one single-destination write each, fastpath-eligible
        if feat.ipi_fastpath:
            exits = [("MSR_WRITE", "0x830", prof.exit_msr_icr_fast_ns, prof.icr_send_fast_ns, [i])
                     for i in range(len(targets))]
        else:
            exits = [("MSR_WRITE", "0x830", prof.exit_msr_icr_ns, prof.icr_send_slow_ns, [i])
                     for i in range(len(targets))]
    phases = []
    for reason, detail, cost, send_at, group in exits:
        fraction = min(1.0, send_at / cost) if cost > 0 else 0.0
        action = (fraction, _deliver_group, h, src, [targets[i] for i in group], [irqs[i] for i in group])
        phases.append((M_EXIT, cost, reason, detail, action))
    kvm.exit_chain(h, src, tuple(phases), cont)


def _deliver_group(h, src: Vcpu, targets: list[Vcpu], irqs: list[Irq]) -> None:
    for target, irq in zip(targets, irqs):
        deliver(h, src, target, irq)


def _send_accelerated(h, src: Vcpu, targets: list[Vcpu], irqs: list[Irq], cont) -> None:
    """AVIC / x2AVIC / IPIv: the ICR writes are guest work; non-running targets may exit."""
    prof = h.prof
    per = prof.accel_ipi_send_ns
    incomplete: list[int] = []
    for i, t in enumerate(targets):
        if t.state == GUEST or prof.vendor == "intel":
            h.engine.after(int(per * (i + 1)), deliver, h, src, t, irqs[i])
        else:
            incomplete.append(i)
    work = Frame(WORK, remaining=per * len(targets), kernel=True, on_done=None)
    if not incomplete:
        work.on_done = cont
        src.frames.append(work)
        return
    # AVIC_INCOMPLETE_IPI: KVM emulates the rest and kicks the targets
    phases = ((M_GUEST, per * len(targets), None, ""),) + tuple(
        (M_EXIT, prof.exit_avic_incomplete_ipi_ns, "AVIC_INCOMPLETE_IPI", "", (1.0, deliver, h, src, targets[i], irqs[i]))
        for i in incomplete
    )
    kvm.exit_chain(h, src, phases, cont)


def deliver(h, src: Vcpu, target: Vcpu, irq: Irq) -> None:
    """The IPI reaches the target's APIC now."""
    wire = int(h.prof.posted_delivery_ns)
    if src.pcpu is not None and target.pcpu is not None and src.pcpu.socket != target.pcpu.socket:
        wire += int(h.prof.cross_socket_ns)
    if target.state == GUEST:
        if posted(h):
            h.engine.after(wire, kvm.put_irq, h, target, irq)
        else:
            h.engine.after(wire, _external_interrupt, h, target, irq)
        return
    kvm.put_irq(h, target, irq)


def _external_interrupt(h, target: Vcpu, irq: Irq) -> None:
    """No posted interrupts: the host IPI forces an exit and KVM injects on re-entry."""
    if target.state == GUEST:
        target.irr.append(irq)
        kvm.simple_exit(h, target, "EXTERNAL_INTERRUPT", h.prof.exit_external_interrupt_ns)
    else:
        kvm.put_irq(h, target, irq)
