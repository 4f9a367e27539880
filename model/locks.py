"""Guest locks: queued spinlocks (with the PV variant) and mmap_sem as a sleeping rwsem.

**Queued spinlock** (kernel/locking/qspinlock.c): FIFO.  The holder runs its
critical section; on unlock the lock passes to the queue head, which takes it
only when its vCPU runs: a preempted head keeps everyone behind it waiting
(lock-waiter preemption), a preempted holder likewise (lock-holder
preemption).  Both emerge from the FIFO rule; nothing here special-cases them.

**PV spinlock** (qspinlock_paravirt.h): a waiter spins ``SPIN_THRESHOLD``
iterations, then ``pv_wait`` halts its vCPU (a HLT exit); the unlocker kicks a
halted head with the KICK_CPU hypercall, which sets ``pv_unhalted`` and wakes
it.  ``pv_wait_early``: a waiter stops spinning at once when its
predecessor's vCPU is preempted.  The queue-head boost lives in
``spin.kick_cpu_hypercall``.

**rwsem** (kernel/locking/rwsem.c), for ebizzy's mmap_sem: readers share,
writers exclude; a writer that finds the lock taken spins optimistically while
the owner is a writer whose vCPU runs (rwsem_spin_on_owner checks
vcpu_is_preempted), else sleeps in a FIFO queue.  Unlock grants the lock to a
running spinner, else wakes the queue head (readers are woken as a batch and
granted the lock, as rwsem_mark_wake does; a woken writer retries).
"""

from __future__ import annotations

from collections import deque

from model import guest, spin
from model.vcpu import GUEST, PVWAIT, SPIN, Frame, Task, Vcpu

SPIN_THRESHOLD = 1 << 15  # qspinlock_paravirt.h: loops before pv_wait


# -- queued spinlock ----------------------------------------------------------------


class QSpinLock:
    """One queued spinlock.  ``irqsave``: always taken with spin_lock_irqsave (zone->lock, lru_lock)."""

    __slots__ = ("holder", "irqsave", "queue", "saved_flags", "waiting")

    def __init__(self, irqsave: bool = False) -> None:
        self.irqsave = irqsave
        self.holder: Task | None = None
        self.queue: deque[Task] = deque()
        self.waiting: dict[Task, tuple[Frame, int]] = {}  # waiter -> (spin frame, since)
        self.saved_flags: dict[Task, bool] = {}  # irqsave: the IF state to restore on unlock


def spin_lock(h, task: Task, lock: QSpinLock, irqsave: bool | None = None) -> None:
    """A ``call`` op: take the lock, or queue and spin (the task goes on once it holds it).

    ``irqsave`` (default: the lock's): spin_lock_irqsave() -- local_irq_save()
    before the lock, so the waiter spins and pv_wait-halts with IF = 0 and
    takes no interrupt until spin_unlock_irqrestore() (``spin_unlock``)."""
    v = task.vcpu
    if lock.irqsave if irqsave is None else irqsave:
        lock.saved_flags[task] = v.irqs_off
        v.irqs_off = True
    if lock.holder is None and not lock.queue:
        lock.holder = task
        h.stats.sample(v, "lock_waits", 0)
        guest.advance(h, task)
        return
    frame = Frame(SPIN, kernel=True, spin_kind="qspin")
    if h.sc.features.pv_spinlock:
        frame.budget = SPIN_THRESHOLD * h.prof.pause_cycles / h.prof.tsc_ghz
    lock.queue.append(task)
    lock.waiting[task] = (frame, h.engine.now)
    v.frames.append(frame)
    if _should_wait_early(h, lock, task):
        _pv_wait(h, v, frame)


def spin_unlock(h, task: Task, lock: QSpinLock) -> None:
    """A ``call`` op: pass the lock to the queue head (kicking it if it halted)."""
    v = task.vcpu
    if task in lock.saved_flags:  # spin_unlock_irqrestore(): pending interrupts are taken on resume
        v.irqs_off = lock.saved_flags.pop(task)
    lock.holder = None
    if not lock.queue:
        guest.advance(h, task)
        return
    head = lock.queue.popleft()
    lock.holder = head
    frame, since = lock.waiting.pop(head)
    hv = head.vcpu

    def acquired() -> None:
        h.stats.sample(hv, "lock_waits", h.engine.now - since)
        guest.advance(h, head)

    halted = frame.budget <= 0 or _in_pv_wait(hv)
    guest.release_spin(h, hv, frame, acquired)
    if h.sc.features.pv_spinlock and halted:
        spin.kick_cpu_hypercall(h, v, hv, lambda: guest.advance(h, task))
    else:
        guest.advance(h, task)


def _in_pv_wait(v: Vcpu) -> bool:
    return any(f.kind == PVWAIT for f in v.frames)


def _should_wait_early(h, lock: QSpinLock, task: Task) -> bool:
    """pv_wait_early(): the predecessor's vCPU is preempted, stop spinning now."""
    if not (h.sc.features.pv_spinlock and h.sc.features.pv_wait_early):
        return False
    idx = list(lock.queue).index(task)
    pred = lock.queue[idx - 1] if idx > 0 else lock.holder
    return pred is not None and pred.vcpu.steal_preempted


def _pv_wait(h, v: Vcpu, frame: Frame) -> None:
    """pv_wait(): halt above the waiter's spin loop until kicked (the caller resumes the vCPU)."""
    frame.budget = 0.0
    v.frames.insert(v.frames.index(frame) + 1, Frame(PVWAIT, kernel=True))


# -- rwsem ----------------------------------------------------------------------------

# kernel/locking/rwsem.c (5.3+)
RWSEM_WAIT_TIMEOUT_NS = 4_000_000  # RWSEM_WAIT_TIMEOUT = HZ/250: then the head waiter gets a handoff
RWSEM_READER_SPIN_NS = 25_000  # rwsem_rspin_threshold: writers spin on readers at most 25 us


class RwSem:
    __slots__ = ("owner", "queue", "readers", "spinners")

    def __init__(self) -> None:
        self.owner: Task | None = None  # the writer
        self.readers = 0
        self.queue: deque[tuple[Task, bool, int]] = deque()  # (task, wants_write, since): asleep
        self.spinners: dict[Task, tuple[Frame, bool]] = {}  # optimistic spinners: (frame, wants_write)


def _owner_running(sem: RwSem) -> bool:
    """rwsem_can_spin_on_owner: a writer owns it and its vCPU is not preempted."""
    return sem.owner is not None and not sem.owner.vcpu.steal_preempted


def _handoff(h, sem: RwSem) -> bool:
    """The head sleeper waited past RWSEM_WAIT_TIMEOUT: spinners may not steal."""
    return bool(sem.queue) and h.engine.now - sem.queue[0][2] > RWSEM_WAIT_TIMEOUT_NS


def down_read(h, task: Task, sem: RwSem) -> None:
    if sem.owner is None and not sem.queue and not _writer_spinning(sem):
        sem.readers += 1
        guest.advance(h, task)
    elif h.sc.features.rwsem_reader_spin and _owner_running(sem) and not _handoff(h, sem):
        # readers spin on a running writer in guests 5.3-5.10 (cf69482d62d9; 617f3ef95177 removed it)
        _spin(h, task, sem, wants_write=False, budget=float("inf"))
    else:
        _sleep(h, task, sem, wants_write=False)


def up_read(h, task: Task, sem: RwSem) -> None:
    sem.readers -= 1
    if sem.readers == 0:
        _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def down_write(h, task: Task, sem: RwSem) -> None:
    if sem.owner is None and sem.readers == 0 and not _handoff(h, sem):
        sem.owner = task
        guest.advance(h, task)
    elif _handoff(h, sem):
        _sleep(h, task, sem, wants_write=True)
    elif _owner_running(sem):
        _spin(h, task, sem, wants_write=True, budget=float("inf"))
    elif sem.owner is None:  # reader-owned: spin a little (rwsem_spin_on_owner, OWNER_READER)
        _spin(h, task, sem, wants_write=True, budget=RWSEM_READER_SPIN_NS)
    else:
        _sleep(h, task, sem, wants_write=True)


def up_write(h, task: Task, sem: RwSem) -> None:
    sem.owner = None
    _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def _writer_spinning(sem: RwSem) -> bool:
    return any(w for _, w in sem.spinners.values())


def _spin(h, task: Task, sem: RwSem, wants_write: bool, budget: float) -> None:
    frame = Frame(SPIN, kernel=True, spin_kind="rwsem", budget=budget)
    sem.spinners[task] = (frame, wants_write)
    task.vcpu.frames.append(frame)


def _sleep(h, task: Task, sem: RwSem, wants_write: bool) -> None:
    sem.queue.append((task, wants_write, h.engine.now))
    guest.block(h, task)


def _hand_over(h, waker: Vcpu, sem: RwSem) -> None:
    """The lock is free: running spinners take it, else (or on handoff) the sleepers do."""
    if not _handoff(h, sem):
        running = [(t, f, w) for t, (f, w) in sem.spinners.items() if _executing(t.vcpu, f)]
        writer = next(((t, f) for t, f, w in running if w), None)
        if writer is not None:
            task, frame = writer
            del sem.spinners[task]
            sem.owner = task
            guest.release_spin(h, task.vcpu, frame, lambda: guest.advance(h, task))
            return
        readers = [(t, f) for t, f, w in running if not w]
        if readers:
            for task, frame in readers:
                del sem.spinners[task]
                sem.readers += 1
                guest.release_spin(h, task.vcpu, frame, lambda t=task: guest.advance(h, t))
            return
    if sem.spinners:
        _spinners_to_sleep(h, sem)
    if not sem.queue:
        return
    task, wants_write, _ = sem.queue[0]
    if wants_write:
        sem.queue.popleft()
        sem.owner = task  # woken with the handoff: the lock is its own
        _wake_with(h, waker, task, None)
        return
    while sem.queue and not sem.queue[0][1]:
        reader, _, _ = sem.queue.popleft()
        sem.readers += 1  # rwsem_mark_wake grants readers the lock as it wakes them
        _wake_with(h, waker, reader, None)


def _executing(v: Vcpu, frame: Frame) -> bool:
    return v.state == GUEST and bool(v.frames) and v.frames[-1] is frame


def _wake_with(h, waker: Vcpu, task: Task, then) -> None:
    task.resume_with = then
    guest.wake(h, task, waker)


def _spinners_to_sleep(h, sem: RwSem) -> None:
    """Spinners whose owner vanished or was preempted give up and queue to sleep."""
    for spinner, (frame, wants_write) in list(sem.spinners.items()):
        del sem.spinners[spinner]
        guest.release_spin(h, spinner.vcpu, frame, lambda s=spinner, w=wants_write: _sleep(h, s, sem, w))


def spin_budget_spent(h, v: Vcpu, frame: Frame) -> None:
    """A bounded spin ran out: a PV spinlock waiter halts, an rwsem writer goes to sleep."""
    if frame.spin_kind == "qspin":
        _pv_wait(h, v, frame)
        return
    spinner_need_resched(h, v, frame)


def spinner_need_resched(h, v: Vcpu, frame: Frame) -> None:
    """An rwsem spinner stops (need_resched, or its spin budget is spent) and sleeps."""
    sem = v.vm.mm.mmap_sem
    for task, (f, wants_write) in list(sem.spinners.items()):
        if f is frame:
            del sem.spinners[task]
            guest.release_spin(h, v, frame, lambda t=task, w=wants_write: _sleep(h, t, sem, w))
            return


def owner_preempted(h, v: Vcpu) -> None:
    """kvm.preempt_out hook: rwsem spinners stop spinning when the owner's vCPU is preempted."""
    sem = getattr(v.vm.mm, "mmap_sem", None)
    if sem is not None and sem.spinners and sem.owner is not None and sem.owner.vcpu is v:
        _spinners_to_sleep(h, sem)
