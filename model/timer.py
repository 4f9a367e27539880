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
- in an exit, Intel: the preemption timer is loaded at the next VM entry and
  exits at once (PREEMPTION_TIMER right after the entry); AMD, or runnable:
  pending until the next entry.

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

Timer advance (``host.lapic_timer_advance_ns``, 5.8 lapic.c): the timer is
programmed ``timer_advance_ns`` early (vmx_set_hv_timer, start_sw_tscdeadline);
a deadline closer than that expires at once, in the arming exit
(start_hv_timer -> apic_timer_expired).  apic_timer_expired records
``expired_tscdeadline``; on the next VM entry with the timer vector in IRR
(kvm_wait_lapic_expire in vmx_vcpu_run, lapic_timer_int_injected) KVM
busy-waits to the deadline (at most timer_advance_ns, __wait_lapic_expire) and,
with -1 (adaptive), moves the advance by 1/8 of how early or late the check was
(adjust_lapic_timer_advance: not for |delta| < 100 or > 10000 cycles; past
5000 ns it restarts at 1000 ns).  The check sits ``timer_wait_entry_ns``
before VM entry.  The VMX preemption timer is loaded at VM entry
(vmx_update_hv_timer): one that expires while KVM is outside the guest exits
as soon as the guest is entered.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from model import guest, kvm
from model.host import EXIT as M_EXIT
from model.host import GUEST as M_GUEST
from model.vcpu import EXIT, GUEST, HALTED, Irq, Vcpu

if TYPE_CHECKING:
    from model.host import Host

TICK_WORK_NS = 1_500  # assumed: scheduler_tick + hrtimer bookkeeping in the guest per tick

# arch/x86/kvm/lapic.c (5.8)
LAPIC_TIMER_ADVANCE_ADJUST_MIN = 100  # clock cycles
LAPIC_TIMER_ADVANCE_ADJUST_MAX = 10_000  # clock cycles
LAPIC_TIMER_ADVANCE_NS_INIT = 1_000
LAPIC_TIMER_ADVANCE_NS_MAX = 5_000
LAPIC_TIMER_ADVANCE_ADJUST_STEP = 8  # step-by-step approximation to mitigate fluctuation


def hw_timer(h: Host) -> bool:
    """kvm_can_use_hv_timer(): the VMX preemption timer (Intel), unless MWAIT is passed through.

    Resolved in the scenario as ``vm.hv_timer`` (model.kernels: Intel with a
    preemption timer and not ``vm.cpu_pm``; false also = kvm_intel.preemption_timer=N)."""
    return h.sc.vm.hv_timer


def mwait_in_guest(h: Host) -> bool:
    """kvm_mwait_in_guest(): cpu-pm=on passes MWAIT through (the scenario's VM hint)."""
    return h.sc.vm.cpu_pm


def apicv_active(h: Host) -> bool:
    """vcpu->arch.apicv_active on Intel (the timer fastpath is VMX-only)."""
    return h.sc.vm.apicv and h.prof.has_apicv


def exit_request(h: Host, v: Vcpu) -> bool:
    """kvm_vcpu_exit_request(): a pending request, a signal, need_resched, EXITING_GUEST_MODE.

    Of these the model has the host's need_resched and the requests that a
    non-posted interrupt raises (KVM_REQ_EVENT); it sends no signals to vCPU
    threads, and its kicks of running vCPUs are posted or become exits."""
    return v.pcpu.need_resched or (bool(v.irr) and not apicv_active(h))


def fastpath_reenters(h: Host, v: Vcpu, expired: bool) -> bool:
    """Does a fastpath-handled timer exit re-enter the guest at once?

    ``expired``: the timer expired in the fastpath (a preemption-timer exit, or
    a deadline written in the past), so without APICv KVM_REQ_PENDING_TIMER is
    pending."""
    if expired and not apicv_active(h):
        return False
    return not exit_request(h, v)


def advance_dynamic(h: Host) -> bool:
    """lapic_timer_advance_dynamic: kvm.lapic_timer_advance_ns = -1."""
    return h.sc.host.lapic_timer_advance_ns == -1


def advance_ns(h: Host, v: Vcpu) -> int:
    """apic->lapic_timer.timer_advance_ns, set by kvm_create_lapic (-1: LAPIC_TIMER_ADVANCE_NS_INIT)."""
    if v.timer_advance_ns is None:
        param = h.sc.host.lapic_timer_advance_ns
        v.timer_advance_ns = LAPIC_TIMER_ADVANCE_NS_INIT if param == -1 else param
    return v.timer_advance_ns


def _arm_fraction(h: Host, fast: bool) -> float:
    """How far into the MSR 0x6e0 exit the timer is programmed (kvm_set_lapic_tscdeadline_msr).

    Derived: the MSR-write handler programs the timer where the ICR handler of the same exit
    sends its IPI (icr_send / exit_msr_icr, slow path or fastpath)."""
    prof = h.prof
    if fast:
        return prof.icr_send_fast_ns / prof.exit_msr_icr_fast_ns
    return prof.icr_send_slow_ns / prof.exit_msr_icr_ns


def arm_phase(h: Host, v: Vcpu, deadline_ns: int) -> tuple[kvm.Phase, bool]:
    """The MSR 0x6e0 write exit (handle_fastpath_set_tscdeadline on the fastpath) and whether the
    deadline, less the advance, has passed when the timer is programmed (start_hv_timer /
    start_sw_tscdeadline -> apic_timer_expired in the exit)."""
    prof = h.prof
    fast = hw_timer(h) and h.sc.features.timer_fastpath
    mean = prof.exit_msr_tscdeadline_fast_ns if fast else prof.exit_msr_tscdeadline_ns
    ns = kvm.exit_cost(h, v, mean)
    programmed = h.engine.now + int(ns * _arm_fraction(h, fast))
    expired = deadline_ns - advance_ns(h, v) <= programmed
    if fast:
        if not fastpath_reenters(h, v, expired):
            h.stats.count(v, "timer_fastpath_exit_handled")
            ns += int(prof.fastpath_exit_handled_extra_ns)
        else:
            h.stats.count(v, "timer_fastpath_reentries")
    h.stats.record_exit(v, "MSR_WRITE", "0x6e0", ns)
    return kvm.Phase(M_EXIT, ns, None), expired  # recorded here: reason None keeps its cost exact


def arm_cost(h: Host) -> float:
    """The TSC-deadline write of a tick re-arm (a future deadline: no request raised)."""
    if hw_timer(h) and h.sc.features.timer_fastpath:
        return h.prof.exit_msr_tscdeadline_fast_ns
    return h.prof.exit_msr_tscdeadline_ns


def expiry_phase(h: Host, v: Vcpu) -> kvm.Phase:
    """The exit a timer expiry causes while the vCPU runs guest code."""
    prof = h.prof
    if hw_timer(h):
        if not h.sc.features.timer_fastpath:
            return kvm.Phase(M_EXIT, prof.exit_preemption_timer_ns, "PREEMPTION_TIMER")
        # handle_fastpath_preemption_timer -> kvm_lapic_expired_hv_timer
        cost = prof.exit_preemption_timer_fast_ns
        if fastpath_reenters(h, v, expired=True):
            h.stats.count(v, "timer_fastpath_reentries")
        else:
            h.stats.count(v, "timer_fastpath_exit_handled")
            cost += prof.fastpath_exit_handled_extra_ns
        return kvm.Phase(M_EXIT, cost, "PREEMPTION_TIMER")
    return kvm.Phase(M_EXIT, prof.exit_external_interrupt_ns + prof.hrtimer_irq_ns, "EXTERNAL_INTERRUPT")


# -- workload timers (cyclictest, vmexit tscdeadline) ---------------------------------


def arm(h: Host, v: Vcpu, deadline_ns: int, on_handled: Callable[[], None], cont) -> None:
    """The guest writes TSC_DEADLINE: an exit, then the timer fires at ``deadline_ns``.

    ``on_handled`` runs when the guest's timer handler has run; ``cont`` when
    the arming write returns.  The timer is programmed ``timer_advance_ns``
    early; a deadline already that close expires in the arming exit and is
    injected on its re-entry (after the wait to the deadline).
    """
    h.engine.cancel(v.timer_event)
    irq = Irq("timer", h.prof.guest_irq_ns, on_handled)
    phase, expired = arm_phase(h, v, deadline_ns)
    if expired:
        v.timer_event = None
        v.expired_tscdeadline = deadline_ns  # apic_timer_expired
        v.irr.append(irq)
    else:
        v.timer_event = h.engine.at(deadline_ns - advance_ns(h, v), _expire, h, v, irq, deadline_ns)
    kvm.exit_chain(h, v, (phase,), cont)


def _expire(h: Host, v: Vcpu, irq: Irq, deadline_ns: int) -> None:
    v.timer_event = None
    fire(h, v, irq, deadline_ns)


def fire(h: Host, v: Vcpu, irq: Irq, deadline_ns: int) -> None:
    """A guest timer programmed for ``deadline_ns`` (less the advance) expires now."""
    if v.state == GUEST:
        v.expired_tscdeadline = deadline_ns
        v.irr.append(irq)
        kvm.exit_chain(h, v, (expiry_phase(h, v),))
    elif v.state == HALTED:
        h.engine.after(int(h.prof.hrtimer_irq_ns), _sw_expired, h, v, irq, deadline_ns)
    elif v.state == EXIT and hw_timer(h) and not v.halt_requested:
        # the preemption timer runs in guest mode only: loaded at entry with 0, it exits at once
        v.conts.appendleft(lambda: _hv_expired_at_entry(h, v, irq, deadline_ns))
    else:
        v.expired_tscdeadline = deadline_ns
        kvm.put_irq(h, v, irq)


def _sw_expired(h: Host, v: Vcpu, irq: Irq, deadline_ns: int) -> None:
    """apic_timer_fn: the host hrtimer of a blocked vCPU (kvm_lapic_switch_to_sw_timer) fired."""
    v.expired_tscdeadline = deadline_ns
    kvm.put_irq(h, v, irq)


def _hv_expired_at_entry(h: Host, v: Vcpu, irq: Irq, deadline_ns: int) -> None:
    v.expired_tscdeadline = deadline_ns
    v.irr.append(irq)
    h.stats.count(v, "timer_hv_expired_at_entry")
    kvm.exit_chain(h, v, (expiry_phase(h, v),))


def _timer_irq_pending(v: Vcpu) -> bool:
    """lapic_timer_int_injected(): the timer vector is in IRR (APICv) / ISR."""
    return any(irq.kind in ("timer", "tick") for irq in v.irr)


def wait_to_deadline(h: Host, v: Vcpu, check_ns: int, deadline_ns: int) -> int:
    """__kvm_wait_lapic_expire at ``check_ns``: the busy-wait to the deadline, bounded by the
    advance (__wait_lapic_expire), then adjust_lapic_timer_advance when adaptive."""
    advance = advance_ns(h, v)
    if advance <= 0:
        return 0
    delta_cycles = (check_ns - deadline_ns) * h.prof.tsc_ghz  # advance_expire_delta
    wait = min(max(0, deadline_ns - check_ns), advance) + h.prof.timer_advance_check_ns
    h.stats.count(v, "timer_advance_waits" if deadline_ns > check_ns else "timer_advance_late")
    h.stats.count(v, "timer_advance_wait_ns", int(wait))
    if advance_dynamic(h) and LAPIC_TIMER_ADVANCE_ADJUST_MIN <= abs(delta_cycles) <= LAPIC_TIMER_ADVANCE_ADJUST_MAX:
        step = int(abs(delta_cycles) / h.prof.tsc_ghz) // LAPIC_TIMER_ADVANCE_ADJUST_STEP
        advance = advance - step if delta_cycles < 0 else advance + step
        if advance > LAPIC_TIMER_ADVANCE_NS_MAX:
            advance = LAPIC_TIMER_ADVANCE_NS_INIT
        v.timer_advance_ns = max(0, advance)
    return int(wait)


def entry_wait(h: Host, v: Vcpu) -> int:
    """kvm_wait_lapic_expire() before VM entry (vmx_vcpu_run / svm_vcpu_run): ns to busy-wait.

    Called at the end of the exit; the check itself is ``timer_wait_entry_ns``
    before the entry."""
    if v.expired_tscdeadline < 0 or not _timer_irq_pending(v):
        return 0
    deadline = v.expired_tscdeadline
    v.expired_tscdeadline = -1
    check = h.engine.now - int(h.prof.timer_wait_entry_ns)
    return wait_to_deadline(h, v, check, deadline)


# -- the guest tick -----------------------------------------------------------------


def tick_stop(h: Host, v: Vcpu) -> None:
    """tick_nohz_idle_stop_tick() before HLT: the idle vCPU's sched tick stops (ts->tick_stopped).

    do_idle() -> cpuidle_idle_call() stops it for default_idle (no cpuidle driver) and for
    cpuidle-haltpoll's halt state; its poll state retains it (haltpoll_select clears
    *stop_tick), and idle=poll never stops it (cpu_idle_force_poll ->
    tick_nohz_idle_restart_tick).  The model's tick already does nothing on an idle vCPU
    (``_tick``); what the flag adds is the restart's write.  The stop's own reprogramming
    (hrtimer_start of the sched timer, a write only when the tick was the first hrtimer) is off
    the wake-up path and not modelled."""
    v.tick_stopped = True


def tick_restart(h: Host, v: Vcpu) -> bool:
    """tick_nohz_idle_exit() -> tick_nohz_restart_sched_tick() -> tick_nohz_restart(): a tick
    stopped for HLT idle restarts on the jiffy grid, and hrtimer_start_expires() of the sched
    timer, now the first hrtimer, reprograms the clock event (tick_program_event ->
    lapic_next_deadline): an MSR 0x6e0 write, on the way from the idle loop to the woken task
    (before schedule_idle()).  True if the vCPU exits for it."""
    stopped, v.tick_stopped = v.tick_stopped, False
    tick_start(h, v)
    if not stopped:
        return False
    h.stats.count(v, "tick_restarts")
    kvm.simple_exit(h, v, "MSR_WRITE", arm_cost(h), "0x6e0")  # enter_guest resumes the switch frame
    return True


def tick_start(h: Host, v: Vcpu) -> None:
    """The vCPU leaves idle: restart its tick at the next jiffy boundary.

    tick_nohz_idle_exit() re-arms the sched tick on the jiffy grid, not one
    period after the wake-up; each vCPU's grid has its own phase.  The timer
    is programmed ``timer_advance_ns`` before the jiffy (vmx_set_hv_timer)."""
    if v.tick_event is None:
        period = h.tick_ns
        phase = v.gid * period // max(len(h.vcpus), 1)
        now = h.engine.now
        deadline = ((now - phase) // period + 1) * period + phase
        _schedule_tick(h, v, deadline)


def _schedule_tick(h: Host, v: Vcpu, deadline: int) -> None:
    v.tick_event = h.engine.at(max(h.engine.now, deadline - advance_ns(h, v)), _tick, h, v, deadline)


def _tick(h: Host, v: Vcpu, deadline: int) -> None:
    v.tick_event = None
    if v.gcurr is None:
        return  # NOHZ idle: the tick is stopped
    if v.state == GUEST and not v.frames[-1].handler and not v.irqs_off:
        # expiry exit (+ the wait to the deadline) + tick handler + re-arming write, back to back
        handler_ns = h.prof.guest_irq_ns + TICK_WORK_NS
        kvm.exit_chain(
            h,
            v,
            (
                _expiry_exit_to_deadline(h, v, deadline),
                kvm.Phase(M_GUEST, handler_ns, None),
                kvm.Phase(M_EXIT, arm_cost(h), "MSR_WRITE", "0x6e0"),
            ),
            lambda: guest.tick_preempt(h, v),
        )
        _schedule_tick(h, v, deadline + h.tick_ns)
        return
    irq = Irq("tick", h.prof.guest_irq_ns + TICK_WORK_NS, lambda: (_rearm(h, v), guest.tick_preempt(h, v)))
    fire(h, v, irq, deadline)


def _expiry_exit_to_deadline(h: Host, v: Vcpu, deadline: int) -> kvm.Phase:
    """The expiry exit of a chain whose handler follows it: its cost, then kvm_wait_lapic_expire's
    busy-wait at its end (the vector is in IRR), recorded as one exit."""
    expiry = expiry_phase(h, v)
    ns = kvm.exit_cost(h, v, expiry.mean_ns)
    check = h.engine.now + ns - int(h.prof.timer_wait_entry_ns)
    ns += wait_to_deadline(h, v, check, deadline)
    h.stats.record_exit(v, expiry.reason, expiry.detail, ns)
    return kvm.Phase(M_EXIT, ns, None)


def _rearm(h: Host, v: Vcpu) -> None:
    """The tick handler ran late (the vCPU was away): re-arm with an MSR write."""
    if v.gcurr is not None and v.tick_event is None:
        _schedule_tick(h, v, h.engine.now + h.tick_ns)
        kvm.simple_exit(h, v, "MSR_WRITE", arm_cost(h), "0x6e0")
