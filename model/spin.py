"""Spinning at CPL 0, PLE / pause filter, and directed yield (the boost mechanisms).

A SPIN frame is guest code in a PAUSE loop (waiting for IPI acknowledgements,
queued-spinlock spinning, rwsem optimistic spinning).  A queued-spinlock loop
decides for itself when it takes the lock or halts (``locks.qspin_spinning``);
the loop's next stop is whichever comes first of that and the PLE exit.  With ``ple`` on, after
the PLE window of continuous spinning it takes a PAUSE exit (Intel: window in
cycles, x2 per exit, reset on sched-in; AMD: pause filter count in PAUSEs) and
KVM runs :func:`on_spin`, which is ``kvm_vcpu_on_spin()`` of
virt/kvm/kvm_main.c.  With ``boost_ready`` off the pre-5.4 candidate rule
(``preempted``) replaces d73eb57b80b9's ``ready``; ``boost_user_irq`` is
52acd22faa1a (5.13): a vCPU preempted in user mode is a candidate if it has a
posted interrupt pending.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from model import apic, guest, kvm, locks, scheduler
from model.vcpu import GUEST, HALTED, Frame, Vcpu

if TYPE_CHECKING:
    from model.host import Host

ON_SPIN_PASSES = 2  # kvm_vcpu_on_spin: two passes round-robin from last_boosted_vcpu
ON_SPIN_ESRCH_TRIES = 3  # kvm_vcpu_on_spin: "int try = 3"


def reset_window(h: Host, v: Vcpu) -> None:
    """shrink_ple_window on sched-in: ple_window_shrink = 0 resets to the base."""
    prof = h.prof
    v.ple_window = prof.ple_window_cycles if prof.vendor == "intel" else prof.pause_filter_count


def _grow_window(h: Host, v: Vcpu) -> None:
    prof = h.prof
    if prof.vendor == "intel":
        v.ple_window = min(v.ple_window * prof.ple_window_grow, prof.ple_window_max_cycles)
    else:
        v.ple_window = min(v.ple_window * prof.ple_window_grow, prof.pause_filter_count_max)


def window_ns(h: Host, v: Vcpu) -> int:
    prof = h.prof
    if v.ple_window <= 0:
        reset_window(h, v)
    if prof.vendor == "intel":
        return max(1, int(v.ple_window / prof.tsc_ghz))
    return max(1, int(v.ple_window * prof.pause_cycles / prof.tsc_ghz))


def spinning(h: Host, v: Vcpu, f: Frame) -> None:
    """A SPIN frame starts (or resumes) executing on ``v``: a fresh PLE window opens.

    The PLE counter restarts at every VM entry, so each stretch of guest
    spinning gets the whole window (``ple_window``, grown per exit)."""
    f.ple_at = h.engine.now + window_ns(h, v) if h.sc.features.ple and f.kernel else -1
    _arm(h, v, f)


def respin(h: Host, v: Vcpu, f: Frame) -> None:
    """What the executing loop ``f`` polls changed: it re-decides now, in the same PLE window."""
    guest.pause(h, v)
    v.seg_start = h.engine.now
    _arm(h, v, f)


def _arm(h: Host, v: Vcpu, f: Frame) -> None:
    """Schedule the loop's next stop: the PLE exit or its own decision point, whichever first."""
    if f.spin_kind == "qspin":
        stop = locks.qspin_spinning(h, v, f)
        if stop is None:
            return  # took the lock, or halted in pv_wait
    else:
        stop = f.budget
    now = h.engine.now
    if f.ple_at >= 0 and f.ple_at - now < stop:
        if v.ple_timer is None:  # a re-armable timer: most PLE exits are cancelled before they fire
            v.ple_timer = h.engine.timer(_ple_exit, h, v)
        v.ple_timer.arm(max(f.ple_at, now + 1))
        v.seg_event = v.ple_timer
        return
    if stop != math.inf:
        v.seg_event = h.engine.after(max(1, math.ceil(stop)), _stop, h, v, f)


def _stop(h: Host, v: Vcpu, f: Frame) -> None:
    """The loop reached a decision point (PV spinlock threshold or check, rwsem reader spin)."""
    v.seg_event = None
    guest.pause(h, v)
    if f.spin_kind == "qspin":
        v.seg_start = h.engine.now
        _arm(h, v, f)
        return
    locks.spin_budget_spent(h, v, f)
    if v.state == GUEST and v.seg_start < 0:
        guest.resume(h, v)


def _ple_exit(h: Host, v: Vcpu) -> None:
    """The PLE window ran out: PAUSE exit, then kvm_vcpu_on_spin()."""
    v.seg_event = None
    _grow_window(h, v)
    h.stats.ple_exit(v)
    kvm.simple_exit(h, v, "PAUSE", h.prof.exit_pause_ns)
    if on_spin(h, v, yield_to_kernel_mode=True):
        v.pcpu.need_resched = True  # yield_to() then schedule() on the spinner's pCPU


def on_spin(h: Host, me: Vcpu, yield_to_kernel_mode: bool) -> bool:
    """kvm_vcpu_on_spin(): boost one candidate vCPU of the VM; True if we yielded."""
    feat = h.sc.features
    vm = me.vm
    me.in_spin_loop = True
    last = vm.last_boosted
    tries = ON_SPIN_ESRCH_TRIES
    yielded = False
    vcpus = vm.vcpus
    for pass_ in range(ON_SPIN_PASSES):
        if yielded or not tries:
            break
        for i, cand in enumerate(vcpus):
            if pass_ == 0 and i <= last:
                continue
            if pass_ == 1 and i > last:
                break
            if not (cand.ready if feat.boost_ready else cand.preempted):
                continue
            if cand is me:
                continue
            if cand.state == HALTED and not (cand.pv_unhalted or cand.irr):
                continue  # rcuwait_active && !vcpu_dy_runnable
            user_mode = cand.preempted and yield_to_kernel_mode and not cand.preempted_in_kernel
            if user_mode and not (feat.boost_user_irq and apic.posted(h) and cand.irr):
                continue  # preempted in user mode, no pending interrupt to deliver
            if not _eligible_for_directed_yield(cand):
                continue
            outcome = directed_yield(h, me, cand)
            if outcome == scheduler.YIELDED:
                vm.last_boosted = i
                yielded = True
                break
            if outcome == scheduler.ESRCH:
                tries -= 1
                if not tries:
                    break
    me.in_spin_loop = False
    me.dy_eligible = False
    return yielded


def _eligible_for_directed_yield(v: Vcpu) -> bool:
    """kvm_vcpu_eligible_for_directed_yield(): spinners only every other time."""
    eligible = not v.in_spin_loop or v.dy_eligible
    if v.in_spin_loop:
        v.dy_eligible = not v.dy_eligible
    return eligible


def directed_yield(h: Host, me: Vcpu, target: Vcpu) -> str:
    """kvm_vcpu_yield_to(): yield_to() with the counters the metrics report."""
    outcome = scheduler.yield_to(h, me, target)
    h.stats.directed_yield(me, outcome)
    return outcome


def sched_yield_hypercall(h: Host, me: Vcpu, target: Vcpu, cont) -> None:
    """KVM_HC_SCHED_YIELD (f85f6e7bd1d2): a VMCALL exit, then ``kvm_sched_yield()``."""
    h.stats.pv_sched_yield(me)
    kvm.simple_exit(h, me, "VMCALL", h.prof.exit_vmcall_ns, "SCHED_YIELD", cont)
    _kvm_sched_yield(h, me, target)


def kick_cpu_hypercall(h: Host, me: Vcpu, target: Vcpu, cont) -> None:
    """KVM_HC_KICK_CPU from the unlocker (kvm_kick_cpu): a VMCALL exit, then
    ``kvm_pv_kick_cpu_op()`` -- an APIC_DM_REMRD message, which
    ``__apic_accept_irq()`` turns into ``pv_unhalted = 1`` + ``kvm_vcpu_kick()``
    (waking a halted target sets ``ready``) -- and, with ``boost_queue_head``
    (266e85a5ec91, 5.4: "Boost queue head vCPU to mitigate lock waiter
    preemption"), ``kvm_sched_yield(vcpu->kvm, a1)``: the unlocker's pCPU is
    yielded to the kicked vCPU if it is ``ready``."""
    h.stats.kick(me)
    kvm.simple_exit(h, me, "VMCALL", h.prof.exit_vmcall_ns, "KICK_CPU", cont)
    target.pv_unhalted = True
    if target.state == GUEST:
        # kvm_vcpu_kick() on a vCPU in guest mode (kvm_arch_vcpu_should_kick):
        # smp_send_reschedule() to its pCPU, an exit ("harmless other than the
        # additional latency", __pv_queued_spin_unlock_slowpath)
        kvm.simple_exit(h, target, "EXTERNAL_INTERRUPT", h.prof.exit_external_interrupt_ns)
    else:
        kvm.kick(h, target)
    if h.sc.features.boost_queue_head and _kvm_sched_yield(h, me, target):
        h.stats.queue_head_boost(me)


def _kvm_sched_yield(h: Host, me: Vcpu, target: Vcpu) -> bool:
    """kvm_sched_yield() (arch/x86/kvm/x86.c): ``kvm_vcpu_yield_to(target)``.

    266e85a5ec91 added ``READ_ONCE(target->ready)`` to the condition (hosts
    before it, ``boost_queue_head`` off, yield to any target); the kernel
    ignores a yield to oneself.  72b268a8e930 (host 5.13,
    ``sched_yield_undercommit_bail``) bails out first when
    ``single_task_running()``: the caller's pCPU runqueue holds only the
    caller, so the host is taken to be under-committed.  True when the caller
    yielded its pCPU."""
    feat = h.sc.features
    if feat.sched_yield_undercommit_bail and me.pcpu.nr_running == 1:
        h.stats.sched_yield_undercommit_bail(me)
        return False
    if target is me or (feat.boost_queue_head and not target.ready):
        return False
    if directed_yield(h, me, target) != scheduler.YIELDED:
        return False
    me.pcpu.need_resched = True
    return True
