"""TLB shootdown: ``flush_tlb_mm_range`` -> ``flush_tlb_others`` -> synchronous call-function-many.

After the local flush, ``flush_tlb_mm_range`` flushes the other CPUs in the
mm's cpumask (arch/x86/mm/tlb.c, 5.4-5.10 ``native_flush_tlb_others``; 5.11+
``flush_tlb_multi``, same rules):

- ``freed_tables`` false: ``on_each_cpu_cond_mask(tlb_is_not_lazy, ...)``:
  CPUs in lazy-TLB mode (idle: no task of this mm runs there) are skipped;
  with ``freed_tables`` every CPU of the mask is flushed, idle ones included
  (4.19, "only send IPIs to CPUs in lazy mode when freeing page tables").
- With ``pv_tlb_flush`` (``kvm_flush_tlb_others``, 858a43aae236) a target
  whose steal-time *preempted* bit is set gets KVM_VCPU_FLUSH_TLB in its
  steal-time record instead: no IPI, the sender does not wait, and the vCPU
  flushes on its next entry.
- ``smp_call_function_many_cond`` queues one csd per target on the
  target's ``call_single_queue`` and IPIs only the CPUs whose queue was empty
  (``llist_add`` returned true); one handler run
  (``flush_smp_call_function_queue``) completes every csd queued there, the
  later flushes finding the TLB generation already current
  (``flush_tlb_func_common``: ``local_tlb_gen == mm_tlb_gen``).  One IPI
  target: ``send_call_function_single_ipi`` (unicast); several:
  ``arch_send_call_function_ipi_mask``.
- wait=1: the sender spins at CPL 0 (``csd_lock_wait``, PAUSE: PLE exits and
  ``kvm_vcpu_on_spin`` in model.spin) until every target ran the handler.
- With ``pv_sched_yield`` (``kvm_smp_send_call_func_ipi``, f85f6e7bd1d2),
  which hooks the mask send only, the sender then yields to the first
  IPI'd target whose preempted bit is set; guests from 5.17 skip idle ones.

Shootdowns from many senders run concurrently: each has its own
:class:`CallFunctionMany`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import apic, guest, spin
from model.vcpu import SPIN, Frame, Irq, Task, Vcpu

if TYPE_CHECKING:
    from model.host import Host


class CallFunctionMany:
    """One synchronous call-function-many in flight: acknowledgements still due."""

    __slots__ = ("frame", "pending", "task")

    def __init__(self, pending: int, task: Task) -> None:
        self.pending = pending
        self.frame: Frame | None = None
        self.task = task


def flush_targets(h: Host, v: Vcpu, freed_tables: bool) -> tuple[list[Vcpu], list[Vcpu], int]:
    """(IPI-or-queue targets, PV-deferred targets, lazy CPUs skipped) of a flush from ``v``."""
    pv = h.sc.features.pv_tlb_flush
    targets: list[Vcpu] = []
    deferred: list[Vcpu] = []
    lazy = 0
    for t in v.vm.vcpus:
        if t is v:
            continue
        if pv and t.steal_preempted:  # kvm_flush_tlb_others: KVM_VCPU_PREEMPTED -> KVM_VCPU_FLUSH_TLB
            deferred.append(t)
            continue
        if not freed_tables and t.gcurr is None:  # tlb_is_not_lazy() is false: an idle CPU
            lazy += 1
            continue
        targets.append(t)
    return targets, deferred, lazy


def flush_tlb_others(h: Host, task: Task, mm, freed_tables: bool) -> None:
    """A ``call`` op: flush the mm's other CPUs; the task goes on when all acknowledged."""
    v = task.vcpu
    targets, deferred, lazy = flush_targets(h, v, freed_tables)
    for t in deferred:
        t.tlb_flush_pending = True
    h.stats.count(v, "tlb_shootdowns")
    if deferred:
        h.stats.count(v, "tlb_flushes_deferred", len(deferred))
    if lazy:
        h.stats.count(v, "tlb_lazy_skipped", lazy)
    if not targets:
        guest.advance(h, task)
        return
    call = CallFunctionMany(len(targets), task)
    ipi: list[Vcpu] = []
    for t in targets:
        queue = mm.call_single_queue[t.index]
        if not queue:  # llist_add() onto an empty call_single_queue: this target needs the IPI
            ipi.append(t)
        queue.append(call)
    call.frame = Frame(SPIN, kernel=True, spin_kind="csfm")
    v.frames.append(call.frame)
    if not ipi:
        return  # every target already has an IPI on its way: spin in csd_lock_wait
    cost = h.prof.guest_irq_ns + h.prof.tlb_flush_ns
    irqs = [Irq("flush", cost, lambda t=t: _handled(h, mm, t)) for t in ipi]
    if len(ipi) == 1:
        apic.send(h, v, ipi, irqs, None, multicast=False)  # send_call_function_single_ipi
    else:
        apic.send(h, v, ipi, irqs, lambda: _after_send(h, v, call, ipi), multicast=True)


def _after_send(h: Host, v: Vcpu, call: CallFunctionMany, ipi: list[Vcpu]) -> None:
    """kvm_smp_send_call_func_ipi: after the mask send, yield to the first preempted target."""
    if call.pending == 0 or not h.sc.features.pv_sched_yield:
        return
    skip_idle = h.sc.features.pv_sched_yield_skip_idle
    for t in ipi:
        if t.steal_preempted and not (skip_idle and t.gcurr is None):
            spin.sched_yield_hypercall(h, v, t, None)
            return


def _handled(h: Host, mm, t: Vcpu) -> None:
    """flush_smp_call_function_queue on ``t``: every csd queued there completes."""
    queue = mm.call_single_queue[t.index]
    calls = queue[:]
    queue.clear()
    for call in calls:
        _acked(h, call)


def _acked(h: Host, call: CallFunctionMany) -> None:
    call.pending -= 1
    if call.pending == 0:
        task = call.task
        guest.release_spin(h, task.vcpu, call.frame, lambda: guest.advance(h, task))
