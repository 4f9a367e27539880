"""TSC-deadline timers: arming, expiry, the timer fastpath, and the guest tick.

Arming is a write of MSR 0x6e0.  With ``timer_fastpath`` on Intel, where the
VMX preemption timer is usable, KVM arms the hardware timer and re-enters at
once (26efe2fd92e5, handle_fastpath_set_tscdeadline); AMD has no hardware
timer hook and always takes the slow path with a host hrtimer.

Expiry by the vCPU's state:
- in the guest, Intel: a PREEMPTION_TIMER exit; the fastpath injects and
  re-enters directly (handle_fastpath_preemption_timer) unless the vCPU must
  reschedule; AMD: the host hrtimer interrupts the guest (EXTERNAL_INTERRUPT);
- halted: the host hrtimer wakes the thread (kvm_lapic_switch_to_sw_timer on
  block), polling: the poll ends;
- in an exit or runnable: pending until the next entry.

The guest tick is a TSC-deadline timer every 1/HZ that stops when the vCPU
goes idle (NOHZ); its handler re-arms with another MSR 0x6e0 write, so a tick
in the guest is one chain: expiry exit, handler, arming exit.

Re-entering from the fastpath (vmx_vcpu_run, 5.8: ``EXIT_FASTPATH_REENTER_GUEST``
re-enters only if ``!kvm_vcpu_exit_request()``, else the exit completes as
``EXIT_FASTPATH_EXIT_HANDLED``).  An expiry handled in the fastpath
(apic_timer_expired with ``from_timer_fn`` false) injects the interrupt
directly only with APICv; without it, it raises KVM_REQ_PENDING_TIMER, a
pending request, so it never re-enters.  An exit that completes pays the way
out of vcpu_enter_guest and back that the re-entry skips
(``fastpath_exit_handled_extra_ns``).
"""

from __future__ import annotations

from collections.abc import Callable

from model import guest, kvm
from model.host import EXIT as M_EXIT
from model.host import GUEST as M_GUEST
from model.vcpu import GUEST, HALTED, Irq, Vcpu

TICK_WORK_NS = 1_500  # assumed: scheduler_tick + hrtimer bookkeeping in the guest per tick


def hw_timer(h) -> bool:
    """kvm_can_use_hv_timer(): the VMX preemption timer (Intel), unless MWAIT is passed through.

    Resolved in the scenario as ``vm.hv_timer`` (model.kernels: Intel with a
    preemption timer and not ``vm.cpu_pm``; false also = kvm_intel.preemption_timer=N)."""
    return h.sc.vm.hv_timer


def mwait_in_guest(h) -> bool:
    """kvm_mwait_in_guest(): cpu-pm=on passes MWAIT through (the scenario's VM hint)."""
    return h.sc.vm.cpu_pm


def apicv_active(h) -> bool:
    """vcpu->arch.apicv_active on Intel (the timer fastpath is VMX-only)."""
    return h.sc.vm.apicv and h.prof.has_apicv


def exit_request(h, v: Vcpu) -> bool:
    """kvm_vcpu_exit_request(): a pending request, a signal, need_resched, EXITING_GUEST_MODE.

    Of these the model has the host's need_resched and the requests that a
    non-posted interrupt raises (KVM_REQ_EVENT); it sends no signals to vCPU
    threads, and its kicks of running vCPUs are posted or become exits."""
    return v.pcpu.need_resched or (bool(v.irr) and not apicv_active(h))


def fastpath_reenters(h, v: Vcpu, expired: bool) -> bool:
    """Does a fastpath-handled timer exit re-enter the guest at once?

    ``expired``: the timer expired in the fastpath (a preemption-timer exit, or
    a deadline written in the past), so without APICv KVM_REQ_PENDING_TIMER is
    pending."""
    if expired and not apicv_active(h):
        return False
    return not exit_request(h, v)


def arm_phase(h, v: Vcpu, expired: bool) -> tuple:
    """The MSR 0x6e0 write exit (handle_fastpath_set_tscdeadline on the fastpath)."""
    prof = h.prof
    if not (hw_timer(h) and h.sc.features.timer_fastpath):
        return (M_EXIT, prof.exit_msr_tscdeadline_ns, "MSR_WRITE", "0x6e0")
    cost = prof.exit_msr_tscdeadline_fast_ns
    if not fastpath_reenters(h, v, expired):
        h.stats.count(v, "timer_fastpath_exit_handled")
        cost += prof.fastpath_exit_handled_extra_ns
    else:
        h.stats.count(v, "timer_fastpath_reentries")
    return (M_EXIT, cost, "MSR_WRITE", "0x6e0")


def arm_cost(h) -> float:
    """The TSC-deadline write of a tick re-arm (a future deadline: no request raised)."""
    if hw_timer(h) and h.sc.features.timer_fastpath:
        return h.prof.exit_msr_tscdeadline_fast_ns
    return h.prof.exit_msr_tscdeadline_ns


def expiry_phase(h, v: Vcpu) -> tuple:
    """The exit a timer expiry causes while the vCPU runs guest code."""
    prof = h.prof
    if hw_timer(h):
        if not h.sc.features.timer_fastpath:
            return (M_EXIT, prof.exit_preemption_timer_ns, "PREEMPTION_TIMER", "")
        # handle_fastpath_preemption_timer -> kvm_lapic_expired_hv_timer
        cost = prof.exit_preemption_timer_fast_ns
        if fastpath_reenters(h, v, expired=True):
            h.stats.count(v, "timer_fastpath_reentries")
        else:
            h.stats.count(v, "timer_fastpath_exit_handled")
            cost += prof.fastpath_exit_handled_extra_ns
        return (M_EXIT, cost, "PREEMPTION_TIMER", "")
    return (M_EXIT, prof.exit_external_interrupt_ns + prof.hrtimer_irq_ns, "EXTERNAL_INTERRUPT", "")


# -- workload timers (cyclictest, vmexit tscdeadline) ---------------------------------


def arm(h, v: Vcpu, deadline_ns: int, on_handled: Callable[[], None], cont) -> None:
    """The guest writes TSC_DEADLINE: an exit, then the timer fires at ``deadline_ns``.

    ``on_handled`` runs when the guest's timer handler has run; ``cont`` when
    the arming write returns.  A deadline already past fires on re-entry.
    """
    h.engine.cancel(v.timer_event)
    irq = Irq("timer", h.prof.guest_irq_ns, on_handled)
    expired = deadline_ns <= h.engine.now
    phase = arm_phase(h, v, expired)
    if expired:
        v.timer_event = None
        v.irr.append(irq)
    else:
        v.timer_event = h.engine.at(deadline_ns, _expire, h, v, irq)
    kvm.exit_chain(h, v, (phase,), cont)


def _expire(h, v: Vcpu, irq: Irq) -> None:
    v.timer_event = None
    fire(h, v, irq)


def fire(h, v: Vcpu, irq: Irq) -> None:
    """A guest timer expires now."""
    if v.state == GUEST:
        v.irr.append(irq)
        kvm.exit_chain(h, v, (expiry_phase(h, v),))
    elif v.state == HALTED:
        h.engine.after(int(h.prof.hrtimer_irq_ns), kvm.put_irq, h, v, irq)
    else:
        kvm.put_irq(h, v, irq)


# -- the guest tick -----------------------------------------------------------------


def tick_start(h, v: Vcpu) -> None:
    """The vCPU leaves idle: restart its tick at the next jiffy boundary.

    tick_nohz_idle_exit() re-arms the sched tick on the jiffy grid, not one
    period after the wake-up; each vCPU's grid has its own phase."""
    if v.tick_event is None:
        period = h.tick_ns
        phase = v.gid * period // max(len(h.vcpus), 1)
        now = h.engine.now
        v.tick_event = h.engine.at(((now - phase) // period + 1) * period + phase, _tick, h, v)


def _tick(h, v: Vcpu) -> None:
    v.tick_event = None
    if v.gcurr is None:
        return  # NOHZ idle: the tick is stopped
    if v.state == GUEST and not v.frames[-1].handler and not v.irqs_off:
        # expiry exit + tick handler + re-arming write, back to back
        handler_ns = h.prof.guest_irq_ns + TICK_WORK_NS
        kvm.exit_chain(
            h,
            v,
            (expiry_phase(h, v), (M_GUEST, handler_ns, None, ""), (M_EXIT, arm_cost(h), "MSR_WRITE", "0x6e0")),
            lambda: guest.tick_preempt(h, v),
        )
        v.tick_event = h.engine.after(h.tick_ns, _tick, h, v)
        return
    irq = Irq("tick", h.prof.guest_irq_ns + TICK_WORK_NS, lambda: (_rearm(h, v), guest.tick_preempt(h, v)))
    fire(h, v, irq)


def _rearm(h, v: Vcpu) -> None:
    """The tick handler ran late (the vCPU was away): re-arm with an MSR write."""
    if v.gcurr is not None and v.tick_event is None:
        v.tick_event = h.engine.after(h.tick_ns, _tick, h, v)
        kvm.simple_exit(h, v, "MSR_WRITE", arm_cost(h), "0x6e0")
