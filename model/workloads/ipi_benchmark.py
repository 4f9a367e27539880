"""The ``ipi_benchmark`` kernel module (Yury Norov, lkml 2017/12/19/141), used by 4180bf1b655a.

vCPU 0 issues call-function IPIs back to back, each with wait=1, and times
them with ``ktime_get()``:

- ``unicast`` ("Normal IPI"): ``smp_call_function_single(cpu, handle_ipi, &t, 1)``
  to ``cpumask_any_but(cpu_online_mask, self)`` = vCPU 1.  The handler stores
  the one-way time (``ipi_benchmark_oneway_ns``); the call returns when the
  target released the csd (``ipi_benchmark_op_ns``).
- ``broadcast`` ("Broadcast IPI"): ``smp_call_function_many(cpu_online_mask,
  handle_ipi, NULL, 1)``: every other vCPU.
- ``multicast``: ``smp_call_function_many`` to vCPUs 1..``targets`` (one
  target is ``smp_call_function_single``, as ``smp_call_function_many_cond``
  does).

The module prints the sum over NTIMES = 100000 calls; ``*_total_ns`` is the
mean per call times ``ops`` so the published totals compare directly.

The guest path, as in kernel/smp.c (5.x):

1. ``csd_lock`` + ``llist_add`` of a csd on each target's ``call_single_queue``:
   one cache line of the target per destination (``csd_per_target_ns``);
   only a target whose queue was empty needs an IPI (always here: one call at
   a time).
2. The IPI: ``send_call_function_single_ipi`` (unicast) -- from guest 5.8
   (b2a02fc43a1f, feature ``call_single_if_polling``) ``set_nr_if_polling``:
   a target whose idle loop polls (TIF_POLLING_NRFLAG: ``idle: poll``, the
   poll phase of cpuidle-haltpoll) gets no IPI; it leaves the poll loop and
   runs the queue (``flush_smp_call_function_from_idle``).  A mask goes
   through ``arch_send_call_function_ipi_mask`` (no polling check in 5.x),
   i.e. :func:`model.apic.send` with its shorthand and PV rules.
3. wait=1: ``csd_lock_wait`` spins at CPL 0 (PAUSE: PLE exits and
   ``kvm_vcpu_on_spin`` apply) until every target ran the handler and
   unlocked its csd; the sender sees each unlock one cache line later.

What a target costs is whatever its state makes it cost
(:func:`model.apic.deliver`): an interrupt in the guest, an
EXTERNAL_INTERRUPT exit without posted interrupts, a halt-poll ending, or a
host wake-up, context switch and VM entry for a blocked vCPU -- no shortcut.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import apic, guest, kvm
from model.ops import Call, Run
from model.vcpu import IDLE, SPIN, Frame, Irq, Task, Vcpu

if TYPE_CHECKING:
    from model.host import Host


class _Call:
    """One smp_call_function_* in flight: acknowledgements still due."""

    __slots__ = ("frame", "pending", "t0", "task")

    def __init__(self, task: Task, pending: int, t0: int) -> None:
        self.task = task
        self.pending = pending
        self.t0 = t0
        self.frame = Frame(SPIN, kernel=True, spin_kind="csfm")


def build(h: Host, vm, knobs, rng) -> None:
    sender = vm.vcpus[0]
    others = vm.vcpus[1:]
    if knobs.mode == "unicast":
        targets = others[:1]
    elif knobs.mode == "multicast":
        targets = others[: knobs.targets]
    else:
        targets = others
    task = Task("ipi_benchmark", None, sender)
    task.gen = _loop(h, task, targets)
    guest.start_task(h, task)


def _loop(h: Host, task: Task, targets: list[Vcpu]):
    v = task.vcpu
    while True:
        t0 = h.engine.now
        yield Run(h.prof.csd_per_target_ns * len(targets), True)  # csd_lock + llist_add per target
        yield Call(_send_and_wait, targets, t0)
        h.stats.sample(v, "ipi_benchmark_ops", h.engine.now - t0)


def _send_and_wait(h: Host, task: Task, targets: list[Vcpu], t0: int) -> None:
    v = task.vcpu
    call = _Call(task, len(targets), t0)
    single = len(targets) == 1
    ipi_to: list[Vcpu] = []
    for t in targets:
        if single and h.sc.features.call_single_if_polling and _polling(t):
            # set_nr_if_polling(): no IPI; the poll loop sees TIF_NEED_RESCHED one line later
            h.stats.count(v, "ipi_benchmark_no_ipi_polling")
            work = Irq("csd", h.prof.guest_irq_ns, lambda t=t: _handled(h, call, t))
            h.engine.after(int(h.prof.csd_per_target_ns), kvm.put_irq, h, t, work)
        else:
            ipi_to.append(t)
    v.frames.append(call.frame)
    if ipi_to:
        irqs = [Irq("call", h.prof.guest_irq_ns, lambda t=t: _handled(h, call, t)) for t in ipi_to]
        apic.send(h, v, ipi_to, irqs, None, multicast=not single)


def _polling(t: Vcpu) -> bool:
    """The target's idle task has TIF_POLLING_NRFLAG set (guest idle=poll, haltpoll's poll state)."""
    return t.polling and t.gcurr is None and bool(t.frames) and t.frames[-1].kind == IDLE


def _handled(h: Host, call: _Call, t: Vcpu) -> None:
    """handle_ipi ran on ``t`` and csd_unlock released the csd."""
    h.stats.sample(call.task.vcpu, "ipi_benchmark_oneway", h.engine.now - call.t0)
    h.engine.after(int(h.prof.csd_per_target_ns), _acked, h, call)


def _acked(h: Host, call: _Call) -> None:
    """csd_lock_wait on the sender sees one more csd unlocked."""
    call.pending -= 1
    if call.pending == 0:
        task = call.task
        guest.release_spin(h, task.vcpu, call.frame, lambda: guest.advance(h, task))
