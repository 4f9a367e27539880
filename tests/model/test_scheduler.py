"""The host CFS scheduler and yield_to (kernel/sched)."""

from model import scheduler
from model.scheduler import CFS, ESRCH, NOOP, YIELDED, slice_ns
from model.simulate import build, start
from model.vcpu import HALTED
from tests.model.conftest import scenario


def _host(**kw):
    h = build(scenario(**{"workload.kind": "cpu-bound", "vm.vcpus": 8, **kw}), seed=1)
    start(h)
    h.engine.run(1_000_000)
    return h


def test_slice_is_the_latency_shared_but_never_below_min_granularity():
    assert slice_ns(2) == CFS.latency_ns // 2
    assert slice_ns(16) == CFS.min_granularity_ns


def test_yield_to_fails_when_both_queues_hold_one_task():
    h = _host()
    a, b = h.vms[0].vcpus[0], h.vms[0].vcpus[1]
    assert scheduler.yield_to(h, a, b) == ESRCH


def test_yield_to_is_a_noop_when_the_target_is_running():
    h = _host(overcommit=2.0)
    me = h.pcpus[0].curr
    running_elsewhere = h.pcpus[1].curr
    assert scheduler.yield_to(h, me, running_elsewhere) == NOOP


def test_yield_to_a_runnable_target_sets_next_buddy_and_reschedules_its_pcpu():
    h = _host(overcommit=2.0)
    p1 = h.pcpus[1]
    target = p1.rq[0]
    me = h.pcpus[0].curr
    assert scheduler.yield_to(h, me, target) == YIELDED
    assert p1.next_buddy is target and p1.need_resched
    assert h.pcpus[0].skip_buddy is me


def test_dedicated_pinning_stacks_vms_on_the_same_pcpus():
    h = build(scenario(**{"vm.vcpus": 8, "overcommit": 2.0}), seed=1)
    assert [v.pinned for v in h.vms[1].vcpus] == [v.pinned for v in h.vms[0].vcpus]


def test_two_cpu_bound_vms_share_the_host_fairly():
    from tests.model.conftest import run

    r = run(**{"workload.kind": "cpu-bound", "vm.vcpus": 8, "overcommit": 2.0, "sim.duration_ms": 400})
    assert 40 < r.metrics["steal_pct"] < 60
    mine, theirs = r.metrics["compute_s_per_s"], r.metrics["corunner_compute_s_per_s"]
    assert abs(mine - theirs) / mine < 0.15
    # 4 cores x 2 busy SMT threads at smt_speed 0.62: about 5 cores' worth of work in all
    assert 4.5 < mine + theirs < 5.5


def test_floating_wakeup_placement_prefers_prev_then_sibling_then_socket_then_any():
    # 2 sockets x 2 cores x 2 threads: CPUs 0,1,4,5 on socket 0 (siblings 0/4, 1/5)
    h = build(scenario(**{"topology.sockets": 2, "topology.cores_per_socket": 2, "vm.vcpus": 2,
                          "pinning": "none", "workload.kind": "cpu-bound"}), seed=1)
    v = h.vms[0].vcpus[0]
    v.pcpu = h.pcpus[0]
    busy = object()

    def occupy(*cpus):
        for p in h.pcpus:
            p.curr = busy if p.id in cpus else None

    occupy()
    assert scheduler.select_pcpu(h, v).id == 0  # previous pCPU idle
    occupy(0)
    assert scheduler.select_pcpu(h, v).id == 4  # its idle SMT sibling
    occupy(0, 4)
    assert scheduler.select_pcpu(h, v).socket == 0  # an idle pCPU of the same socket
    occupy(0, 1, 4, 5)
    assert scheduler.select_pcpu(h, v).socket == 1  # any idle pCPU
    occupy(*range(8))
    assert scheduler.select_pcpu(h, v).id == 0  # nothing idle: the previous pCPU


# -- re-picking the running thread (MODEL.md section 2) ---------------------------------


def test_the_same_thread_picked_again_at_slice_end_is_no_context_switch():
    """__schedule() with prev == next: no switch, no sched-out notifier, no preempted flag."""
    h = _host(overcommit=2.0)
    p = h.pcpus[0]
    me, other = p.curr, p.rq[0]
    other.vruntime = me.vruntime + 10 * CFS.latency_ns  # nothing better to run than the current thread
    switches, start_slice = p.switches, p.curr_start
    scheduler.resched(h, p)  # the slice-end reschedule
    h.engine.run(h.engine.now + 200_000)
    assert p.curr is me and other in p.rq
    assert p.switches == switches and p.repicks == 1
    assert not me.preempted and not me.ready and not me.steal_preempted
    assert p.curr_start > start_slice  # set_next_entity(): a new slice starts
    assert p.slice_end.armed and not p.need_resched


def test_a_better_thread_at_slice_end_is_a_context_switch_with_the_flags_set():
    h = _host(overcommit=2.0)
    p = h.pcpus[0]
    me, other = p.curr, p.rq[0]
    other.vruntime = me.vruntime - CFS.latency_ns
    switches = p.switches
    scheduler.resched(h, p)
    h.engine.run(h.engine.now + 200_000)
    assert p.curr is other and p.switches == switches + 1 and p.repicks == 0
    assert me.preempted and me.ready and me.steal_preempted


def test_context_switches_count_only_real_switches_over_a_run():
    """Two cpu-bound threads per pCPU: every slice end switches; alone on a pCPU: none."""
    from tests.model.conftest import run

    kw = {"workload.kind": "cpu-bound", "vm.vcpus": 8, "sim.duration_ms": 100, "sim.warmup_ms": 10}
    alone = run(**kw)
    shared = run(**kw, overcommit=2.0)
    assert alone.metrics["host_context_switches_per_s"] == 0
    # 2 threads per pCPU, slice = 24 ms / 2 = 12 ms: about 1 / 12 ms switches per pCPU
    per_pcpu = shared.metrics["host_context_switches_per_s"] / 8
    assert 1e3 / 12 * 0.7 < per_pcpu < 1e3 / 12 * 1.3


# -- newidle balance (pinning: none) ---------------------------------------------------


def _floating(**kw):
    h = build(scenario(**{"workload.kind": "cpu-bound", "vm.vcpus": 8, "pinning": "none", "overcommit": 1.25,
                          **kw}), seed=1)
    start(h)
    h.engine.run(1_000_000)
    return h


def _queued(h):
    return [(p, v) for p in h.pcpus for v in p.rq]


def test_a_pcpu_going_idle_pulls_a_queued_thread_at_once():
    h = _floating()
    src, v = _queued(h)[0]
    dst = next(p for p in h.pcpus if p is not src and p.curr is not None and not p.rq)
    v.exec_start = h.engine.now - 2 * CFS.migration_cost_ns  # not cache hot
    leaving = dst.curr
    leaving.state = HALTED  # the thread blocks
    scheduler.leave(h, dst, leaving, runnable=False)
    assert dst.curr is v and v not in src.rq and dst.newidle_pulls == 1
    assert v.pcpu is dst


def test_newidle_balance_leaves_cache_hot_and_pinned_threads_and_short_idlers_alone():
    h = _floating()
    queued = [v for _, v in _queued(h)]
    dst = next(p for p in h.pcpus if p.curr is not None and not p.rq)
    for v in queued:
        v.exec_start = h.engine.now  # ran just now: task_hot()
    assert not scheduler.newidle_balance(h, dst)
    for v in queued:
        v.exec_start = h.engine.now - 2 * CFS.migration_cost_ns
    dst.avg_idle_ns = CFS.migration_cost_ns - 1  # this pCPU's idle periods are short
    assert not scheduler.newidle_balance(h, dst)
    dst.avg_idle_ns = CFS.avg_idle_max_ns
    for v in queued:
        v.pinned = v.pcpu.id
    assert not scheduler.newidle_balance(h, dst)
    queued[0].pinned = None
    assert scheduler.newidle_balance(h, dst) and dst.rq == [queued[0]]


def test_newidle_balance_prefers_the_smt_sibling_then_the_socket():
    # 2 sockets x 2 cores x 2 threads: CPU 0's sibling is 4, its socket 0, 1, 4, 5
    h = build(scenario(**{"topology.sockets": 2, "topology.cores_per_socket": 2, "vm.vcpus": 8,
                          "pinning": "none", "overcommit": 2.0, "workload.kind": "cpu-bound"}), seed=1)
    start(h)
    h.engine.run(1_000_000)
    for v in h.vcpus:
        v.exec_start = h.engine.now - 2 * CFS.migration_cost_ns
    dst = h.pcpus[0]
    dst.rq.clear()
    sibling_thread = h.pcpus[4].rq[0]
    assert scheduler.newidle_balance(h, dst) and dst.rq == [sibling_thread]
    dst.rq.clear()
    h.pcpus[4].rq.clear()
    assert scheduler.newidle_balance(h, dst) and dst.rq[0].pcpu.socket == 0


# -- wake-up preemption: next and last buddies (check_preempt_wakeup) -----------------


def _wake_onto_pcpu0(h, wakee_ahead_ns: int, leftmost_ahead_ns: int):
    """Put one queued thread of pCPU 0 to sleep and wake it ``wakee_ahead_ns`` behind the running
    thread in vruntime, with another queued thread ``leftmost_ahead_ns`` behind it."""
    p = h.pcpus[0]
    cur = p.curr
    wakee, left = p.rq[0], p.rq[1]
    p.rq.remove(wakee)
    wakee.state = HALTED
    left.vruntime = cur.vruntime - leftmost_ahead_ns
    p.min_vruntime = left.vruntime
    wakee.vruntime = cur.vruntime - wakee_ahead_ns
    scheduler.wake(h, wakee, waker=None)
    return p, cur, wakee, left


def test_a_wakeup_that_preempts_makes_the_wakee_the_next_buddy_even_if_not_leftmost():
    """Three threads on a pCPU: the wakee is 6 ms behind the running thread (preempts: > 4 ms) but
    2 ms ahead of the leftmost; set_next_buddy(pse) makes __schedule() pick the wakee."""
    h = _host(overcommit=3.0)
    ms = 1_000_000
    p, cur, wakee, left = _wake_onto_pcpu0(h, wakee_ahead_ns=6 * ms, leftmost_ahead_ns=8 * ms)
    assert p.next_buddy is wakee and p.need_resched
    assert p.last_buddy is None  # 3 < sched_nr_latency: no LAST_BUDDY
    h.engine.run(h.engine.now + 200_000)
    assert p.curr is wakee and p.next_buddy is None  # picked, then cleared
    assert left in p.rq and cur in p.rq


def test_no_buddy_when_the_wakee_does_not_preempt_or_a_reschedule_is_already_due():
    h = _host(overcommit=3.0)
    ms = 1_000_000
    p, _, _, _ = _wake_onto_pcpu0(h, wakee_ahead_ns=2 * ms, leftmost_ahead_ns=3 * ms)  # within granularity
    assert p.next_buddy is None and not p.need_resched
    h = _host(overcommit=3.0)
    scheduler.resched(h, h.pcpus[0])  # TIF_NEED_RESCHED already set: check_preempt_wakeup returns
    p, _, _, _ = _wake_onto_pcpu0(h, wakee_ahead_ns=6 * ms, leftmost_ahead_ns=8 * ms)
    assert p.next_buddy is None


def test_on_a_crowded_queue_the_preempted_thread_becomes_the_last_buddy():
    """cfs_rq->nr_running >= sched_nr_latency (8): LAST_BUDDY marks the preempted thread."""
    h = _host(overcommit=8.0)
    assert h.pcpus[0].nr_running == 8
    p, cur, wakee, _ = _wake_onto_pcpu0(h, wakee_ahead_ns=6 * 1_000_000, leftmost_ahead_ns=8 * 1_000_000)
    assert p.next_buddy is wakee and p.last_buddy is cur
    h.engine.run(h.engine.now + 200_000)
    assert p.curr is wakee  # the next buddy wins over the last (pick_next_entity checks it last)
