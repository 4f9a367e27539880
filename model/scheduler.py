"""The host CFS scheduler, as on a >= 8-CPU host before 6.6 (kernel/sched/fair.c).

Per-pCPU run queues ordered by vruntime (nice 0 for every vCPU thread, so
vruntime advances 1:1 with run time).  Slice end is one event, not a tick
per millisecond.  When ``__schedule()`` picks the thread that was running
(slice end or yield with nothing better to run) there is no context switch and
no preempt notifier (prepare_task_switch runs only when prev != next), so KVM
sets no ``preempted`` flag: :func:`picks_again` / :func:`keep_running`.  With
floating threads a pCPU that goes idle pulls a runnable thread at once
(:func:`newidle_balance`), besides the periodic balance.  ``yield_to`` follows ``yield_to()`` in kernel/sched/core.c
and ``yield_to_task_fair()``: ESRCH when both run queues hold one task, a
no-op when the target runs or sleeps, else a next buddy on the target's run
queue, a reschedule there and a yield of the caller.  A wake-up that preempts
(check_preempt_wakeup) also makes the wakee the next buddy, and on a run queue of
at least ``sched_nr_latency`` threads the preempted one the last buddy; NEXT_BUDDY
(buddy on every wake-up) is off by default and not modelled.
"""

from __future__ import annotations

from dataclasses import dataclass

from model.host import IDLE, SWITCH, Host, Pcpu
from model.vcpu import ACCT_RUNNABLE, EXIT, RUNNABLE, Vcpu


@dataclass(frozen=True, slots=True)
class CfsParams:
    """kernel/sched/fair.c defaults on >= 8 CPUs (factor 1 + ilog2(8) = 4)."""

    latency_ns: int = 24_000_000  # sysctl_sched_latency
    min_granularity_ns: int = 3_000_000  # sysctl_sched_min_granularity
    wakeup_granularity_ns: int = 4_000_000  # sysctl_sched_wakeup_granularity
    nr_latency: int = 8  # sched_nr_latency
    balance_interval_ns: int = 4_000_000  # sd->balance_interval of the LLC domain (ms ~ CPUs)
    migration_cost_ns: int = 500_000  # sysctl_sched_migration_cost: task_hot(), newidle avg_idle cutoff
    avg_idle_max_ns: int = 1_000_000  # 2 * max_idle_balance_cost (starts at migration_cost; kept there)
    avg_idle_weight: int = 8  # update_avg(): avg += (sample - avg) / 8


CFS = CfsParams()

ESRCH, NOOP, YIELDED = "esrch", "noop", "yielded"


def slice_ns(nr_running: int) -> int:
    """sched_slice() with equal weights: the period shared by the runnable threads."""
    period = CFS.latency_ns
    if nr_running > CFS.nr_latency:
        period = nr_running * CFS.min_granularity_ns
    return max(period // max(nr_running, 1), CFS.min_granularity_ns)


def update_curr(h: Host, p: Pcpu) -> None:
    """Charge the running thread's run time to its vruntime; advance min_vruntime."""
    now = h.engine.now
    curr = p.curr
    if curr is not None:
        curr.vruntime += now - curr.exec_start
        curr.exec_start = now
    floor = curr.vruntime if curr is not None else None
    for t in p.rq:  # the leftmost queued vruntime (a plain loop: this runs on every switch)
        if floor is None or t.vruntime < floor:
            floor = t.vruntime
    if floor is not None and floor > p.min_vruntime:
        p.min_vruntime = floor


# -- waking and placing ------------------------------------------------------


def select_pcpu(h: Host, v: Vcpu) -> Pcpu:
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


def wake(h: Host, v: Vcpu, waker: Pcpu | None) -> None:
    """try_to_wake_up of a blocked vCPU thread: place, enqueue, maybe preempt."""
    p = select_pcpu(h, v)
    _migrate_vruntime(v, p)
    # place_entity(): sleeper credit of half a latency (GENTLE_FAIR_SLEEPERS)
    v.vruntime = max(v.vruntime, p.min_vruntime - CFS.latency_ns // 2)
    v.state = RUNNABLE
    v.account(ACCT_RUNNABLE, h.engine.now)
    enqueue(h, p, v, remote=waker is not p)


def enqueue(h: Host, p: Pcpu, v: Vcpu, remote: bool) -> None:
    v.pcpu = p
    p.rq.append(v)
    if p.curr is None:
        _end_idle(h, p)
        if not p.pick_pending:
            p.pick_pending = True
            delay = int(h.prof.host_wakeup_ns) if remote else 0
            h.engine.after(delay, _pick_on_idle, h, p)
        return
    update_curr(h, p)
    if p.curr.vruntime - v.vruntime > CFS.wakeup_granularity_ns:
        if not p.need_resched:  # check_preempt_wakeup() returns early when TIF_NEED_RESCHED is set
            _wakeup_preempt(h, p, v)
    else:
        _arm_slice(h, p)


def _wakeup_preempt(h: Host, p: Pcpu, wakee: Vcpu) -> None:
    """check_preempt_wakeup() when the wakee is ahead of the running thread by more than the
    wakeup granularity: ``set_next_buddy(pse)`` ("bias pick_next to pick the sched entity that
    is triggering this preemption"), ``resched_curr()``, and with LAST_BUDDY, when ``scale``
    (``cfs_rq->nr_running >= sched_nr_latency``), ``set_last_buddy(se)`` of the preempted
    thread."""
    p.next_buddy = wakee
    if p.nr_running >= CFS.nr_latency:
        p.last_buddy = p.curr
    resched(h, p)


def _pick_on_idle(h: Host, p: Pcpu) -> None:
    p.pick_pending = False
    if p.curr is None:
        schedule(h, p)


def _migrate_vruntime(v: Vcpu, dst: Pcpu) -> None:
    src = v.pcpu
    if src is not dst:
        v.vruntime = v.vruntime - src.min_vruntime + dst.min_vruntime


# -- running -----------------------------------------------------------------


def resched(h: Host, p: Pcpu) -> None:
    """resched_curr(): the running thread must leave at its next chance."""
    if p.need_resched or p.curr is None:
        return
    p.need_resched = True
    h.hooks.resched_curr(h, p.curr)


def _arm_slice(h: Host, p: Pcpu) -> None:
    """Slice end as one re-armable timer: check_preempt_tick()'s ideal_runtime rule.

    Re-armed on every enqueue, pick and switch (the deadline moves with
    ``nr_running``), so it is an :class:`~model.engine.Timer`: moving it later
    or cancelling it pushes nothing onto the event heap."""
    timer = p.slice_end
    if timer is None:
        timer = p.slice_end = h.engine.timer(_slice_expired, h, p)
    nr = p.nr_running
    if p.curr is None or nr <= 1:
        timer.cancel()
        return
    end = p.curr_start + slice_ns(nr)
    now = h.engine.now
    timer.arm(max(now, end))


def _slice_expired(h: Host, p: Pcpu) -> None:
    if p.rq:
        resched(h, p)


def _choose(p: Pcpu, candidates: list[Vcpu]) -> Vcpu | None:
    """pick_next_entity()'s choice, without its side effects: leftmost, unless skip / next buddies say otherwise."""
    if not candidates:
        return None
    # the leftmost and the second by (vruntime, gid), in one pass (gid is unique: a total order)
    left = second = None
    for t in candidates:
        if left is None or (t.vruntime, t.gid) < (left.vruntime, left.gid):
            left, second = t, left
        elif second is None or (t.vruntime, t.gid) < (second.vruntime, second.gid):
            second = t
    pick = left
    if p.skip_buddy is left and second is not None and second.vruntime - left.vruntime <= CFS.wakeup_granularity_ns:
        pick = second
    lb = p.last_buddy  # "prefer last buddy, try to return the CPU to a preempted task"
    if lb is not None and lb in candidates and lb.vruntime - left.vruntime <= CFS.wakeup_granularity_ns:
        pick = lb
    nb = p.next_buddy
    if nb is not None and nb in candidates and nb.vruntime - left.vruntime <= CFS.wakeup_granularity_ns:
        pick = nb
    return pick


def _clear_buddies(p: Pcpu, picked: Vcpu) -> None:
    """clear_buddies(): every buddy pointer at ``picked`` (on pick, and when it leaves the queue)."""
    if p.next_buddy is picked:
        p.next_buddy = None
    if p.skip_buddy is picked:
        p.skip_buddy = None
    if p.last_buddy is picked:
        p.last_buddy = None


def pick_next(p: Pcpu) -> Vcpu | None:
    """pick_next_entity() over the queued threads; clears the buddy it picks."""
    pick = _choose(p, p.rq)
    if pick is not None:
        _clear_buddies(p, pick)
    return pick


def picks_again(h: Host, p: Pcpu, v: Vcpu) -> bool:
    """Would ``__schedule()`` pick the running ``v`` again?

    put_prev_entity() puts the still-runnable prev back in the tree and
    pick_next_entity() chooses among all of them (prev included)."""
    update_curr(h, p)
    return _choose(p, [*p.rq, v]) is v


def keep_running(h: Host, p: Pcpu, v: Vcpu) -> None:
    """prev == next in ``__schedule()``: no context switch, no sched-out/in notifier.

    set_next_entity() still restarts the slice (prev_sum_exec_runtime)."""
    p.need_resched = False
    _clear_buddies(p, v)
    p.curr_start = h.engine.now
    p.repicks += 1
    _arm_slice(h, p)


def _vruntime_key(v: Vcpu) -> tuple[int, int]:
    return (v.vruntime, v.gid)


def schedule(h: Host, p: Pcpu) -> None:
    """__schedule() on a pCPU whose current thread has left (or that is idle)."""
    p.need_resched = False
    update_curr(h, p)
    nxt = pick_next(p)
    if nxt is None and h.sc.pinning == "none" and newidle_balance(h, p):
        nxt = pick_next(p)
    if nxt is None:
        if p.idle_stamp < 0:
            p.idle_stamp = h.engine.now
        if p.mode != IDLE:
            p.set_mode(IDLE, h.engine.now)
            _sibling_changed(h, p)
        _arm_slice(h, p)
        return
    p.rq.remove(nxt)
    switch_to(h, p, nxt)


def switch_to(h: Host, p: Pcpu, v: Vcpu) -> None:
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
    v.exit_event = h.engine.after(cost, h.hooks.sched_in, h, v)  # finish_task_switch: preempt notifiers' sched_in


def leave(h: Host, p: Pcpu, v: Vcpu, runnable: bool) -> None:
    """The running thread stops: preempted or yielding (runnable) or blocked.

    The caller has ruled out ``__schedule()`` picking ``v`` again
    (:func:`picks_again`), so this is a context switch and the sched-out
    preempt notifier runs first (prepare_task_switch, before the pick here:
    nothing the pick reads depends on it)."""
    h.hooks.sched_out(h, v, runnable)
    update_curr(h, p)
    p.curr = None
    if runnable:
        p.rq.append(v)
    schedule(h, p)


def _sibling_changed(h: Host, p: Pcpu) -> None:
    """SMT: the sibling's guest code changes speed when this pCPU goes busy or idle."""
    if p.sibling is not None:
        other = h.pcpus[p.sibling].curr
        if other is not None:
            h.hooks.smt_speed_changed(h, other)


# -- yield_to ----------------------------------------------------------------


def yield_to(h: Host, me: Vcpu, target: Vcpu) -> str:
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


def _end_idle(h: Host, p: Pcpu) -> None:
    """ttwu_do_wakeup() on an idle rq: fold the idle period into avg_idle (update_avg, capped)."""
    if p.idle_stamp >= 0:
        sample = h.engine.now - p.idle_stamp
        p.avg_idle_ns += (sample - p.avg_idle_ns) // CFS.avg_idle_weight
        p.avg_idle_ns = min(p.avg_idle_ns, CFS.avg_idle_max_ns)
        p.idle_stamp = -1


def _domains(h: Host, p: Pcpu) -> list[list[Pcpu]]:
    """The sched domains above ``p``, lowest first: SMT sibling, socket (MC/LLC), host (NUMA)."""
    levels = []
    if p.sibling is not None:
        levels.append([h.pcpus[p.sibling]])
    levels.append([h.pcpus[c] for c in h.socket_cpus[p.socket]])
    if len(h.socket_cpus) > 1:
        levels.append(h.pcpus)
    return levels


def newidle_balance(h: Host, p: Pcpu) -> bool:
    """newidle_balance(): ``p`` is about to go idle; pull one runnable thread now.

    Rules kept from kernel/sched/fair.c: skipped when ``avg_idle`` is below
    sysctl_sched_migration_cost (the pCPU's idle periods are too short to be
    worth it); domains are tried from the lowest (SMT, then the socket's LLC,
    then the whole host) and the first that yields a thread ends the search
    (``pulled_task``); within a domain the busiest run queue is tried first
    (find_busiest_queue); a thread is taken only if it is queued (not
    running), may run here (not pinned) and is not cache hot (task_hot: it
    ran within sysctl_sched_migration_cost); detach_tasks() takes from the
    tail of cfs_tasks, the thread that ran least recently.  Not modelled: the
    per-domain max_newidle_lb_cost cutoff and nr_balance_failed /
    cache_nice_tries (a cache-hot thread is never pulled)."""
    if p.avg_idle_ns < CFS.migration_cost_ns:
        return False
    now = h.engine.now
    for domain in _domains(h, p):
        sources = sorted((q for q in domain if q is not p and q.rq), key=lambda q: (-q.nr_running, q.id))
        for src in sources:
            movable = [v for v in src.rq if v.pinned is None and now - v.exec_start >= CFS.migration_cost_ns]
            if not movable:
                continue
            v = min(movable, key=lambda t: (t.exec_start, t.gid))
            src.rq.remove(v)
            _clear_buddies(src, v)
            _migrate_vruntime(v, p)
            v.pcpu = p
            p.rq.append(v)
            p.newidle_pulls += 1
            return True
    return False


def start_balancing(h: Host) -> None:
    h.engine.after(CFS.balance_interval_ns, _balance, h)


def _balance(h: Host) -> None:
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
            _clear_buddies(src, v)
            _migrate_vruntime(v, dst)
            enqueue(h, dst, v, remote=True)
            queued = sorted((p for p in queued if p.rq), key=lambda p: (-len(p.rq), p.id))
    h.engine.after(CFS.balance_interval_ns, _balance, h)
