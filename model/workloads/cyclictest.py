"""cyclictest: one thread per vCPU; each cycle arms the TSC-deadline timer and sleeps.

Latency = when the woken thread reads the clock - the programmed deadline, as
cyclictest reports it.  ``wakeup_ns`` is the guest side of that path after the
timer interrupt is taken (hrtimer_interrupt, wake-up, switch to the thread,
clock_gettime); it is calibrated against 26efe2fd92e5's cyclictest figures.
"""

from __future__ import annotations

from model import guest, timer
from model.vcpu import Task


def build(h, vm, knobs, rng) -> None:
    interval_ns = knobs.interval_us * 1_000
    for v in vm.vcpus:
        phase = int(rng.integers(interval_ns))
        task = Task(f"cyclic{v.index}", None, v)
        task.gen = _thread(h, task, interval_ns, phase, knobs.wakeup_ns)
        guest.start_task(h, task)


def _thread(h, task: Task, interval_ns: int, phase_ns: int, wakeup_ns: int):
    deadline = h.engine.now + interval_ns + phase_ns
    while True:
        yield ("call", _arm_and_sleep, deadline)
        yield ("run", wakeup_ns, True)
        h.stats.sample(task.vcpu, "timer_latencies", h.engine.now - deadline)
        while deadline <= h.engine.now:
            deadline += interval_ns


def _arm_and_sleep(h, task: Task, deadline: int) -> None:
    v = task.vcpu
    timer.arm(h, v, deadline, lambda: guest.wake(h, task, v), lambda: guest.block(h, task))
