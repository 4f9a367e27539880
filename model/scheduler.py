"""The host CFS scheduler, as on a >= 8-CPU host before 6.6 (kernel/sched/fair.c).

Per-pCPU run queues ordered by vruntime (nice 0 for every vCPU thread, so
vruntime advances 1:1 with run time).  Slice end is one event, not a tick
per millisecond.  ``yield_to`` follows ``yield_to()`` in kernel/sched/core.c
and ``yield_to_task_fair()``: ESRCH when both run queues hold one task, a
no-op when the target runs or sleeps, else a next buddy on the target's run
queue, a reschedule there and a yield of the caller.
"""

from __future__ import annotations

from dataclasses import dataclass

from model import kvm
from model.host import IDLE, SWITCH, Pcpu
from model.vcpu import ACCT_RUNNABLE, EXIT, RUNNABLE, Vcpu


@dataclass(frozen=True, slots=True)
class CfsParams:
    """kernel/sched/fair.c defaults on >= 8 CPUs (factor 1 + ilog2(8) = 4)."""

    latency_ns: int = 24_000_000  # sysctl_sched_latency
    min_granularity_ns: int = 3_000_000  # sysctl_sched_min_granularity
    wakeup_granularity_ns: int = 4_000_000  # sysctl_sched_wakeup_granularity
    nr_latency: int = 8  # sched_nr_latency
    balance_interval_ns: int = 4_000_000  # sd->balance_interval of the LLC domain (ms ~ CPUs)


CFS = CfsParams()

ESRCH, NOOP, YIELDED = "esrch", "noop", "yielded"


def slice_ns(nr_running: int) -> int:
    """sched_slice() with equal weights: the period shared by the runnable threads."""
    period = CFS.latency_ns
    if nr_running > CFS.nr_latency:
        period = nr_running * CFS.min_granularity_ns
    return max(period // max(nr_running, 1), CFS.min_granularity_ns)


def update_curr(h, p: Pcpu) -> None:
    """Charge the running thread's run time to its vruntime; advance min_vruntime."""
    now = h.engine.now
    curr = p.curr
    if curr is not None:
        curr.vruntime += now - curr.exec_start
        curr.exec_start = now
    floor = curr.vruntime if curr is not None else None
    if p.rq:
        left = min(t.vruntime for t in p.rq)
        floor = left if floor is None else min(floor, left)
    if floor is not None and floor > p.min_vruntime:
        p.min_vruntime = floor


# -- waking and placing ------------------------------------------------------


def select_pcpu(h, v: Vcpu) -> Pcpu:
    """Wake-up placement (MODEL.md section 2; select_idle_sibling in spirit)."""
    if v.pinned is not None:
        return h.pcpus[v.pinned]
    prev = v.pcpu
    if _idle(prev):
        return prev
    if prev.sibling is not None and _idle(h.pcpus[prev.sibling]):
        return h.pcpus[prev.sibling]
    for cpu in h.socket_cpus[prev.socket]:
        if _idle(h.pcpus[cpu]):
            return h.pcpus[cpu]
    for p in h.pcpus:
        if _idle(p):
            return p
    return prev


def _idle(p: Pcpu) -> bool:
    return p.curr is None and not p.rq


def wake(h, v: Vcpu, waker: Pcpu | None) -> None:
    """try_to_wake_up of a blocked vCPU thread: place, enqueue, maybe preempt."""
    p = select_pcpu(h, v)
    _migrate_vruntime(v, p)
    # place_entity(): sleeper credit of half a latency (GENTLE_FAIR_SLEEPERS)
    v.vruntime = max(v.vruntime, p.min_vruntime - CFS.latency_ns // 2)
    v.state = RUNNABLE
    v.account(ACCT_RUNNABLE, h.engine.now)
    enqueue(h, p, v, remote=waker is not p)


def enqueue(h, p: Pcpu, v: Vcpu, remote: bool) -> None:
    v.pcpu = p
    p.rq.append(v)
    if p.curr is None:
        if not p.pick_pending:
            p.pick_pending = True
            delay = int(h.prof.host_wakeup_ns) if remote else 0
            h.engine.after(delay, _pick_on_idle, h, p)
        return
    update_curr(h, p)
    if p.curr.vruntime - v.vruntime > CFS.wakeup_granularity_ns:
        resched(h, p)  # check_preempt_wakeup()
    else:
        _arm_slice(h, p)


def _pick_on_idle(h, p: Pcpu) -> None:
    p.pick_pending = False
    if p.curr is None:
        schedule(h, p)


def _migrate_vruntime(v: Vcpu, dst: Pcpu) -> None:
    src = v.pcpu
    if src is not dst:
        v.vruntime = v.vruntime - src.min_vruntime + dst.min_vruntime


# -- running -----------------------------------------------------------------


def resched(h, p: Pcpu) -> None:
    """resched_curr(): the running thread must leave at its next chance."""
    if p.need_resched or p.curr is None:
        return
    p.need_resched = True
    kvm.on_resched(h, p.curr)


def _arm_slice(h, p: Pcpu) -> None:
    """Slice end as one event: check_preempt_tick()'s ideal_runtime rule."""
    h.engine.cancel(p.slice_end)
    p.slice_end = None
    nr = p.nr_running
    if p.curr is None or nr <= 1:
        return
    end = p.curr_start + slice_ns(nr)
    p.slice_end = h.engine.at(max(end, h.engine.now), _slice_expired, h, p)


def _slice_expired(h, p: Pcpu) -> None:
    p.slice_end = None
    if p.rq:
        resched(h, p)


def pick_next(p: Pcpu) -> Vcpu | None:
    """pick_next_entity(): leftmost, unless skip / next buddies say otherwise."""
    if not p.rq:
        return None
    ordered = sorted(p.rq, key=_vruntime_key)
    left = ordered[0]
    pick = left
    if p.skip_buddy is left and len(ordered) > 1:
        second = ordered[1]
        if second.vruntime - left.vruntime <= CFS.wakeup_granularity_ns:
            pick = second
    nb = p.next_buddy
    if nb is not None and nb in p.rq and nb.vruntime - left.vruntime <= CFS.wakeup_granularity_ns:
        pick = nb
    if p.next_buddy is pick:
        p.next_buddy = None
    if p.skip_buddy is pick:
        p.skip_buddy = None
    return pick


def _vruntime_key(v: Vcpu) -> tuple[int, int]:
    return (v.vruntime, v.gid)


def schedule(h, p: Pcpu) -> None:
    """__schedule() on a pCPU whose current thread has left (or that is idle)."""
    p.need_resched = False
    update_curr(h, p)
    nxt = pick_next(p)
    if nxt is None:
        if p.mode != IDLE:
            p.set_mode(IDLE, h.engine.now)
            _sibling_changed(h, p)
        _arm_slice(h, p)
        return
    p.rq.remove(nxt)
    switch_to(h, p, nxt)


def switch_to(h, p: Pcpu, v: Vcpu) -> None:
    """Context switch to ``v``; it enters the guest after the switch and vcpu_load."""
    now = h.engine.now
    was_idle = p.curr is None and p.mode == IDLE
    p.curr = v
    p.curr_start = now
    p.switches += 1
    v.pcpu = p
    v.exec_start = now
    v.state = EXIT
    p.set_mode(SWITCH, now)
    if was_idle:
        _sibling_changed(h, p)
    _arm_slice(h, p)
    cost = int(h.prof.ctx_switch_ns + h.prof.vcpu_entry_ns)
    v.exit_event = h.engine.after(cost, kvm.sched_in, h, v)


def leave(h, p: Pcpu, v: Vcpu, runnable: bool) -> None:
    """The running thread stops: preempted or yielding (runnable) or blocked."""
    update_curr(h, p)
    p.curr = None
    if runnable:
        p.rq.append(v)
    schedule(h, p)


def _sibling_changed(h, p: Pcpu) -> None:
    """SMT: the sibling's guest code changes speed when this pCPU goes busy or idle."""
    if p.sibling is not None:
        other = h.pcpus[p.sibling].curr
        if other is not None:
            kvm.speed_changed(h, other)


# -- yield_to ----------------------------------------------------------------


def yield_to(h, me: Vcpu, target: Vcpu) -> str:
    """yield_to() + yield_to_task_fair(); the caller then schedules if YIELDED."""
    mine, theirs = me.pcpu, target.pcpu
    if mine.nr_running == 1 and theirs.nr_running == 1:
        return ESRCH
    if target.state != RUNNABLE or theirs.curr is target:
        return NOOP
    theirs.next_buddy = target
    if mine.nr_running > 1:
        mine.skip_buddy = me  # yield_task_fair(): set_skip_buddy
    if theirs is not mine:
        resched(h, theirs)
    return YIELDED


# -- balancing (pinning: none) -------------------------------------------------


def start_balancing(h) -> None:
    h.engine.after(CFS.balance_interval_ns, _balance, h)


def _balance(h) -> None:
    """Periodic load balance: move runnable threads from the busiest queues to idle pCPUs."""
    idle = [p for p in h.pcpus if _idle(p) and not p.pick_pending]
    if idle:
        queued = sorted((p for p in h.pcpus if p.rq), key=lambda p: (-len(p.rq), p.id))
        for dst in idle:
            if not queued:
                break
            src = queued[0]
            v = min(src.rq, key=_vruntime_key)
            src.rq.remove(v)
            if src.next_buddy is v:
                src.next_buddy = None
            if src.skip_buddy is v:
                src.skip_buddy = None
            _migrate_vruntime(v, dst)
            enqueue(h, dst, v, remote=True)
            queued = sorted((p for p in queued if p.rq), key=lambda p: (-len(p.rq), p.id))
    h.engine.after(CFS.balance_interval_ns, _balance, h)
