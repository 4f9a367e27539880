"""Guest locks: queued spinlocks (native and paravirt) and mmap_sem as a sleeping rwsem.

**Queued spinlock** (kernel/locking/qspinlock.c, 5.x).  The lock word has a
*locked* byte (the holder), a *pending* bit and a *tail* (the MCS queue of
waiters; ``QSpinLock.queue``, its first element is the queue head).  Unlock
only releases the locked byte (``queued_spin_unlock``): it never hands the
lock over.  Whoever may take a free word takes it the moment it executes its
spin loop:

- native (``pv_spinlock`` off: the ``kvm-hint-dedicated`` guest, or no
  KVM_FEATURE_PV_UNHALT): a newcomer takes a word that is all zero
  (fast path); one that finds it only locked sets *pending* and spins on the
  locked byte (the pending waiter, first in line); everyone else queues.  The
  queue head waits for locked and pending to clear (``atomic_cond_read_acquire
  (!(VAL & _Q_LOCKED_PENDING_MASK))``), takes the lock, and passes the MCS
  lock to the next node.  A preempted head or pending waiter stalls the lock.
- paravirt (``__pv_queued_spin_lock_slowpath``, qspinlock_paravirt.h): a
  newcomer that misses the fast path spins in
  ``pv_hybrid_queued_unfair_trylock``: it *steals* a free word as long as the
  queue is non-empty and the head has not set pending; it queues once the
  queue is empty or pending is set.  The head (``pv_wait_head_or_lock``) sets
  pending when its loop starts executing, so stealing is shut only while the
  head actively spins (or is preempted in the middle of that loop); a head
  that is preempted before its loop, or halted, leaves pending clear and the
  lock to stealers.  After ``SPIN_THRESHOLD`` iterations the head clears
  pending, hashes the lock (``pv_hash``), sets ``_Q_SLOW_VAL`` (once per
  acquisition) and halts in ``pv_wait``; the unlocker that finds
  ``_Q_SLOW_VAL`` unhashes, releases and issues KICK_CPU to the hashed vCPU
  (``__pv_queued_spin_unlock_slowpath``).  A queued non-head node
  (``pv_wait_node``) spins ``SPIN_THRESHOLD`` iterations then halts, and every
  ``PV_PREV_CHECK_MASK + 1`` iterations *while spinning* checks its
  predecessor: it halts early when ``prev->state != vcpu_running``; with
  ``pv_wait_early`` (guests 4.17-5.3, 75437bb304b2, reverted by 89340d0935c9)
  also when ``vcpu_is_preempted(prev->cpu)``.  When a head takes the lock and
  passes the MCS lock to a halted next node, ``pv_kick_node`` only hashes it
  and sets ``_Q_SLOW_VAL``: the new holder's unlock wakes it.  A waiter woken
  without the MCS lock or the lock word (a spurious wake-up: an interrupt)
  spins again.
- virt_spin_lock (``slowpath``: HLT exits disabled, so no PV_UNHALT): an
  unqueued test-and-set loop; whoever polls the free word first takes it.
- ``spin_lock_irqsave`` (``irqsave``): the waiter spins and halts with
  interrupts disabled (``kvm_wait`` executes HLT with IF = 0, which only
  KICK_CPU ends), and takes no interrupt until ``spin_unlock_irqrestore``.

Spinning costs one ``hardware.pause_cycles`` per loop iteration (a PAUSE and
a load of the lock word), so ``SPIN_THRESHOLD`` is 2^15 of them; spinning is
CPL-0 PAUSE, subject to PLE (``model.spin``).  When several stealers execute
as the word is freed, the cache-line race goes to the one whose poll comes
first: each draws its phase within an iteration from its vCPU's stream.

**rwsem** (kernel/locking/rwsem.c), for ebizzy's mmap_sem: readers share,
writers exclude; a writer that finds the lock taken spins optimistically while
the owner is a writer whose vCPU runs (rwsem_spin_on_owner checks
vcpu_is_preempted), else sleeps in a FIFO queue.  Unlock grants the lock to a
running spinner, else wakes the queue head (readers are woken as a batch and
granted the lock, as rwsem_mark_wake does; a woken writer retries).
"""

from __future__ import annotations

import math
from collections import deque
from enum import IntEnum
from typing import TYPE_CHECKING

from model import guest, spin
from model.vcpu import GUEST, PVWAIT, SPIN, Frame, Task, Vcpu

if TYPE_CHECKING:
    from model.host import Host

# kernel/locking/qspinlock_paravirt.h and arch/x86/include/asm/spinlock.h (5.x)
SPIN_THRESHOLD = 1 << 15  # loop iterations before pv_wait (head and nodes)
PV_PREV_CHECK_MASK = 0xFF  # pv_wait_early(): the predecessor is checked when (loop & mask) == 0


class PvNodeState(IntEnum):
    """``enum vcpu_state`` of a pv_node (qspinlock_paravirt.h); values apart from every other state enum."""

    RUNNING = 50  # vcpu_running
    HALTED = 51  # vcpu_halted: pv_wait()ing (or about to)
    HASHED = 52  # vcpu_hashed: the lock's hash entry points at it (pv_kick_node)


VCPU_RUNNING, VCPU_HALTED, VCPU_HASHED = PvNodeState

# Which slowpath the guest runs (kvm_spinlock_init, arch/x86/kernel/kvm.c).
NATIVE = "native"  # native_queued_spin_lock_slowpath (kvm-hint-dedicated, nopvspin)
PARAVIRT = "paravirt"  # __pv_queued_spin_lock_slowpath
VIRT_TAS = "virt"  # virt_spin_lock(): the test-and-set fallback without KVM_FEATURE_PV_UNHALT

# What a waiter is doing.
STEAL = "steal"  # in pv_hybrid_queued_unfair_trylock (not queued)
PENDING = "pending"  # native: set the pending bit, spins on the locked byte (not queued)
NODE = "node"  # queued behind a predecessor (pv_wait_node / arch_mcs_spin_lock_contended)
HEAD = "head"  # the MCS lock is ours: waiting for the word (pv_wait_head_or_lock)

_STOP_SLACK_NS = 2.0  # a stop event lands up to 1 ns late (whole-ns events): still "at" its point


def slowpath(h: Host) -> str:
    """The guest's spinlock slowpath, as kvm_spinlock_init() picks it.

    With HLT exits disabled (cpu-pm=on, ``hlt_passthrough``) KVM hides
    KVM_FEATURE_PV_UNHALT (kvm_update_cpuid: ``kvm_hlt_in_guest``), so
    kvm_spinlock_init() returns before disabling ``virt_spin_lock_key``: every
    waiter spins in virt_spin_lock()'s unqueued test-and-set loop.  Otherwise
    ``pv_spinlock`` selects the PV slowpath, its absence the native one."""
    if h.sc.vm.hlt_passthrough:
        return VIRT_TAS
    return PARAVIRT if h.sc.features.pv_spinlock else NATIVE


def iteration_ns(h: Host) -> float:
    """One spin-loop iteration: a PAUSE (``pause_cycles``, published per CPU) at the TSC rate."""
    return h.prof.pause_cycles / h.prof.tsc_ghz


class Waiter:
    """One task waiting for a queued spinlock: its pv_node and where it is in the slowpath."""

    __slots__ = ("frame", "halting", "hashed_once", "in_loop", "lock", "mcs_locked", "role", "since",
                 "state", "task")

    def __init__(self, lock: QSpinLock, task: Task, frame: Frame, since: int, role: str) -> None:
        self.lock = lock
        self.task = task
        self.frame = frame
        self.since = since
        self.role = role
        self.state = VCPU_RUNNING  # pn->state
        self.mcs_locked = False  # node->locked: the predecessor passed us the MCS lock
        self.in_loop = False  # head: inside pv_wait_head_or_lock's spin loop (pending is ours)
        self.hashed_once = False  # head: ``lp`` -- hashed (by itself or pv_kick_node) this acquisition
        self.halting = False  # a PVWAIT frame sits above our spin loop


class QSpinLock:
    """One queued spinlock.  ``irqsave``: always taken with spin_lock_irqsave (zone->lock, lru_lock)."""

    __slots__ = ("hashed", "holder", "irqsave", "pender", "pending", "queue", "saved_flags", "slow",
                 "stealers")

    def __init__(self, irqsave: bool = False) -> None:
        self.irqsave = irqsave
        self.holder: Task | None = None  # the locked byte
        self.pending = False  # the pending bit
        self.slow = False  # locked == _Q_SLOW_VAL: the unlocker must kick the hashed head
        self.hashed: Waiter | None = None  # pv_hash entry of this lock
        self.queue: deque[Waiter] = deque()  # the MCS queue (tail != 0 iff non-empty); [0] is the head
        self.stealers: list[Waiter] = []  # PV: spinning in the unfair trylock
        self.pender: Waiter | None = None  # native: the pending-bit waiter
        self.saved_flags: dict[Task, bool] = {}  # irqsave: the IF state to restore on unlock


def spin_lock(h: Host, task: Task, lock: QSpinLock, irqsave: bool | None = None) -> None:
    """A ``call`` op: take the lock, or spin for it (the task goes on once it holds it).

    ``irqsave`` (default: the lock's): spin_lock_irqsave() -- local_irq_save()
    before the lock, so the waiter spins and pv_wait-halts with IF = 0 and
    takes no interrupt until spin_unlock_irqrestore() (``spin_unlock``)."""
    v = task.vcpu
    if lock.irqsave if irqsave is None else irqsave:
        lock.saved_flags[task] = v.irqs_off
        v.irqs_off = True
    mode = slowpath(h)
    now = h.engine.now
    if lock.holder is None and not lock.pending and (mode != NATIVE or not lock.queue):
        # queued_spin_lock()'s cmpxchg on an all-zero word; with PV a word with
        # only a tail is taken by the first unfair trylock: a steal
        if lock.queue:
            h.stats.count(v, "spinlock_steals")
        _hold(h, lock, task, now)
        guest.advance(h, task)
        return
    frame = Frame(SPIN, kernel=True, spin_kind="qspin")
    if mode != NATIVE:  # the unfair trylock (PV) or the test-and-set loop (virt_spin_lock)
        w = Waiter(lock, task, frame, now, STEAL)
        lock.stealers.append(w)
    elif lock.holder is not None and not lock.pending and not lock.queue:
        w = Waiter(lock, task, frame, now, PENDING)  # queued_fetch_set_pending_acquire()
        lock.pending = True
        lock.pender = w
    else:
        w = Waiter(lock, task, frame, now, NODE)
        _enqueue(h, w)
    frame.waiter = w
    v.frames.append(frame)  # executed (and evaluated) when the caller resumes the vCPU


def spin_unlock(h: Host, task: Task, lock: QSpinLock) -> None:
    """A ``call`` op: release the locked byte; with ``_Q_SLOW_VAL`` kick the hashed head.

    ``__pv_queued_spin_unlock``: a plain release unless the word holds
    ``_Q_SLOW_VAL``; then ``__pv_queued_spin_unlock_slowpath`` unhashes the
    head, releases the lock, and KICK_CPUs the head's vCPU (whether or not it
    still sleeps).  The lock goes to whoever executes first; nobody is handed it."""
    v = task.vcpu
    if task in lock.saved_flags:  # spin_unlock_irqrestore(): pending interrupts are taken on resume
        v.irqs_off = lock.saved_flags.pop(task)
    lock.holder = None
    kicked = None
    if lock.slow:
        kicked, lock.hashed, lock.slow = lock.hashed, None, False
    _word_free(h, lock)
    if kicked is None:
        guest.advance(h, task)
        return
    spin.kick_cpu_hypercall(h, v, kicked.task.vcpu, lambda: guest.advance(h, task))


def _hold(h: Host, lock: QSpinLock, task: Task, since: int) -> None:
    lock.holder = task
    h.stats.sample(task.vcpu, "lock_waits", h.engine.now - since)


def _enqueue(h: Host, w: Waiter) -> None:
    """xchg_tail(): join the MCS queue; with no predecessor we are the head at once."""
    lock = w.lock
    if not lock.queue:
        w.role = HEAD
        w.mcs_locked = True
    else:
        w.role = NODE
    lock.queue.append(w)


def _spinning_now(v: Vcpu, frame: Frame) -> bool:
    """The vCPU is in the guest executing this spin loop (not an interrupt handler above it)."""
    return v.state == GUEST and v.seg_start >= 0 and bool(v.frames) and v.frames[-1] is frame


def _word_free(h: Host, lock: QSpinLock) -> None:
    """The locked byte just cleared: an executing waiter allowed to take it does so now."""
    if slowpath(h) != NATIVE:
        if lock.pending:  # trylock_clear_pending(): only the head spinning in its loop
            takers = [lock.queue[0]] if lock.queue and lock.queue[0].in_loop else []
        else:
            takers = list(lock.stealers)
    else:
        takers = [lock.pender] if lock.pender is not None else [w for w in lock.queue if w.role == HEAD]
    takers = [w for w in takers if _spinning_now(w.task.vcpu, w.frame)]
    if not takers:
        return
    if len(takers) > 1:  # the cache-line race: whose next poll lands first
        takers.sort(key=lambda w: w.task.vcpu.rng.random())
    _take(h, takers[0])


def _take(h: Host, w: Waiter) -> None:
    """``w`` takes the free lock word while executing its spin loop."""
    lock = w.lock
    v = w.task.vcpu
    _hold(h, lock, w.task, w.since)
    if w.role == STEAL:
        lock.stealers.remove(w)
        if lock.queue:
            h.stats.count(v, "spinlock_steals")
    elif w.role == PENDING:
        lock.pender = None
        lock.pending = False  # clear_pending_set_locked()
    else:  # HEAD: set_locked, then hand the MCS lock to the next node
        lock.queue.popleft()
        if w.in_loop:
            lock.pending = False  # trylock_clear_pending()
        if lock.queue:
            nxt = lock.queue[0]
            nxt.mcs_locked = True  # arch_mcs_spin_unlock_contended(&next->locked)
            if nxt.state == VCPU_HALTED:  # (PV only: native nodes never halt)
                # pv_kick_node(): advance the halted node to hashed; our unlock kicks it
                nxt.state = VCPU_HASHED
                lock.slow = True
                lock.hashed = nxt
            _poke(h, nxt)
        else:
            _poke_stealers(h, lock)  # the tail cleared: unfair trylockers queue
    w.frame.waiter = None
    task = w.task
    guest.release_spin(h, v, w.frame, lambda: guest.advance(h, task))


def _poke(h: Host, w: Waiter) -> None:
    """Something ``w`` polls changed: if it is executing its loop it sees it at once."""
    v = w.task.vcpu
    if _spinning_now(v, w.frame):
        spin.respin(h, v, w.frame)


def _poke_stealers(h: Host, lock: QSpinLock) -> None:
    for w in list(lock.stealers):
        if w in lock.stealers:
            _poke(h, w)


def _successor(w: Waiter) -> Waiter | None:
    q = w.lock.queue
    try:
        i = q.index(w)
    except ValueError:
        return None
    return q[i + 1] if i + 1 < len(q) else None


def _set_state(h: Host, w: Waiter, state: int) -> None:
    """WRITE_ONCE(pn->state, ...): the next node's pv_wait_early() may now see it."""
    if w.state != state:
        w.state = state
        nxt = _successor(w)
        if nxt is not None:
            _poke(h, nxt)


def _prev_stalled(h: Host, w: Waiter) -> bool:
    """pv_wait_early()'s condition on our predecessor (5.4+: its state; 4.17-5.3: or preempted)."""
    q = w.lock.queue
    i = q.index(w)
    if i == 0:
        return False
    prev = q[i - 1]
    if prev.state != VCPU_RUNNING:
        return True
    return h.sc.features.pv_wait_early and prev.task.vcpu.steal_preempted


def qspin_spinning(h: Host, v: Vcpu, f: Frame) -> float | None:
    """The spin loop of ``f`` executes (it just resumed, or something it polls changed).

    Returns the spinning (ns) until the waiter's next decision point (inf:
    none), or None when it took the lock or halted here."""
    w: Waiter = f.waiter
    lock = w.lock
    mode = slowpath(h)
    pv = mode == PARAVIRT
    if w.halting:  # back from pv_wait (kicked, or an interrupt with IF = 1)
        w.halting = False
        if w.role == NODE:
            if w.state == VCPU_HALTED:  # cmpxchg(&pn->state, vcpu_halted, vcpu_running)
                _set_state(h, w, VCPU_RUNNING)
            if not w.mcs_locked:
                f.budget = SPIN_THRESHOLD * iteration_ns(h)  # spurious wake-up: spin again
        else:
            w.in_loop = False  # pv_wait_head_or_lock: next round of the loop
    if w.role == STEAL:
        if lock.holder is None and not lock.pending:
            _take(h, w)
            return None
        if mode == VIRT_TAS or (lock.queue and not lock.pending):
            return math.inf
        lock.stealers.remove(w)  # no tail, or the head spins: queue (xchg_tail)
        _enqueue(h, w)
        if w.role == NODE:
            f.budget = SPIN_THRESHOLD * iteration_ns(h)
    if w.role == PENDING:
        if lock.holder is None:
            _take(h, w)
            return None
        return math.inf
    if w.role == NODE and w.mcs_locked:
        w.role = HEAD  # pv_wait_node() returns: node->locked
        if w.state == VCPU_HASHED:
            w.hashed_once = True  # pv_kick_node() hashed us: lp = 1
    if w.role == NODE:
        return _node_spinning(h, v, w) if pv else math.inf
    # HEAD
    if not pv:
        if lock.holder is None and not lock.pending:
            _take(h, w)
            return None
        return math.inf
    if not w.in_loop:  # a round of pv_wait_head_or_lock: running, set_pending, spin
        _set_state(h, w, VCPU_RUNNING)
        w.in_loop = True
        lock.pending = True
        f.budget = SPIN_THRESHOLD * iteration_ns(h)
        _poke_stealers(h, lock)
    if lock.holder is None:
        _take(h, w)
        return None
    if f.budget > _STOP_SLACK_NS:
        return f.budget
    # SPIN_THRESHOLD spent: clear_pending, hash once with _Q_SLOW_VAL, pv_wait
    w.in_loop = False
    lock.pending = False
    if not w.hashed_once:
        w.hashed_once = True
        lock.hashed = w
        lock.slow = True  # xchg(&lock->locked, _Q_SLOW_VAL) != 0: the lock is held
    if not lock.slow:
        # pv_wait(&lock->locked, _Q_SLOW_VAL) returns at once: the holder is not
        # the one we hashed for (we were kicked and the lock was stolen); go round
        w.in_loop = True
        lock.pending = True
        f.budget = SPIN_THRESHOLD * iteration_ns(h)
        return f.budget
    _set_state(h, w, VCPU_HASHED)
    _pv_wait(h, v, w)
    return None


def _node_spinning(h: Host, v: Vcpu, w: Waiter) -> float | None:
    """pv_wait_node(): spin on node->locked; check the predecessor every 256 iterations."""
    f = w.frame
    if f.budget <= _STOP_SLACK_NS:  # SPIN_THRESHOLD iterations spun
        _node_halt(h, v, w)
        return None
    if not _prev_stalled(h, w):
        return f.budget
    # the checks fall at iterations 0, 256, 512... of the loop (loop & PV_PREV_CHECK_MASK == 0)
    period = (PV_PREV_CHECK_MASK + 1) * iteration_ns(h)
    done = SPIN_THRESHOLD * iteration_ns(h) - f.budget
    past = done - math.floor((done + _STOP_SLACK_NS) / period) * period
    if past <= _STOP_SLACK_NS:
        _node_halt(h, v, w)  # pv_wait_early() is true at this check
        return None
    return min(f.budget, period - past)


def _node_halt(h: Host, v: Vcpu, w: Waiter) -> None:
    """smp_store_mb(pn->state, vcpu_halted); pv_wait(&pn->state, vcpu_halted)."""
    _set_state(h, w, VCPU_HALTED)
    _pv_wait(h, v, w)


def _pv_wait(h: Host, v: Vcpu, w: Waiter) -> None:
    """pv_wait() -> kvm_wait(): HLT above the spin loop (with IF as the lock call left it)."""
    h.stats.count(v, "pv_waits")
    guest.pause(h, v)
    w.halting = True
    v.frames.append(Frame(PVWAIT, kernel=True))
    guest.resume(h, v)


def owner_preempted_qspin(h: Host, v: Vcpu) -> None:
    """pv_wait_early (4.17-5.3): a waiter's vCPU is put; the next node's check may now fire."""
    for f in v.frames:
        if f.kind == SPIN and f.spin_kind == "qspin" and f.waiter is not None:
            nxt = _successor(f.waiter)
            if nxt is not None:
                h.engine.after(0, _poke_if_waiting, h, nxt)  # after kvm_sched_out sets the preempted bit


def _poke_if_waiting(h: Host, w: Waiter) -> None:
    if w.frame.waiter is w:
        _poke(h, w)


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


def _handoff(h: Host, sem: RwSem) -> bool:
    """The head sleeper waited past RWSEM_WAIT_TIMEOUT: spinners may not steal."""
    return bool(sem.queue) and h.engine.now - sem.queue[0][2] > RWSEM_WAIT_TIMEOUT_NS


def down_read(h: Host, task: Task, sem: RwSem) -> None:
    if sem.owner is None and not sem.queue and not _writer_spinning(sem):
        sem.readers += 1
        guest.advance(h, task)
    elif h.sc.features.rwsem_reader_spin and _owner_running(sem) and not _handoff(h, sem):
        # readers spin on a running writer in guests 5.3-5.10 (cf69482d62d9; 617f3ef95177 removed it)
        _spin(h, task, sem, wants_write=False, budget=float("inf"))
    else:
        _sleep(h, task, sem, wants_write=False)


def up_read(h: Host, task: Task, sem: RwSem) -> None:
    sem.readers -= 1
    if sem.readers == 0:
        _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def down_write(h: Host, task: Task, sem: RwSem) -> None:
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


def up_write(h: Host, task: Task, sem: RwSem) -> None:
    sem.owner = None
    _hand_over(h, task.vcpu, sem)
    guest.advance(h, task)


def _writer_spinning(sem: RwSem) -> bool:
    return bool(sem.spinners) and any(w for _, w in sem.spinners.values())


def _spin(h: Host, task: Task, sem: RwSem, wants_write: bool, budget: float) -> None:
    frame = Frame(SPIN, kernel=True, spin_kind="rwsem", budget=budget)
    sem.spinners[task] = (frame, wants_write)
    task.vcpu.frames.append(frame)


def _sleep(h: Host, task: Task, sem: RwSem, wants_write: bool) -> None:
    sem.queue.append((task, wants_write, h.engine.now))
    guest.block(h, task)


def _hand_over(h: Host, waker: Vcpu, sem: RwSem) -> None:
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


def _wake_with(h: Host, waker: Vcpu, task: Task, then) -> None:
    task.resume_with = then
    guest.wake(h, task, waker)


def _spinners_to_sleep(h: Host, sem: RwSem) -> None:
    """Spinners whose owner vanished or was preempted give up and queue to sleep."""
    for spinner, (frame, wants_write) in list(sem.spinners.items()):
        del sem.spinners[spinner]
        guest.release_spin(h, spinner.vcpu, frame, lambda s=spinner, w=wants_write: _sleep(h, s, sem, w))


def spin_budget_spent(h: Host, v: Vcpu, frame: Frame) -> None:
    """An rwsem reader-owned spin ran out: the writer goes to sleep."""
    spinner_need_resched(h, v, frame)


def spinner_need_resched(h: Host, v: Vcpu, frame: Frame) -> None:
    """An rwsem spinner stops (need_resched, or its spin budget is spent) and sleeps."""
    sem = v.vm.mm.mmap_sem
    for task, (f, wants_write) in list(sem.spinners.items()):
        if f is frame:
            del sem.spinners[task]
            guest.release_spin(h, v, frame, lambda t=task, w=wants_write: _sleep(h, t, sem, w))
            return


def register(h: Host) -> None:
    """The guest's locks as seen by the hypervisor and the guest scheduler (``model.host.Hooks``)."""
    h.hooks.vcpu_preempted = owner_preempted
    h.hooks.rwsem_spin_need_resched = spinner_need_resched


def owner_preempted(h: Host, v: Vcpu) -> None:
    """``hooks.vcpu_preempted`` (kvm_sched_out of a runnable ``v``): rwsem spinners stop when the
    owner's vCPU is preempted (owner_on_cpu() reads vcpu_is_preempted()); with ``pv_wait_early``
    the next node of a spinlock waiter on ``v`` may halt."""
    if slowpath(h) == PARAVIRT and h.sc.features.pv_wait_early:
        owner_preempted_qspin(h, v)
    sem = getattr(v.vm.mm, "mmap_sem", None)
    if sem is not None and sem.spinners and sem.owner is not None and sem.owner.vcpu is v:
        _spinners_to_sleep(h, sem)
