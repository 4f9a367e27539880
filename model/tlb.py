"""Synchronous call-function-many and the TLB shootdown built on it.

``flush_tlb_mm_range`` -> ``flush_tlb_multi`` -> ``smp_call_function_many``:
the sender IPIs every other CPU in the mm's cpumask and spins at CPL 0 until
each one ran the flush handler (csd_lock_wait).  CPUs in lazy-TLB mode (idle
ones) are skipped unless page tables are freed (x86/mm "only send IPIs to CPUs
in lazy mode when freeing page tables", 4.19); a heap trim frees them, so
``freed_tables`` shootdowns reach idle, halted vCPUs too.

With ``pv_tlb_flush`` (kvm_flush_tlb_multi, 858a43aae236) a target whose
steal-time *preempted* bit is set is not sent an IPI: KVM_VCPU_FLUSH_TLB is
set in its steal-time record and it flushes on its next entry; the sender
does not wait for it.  With ``pv_sched_yield`` (kvm_smp_send_call_func_ipi,
f85f6e7bd1d2) the sender, after sending, yields to the first target whose
preempted bit is set; guests from 5.17 skip idle targets.
"""

from __future__ import annotations

from model import apic, guest, spin
from model.vcpu import SPIN, Frame, Irq, Task, Vcpu


class CallFunctionMany:
    """One synchronous call-function-many in flight: acknowledgements still due."""

    __slots__ = ("frame", "pending", "task")

    def __init__(self, pending: int, task: Task) -> None:
        self.pending = pending
        self.frame: Frame | None = None
        self.task = task


def shootdown(h, task: Task, handler_ns: float, freed_tables: bool) -> None:
    """A ``call`` op: flush the TLBs of the mm's other CPUs; the task goes on when done."""
    v = task.vcpu
    feat = h.sc.features
    targets: list[Vcpu] = []
    deferred = 0
    for t in v.vm.vcpus:
        if t is v or (t.gcurr is None and not freed_tables):
            continue  # ourselves, or lazy-TLB (idle) when no page table is freed
        if feat.pv_tlb_flush and t.steal_preempted:
            t.tlb_flush_pending = True
            deferred += 1
            continue
        targets.append(t)
    if deferred:
        h.stats.count(v, "tlb_flushes_deferred", deferred)
    h.stats.count(v, "tlb_shootdowns")
    if not targets:
        guest.advance(h, task)
        return
    call = CallFunctionMany(len(targets), task)
    cost = h.prof.guest_irq_ns + handler_ns
    irqs = [Irq("flush", cost, lambda: _acked(h, call)) for _ in targets]
    call.frame = Frame(SPIN, kernel=True, spin_kind="csfm")
    v.frames.append(call.frame)
    apic.send(h, v, targets, irqs, lambda: _after_send(h, v, call, targets), multicast=True)


def _after_send(h, v: Vcpu, call: CallFunctionMany, targets: list[Vcpu]) -> None:
    """Back from the sends: maybe the PV sched yield, then spin (csd_lock_wait)."""
    if call.pending == 0 or not h.sc.features.pv_sched_yield:
        return
    skip_idle = h.sc.features.pv_sched_yield_skip_idle
    for t in targets:
        if t.steal_preempted and not (skip_idle and t.gcurr is None):
            spin.sched_yield_hypercall(h, v, t, None)
            return


def _acked(h, call: CallFunctionMany) -> None:
    call.pending -= 1
    if call.pending == 0:
        task = call.task
        guest.release_spin(h, task.vcpu, call.frame, lambda: guest.advance(h, task))
