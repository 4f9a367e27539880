"""KVM's vCPU run loop: exits, re-entry, HLT, halt-polling, kicks and sched in/out.

An exit is a *chain* of phases that holds the pCPU: usually one exit, but a
guest tick is (timer exit, guest handler, TSC-deadline write exit) back to
back, processed as one event.  After a chain the vCPU re-enters the guest,
unless it asked to halt or its pCPU must reschedule (vcpu_enter_guest's
request checks).  Flags follow the kernel: kvm_sched_out() sets
``preempted``/``ready`` when the thread is still runnable; kvm_vcpu_wake_up()
sets ``ready``; kvm_sched_in() clears both; the steal-time preempted bit is
set on every vcpu_put (kvm_steal_time_set_preempted) and cleared on entry
(record_steal_time).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from model import guest, scheduler, spin, timer
from model.host import EXIT as M_EXIT
from model.host import GUEST as M_GUEST
from model.host import POLL as M_POLL
from model.host import Host, PcpuMode
from model.vcpu import ACCT_HALTED, ACCT_RUN, ACCT_RUNNABLE, EXIT, GUEST, HALTED, POLL, RUNNABLE, Vcpu

# Dynamic halt-polling (virt/kvm/kvm_main.c, Documentation/virt/kvm/halt-polling.rst)
HALT_POLL_NS_START = 10_000  # halt_poll_ns_grow_start
HALT_POLL_NS_GROW = 2  # halt_poll_ns_grow
HALT_POLL_NS_SHRINK = 0  # halt_poll_ns_shrink: 0 resets the window to 0


def exit_cost(h: Host, v: Vcpu, mean_ns: float) -> int:
    """One exit's cost: the profile's mean with a mean-1 lognormal spread."""
    sigma = h.prof.exit_cost_jitter
    if sigma <= 0:
        return max(1, int(mean_ns))
    z = v.rng.standard_normal()
    return max(1, int(mean_ns * math.exp(sigma * z - 0.5 * sigma * sigma)))


@dataclass(slots=True)
class Action:
    """``fn(*args)``, run ``fraction`` of the way into its phase (an IPI leaving mid-exit)."""

    fraction: float
    fn: Callable[..., Any]
    args: tuple[Any, ...]


@dataclass(slots=True)
class Phase:
    """One phase of an exit chain: ``mean_ns`` with the pCPU in ``mode``.

    ``reason``/``detail`` name the exit as ``perf kvm stat`` would; ``reason``
    None marks a phase that is not an exit to record (a guest handler inside a
    chain, or an exit whose exact cost its caller recorded).  ``actions`` run
    part-way through it."""

    mode: PcpuMode
    mean_ns: float
    reason: str | None
    detail: str = ""
    actions: list[Action] | None = None


def exit_chain(h: Host, v: Vcpu, phases: tuple[Phase, ...], cont=None) -> None:
    """Leave the guest for ``phases``; ``cont`` runs when the vCPU is back in the guest.

    A vCPU already in an exit queues the chain behind the current one: one
    guest op can exit several times in a row (a lock release waking several
    sleepers).
    """
    if cont is not None:
        v.conts.append(cont)
    if v.state == EXIT:
        v.queued_exits.append(phases)
        return
    if v.state != GUEST:
        raise RuntimeError(f"exit requested by {v!r}, which is not running guest code")
    guest.pause(h, v)
    v.state = EXIT
    _start_chain(h, v, phases)


def _start_chain(h: Host, v: Vcpu, phases: tuple[Phase, ...]) -> None:
    now = h.engine.now
    booked = []
    total = 0
    for phase in phases:
        reason = phase.reason
        ns = exit_cost(h, v, phase.mean_ns) if reason is not None else int(phase.mean_ns)
        if reason is not None:
            h.stats.record_exit(v, reason, phase.detail, ns)
        for action in phase.actions or ():
            h.engine.at(now + total + int(ns * action.fraction), action.fn, *action.args)
        booked.append((phase.mode, ns))
        total += ns
    v.pcpu.start_chain(tuple(booked), now)
    v.exit_event = h.engine.after(total, _chain_done, h, v)


def simple_exit(h: Host, v: Vcpu, reason: str, mean_ns: float, detail: str = "", cont=None) -> None:
    exit_chain(h, v, (Phase(M_EXIT, mean_ns, reason, detail),), cont)


def _chain_done(h: Host, v: Vcpu) -> None:
    v.exit_event = None
    if v.queued_exits:
        _start_chain(h, v, v.queued_exits.popleft())
        return
    reenter(h, v)


def reenter(h: Host, v: Vcpu) -> None:
    """End of an exit: halt, reschedule, or enter the guest (vcpu_enter_guest checks)."""
    p = v.pcpu
    if v.halt_requested:
        v.halt_requested = False
        halt(h, v)
    elif p.need_resched:
        preempt_out(h, v)
    else:
        wait = timer.entry_wait(h, v)  # kvm_wait_lapic_expire in vmx_vcpu_run / svm_vcpu_run
        if wait > 0:
            p.set_mode(M_EXIT, h.engine.now)
            v.exit_event = h.engine.after(wait, _entry_wait_done, h, v)
        else:
            enter_guest(h, v)


def _entry_wait_done(h: Host, v: Vcpu) -> None:
    """The busy-wait ran with host interrupts off, after vcpu_enter_guest's request checks: a
    reschedule that came meanwhile interrupts the guest as soon as it is entered."""
    v.exit_event = None
    if v.queued_exits:
        _start_chain(h, v, v.queued_exits.popleft())
        return
    enter_guest(h, v)
    if v.state == GUEST and v.pcpu.need_resched:
        on_resched(h, v)


def enter_guest(h: Host, v: Vcpu) -> None:
    v.state = GUEST
    v.pcpu.set_mode(M_GUEST, h.engine.now)
    if v.tlb_flush_pending:  # PV TLB flush: KVM_VCPU_FLUSH_TLB honoured on entry
        v.tlb_flush_pending = False
    conts = v.conts
    while conts and v.state == GUEST:
        conts.popleft()()
    if v.state == GUEST and v.seg_start < 0:
        guest.resume(h, v)


# -- host side: preemption, scheduling in and out ------------------------------


def on_resched(h: Host, v: Vcpu) -> None:
    """The scheduler wants ``v``'s pCPU: make the running vCPU leave at its next chance."""
    if v.state == GUEST:
        # the reschedule IPI / tick interrupts the guest: EXTERNAL_INTERRUPT exit
        simple_exit(h, v, "EXTERNAL_INTERRUPT", h.prof.exit_external_interrupt_ns)
    elif v.state == POLL:
        _stop_poll(h, v)  # kvm_vcpu_block polls only while single_task_running()
        block(h, v)
    # EXIT: reenter() sees need_resched


def preempt_out(h: Host, v: Vcpu) -> None:
    """Involuntary schedule-out of a runnable vCPU (kvm_sched_out with TASK_RUNNING).

    When __schedule() picks the same task again (nothing else queued, or
    nothing better: slice end, a yield whose skip buddy is still the best)
    there is no switch and no preempt notifier, so no flag changes and the
    vCPU re-enters at once (scheduler.picks_again)."""
    p = v.pcpu
    if scheduler.picks_again(h, p, v):
        scheduler.keep_running(h, p, v)
        enter_guest(h, v)
        return
    scheduler.leave(h, p, v, runnable=True)  # sched_out(h, v, runnable=True) first


def register(h: Host) -> None:
    """What ``preempt_notifier_register(&vcpu->preempt_notifier)`` in vcpu_load() hooks up
    (kvm_preempt_ops: kvm_sched_in / kvm_sched_out), and the host scheduler's other
    calls into KVM: the reschedule of a pCPU running a vCPU, an SMT sibling's change."""
    hooks = h.hooks
    hooks.sched_in = sched_in
    hooks.sched_out = sched_out
    hooks.resched_curr = on_resched
    hooks.smt_speed_changed = speed_changed


def sched_out(h: Host, v: Vcpu, runnable: bool) -> None:
    """kvm_sched_out() + kvm_arch_vcpu_put() as the host switches ``v``'s thread out.

    Still runnable (``current->on_rq``: preempted): ``preempted`` and
    ``ready``, ``preempted_in_kernel`` (the CPL when preempted), the steal-time
    preempted bit; the guest's ``vcpu_is_preempted()`` pollers see it at once
    (``hooks.vcpu_preempted``).  Blocked in kvm_vcpu_block(): only the
    steal-time bit, on hosts that set it on every vcpu_put
    (``vm.steal_preempted_on_halt``)."""
    if runnable:
        h.hooks.vcpu_preempted(h, v)
        v.state = RUNNABLE
        v.preempted = True
        v.ready = True
        v.preempted_in_kernel = guest.in_kernel(v)
        v.steal_preempted = True
        v.account(ACCT_RUNNABLE, h.engine.now)
    elif h.sc.vm.steal_preempted_on_halt:
        v.steal_preempted = True


def sched_in(h: Host, v: Vcpu) -> None:
    """kvm_sched_in + vcpu_load after the context switch: clear flags, reset PLE."""
    v.exit_event = None
    v.preempted = False
    v.ready = False
    v.steal_preempted = False
    v.account(ACCT_RUN, h.engine.now)
    spin.reset_window(h, v)  # ple_window shrinks back on sched-in (shrink_ple_window)
    if v.state == EXIT:
        reenter(h, v)


def speed_changed(h: Host, v: Vcpu) -> None:
    """The SMT sibling went busy or idle: re-time the guest work in progress."""
    if v.state == GUEST and v.seg_start >= 0:
        guest.pause(h, v)
        guest.resume(h, v)


# -- HLT and halt-polling -------------------------------------------------------


def hlt(h: Host, v: Vcpu) -> None:
    """The guest's idle loop executes HLT: an exit, then kvm_vcpu_halt()."""
    v.halt_requested = True
    simple_exit(h, v, "HLT", h.prof.exit_hlt_ns)


def runnable_in_halt(v: Vcpu) -> bool:
    """kvm_arch_vcpu_runnable(): a PV unhalt, or an interrupt the guest accepts, is pending.

    kvm_vcpu_has_events() counts a pending interrupt only if
    kvm_arch_interrupt_allowed() (RFLAGS.IF): a vCPU halted with IF = 0
    (kvm_wait() under spin_lock_irqsave) stays halted until KICK_CPU."""
    return (bool(v.irr) and not v.irqs_off) or v.pv_unhalted


def host_polls(h: Host) -> bool:
    """Does kvm_vcpu_block() halt-poll at all for this VM?

    Not with halt_poll_ns = 0, nor when the guest wrote MSR_KVM_POLL_CONTROL = 0
    (kvm_arch_no_poll(): cpuidle-haltpoll's arch_haltpoll_enable, loaded by
    kvm-hint-dedicated; resolved as ``vm.poll_control``)."""
    return h.sc.vm.halt_poll_ns > 0 and not h.sc.vm.poll_control


def halt(h: Host, v: Vcpu) -> None:
    if runnable_in_halt(v):
        v.pv_unhalted = False  # vcpu_block(): leaving KVM_MP_STATE_HALTED clears it
        enter_guest(h, v)
        return
    now = h.engine.now
    v.halt_start = now
    v.account(ACCT_HALTED, now)
    if host_polls(h) and v.halt_poll_ns > 0 and v.pcpu.nr_running == 1:
        v.state = POLL
        v.pcpu.set_mode(M_POLL, now)
        v.exit_event = h.engine.after(v.halt_poll_ns, _poll_expired, h, v)
        return
    block(h, v)


def _poll_expired(h: Host, v: Vcpu) -> None:
    v.exit_event = None
    _stop_poll(h, v)
    block(h, v)


def _stop_poll(h: Host, v: Vcpu) -> None:
    h.engine.cancel(v.exit_event)
    v.exit_event = None
    v.polls += 1


def block(h: Host, v: Vcpu) -> None:
    """The thread sleeps until kicked (kvm_vcpu_block's schedule())."""
    v.state = HALTED
    scheduler.leave(h, v.pcpu, v, runnable=False)  # sched_out(h, v, runnable=False) first


def kick(h: Host, v: Vcpu) -> None:
    """kvm_vcpu_kick(): wake a halted vCPU, or end its halt-poll."""
    if v.state in (POLL, HALTED):
        v.pv_unhalted = False  # vcpu_block(): the halt is over
    if v.state == POLL:
        # a successful poll: back into the guest without a context switch,
        # paying only the VM entry (the pCPU books it as polling)
        _stop_poll(h, v)
        v.polls_ok += 1
        _adjust_poll_window(h, v)
        v.account(ACCT_RUN, h.engine.now)
        v.state = EXIT
        v.exit_event = h.engine.after(int(h.prof.vcpu_entry_ns), _chain_done, h, v)
    elif v.state == HALTED:
        _adjust_poll_window(h, v)
        v.ready = True  # kvm_vcpu_wake_up()
        scheduler.wake(h, v, waker=None)


def _adjust_poll_window(h: Host, v: Vcpu) -> None:
    """grow_halt_poll_ns / shrink_halt_poll_ns at the end of kvm_vcpu_block()."""
    limit = h.sc.vm.halt_poll_ns
    if not host_polls(h):
        return
    block_ns = h.engine.now - v.halt_start
    cur = v.halt_poll_ns
    if cur and block_ns <= cur:
        return
    if block_ns > limit:
        v.halt_poll_ns = cur // HALT_POLL_NS_SHRINK if HALT_POLL_NS_SHRINK else 0
    elif cur < limit:
        v.halt_poll_ns = min(limit, max(HALT_POLL_NS_START, cur * HALT_POLL_NS_GROW))


def put_irq(h: Host, v: Vcpu, irq) -> None:
    """An interrupt reaches ``v``'s IRR: take it now, wait for entry, or wake the vCPU."""
    v.irr.append(irq)
    if v.state == GUEST:
        guest.take_pending(h, v)
    elif v.state in (HALTED, POLL) and runnable_in_halt(v):
        # with IF = 0 kvm_vcpu_check_block() sends the woken thread back to
        # sleep (poll: keeps polling); the spurious wake-up is not modelled
        kick(h, v)
    # EXIT / RUNNABLE: injected on the next entry
