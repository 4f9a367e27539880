"""Interrupt delivery: how a guest IPI leaves the sender and reaches the target.

**The guest's APIC driver** (arch/x86/kernel/apic, 5.x) decides which ICR
writes an IPI takes (:func:`guest_driver`):

- xAPIC with at most 8 CPUs: ``apic_flat`` (logical flat).  Unicast is
  ``default_send_IPI_single`` -> ``apic->send_IPI_mask`` -> ``flat_send_IPI_mask``:
  one logical-destination ``__default_send_IPI_dest_field`` for the whole mask.
- xAPIC with more: ``apic_physflat`` (``physflat_probe``: ``num_possible_cpus()
  > 8``, the 180-vCPU case).  Unicast ``default_send_IPI_single_phys``; mask
  ``default_send_IPI_mask_sequence_phys``: one physical
  ``__default_send_IPI_dest_field`` per target.
- x2APIC physical: one MSR 0x830 write per target (``x2apic_send_IPI``,
  ``__x2apic_send_IPI_mask``).  A KVM guest without interrupt remapping (no
  vIOMMU) always runs this mode up to 5.x: ``try_to_enable_x2apic`` sets
  ``x2apic_phys = 1`` when IR is missing ("without IR all CPUs can be addressed
  by IOAPIC/MSI only in physical mode").
- x2APIC cluster: unicast one logical write; a mask one write per cluster of
  up to 16 CPUs (``__x2apic_send_IPI_mask`` in x2apic_cluster.c).

``__default_send_IPI_dest_field`` is three APIC accesses: wait for ICR idle
(``__xapic_wait_icr_idle``: an ICR read), write ICR2 (destination), write ICR
(fires the IPI); ``__default_send_IPI_shortcut`` skips ICR2.  Each access is
MMIO: an ``APIC_WRITE`` exit on Intel for the writes (the read is virtualized
with APICv), the NPF path on AMD without AVIC (read included).

**Call-function IPIs to a mask** (``native_send_call_func_ipi``): when the
mask is every online CPU but the sender and the guest uses IPI shorthands
(``apic_use_ipi_shorthand``, guest 5.4+, 832df3d47bad; feature
``ipi_shorthand``) it is one ``send_IPI_allbutself``: a single shorthand ICR
write.  Otherwise ``apic->send_IPI_mask``.

**PV send-IPI** (``kvm_setup_pv_ipi``, aaffcfd1e82d): replaces
``send_IPI_mask`` and ``send_IPI_mask_allbutself`` -- not ``send_IPI`` nor the
shorthand -- with ``kvm_send_ipi_mask``: one ``KVM_HC_SEND_IPI`` VMCALL per
window of 128 APIC IDs (``__send_ipi_mask``).  So a flat-mode unicast (which
goes through the mask) takes the hypercall; a physflat / x2APIC unicast does
not.

**Hardware acceleration of the sender:**

- Intel IPIv (5.19, Sapphire Rapids): a unicast FIXED physical-destination ICR
  write without shorthand is virtualized in xAPIC and x2APIC mode (no sender
  exit, posted to the target's PID; a target that is not running is woken
  through the wake-up vector); logical, shorthand and multicast writes exit.
- AMD AVIC (xAPIC; x2AVIC on Genoa for x2APIC too): the hardware handles
  FIXED edge IPIs, physical, logical and shorthand: per destination it sets the
  IRR bit in the backing page and rings the doorbell when the target's
  IsRunning bit is set.  IsRunning is set while the vCPU is loaded on its pCPU
  (``avic_vcpu_load``), exits included, and cleared on sched-out
  (``avic_vcpu_put``) and on block, before halt-polling
  (``svm_vcpu_blocking`` -> ``avic_set_running(false)``): :func:`avic_is_running`.
  A write with a destination not running takes one ``AVIC_INCOMPLETE_IPI``
  exit after it, which wakes every such target
  (``avic_incomplete_ipi_interception``, AVIC_IPI_FAILURE_TARGET_NOT_RUNNING).
  A multi-destination write (shorthand, logical) is walked destination by
  destination while it retires, ``avic_ipi_per_target_ns`` each; the walk is
  guest execution, so an SMT sibling stretches it and the destinations'
  deliveries with it.  KVM without AVIC delivers a shorthand in its slow loop
  instead: ``kvm_irq_delivery_to_apic_fast`` refuses shorthands
  (``kvm_apic_map_get_dest_lapic``: ``if (irq->shorthand) return false``), so
  ``kvm_for_each_vcpu`` -> ``kvm_apic_match_dest`` -> ``kvm_apic_set_irq`` ->
  ``kvm_vcpu_kick`` runs for every vCPU inside the ICR exit.
  In xAPIC mode IPIv leaves the ICR2 write before it exiting (an APIC-write
  VM exit for offset 310H); AVIC accepts it in the backing page.
- The x2APIC IPI fastpath (1e9e2622a149): physical, single destination,
  FIXED, no shorthand: the IPI leaves ``icr_send_fast_ns`` into a cheaper exit.

**KVM's delivery inside a sender's exit** (``kvm_irq_delivery_to_apic``, the
hypercall's ``kvm_pv_send_ipi``): ``kvm_apic_set_irq`` per destination, each
``kvm_irq_delivery_ns``; destination *i* is delivered that much later than
destination *i-1*.

**Receiver:** a posted interrupt (APICv / AVIC) reaches a target in GUEST after
``posted_delivery_ns`` without an exit; without posting it forces an
EXTERNAL_INTERRUPT exit and is injected on re-entry; otherwise it waits in the
IRR, and a halted target is kicked (``model.kvm.put_irq``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from model import guest, kvm
from model.host import EXIT as M_EXIT
from model.host import GUEST as M_GUEST
from model.vcpu import EXIT, GUEST, WORK, Frame, Irq, Vcpu

if TYPE_CHECKING:
    from model.host import Host

CLUSTER_SIZE = 16  # x2APIC logical cluster: 16 CPUs (x2apic_cluster.c)
PV_IPI_MAX_TARGETS = 128  # KVM_IPI_CLUSTER_SIZE = 2 * BITS_PER_LONG: APIC IDs per hypercall (__send_ipi_mask)
FLAT_MAX_CPUS = 8  # physflat_probe(): apic_flat only while num_possible_cpus() <= 8

# APIC register offsets (the exit table's detail column for xAPIC MMIO exits)
APIC_ICR = "0x300"
APIC_ICR2 = "0x310"
MSR_ICR = "0x830"

FLAT, PHYSFLAT, X2APIC_PHYS, X2APIC_CLUSTER = "flat", "physflat", "x2apic_phys", "x2apic_cluster"


@dataclass(frozen=True, slots=True)
class IcrWrite:
    """One IPI command the guest issues: an ICR write sequence or a PV hypercall.

    ``how``: "xapic" (``__default_send_IPI_dest_field`` / ``_shortcut``),
    "x2apic" (one MSR 0x830 write) or "vmcall" (KVM_HC_SEND_IPI);
    ``dest``: "physical", "logical" or "shorthand"; ``group``: indices of the
    destinations in the caller's target list."""

    how: str
    dest: str
    group: tuple[int, ...]


def guest_driver(h: Host, src: Vcpu) -> str:
    """The guest's APIC driver for the sender's VM (see the module docstring)."""
    mode = h.sc.vm.apic
    if mode == "xapic":
        return FLAT if len(src.vm.vcpus) <= FLAT_MAX_CPUS else PHYSFLAT
    return mode


def posted(h: Host) -> bool:
    """Does this VM get posted interrupts (APICv on Intel, AVIC on AMD)?"""
    prof, vm = h.prof, h.sc.vm
    if prof.vendor == "intel":
        return vm.apicv and prof.has_apicv
    return avic_active(h)


def avic_active(h: Host) -> bool:
    """AVIC is inhibited for x2APIC guests unless the hardware has x2AVIC."""
    prof, vm = h.prof, h.sc.vm
    if not (vm.avic and prof.has_avic):
        return False
    return vm.apic == "xapic" or prof.has_x2avic


def ipiv_active(h: Host) -> bool:
    """Intel IPI virtualization: APICv on hardware that has IPIv (vmx enable_ipiv, 5.19)."""
    prof, vm = h.prof, h.sc.vm
    return prof.vendor == "intel" and prof.has_ipiv and prof.has_apicv and vm.apicv


def avic_is_running(v: Vcpu) -> bool:
    """The AVIC physical APIC ID table's IsRunning bit of ``v``.

    Set by ``avic_vcpu_load`` while the thread is loaded on its pCPU -- in the
    guest or in an exit (``EXIT`` also covers the switch-in before entry);
    cleared by ``avic_vcpu_put`` on sched-out (RUNNABLE) and by
    ``avic_set_running(false)`` when it blocks, halt-polling included."""
    return v.state in (GUEST, EXIT)


# -- which ICR writes an IPI takes -------------------------------------------------


def plan(h: Host, src: Vcpu, targets: list[Vcpu], multicast: bool, direct: bool = False) -> list[IcrWrite]:
    """The guest's ICR writes (or hypercalls) for one IPI to ``targets``.

    ``multicast`` False: ``apic->send_IPI(cpu)`` (reschedule, call-function
    single); True: ``native_send_call_func_ipi(mask)``.  ``direct``: no Linux
    driver -- one physical-destination ICR write per target, as kvm-unit-tests'
    ``apic_icr_write`` does (wait for idle, ICR2, ICR in xAPIC mode)."""
    drv = guest_driver(h, src)
    if direct:
        how = "xapic" if drv in (FLAT, PHYSFLAT) else "x2apic"
        return [IcrWrite(how, "physical", (i,)) for i in range(len(targets))]
    feat = h.sc.features
    n = len(targets)
    everyone = tuple(range(n))
    if multicast and feat.ipi_shorthand and n == len(src.vm.vcpus) - 1 and n > 0:
        # cpumask_or_equal(mask, self, online): send_IPI_allbutself
        return [IcrWrite("xapic" if drv in (FLAT, PHYSFLAT) else "x2apic", "shorthand", everyone)]
    through_mask = multicast or drv == FLAT  # flat's send_IPI is default_send_IPI_single -> send_IPI_mask
    if through_mask and feat.pv_send_ipi:
        return _pv_windows(targets)
    if drv == FLAT:
        return [IcrWrite("xapic", "logical", everyone)]
    if drv == PHYSFLAT:
        return [IcrWrite("xapic", "physical", (i,)) for i in everyone]
    if drv == X2APIC_PHYS:
        return [IcrWrite("x2apic", "physical", (i,)) for i in everyone]
    by_cluster: dict[int, list[int]] = {}
    for i, t in enumerate(targets):
        by_cluster.setdefault(t.index // CLUSTER_SIZE, []).append(i)
    return [IcrWrite("x2apic", "logical", tuple(g)) for _, g in sorted(by_cluster.items())]


def _pv_windows(targets: list[Vcpu]) -> list[IcrWrite]:
    """__send_ipi_mask: a new hypercall when an APIC ID falls outside [min, min + 128)."""
    order = sorted(range(len(targets)), key=lambda i: targets[i].index)
    writes: list[IcrWrite] = []
    group: list[int] = []
    base = -1
    for i in order:
        apic_id = targets[i].index
        if group and apic_id - base >= PV_IPI_MAX_TARGETS:
            writes.append(IcrWrite("vmcall", "physical", tuple(group)))
            group = []
        if not group:
            base = apic_id
        group.append(i)
    if group:
        writes.append(IcrWrite("vmcall", "physical", tuple(group)))
    return writes


def _virtualized(h: Host, w: IcrWrite) -> bool:
    """Does the hardware complete this ICR write without a sender exit?"""
    if w.how == "vmcall":
        return False
    if avic_active(h):
        return w.how == "xapic" or h.prof.has_x2avic
    if ipiv_active(h):
        return w.dest == "physical" and len(w.group) == 1
    return False


# -- sending ---------------------------------------------------------------------


def send_resched(h: Host, src: Vcpu, target: Vcpu, cont: Callable[[], None]) -> None:
    """A unicast RESCHEDULE IPI (guest try_to_wake_up on an idle remote vCPU)."""
    irq = Irq("resched", h.prof.guest_irq_ns, lambda: guest.preempt_check(h, target))
    send(h, src, [target], [irq], cont, multicast=False)


def send(h: Host, src: Vcpu, targets: list[Vcpu], irqs: list[Irq], cont, multicast: bool, direct: bool = False) -> None:
    """Send ``irqs[i]`` to ``targets[i]``; ``cont`` runs when the sender is back in the guest.

    ``multicast`` and ``direct``: see :func:`plan`."""
    now = h.engine.now
    for irq in irqs:
        irq.sent_ns = now
        irq.counted = True
        h.stats.ipi_sent(src)
    phases: list[kvm.Phase] = []
    for w in plan(h, src, targets, multicast, direct):
        group_t = [targets[i] for i in w.group]
        group_i = [irqs[i] for i in w.group]
        if _virtualized(h, w):
            phases.extend(_accelerated_phases(h, src, w, group_t, group_i))
        else:
            phases.extend(_exit_phases(h, src, w, group_t, group_i))
    if any(p.reason is not None for p in phases):
        kvm.exit_chain(h, src, tuple(phases), cont)
        return
    # no exit at all: the ICR writes are guest work (an SMT sibling slows them: the
    # sender's current speed stretches the offsets as it stretches the frame, so no
    # destination is reached before the write has got that far)
    t = 0.0
    stretch = 1.0 / src.speed if src.speed > 0 else 1.0
    for phase in phases:
        for action in phase.actions or ():
            h.engine.after(int((t + phase.mean_ns * action.fraction) * stretch), action.fn, *action.args)
        t += phase.mean_ns
    src.frames.append(Frame(WORK, remaining=t, kernel=True, on_done=cont))


def _deliveries(h: Host, base_ns: float, send_at: float, src: Vcpu, targets: list[Vcpu], irqs: list[Irq]):
    """One exit that delivers ``targets`` in turn: its mean cost and the delivery actions.

    The profile's exit figures are single-destination exits; destination *j*
    (from 0) is delivered ``send_at + j * kvm_irq_delivery_ns`` into the exit, a
    fraction of it, so that the exit's spread stretches them too."""
    per = h.prof.kvm_irq_delivery_ns
    cost = base_ns + per * (len(targets) - 1)
    actions = []
    for j, (t, irq) in enumerate(zip(targets, irqs)):
        at = send_at + per * j
        actions.append(kvm.Action(min(1.0, at / cost) if cost > 0 else 0.0, deliver, (h, src, t, irq)))
    return cost, actions


def _exit_phases(h: Host, src: Vcpu, w: IcrWrite, targets: list[Vcpu], irqs: list[Irq]) -> list[kvm.Phase]:
    """Phases of an ICR write sequence or hypercall that exits (deliveries inside the last exit)."""
    prof = h.prof
    phases: list[kvm.Phase] = []
    if w.how == "vmcall":  # kvm_pv_send_ipi
        base, send_at, reason, detail = prof.exit_vmcall_ns, prof.vmcall_send_ns, "VMCALL", "SEND_IPI"
    elif w.how == "x2apic":
        fast = h.sc.features.ipi_fastpath and w.dest == "physical" and len(w.group) == 1
        if fast:  # handle_fastpath_set_x2apic_icr_irqoff
            base, send_at = prof.exit_msr_icr_fast_ns, prof.icr_send_fast_ns
        else:
            base, send_at = prof.exit_msr_icr_ns, prof.icr_send_slow_ns
        reason, detail = "MSR_WRITE", MSR_ICR
    else:  # xAPIC MMIO: ICR-idle read, ICR2 write (not for a shorthand), ICR write
        if not _mmio_read_virtualized(h):
            phases.append(kvm.Phase(M_EXIT, prof.exit_apic_read_ns, "APIC_READ", APIC_ICR))
        if w.dest != "shorthand":
            phases.append(kvm.Phase(M_EXIT, prof.exit_apic_write_ns, "APIC_WRITE", APIC_ICR2))
        base, send_at, reason, detail = prof.exit_apic_write_ns, prof.apic_write_send_ns, "APIC_WRITE", APIC_ICR
    cost, actions = _deliveries(h, base, send_at, src, targets, irqs)
    phases.append(kvm.Phase(M_EXIT, cost, reason, detail, actions))
    return phases


def _mmio_read_virtualized(h: Host) -> bool:
    """An xAPIC register read without an exit: APICv (APIC-register virtualization) or AVIC."""
    if h.prof.vendor == "intel":
        return posted(h)
    return avic_active(h)


def _accelerated_phases(
    h: Host, src: Vcpu, w: IcrWrite, targets: list[Vcpu], irqs: list[Irq]
) -> list[kvm.Phase]:
    """A virtualized ICR write: guest time and hardware delivery, then AVIC_INCOMPLETE_IPI if a target is out.

    AVIC handles the destinations one after another, ``avic_ipi_per_target_ns``
    each; IPIv posts its single destination.  IsRunning is read when the
    write is issued."""
    prof = h.prof
    amd = prof.vendor == "amd"
    phases: list[kvm.Phase] = []
    if not amd and w.how == "xapic" and w.dest != "shorthand":
        # IPIv virtualizes the ICR (300H) write only; the ICR2 (310H) write before it is an
        # APIC-register-virtualized write with an APIC-write VM exit (SDM "APIC-write
        # emulation"), which is why IPIv saves 22.21 % in xAPIC vs 15.98 % in x2APIC mode
        # (IPIv cover letter) and not the whole sequence
        phases.append(kvm.Phase(M_EXIT, prof.exit_apic_write_ns, "APIC_WRITE", APIC_ICR2))
    per = prof.avic_ipi_per_target_ns if amd else 0.0
    write_ns = prof.accel_ipi_send_ns + per * (len(targets) - 1)
    actions = []
    missing: list[tuple[Vcpu, Irq]] = []
    for j, (t, irq) in enumerate(zip(targets, irqs)):
        if amd and not avic_is_running(t):
            missing.append((t, irq))  # IRR set in the backing page; no doorbell
            continue
        at = prof.accel_ipi_send_ns + per * j
        actions.append(kvm.Action(min(1.0, at / write_ns), deliver, (h, src, t, irq)))
    phases.append(kvm.Phase(M_GUEST, write_ns, None, "", actions))
    if missing:  # one exit wakes every target not running (kvm_for_each_vcpu ... kvm_vcpu_wake_up)
        cost = prof.exit_avic_incomplete_ipi_ns + prof.kvm_irq_delivery_ns * len(missing)
        kicks = [kvm.Action(1.0, kvm.put_irq, (h, t, irq)) for t, irq in missing]
        phases.append(kvm.Phase(M_EXIT, cost, "AVIC_INCOMPLETE_IPI", "", kicks))
    return phases


def deliver(h: Host, src: Vcpu, target: Vcpu, irq: Irq) -> None:
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


def _external_interrupt(h: Host, target: Vcpu, irq: Irq) -> None:
    """No posted interrupts: the host IPI forces an exit and KVM injects on re-entry."""
    if target.state == GUEST:
        target.irr.append(irq)
        kvm.simple_exit(h, target, "EXTERNAL_INTERRUPT", h.prof.exit_external_interrupt_ns)
    else:
        kvm.put_irq(h, target, irq)
