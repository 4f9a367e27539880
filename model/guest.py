"""The guest side of a vCPU: a stack of frames, interrupts, and a guest scheduler.

Guest tasks are generators that yield *ops*; this module interprets them.
An op either completes at once (the generator is resumed immediately), pushes
a frame of work or spinning, or hands control to a mechanism module that
resumes the task later through ``advance``:

- ``("run", ns, kernel)``: execute ``ns`` of work at full speed.
- ``("block",)``: sleep until another task calls :func:`wake_task`.
- ``("wake", task)``: wake a task (a RESCHEDULE IPI when it must).
- ``("call", fn, *args)``: ``fn(h, task, *args)`` takes over; it calls
  ``advance(h, task, value)`` when the task may go on.

Interrupts are taken when the top frame is not itself a handler and the guest
has not disabled them (``Vcpu.irqs_off``, set by ``spin_lock_irqsave``); a
handler is pushed as a WORK frame on top of whatever runs and its completion
callback runs when it ends.
"""

from __future__ import annotations

import math

from model import apic, kvm, locks, scheduler, spin, timer
from model.vcpu import GUEST, IDLE, PVWAIT, SPIN, WORK, Frame, Irq, Task, Vcpu

# Guest scheduler costs (named, assumed): a guest context switch and the
# wake-up path of try_to_wake_up inside the guest.
GUEST_SWITCH_NS = 1_000  # assumed: guest __schedule() between two tasks
WAKE_SCAN_LIMIT = 4  # select_idle_cpu scans a few CPUs of the LLC, not all


# -- executing frames ------------------------------------------------------------


def pause(h, v: Vcpu) -> None:
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


def _book_spin(v: Vcpu, f: Frame, ns: int) -> None:
    v.spin_ns += ns
    if f.spin_kind == "csfm":
        v.csfm_ns += ns


def resume(h, v: Vcpu) -> None:
    """Execute the top frame (the vCPU is in GUEST and executes nothing)."""
    now = h.engine.now
    frames = v.frames
    if v.irr and not frames[-1].handler and not v.irqs_off:
        _push_handler(h, v, v.irr.popleft())
    f = frames[-1]
    if f.kind == WORK:
        v.seg_start = now
        sib = v.pcpu.sibling
        v.speed = h.prof.smt_speed if sib is not None and h.pcpus[sib].curr is not None else 1.0
        v.seg_event = h.engine.after(math.ceil(f.remaining / v.speed), _work_done, h, v, f)
    elif f.kind == SPIN:
        v.seg_start = now
        spin.spinning(h, v, f)
    elif f.kind == PVWAIT:
        if v.pv_unhalted:  # kicked: back to the spin loop below
            v.pv_unhalted = False
            frames.pop()
            resume(h, v)
        else:
            v.seg_start = now
            kvm.hlt(h, v)
    else:  # IDLE
        if v.gq:
            frames.pop()
            _run_next_task(h, v)
            return
        v.seg_start = now
        if h.sc.vm.idle == "hlt" and not h.sc.vm.hlt_passthrough:
            kvm.hlt(h, v)


def _work_done(h, v: Vcpu, f: Frame) -> None:
    v.seg_event = None
    v.seg_start = -1
    v.frames.pop()
    if f.on_done is not None:
        f.on_done()
    if v.state == GUEST and v.seg_start < 0:
        resume(h, v)


def take_pending(h, v: Vcpu) -> None:
    """An interrupt arrived while in GUEST: take it now unless a handler runs or IF = 0."""
    if v.frames[-1].handler or v.irqs_off:
        return
    pause(h, v)
    resume(h, v)


def _push_handler(h, v: Vcpu, irq: Irq) -> None:
    if irq.sent_ns >= 0:
        h.stats.ipi_handled(v, h.engine.now - irq.sent_ns)
    v.frames.append(Frame(WORK, remaining=irq.cost_ns, kernel=True, on_done=irq.on_handled, handler=True))


def release_spin(h, v: Vcpu, f: Frame, on_done) -> None:
    """The condition a SPIN frame waits for is met: it finishes when next executed."""
    if f.kind != SPIN:
        return
    executing = v.seg_start >= 0 and v.frames and v.frames[-1] is f and v.state == GUEST
    if executing:
        pause(h, v)
    f.kind = WORK
    f.remaining = 0.0
    f.on_done = on_done
    if executing:
        resume(h, v)


def in_kernel(v: Vcpu) -> bool:
    """The guest's CPL when the vCPU was interrupted (preempted_in_kernel).

    No frame at all means the vCPU left in the middle of an op (a syscall's
    ICR write, say): it was in the kernel."""
    return not v.frames or v.frames[-1].kernel


# -- tasks and the guest scheduler -------------------------------------------------


def start_task(h, task: Task) -> None:
    """Make a new task runnable on its vCPU at time 0."""
    task.vcpu.gq.append(task)


def _run_next_task(h, v: Vcpu) -> None:
    task = v.gq.popleft()
    v.gcurr = task
    task.ran_since = h.engine.now
    timer.tick_start(h, v)
    v.frames.append(Frame(WORK, remaining=GUEST_SWITCH_NS, kernel=True, on_done=lambda: _continue(h, task)))
    resume(h, v)


def _preempt(h, v: Vcpu, task: Task, frame: Frame) -> None:
    """Guest preemption: ``task``'s user work waits; the next runnable task runs."""
    task.saved = frame
    v.gq.append(task)
    _task_idle(h, v)


def tick_preempt(h, v: Vcpu) -> None:
    """scheduler_tick -> check_preempt_tick in the guest: the task's slice is used up.

    User work is preempted at once; an rwsem optimistic spinner sees
    need_resched() and goes to sleep (rwsem_optimistic_spin); spinlock and
    IPI-acknowledgement spinners do not (preemption is off)."""
    task = v.gcurr
    if task is None or not v.gq or v.state != GUEST:
        return
    if h.engine.now - task.ran_since < scheduler.slice_ns(len(v.gq) + 1):
        return
    v.guest_resched = True
    top = v.frames[-1] if v.frames else None
    if top is not None and top.kind == SPIN and top.spin_kind == "rwsem":
        locks.spinner_need_resched(h, v, top)
    else:
        preempt_check(h, v)


def preempt_check(h, v: Vcpu) -> None:
    """After a RESCHEDULE IPI: preempt the current task if it is in user work."""
    task = v.gcurr
    if task is None or not v.guest_resched or not v.gq:
        return
    top = v.frames[-1] if v.frames else None
    if top is not None and top.kind == WORK and not top.kernel and not top.handler and len(v.frames) == 1:
        pause(h, v)
        v.frames.pop()
        _preempt(h, v, task, top)


def _task_idle(h, v: Vcpu) -> None:
    """The current task blocked or ended: run the next one or go idle."""
    v.guest_resched = False
    v.gcurr = None
    if v.gq:
        task = v.gq.popleft()
        v.gcurr = task
        task.ran_since = h.engine.now
        v.frames.append(Frame(WORK, remaining=GUEST_SWITCH_NS, kernel=True, on_done=lambda: _continue(h, task)))
    else:
        v.frames.append(Frame(IDLE, kernel=True))


def _continue(h, task: Task) -> None:
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


def advance(h, task: Task, value=None) -> None:
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
        kind = op[0]
        if kind == "run":
            frame = Frame(WORK, remaining=op[1], kernel=op[2], on_done=lambda: advance(h, task))
            if not op[2] and v.guest_resched and v.gq:
                _preempt(h, v, task, frame)  # return to user mode with need_resched set
            else:
                v.frames.append(frame)
            return
        if kind == "block":
            if task.wake_pending:
                task.wake_pending = False
                continue
            task.runnable = False
            _task_idle(h, v)
            return
        if kind == "wake":
            ipi_to = wake_task(h, op[1], v)
            if ipi_to is not None:
                apic.send_resched(h, v, ipi_to, lambda: advance(h, task))
                return
            continue
        if kind == "call":
            op[1](h, task, *op[2:])
            return
        raise ValueError(f"unknown guest op {kind!r}")


def wake_task(h, task: Task, waker: Vcpu | None) -> Vcpu | None:
    """try_to_wake_up in the guest; returns the vCPU to send a RESCHEDULE IPI to."""
    if task.runnable:
        task.wake_pending = True  # it has not gone to sleep yet: it will not
        return None
    task.runnable = True
    tv = _select_vcpu(task)
    task.vcpu = tv
    tv.gq.append(task)
    if tv.gcurr is not None:
        # check_preempt_wakeup: a sleeper's vruntime credit (half of the 24 ms
        # latency) beats the 4 ms wakeup granularity, so the woken task preempts
        tv.guest_resched = True
        return None if tv is waker else tv
    if tv is waker:
        return None
    if h.sc.vm.idle == "poll":
        # TIF_POLLING_NRFLAG: the polling idle loop notices without an IPI
        if tv.state == GUEST and tv.frames[-1].kind == IDLE and tv.seg_start >= 0:
            pause(h, tv)
            resume(h, tv)
        return None
    return tv


def _select_vcpu(task: Task) -> Vcpu:
    """select_idle_sibling in spirit: the previous vCPU if idle, else a nearby idle one."""
    prev = task.vcpu
    if prev.gcurr is None and not prev.gq:
        return prev
    vcpus = prev.vm.vcpus
    n = len(vcpus)
    for step in range(1, min(WAKE_SCAN_LIMIT, n - 1) + 1):
        cand = vcpus[(prev.index + step) % n]
        if cand.gcurr is None and not cand.gq:
            return cand
    return prev


def block(h, task: Task) -> None:
    """The current task sleeps (from inside a ``call`` op's continuation)."""
    if task.wake_pending:
        task.wake_pending = False
        _continue(h, task)
        return
    task.runnable = False
    _task_idle(h, task.vcpu)


def wake(h, task: Task, waker: Vcpu) -> None:
    """Wake ``task`` from code running on ``waker`` (a handler, a lock release)."""
    tv = wake_task(h, task, waker)
    if tv is not None:
        apic.send_resched(h, waker, tv, None)
