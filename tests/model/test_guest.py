"""The guest scheduler and idle loop: CFS wake-up preemption, TIF_POLLING_NRFLAG, cpuidle-haltpoll."""

from __future__ import annotations

import pytest

from model import guest
from model.ops import BLOCK, Call, Run, Wake
from model.simulate import build, start
from model.vcpu import HALTED, Task
from model.workloads import BUILDERS
from tests.model.conftest import scenario


def host_with_tasks(make_tasks, seed: int = 1, **overrides):
    """A small host whose measured VM runs the tasks ``make_tasks(h, vm)`` returns; counting from time 0."""
    real = BUILDERS["cpu-bound"]
    tasks: dict[str, Task] = {}

    def build_tasks(h, vm, knobs, rng):
        if vm.index != 0:
            real(h, vm, knobs, rng)
            return
        for name, (vcpu_index, ops) in make_tasks(h, vm).items():
            task = Task(name, None, vm.vcpus[vcpu_index])
            task.gen = _thread(ops)
            tasks[name] = task
            guest.start_task(h, task)

    BUILDERS["cpu-bound"] = build_tasks
    try:
        h = build(scenario(**{"workload.kind": "cpu-bound", **overrides}), seed)
    finally:
        BUILDERS["cpu-bound"] = real
    start(h)
    h.stats.start_measuring(0)
    return h, tasks


def _thread(ops):
    for op in ops:
        yield op if not callable(op) else op()
    yield BLOCK


def mark(log: dict, key: str):
    def op(h, task):
        log[key] = h.engine.now
        guest.advance(h, task)

    return Call(op)


def wake(tasks: dict, name: str, log: dict | None = None):
    """An op that wakes task ``name`` (logging when)."""

    def op(h, task):
        if log is not None:
            log[name + "_woken"] = h.engine.now
        guest.advance(h, task)

    return [Call(op), lambda: Wake(tasks[name])]


# -- guest CFS tunables ----------------------------------------------------------------------


@pytest.mark.parametrize(("ncpus", "factor"), [(1, 1), (2, 2), (3, 2), (4, 3), (8, 4), (180, 4)])
def test_guest_sched_tunables_scale_with_one_plus_ilog2_of_the_cpus_capped_at_8(ncpus, factor):
    cfs = guest.guest_cfs(ncpus)
    assert cfs.latency_ns == 6_000_000 * factor
    assert cfs.min_granularity_ns == 750_000 * factor
    assert cfs.wakeup_granularity_ns == 1_000_000 * factor


# -- wake-up preemption ------------------------------------------------------------------------


def _preemption_run(wake_at_ns: int, idle: str = "hlt"):
    """vCPU 0: task ``hog`` in user work for 40 ms, task ``sleeper`` asleep from t=0; vCPU 1 wakes it."""
    log: dict = {}
    tasks_ref: dict = {}

    def make(h, vm):
        return {
            "sleeper": (0, [BLOCK, mark(log, "sleeper_ran")]),
            "hog": (0, [Run(40_000_000, False)]),
            "waker": (1, [Run(wake_at_ns, False), *wake(tasks_ref, "sleeper", log)]),
        }

    # 2 vCPUs, both busy: the sleeper has no idle vCPU to go to (select_idle_sibling)
    h, tasks = host_with_tasks(make, **{"vm.vcpus": 2, "vm.idle": idle})
    tasks_ref.update(tasks)
    h.engine.run(45_000_000)
    return h, log


def test_a_wakeup_preempts_only_when_vruntime_is_ahead_by_more_than_the_wakeup_granularity():
    # 2 vCPUs: wakeup granularity 2 ms.  Woken at 1 ms, the hog is only ~1 ms ahead: no preemption,
    # the sleeper waits for the hog's slice (12 ms / 2 = 6 ms) to end at a tick.
    h, log = _preemption_run(1_000_000)
    assert log["sleeper_ran"] - log["sleeper_woken"] > 4_000_000
    assert h.stats.counters["wakeup_preemptions"] == 0
    assert h.stats.counters["resched_ipis"] == 0  # same LLC, no preemption: no IPI at all
    # woken at 3 ms the hog is 3 ms ahead (> 2 ms): preempted at once by a RESCHEDULE IPI
    h, log = _preemption_run(3_000_000)
    assert log["sleeper_ran"] - log["sleeper_woken"] < 50_000
    assert h.stats.counters["wakeup_preemptions"] == 1
    assert h.stats.counters["resched_ipis"] == 1


def test_sleeper_credit_is_half_the_latency():
    """place_entity(): a long sleeper comes back at min_vruntime - latency/2, not at its old vruntime."""
    h, log = _preemption_run(20_000_000)  # 32 ms of wall time (SMT siblings)
    v0 = h.vms[0].vcpus[0]
    # it preempted the hog at once: it comes back 6 ms (latency 12 ms / 2) behind, > granularity 2 ms
    assert log["sleeper_ran"] - log["sleeper_woken"] < 50_000
    assert v0.gmin_vruntime >= 32_000_000 - guest.guest_cfs(2).latency_ns // 2


# -- TIF_POLLING_NRFLAG ------------------------------------------------------------------------


def _idle_wake_run(idle: str, sleep_ns: int = 50_000, **overrides):
    """vCPU 1's task sleeps (its vCPU goes idle); vCPU 0 wakes it after ``sleep_ns``."""
    log: dict = {}
    tasks_ref: dict = {}

    def make(h, vm):
        return {
            "sleeper": (1, [BLOCK, mark(log, "sleeper_ran")]),
            "waker": (0, [Run(sleep_ns, False), *wake(tasks_ref, "sleeper", log)]),
        }

    h, tasks = host_with_tasks(make, **{"vm.vcpus": 8, "vm.idle": idle, **overrides})
    tasks_ref.update(tasks)
    h.engine.run(sleep_ns + 2_000_000)
    return h, log


def test_a_wakeup_of_a_polling_vcpu_sends_no_ipi():
    h, log = _idle_wake_run("poll")
    assert log["sleeper_ran"] - log["sleeper_woken"] < 20_000
    assert h.stats.ipi_sent_total == 0
    assert h.stats.counters["wakeups_polling_no_ipi"] == 1
    assert h.stats.counters["resched_ipis"] == 0


def test_a_wakeup_of_a_halted_vcpu_sends_a_reschedule_ipi():
    h, _log = _idle_wake_run("hlt")
    assert h.stats.ipi_sent_total == 1
    assert h.stats.counters["resched_ipis"] == 1
    assert h.stats.counters["wakeups_polling_no_ipi"] == 0


@pytest.mark.parametrize("idle", ["hlt", "poll"])
def test_a_wakeup_across_llcs_sends_a_wakelist_ipi_unless_the_target_polls(idle):
    # guest LLCs of 4 vCPUs: vCPU 0 waking a task of vCPU 5 goes through ttwu_queue_wakelist
    log: dict = {}
    tasks_ref: dict = {}

    def make(h, vm):
        return {
            "sleeper": (5, [BLOCK, mark(log, "sleeper_ran")]),
            "waker": (0, [Run(100_000, False), *wake(tasks_ref, "sleeper", log)]),
        }

    h, tasks = host_with_tasks(make, **{"vm.vcpus": 8, "vm.guest_llc_vcpus": 4, "vm.idle": idle})
    tasks_ref.update(tasks)
    h.engine.run(1_000_000)
    assert "sleeper_ran" in log
    if idle == "poll":
        assert h.stats.ipi_sent_total == 0  # set_nr_if_polling()
    else:
        assert h.stats.counters["wakelist_ipis"] == 1
        assert h.stats.ipi_sent_total == 1


def test_a_wakeup_across_llcs_onto_a_busy_vcpu_needs_an_ipi_without_preempting():
    log: dict = {}
    tasks_ref: dict = {}

    def make(h, vm):
        busy = {f"busy{i}": (i, [Run(10_000_000, False)]) for i in range(4, 8)}
        return {
            "sleeper": (5, [BLOCK, mark(log, "sleeper_ran")]),
            **busy,
            "waker": (0, [Run(100_000, False), *wake(tasks_ref, "sleeper", log)]),
        }

    h, tasks = host_with_tasks(make, **{"vm.vcpus": 8, "vm.guest_llc_vcpus": 4})
    tasks_ref.update(tasks)
    h.engine.run(1_000_000)
    # the busy task is only ~0.1 ms ahead: no preemption, yet the remote activation costs an IPI
    assert h.stats.counters["wakeup_preemptions"] == 0
    assert h.stats.counters["wakelist_ipis"] == 1
    assert h.stats.ipi_sent_total == 1
    assert "sleeper_ran" not in log


# -- cpuidle-haltpoll ---------------------------------------------------------------------------


def _haltpoll_host(period_ns: int, sleeps: int, **overrides):
    """vCPU 1's task sleeps ``sleeps`` times; vCPU 0 wakes it every ``period_ns``."""
    log: dict = {}
    tasks_ref: dict = {}

    def make(h, vm):
        sleeper = []
        waker = []
        for i in range(sleeps):
            sleeper += [BLOCK, mark(log, f"ran{i}")]
            waker += [Run(period_ns, False), *wake(tasks_ref, "sleeper", log)]
        return {"sleeper": (1, sleeper), "waker": (0, waker)}

    h, tasks = host_with_tasks(make, **{"vm.vcpus": 8, "vm.idle": "haltpoll", "vm.halt_poll_ns": 0, **overrides})
    tasks_ref.update(tasks)
    return h, log


def test_haltpoll_first_halts_then_polls_with_a_window_grown_from_short_halts():
    h, _log = _haltpoll_host(100_000, 6)
    v1 = h.vms[0].vcpus[1]
    assert v1.hp_limit_ns == 0
    h.engine.run(50_000)  # first idle period: poll_limit_ns = 0, so it halts at once
    assert v1.state == HALTED and not v1.polling
    h.engine.run(130_000)  # woken from HLT after ~100 us <= 200 us: grow to guest_halt_poll_grow_start
    assert v1.hp_limit_ns == guest.GUEST_HALT_POLL_GROW_START
    assert v1.polling  # the next idle period polls, TIF_POLLING_NRFLAG set
    h.engine.run(2_000_000)
    # later idle periods of ~100 us: polls of 50 us then HLT; each ~50 us halt keeps the window
    # (block_ns <= poll_limit_ns), so some wake-ups still find it halted
    hlt_exits = sum(r.samples for r in h.stats.exit_rows() if r.reason == "HLT")
    assert hlt_exits >= 2
    assert h.stats.counters["resched_ipis"] >= 1


def test_haltpoll_polls_then_halts_and_a_wakeup_inside_the_window_needs_no_ipi():
    h, log = _haltpoll_host(30_000, 8)
    v1 = h.vms[0].vcpus[1]
    h.engine.run(20_000)  # first idle: halts at once
    assert v1.state == HALTED
    h.engine.run(45_000)
    assert v1.hp_limit_ns == guest.GUEST_HALT_POLL_GROW_START  # the 30 us halt grew the window
    ipis = h.stats.ipi_sent_total
    h.engine.run(400_000)  # every later 30 us sleep ends inside the 50 us poll window
    assert h.stats.ipi_sent_total == ipis
    assert h.stats.counters["wakeups_polling_no_ipi"] >= 5
    assert "ran7" in log


def test_haltpoll_shrinks_the_window_after_long_halts():
    h, _log = _haltpoll_host(1_000_000, 4)
    v1 = h.vms[0].vcpus[1]
    v1.hp_limit_ns = 200_000
    h.engine.run(5_000_000)
    assert v1.hp_limit_ns < 200_000  # halts of ~0.8 ms > guest_halt_poll_ns: divided by 2 each time


def test_haltpoll_with_hlt_passthrough_halts_in_guest_mode():
    h, log = _haltpoll_host(100_000, 3, **{"vm.hlt_passthrough": True})
    h.engine.run(1_000_000)
    assert not any(r.reason == "HLT" for r in h.stats.exit_rows())
    assert "ran2" in log


def test_a_task_that_yields_something_other_than_an_op_is_stopped_with_what_it_yielded():
    """Ops are model.ops records: an old-style tuple is refused, naming it, not silently misread."""
    from tests.model.scripted import scripted_host

    with pytest.raises(TypeError, match=r"\('run', 1000, True\).*model\.ops"):
        h = scripted_host({0: [Run(1_000, True), ("run", 1000, True)]})
        h.engine.run(1_000_000)
