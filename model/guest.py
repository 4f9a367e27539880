"""The guest side of a vCPU: a stack of frames, interrupts, and a guest scheduler.

Guest tasks are generators that yield *ops* (:mod:`model.ops`: ``Run``,
``BLOCK``, ``Wake``, ``RETURN_TO_USER``, ``Call``); this module interprets
them.  An op either completes at once (the generator is resumed immediately),
pushes a frame of work or spinning, or hands control to a mechanism module
that resumes the task later through ``advance``.

Interrupts are taken when the top frame is not itself a handler and the guest
has not disabled them (``Vcpu.irqs_off``, set by ``spin_lock_irqsave``); a
handler is pushed as a WORK frame on top of whatever runs and its completion
callback runs when it ends.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from model import apic, kvm, spin, timer
from model.ops import Block, Call, ReturnToUser, Run, Wake
from model.vcpu import GUEST, IDLE, PVWAIT, SPIN, WORK, Frame, HaltpollPhase, Irq, Task, Vcpu

if TYPE_CHECKING:
    from model.host import Host

# Guest scheduler costs (named, assumed): a guest context switch and the
# wake-up path of try_to_wake_up inside the guest.
GUEST_SWITCH_NS = 1_000  # assumed: guest __schedule() between two tasks
WAKE_SCAN_LIMIT = 4  # select_idle_cpu scans a few CPUs of the LLC, not all

# Guest CFS tunables for one CPU (kernel/sched/fair.c normalized_sysctl_sched_*),
# scaled at boot by sched_init_granularity() -> update_sysctl() with
# SCHED_TUNABLESCALING_LOG: factor = 1 + ilog2(min(ncpus, 8)) (get_update_sysctl_factor).
NORMALIZED_LATENCY_NS = 6_000_000  # normalized_sysctl_sched_latency
NORMALIZED_MIN_GRANULARITY_NS = 750_000  # normalized_sysctl_sched_min_granularity
NORMALIZED_WAKEUP_GRANULARITY_NS = 1_000_000  # normalized_sysctl_sched_wakeup_granularity
SCHED_NR_LATENCY = 8  # sched_nr_latency
SYSCTL_FACTOR_MAX_CPUS = 8  # get_update_sysctl_factor: min(num_online_cpus(), 8)

# cpuidle-haltpoll governor defaults (drivers/cpuidle/governors/haltpoll.c, 5.4+);
# guest_halt_poll_ns itself is the scenario's vm.guest_halt_poll_ns.
GUEST_HALT_POLL_GROW = 2  # guest_halt_poll_grow
GUEST_HALT_POLL_SHRINK = 2  # guest_halt_poll_shrink
GUEST_HALT_POLL_GROW_START = 50_000  # guest_halt_poll_grow_start
GUEST_HALT_POLL_ALLOW_SHRINK = True  # guest_halt_poll_allow_shrink


# cpuidle-haltpoll phases of an idle vCPU (Vcpu.hp_phase)
HP_SELECT, HP_POLL, HP_HALT = HaltpollPhase


@dataclass(frozen=True, slots=True)
class GuestCfs:
    """The guest's CFS tunables after boot-time scaling to its CPU count."""

    latency_ns: int
    min_granularity_ns: int
    wakeup_granularity_ns: int

    def slice_ns(self, nr_running: int) -> int:
        """sched_slice() with equal weights: __sched_period(nr) / nr (no clamp, as in 5.x)."""
        period = self.latency_ns
        if nr_running > SCHED_NR_LATENCY:
            period = nr_running * self.min_granularity_ns
        return period // max(nr_running, 1)


@lru_cache(maxsize=64)
def guest_cfs(ncpus: int) -> GuestCfs:
    """sched_init_granularity(): the tunables scaled by 1 + ilog2(min(ncpus, 8))."""
    factor = 1 + int(math.log2(min(max(ncpus, 1), SYSCTL_FACTOR_MAX_CPUS)))
    return GuestCfs(NORMALIZED_LATENCY_NS * factor, NORMALIZED_MIN_GRANULARITY_NS * factor,
                    NORMALIZED_WAKEUP_GRANULARITY_NS * factor)


# -- executing frames ------------------------------------------------------------


def pause(h: Host, v: Vcpu) -> None:
    """Stop executing the top frame (the vCPU leaves the guest): book its progress."""
    start = v.seg_start
    if start < 0:
        return
    now = h.engine.now
    f = v.frames[-1]
    if f.kind == WORK:
        h.engine.cancel(v.seg_event)
        f.remaining -= (now - start) * v.speed
        if f.remaining < 0:
            f.remaining = 0.0
    elif f.kind == SPIN:
        h.engine.cancel(v.seg_event)
        _book_spin(v, f, now - start)
        f.budget -= now - start
    v.seg_event = None
    v.seg_start = -1
    if f.batch is not None:
        f.batch.paused(h)


def _book_spin(v: Vcpu, f: Frame, ns: int) -> None:
    v.spin_ns += ns
    if f.spin_kind == "csfm":
        v.csfm_ns += ns


def resume(h: Host, v: Vcpu) -> None:
    """Execute the top frame (the vCPU is in GUEST and executes nothing)."""
    now = h.engine.now
    frames = v.frames
    if v.irr and not frames[-1].handler and not v.irqs_off:
        if frames[-1].kind == IDLE and v.hp_phase == HP_HALT:
            _haltpoll_halt_ended(h, v)  # the interrupt ends the HLT state
        _push_handler(h, v, v.irr.popleft())
    f = frames[-1]
    if f.kind == WORK:
        v.seg_start = now
        sib = v.pcpu.sibling
        v.speed = h.prof.smt_speed if sib is not None and h.pcpus[sib].curr is not None else 1.0
        if f.batch is not None:
            f.batch.resumed(h, v, f)
        v.seg_event = h.engine.after(math.ceil(f.remaining / v.speed), _work_done, h, v, f)
    elif f.kind == SPIN:
        v.seg_start = now
        spin.spinning(h, v, f)
    elif f.kind == PVWAIT:
        if f.halted:  # the HLT is over (KICK_CPU, or an interrupt with IF = 1): pv_wait() returns
            frames.pop()
            resume(h, v)
        else:  # kvm_wait(): HLT (KVM returns at once if pv_unhalted is already set)
            f.halted = True
            v.seg_start = now
            kvm.hlt(h, v)
    else:  # IDLE
        if v.gq:
            _leave_idle(h, v)
            frames.pop()
            _run_next_task(h, v)
            return
        v.seg_start = now
        _idle_loop(h, v)


# -- the guest idle loop ------------------------------------------------------------


def _idle_loop(h: Host, v: Vcpu) -> None:
    """do_idle() on a vCPU with nothing to run (the IDLE frame executes).

    - ``idle: poll`` (idle=poll): cpu_idle_poll() spins with TIF_POLLING_NRFLAG set;
    - ``idle: hlt``: default_idle() -> HLT with the flag clear;
    - ``idle: haltpoll``: cpuidle-haltpoll: poll_idle() with the flag set for up to
      dev->poll_limit_ns, then HLT (default_enter_idle clears the flag first).
    HLT exits unless ``hlt_passthrough`` (cpu-pm=on), where the vCPU halts in guest mode.
    """
    mode = h.sc.vm.idle
    if mode == "poll":
        v.polling = True
        return
    if mode == "haltpoll":
        if v.hp_phase == HP_POLL:
            v.polling = True  # still inside the poll window (resumed after an exit)
            return
        if v.hp_phase == HP_SELECT and _haltpoll_select(v):
            _haltpoll_start_poll(h, v)
            return
        if v.hp_phase != HP_HALT:
            v.hp_phase = HP_HALT
            v.hp_since = h.engine.now
    v.polling = False
    timer.tick_stop(h, v)
    if not h.sc.vm.hlt_passthrough:
        kvm.hlt(h, v)


def _haltpoll_select(v: Vcpu) -> bool:
    """haltpoll_select(): True to poll (state 0), False to halt (state 1)."""
    if v.hp_limit_ns == 0:
        return False
    # last state was a poll that hit its limit: halt; otherwise (last was halt) poll
    return not v.hp_last_poll_timed_out


def _haltpoll_start_poll(h: Host, v: Vcpu) -> None:
    """poll_idle(): spin with TIF_POLLING_NRFLAG until need_resched or the limit."""
    v.hp_phase = HP_POLL
    v.polling = True
    v.hp_since = h.engine.now
    v.hp_last_poll_timed_out = False
    v.hp_event = h.engine.after(v.hp_limit_ns, _haltpoll_poll_limit, h, v)


def _haltpoll_poll_limit(h: Host, v: Vcpu) -> None:
    """local_clock() passed the poll limit: dev->poll_time_limit = true; re-select (HLT)."""
    v.hp_event = None
    v.hp_last_poll_timed_out = True
    v.hp_phase = HP_SELECT
    v.polling = False
    if v.state == GUEST and v.seg_start >= 0 and v.frames[-1].kind == IDLE:
        pause(h, v)
        resume(h, v)


def _haltpoll_halt_ended(h: Host, v: Vcpu) -> None:
    """haltpoll_reflect() after HLT: adjust_poll_limit() with the halt's residency."""
    block_ns = h.engine.now - v.hp_since
    limit = h.sc.vm.guest_halt_poll_ns
    cur = v.hp_limit_ns
    if cur < block_ns <= limit:
        v.hp_limit_ns = min(max(cur * GUEST_HALT_POLL_GROW, GUEST_HALT_POLL_GROW_START), limit)
    elif block_ns > limit and GUEST_HALT_POLL_ALLOW_SHRINK:
        v.hp_limit_ns = cur // GUEST_HALT_POLL_SHRINK if GUEST_HALT_POLL_SHRINK else 0
    v.hp_last_poll_timed_out = False  # last state: halt
    v.hp_phase = HP_SELECT


def _leave_idle(h: Host, v: Vcpu) -> None:
    """need_resched in the idle loop: stop polling (or end the HLT state) and schedule."""
    if v.hp_phase == HP_HALT:
        _haltpoll_halt_ended(h, v)
    elif v.hp_phase == HP_POLL:
        h.engine.cancel(v.hp_event)
        v.hp_event = None
        v.hp_last_poll_timed_out = False
    v.hp_phase = HP_SELECT
    v.polling = False


def _poll_notices(h: Host, v: Vcpu) -> None:
    """A polling idle loop sees TIF_NEED_RESCHED at its next check (no IPI)."""
    if v.state == GUEST and v.seg_start >= 0 and v.frames[-1].kind == IDLE:
        pause(h, v)
        resume(h, v)


def _work_done(h: Host, v: Vcpu, f: Frame) -> None:
    v.seg_event = None
    v.seg_start = -1
    v.frames.pop()
    if f.on_done is not None:
        f.on_done()
    if v.state == GUEST and v.seg_start < 0:
        resume(h, v)


def take_pending(h: Host, v: Vcpu) -> None:
    """An interrupt arrived while in GUEST: take it now unless a handler runs or IF = 0."""
    if v.frames[-1].handler or v.irqs_off:
        return
    pause(h, v)
    resume(h, v)


def _push_handler(h: Host, v: Vcpu, irq: Irq) -> None:
    if irq.sent_ns >= 0:
        h.stats.ipi_handled(v, h.engine.now - irq.sent_ns)
    v.frames.append(Frame(WORK, remaining=irq.cost_ns, kernel=True, on_done=irq.on_handled, handler=True))


def _executing(v: Vcpu, f: Frame) -> bool:
    """Frame ``f`` is the one running now: a segment is open on it in guest mode."""
    return v.seg_start >= 0 and bool(v.frames) and v.frames[-1] is f and v.state == GUEST


def release_spin(h: Host, v: Vcpu, f: Frame, on_done) -> None:
    """The condition a SPIN frame waits for is met: it finishes when next executed."""
    if f.kind != SPIN:
        return
    executing = _executing(v, f)
    if executing:
        pause(h, v)
    f.kind = WORK
    f.remaining = 0.0
    f.on_done = on_done
    if executing:
        resume(h, v)


def shorten(h: Host, v: Vcpu, f: Frame, drop_ns: float) -> None:
    """Take ``drop_ns`` of work off frame ``f`` (a batch of syscalls ending earlier), re-timing it if it executes.

    Unlike pause(), the frame's batch is not told: the caller is the batch."""
    if _executing(v, f):
        now = h.engine.now
        h.engine.cancel(v.seg_event)
        f.remaining = max(f.remaining - (now - v.seg_start) * v.speed - drop_ns, 0.0)
        v.seg_start = now
        v.seg_event = h.engine.after(math.ceil(f.remaining / v.speed), _work_done, h, v, f)
    else:
        f.remaining = max(f.remaining - drop_ns, 0.0)


def executed_ns(h: Host, v: Vcpu, f: Frame) -> float:
    """Full-speed ns of frame ``f`` still to run, as of now (its booked remainder less the open segment)."""
    rem = f.remaining
    if _executing(v, f):
        rem -= (h.engine.now - v.seg_start) * v.speed
    return rem if rem > 0 else 0.0


def _need_resched_set(h: Host, v: Vcpu) -> None:
    """TIF_NEED_RESCHED was just set on ``v``: a batch of syscalls ends at its next return to user mode."""
    for f in v.frames:
        if f.batch is not None:
            f.batch.resched(h, f)


def in_kernel(v: Vcpu) -> bool:
    """The guest's CPL when the vCPU was interrupted (preempted_in_kernel).

    No frame at all means the vCPU left in the middle of an op (a syscall's
    ICR write, say): it was in the kernel."""
    return not v.frames or v.frames[-1].kernel


# -- tasks and the guest scheduler -------------------------------------------------


def start_task(h: Host, task: Task) -> None:
    """Make a new task runnable on its vCPU at time 0."""
    task.vcpu.gq.append(task)


def update_curr(h: Host, v: Vcpu) -> None:
    """update_curr() + update_min_vruntime() of the vCPU's guest cfs_rq.

    The guest clock runs while the vCPU is away (dedicated or not): run time is
    wall time on the vCPU, as rq_clock_task without steal-time accounting."""
    now = h.engine.now
    curr = v.gcurr
    floor = None
    if curr is not None:
        curr.vruntime += now - curr.exec_start
        curr.exec_start = now
        floor = curr.vruntime
    if v.gq:
        left = min(t.vruntime for t in v.gq)
        floor = left if floor is None else min(floor, left)
    if floor is not None and floor > v.gmin_vruntime:
        v.gmin_vruntime = floor


def _pick_next(h: Host, v: Vcpu) -> Task:
    """pick_next_task_fair(): the leftmost task (first queued among equals); it becomes curr."""
    task = min(v.gq, key=_task_vruntime)
    v.gq.remove(task)
    now = h.engine.now
    v.gcurr = task
    v.guest_resched = False  # __schedule() clears TIF_NEED_RESCHED
    task.ran_since = now  # prev_sum_exec_runtime: the slice starts
    task.exec_start = now
    return task


def _task_vruntime(t: Task) -> int:
    return t.vruntime


def _run_next_task(h: Host, v: Vcpu) -> None:
    """Leave the idle loop for ``task``: do_idle() -> tick_nohz_idle_exit() (a stopped tick restarts
    with a TSC-deadline write, an exit) -> schedule_idle() (the switch frame)."""
    task = _pick_next(h, v)
    v.frames.append(Frame(WORK, remaining=GUEST_SWITCH_NS, kernel=True, on_done=lambda: _continue(h, task)))
    if timer.tick_restart(h, v):
        return  # the switch runs when the vCPU is back in the guest
    resume(h, v)


def _preempt(h: Host, v: Vcpu, task: Task, frame: Frame | None) -> None:
    """Guest preemption: ``task`` (its user work ``frame``, or the rest of its ops) waits."""
    update_curr(h, v)
    if frame is not None:
        task.saved = frame
    else:
        task.resume_with = lambda: advance(h, task)
    v.gq.append(task)
    h.stats.count(v, "guest_preemptions")
    _task_idle(h, v)


def tick_preempt(h: Host, v: Vcpu) -> None:
    """scheduler_tick -> check_preempt_tick in the guest, with the guest's scaled tunables.

    Resched when the task ran longer than its sched_slice(), or, past the
    minimum granularity, when it is ahead of the leftmost task by more than
    the slice.  User work is preempted at once; an rwsem optimistic spinner
    sees need_resched() and goes to sleep (rwsem_optimistic_spin); spinlock
    and IPI-acknowledgement spinners do not (preemption is off); kernel work
    stops at its next return to user mode."""
    task = v.gcurr
    if task is None or not v.gq or v.state != GUEST:
        return
    cfs = guest_cfs(len(v.vm.vcpus))
    update_curr(h, v)
    ideal = cfs.slice_ns(len(v.gq) + 1)
    delta_exec = h.engine.now - task.ran_since
    if delta_exec <= ideal:
        if delta_exec < cfs.min_granularity_ns:
            return
        if task.vruntime - min(t.vruntime for t in v.gq) <= ideal:
            return
    v.guest_resched = True
    _need_resched_set(h, v)
    top = v.frames[-1] if v.frames else None
    if top is not None and top.kind == SPIN and top.spin_kind == "rwsem":
        h.hooks.rwsem_spin_need_resched(h, v, top)  # model.locks
    else:
        preempt_check(h, v)


def preempt_check(h: Host, v: Vcpu) -> None:
    """After a RESCHEDULE IPI: preempt the current task if it is in user work."""
    task = v.gcurr
    if task is None or not v.guest_resched or not v.gq:
        return
    top = v.frames[-1] if v.frames else None
    if top is not None and top.kind == WORK and not top.kernel and not top.handler and len(v.frames) == 1:
        pause(h, v)
        v.frames.pop()
        _preempt(h, v, task, top)


def _task_idle(h: Host, v: Vcpu) -> None:
    """The current task blocked or ended: run the next one or go idle."""
    update_curr(h, v)
    v.guest_resched = False
    v.gcurr = None
    if v.gq:
        task = _pick_next(h, v)
        v.frames.append(Frame(WORK, remaining=GUEST_SWITCH_NS, kernel=True, on_done=lambda: _continue(h, task)))
    else:
        v.frames.append(Frame(IDLE, kernel=True))
        v.hp_phase = HP_SELECT


def _continue(h: Host, task: Task) -> None:
    """A task gets its vCPU back: finish what its wake-up asked for, or go on."""
    if task.saved is not None:
        task.vcpu.frames.append(task.saved)
        task.saved = None
        return
    then = task.resume_with
    if then is not None:
        task.resume_with = None
        then()
    else:
        advance(h, task)


def advance(h: Host, task: Task, value=None) -> None:
    """Run the task's generator until it yields an op that takes time."""
    v = task.vcpu
    gen = task.gen
    while True:
        try:
            op = gen.send(value)
        except StopIteration:
            _task_idle(h, v)
            return
        value = None
        kind = type(op)
        if kind is Run:
            frame = Frame(WORK, remaining=op.ns, kernel=op.kernel, on_done=lambda: advance(h, task))
            if op.batch is not None:  # a batch of syscalls (model.workloads.hackbench): it tracks its frame
                frame.batch = op.batch
                op.batch.attach(h, v, frame)
            if not op.kernel and v.guest_resched and v.gq:
                _preempt(h, v, task, frame)  # return to user mode with need_resched set
            else:
                v.frames.append(frame)
            return
        if kind is Block:
            if task.wake_pending:
                task.wake_pending = False
                continue
            task.runnable = False
            _task_idle(h, v)
            return
        if kind is ReturnToUser:
            if v.guest_resched and v.gq:
                _preempt(h, v, task, None)  # exit_to_usermode_loop(): schedule()
                return
            continue
        if kind is Wake:
            ipi_to = wake_task(h, op.task, v)
            if ipi_to is not None:
                apic.send_resched(h, v, ipi_to, lambda: advance(h, task))
                return
            continue
        if kind is Call:
            op.fn(h, task, *op.args)
            return
        raise TypeError(f"a guest task yielded {op!r}, not an op of model.ops")


def wake_task(h: Host, task: Task, waker: Vcpu | None) -> Vcpu | None:
    """try_to_wake_up() in the guest; returns the vCPU to send a RESCHEDULE IPI to.

    - placement: :func:`_select_vcpu`; a migrating task keeps its vruntime
      relative to min_vruntime (migrate_task_rq_fair / enqueue_entity);
    - place_entity(initial=0): the sleeper credit, vruntime at least
      min_vruntime - sched_latency/2 (GENTLE_FAIR_SLEEPERS);
    - check_preempt_wakeup() -> wakeup_preempt_entity(): a busy target's
      current task is preempted only when its vruntime is ahead of the woken
      task's by more than the wakeup granularity; an idle target always
      reschedules (check_preempt_curr_idle);
    - resched_curr(): TIF_NEED_RESCHED, and an IPI only to a remote vCPU whose
      idle task is not polling (set_nr_and_not_polling; set_nr_if_polling on
      the ttwu_queue_wakelist path).
    """
    if task.runnable:
        task.wake_pending = True  # it has not gone to sleep yet: it will not
        return None
    task.runnable = True
    prev = task.vcpu
    h.stats.count(prev, "guest_wakeups")
    tv = _select_vcpu(h, task)
    if tv is not prev:
        task.vruntime += tv.gmin_vruntime - prev.gmin_vruntime
    update_curr(h, tv)
    cfs = guest_cfs(len(tv.vm.vcpus))
    task.vruntime = max(task.vruntime, tv.gmin_vruntime - cfs.latency_ns // 2)
    task.vcpu = tv
    tv.gq.append(task)
    curr = tv.gcurr
    preempt = curr is None or (not tv.guest_resched and curr.vruntime - task.vruntime > cfs.wakeup_granularity_ns)
    if preempt and curr is not None:
        h.stats.count(tv, "wakeup_preemptions")
    if waker is not None and tv is not waker and not _share_cache(h, waker, tv):
        # ttwu_queue_wakelist(): the remote CPU activates the task itself, on an
        # IPI unless its idle task polls (send_call_function_single_ipi ->
        # set_nr_if_polling); the activation there runs check_preempt_curr
        if tv.polling:
            return _resched_curr(h, tv, waker)
        if preempt and not tv.guest_resched:
            tv.guest_resched = True
            _need_resched_set(h, tv)
        h.stats.count(tv, "wakelist_ipis")
        return tv
    return _resched_curr(h, tv, waker) if preempt else None


def _share_cache(h: Host, a: Vcpu, b: Vcpu) -> bool:
    """cpus_share_cache(): the same guest LLC (vm.guest_llc_vcpus consecutive vCPUs)."""
    llc = h.sc.vm.guest_llc_vcpus
    return llc is None or a.index // llc == b.index // llc


def _resched_curr(h: Host, tv: Vcpu, waker: Vcpu | None) -> Vcpu | None:
    """resched_curr(): set TIF_NEED_RESCHED; the vCPU to IPI, if any."""
    if tv.guest_resched:
        return None  # test_tsk_need_resched(): already set, no second IPI
    tv.guest_resched = True
    _need_resched_set(h, tv)
    if tv is waker:
        return None
    if tv.polling:
        h.stats.count(tv, "wakeups_polling_no_ipi")
        _poll_notices(h, tv)
        return None
    h.stats.count(tv, "resched_ipis")
    return tv


def _select_vcpu(h: Host, task: Task) -> Vcpu:
    """select_idle_sibling(p, prev, prev): the previous vCPU if idle, else an idle
    vCPU found by a short scan of its LLC (select_idle_cpu, SIS_PROP-limited),
    else the previous vCPU.  wake_affine() (pulling a sync wakee to the waker's
    CPU) is not modelled."""
    prev = task.vcpu
    if prev.gcurr is None and not prev.gq:
        return prev
    vcpus = prev.vm.vcpus
    n = len(vcpus)
    llc = h.sc.vm.guest_llc_vcpus or n
    first = prev.index // llc * llc
    size = min(llc, n - first)
    offset = prev.index - first
    for step in range(1, min(WAKE_SCAN_LIMIT, size - 1) + 1):
        cand = vcpus[first + (offset + step) % size]
        if cand.gcurr is None and not cand.gq:
            return cand
    return prev


def block(h: Host, task: Task) -> None:
    """The current task sleeps (from inside a ``call`` op's continuation)."""
    if task.wake_pending:
        task.wake_pending = False
        _continue(h, task)
        return
    task.runnable = False
    _task_idle(h, task.vcpu)


def wake(h: Host, task: Task, waker: Vcpu) -> None:
    """Wake ``task`` from code running on ``waker`` (a handler, a lock release)."""
    tv = wake_task(h, task, waker)
    if tv is not None:
        apic.send_resched(h, waker, tv, None)
