"""The host CFS scheduler and yield_to (kernel/sched)."""

from model import scheduler
from model.scheduler import CFS, ESRCH, NOOP, YIELDED, slice_ns
from model.simulate import build, start
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
