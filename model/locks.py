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
    __slots__ = ("holder", "queue", "waiting")

    def __init__(self) -> None:
        self.holder: Task | None = None
        self.queue: deque[Task] = deque()
        self.waiting: dict[Task, tuple[Frame, int]] = {}  # waiter -> (spin frame, since)


def spin_lock(h, task: Task, lock: QSpinLock) -> None:
    """A ``call`` op: take the lock, or queue and spin (the task goes on once it holds it)."""
    v = task.vcpu
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


def spin_budget_spent(h, v: Vcpu, frame: Frame) -> None:
    """A PV spinlock waiter spun SPIN_THRESHOLD loops: pv_wait() halts the vCPU."""
    _pv_wait(h, v, frame)


def _pv_wait(h, v: Vcpu, frame: Frame) -> None:
    frame.budget = 0.0
    if v.seg_start >= 0 and v.frames[-1] is frame:
        guest.pause(h, v)
        v.frames.append(Frame(PVWAIT, kernel=True))
        if v.state == GUEST:
            guest.resume(h, v)
    else:
        v.frames.insert(v.frames.index(frame) + 1, Frame(PVWAIT, kernel=True))


# -- rwsem ----------------------------------------------------------------------------


class RwSem:
    __slots__ = ("owner", "readers", "queue", "spinners")

    def __init__(self) -> None:
        self.owner: Task | None = None  # the writer
        self.readers = 0
        self.queue: deque[tuple[Task, bool]] = deque()  # (task, wants_write), asleep
        self.spinners: dict[Task, Frame] = {}


def down_read(h, task: Task, sem: RwSem) -> None:
    if sem.owner is None and not sem.queue:
        sem.readers += 1
        guest.advance(h, task)
        return
    sem.queue.append((task, False))
    guest.block(h, task)


def up_read(h, task: Task, sem: RwSem) -> None:
    sem.readers -= 1
    if sem.readers == 0:
        _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def down_write(h, task: Task, sem: RwSem) -> None:
    v = task.vcpu
    if sem.owner is None and sem.readers == 0:
        sem.owner = task
        guest.advance(h, task)
        return
    if sem.owner is not None and not sem.owner.vcpu.steal_preempted and not sem.queue:
        frame = Frame(SPIN, kernel=True, spin_kind="rwsem")
        sem.spinners[task] = frame
        v.frames.append(frame)
        return
    sem.queue.append((task, True))
    guest.block(h, task)


def up_write(h, task: Task, sem: RwSem) -> None:
    sem.owner = None
    _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def _hand_over(h, waker: Vcpu, sem: RwSem) -> None:
    """The lock is free: a running optimistic spinner takes it, else wake the queue head."""
    for spinner, frame in sem.spinners.items():
        sv = spinner.vcpu
        if sv.state == GUEST and sv.frames and sv.frames[-1] is frame:
            del sem.spinners[spinner]
            sem.owner = spinner
            guest.release_spin(h, sv, frame, lambda: guest.advance(h, spinner))
            return
    if sem.spinners:
        _spinners_to_sleep(h, sem)
    if not sem.queue:
        return
    task, wants_write = sem.queue[0]
    if wants_write:
        sem.queue.popleft()
        _retry_later(h, waker, task, sem)
        return
    while sem.queue and not sem.queue[0][1]:
        reader, _ = sem.queue.popleft()
        sem.readers += 1
        _wake_with(h, waker, reader, None)


def _retry_later(h, waker: Vcpu, task: Task, sem: RwSem) -> None:
    """A woken writer tries again when it runs (it may find the lock stolen)."""
    _wake_with(h, waker, task, lambda: down_write(h, task, sem))


def _wake_with(h, waker: Vcpu, task: Task, then) -> None:
    task.resume_with = then
    guest.wake(h, task, waker)


def _spinners_to_sleep(h, sem: RwSem) -> None:
    """Spinners whose owner vanished or was preempted give up and queue to sleep."""
    for spinner, frame in list(sem.spinners.items()):
        del sem.spinners[spinner]
        sem.queue.append((spinner, True))
        guest.release_spin(h, spinner.vcpu, frame, lambda s=spinner: guest.block(h, s))


def owner_preempted(h, v: Vcpu) -> None:
    """kvm.preempt_out hook: rwsem spinners stop spinning when the owner's vCPU is preempted."""
    mm = v.vm.mm
    sem = getattr(mm, "mmap_sem", None)
    if sem is not None and sem.spinners and sem.owner is not None and sem.owner.vcpu is v:
        _spinners_to_sleep(h, sem)
