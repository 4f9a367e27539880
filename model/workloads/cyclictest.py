"""cyclictest: one thread per vCPU; each cycle arms the TSC-deadline timer and sleeps.

Latency = when the woken thread reads the clock - the programmed deadline, as
cyclictest reports it.  On that path, after the timer interrupt is taken:
hrtimer_interrupt wakes the thread (hrtimer_wakeup) and reprograms the clock
event device for the next timer (tick_program_event -> lapic_next_deadline: a
TSC-deadline write, an MSR 0x6e0 exit that the timer fastpath shortens); with
HLT idle, the tick that do_idle() stopped restarts on the way out of idle with
a second such write (model.timer.tick_restart); then the wake-up, the switch to
the thread and clock_gettime (``wakeup_ns``,
calibrated to 26efe2fd92e5's cyclictest average with the fastpath off).  The
thread's own re-arm (clock_nanosleep -> hrtimer_start) is the arming write,
off the latency path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import guest, kvm, timer
from model.host import EXIT as M_EXIT
from model.ops import Call, Run
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host


def build(h: Host, vm, knobs, rng) -> None:
    interval_ns = knobs.interval_us * 1_000
    for v in vm.vcpus:
        phase = int(rng.integers(interval_ns))
        task = Task(f"cyclic{v.index}", None, v)
        task.gen = _thread(h, task, interval_ns, phase, knobs.wakeup_ns)
        guest.start_task(h, task)


def _thread(h: Host, task: Task, interval_ns: int, phase_ns: int, wakeup_ns: int):
    deadline = h.engine.now + interval_ns + phase_ns
    while True:
        yield Call(_arm_and_sleep, deadline)
        yield Run(wakeup_ns, True)
        h.stats.sample(task.vcpu, "timer_latencies", h.engine.now - deadline)
        while deadline <= h.engine.now:
            deadline += interval_ns


def _arm_and_sleep(h: Host, task: Task, deadline: int) -> None:
    v = task.vcpu
    timer.arm(h, v, deadline, lambda: _hrtimer_interrupt(h, task, v), lambda: guest.block(h, task))


def _hrtimer_interrupt(h: Host, task: Task, v) -> None:
    """The rest of hrtimer_interrupt: tick_program_event's TSC-deadline write, then the wake-up."""
    write = kvm.Phase(M_EXIT, timer.arm_cost(h), "MSR_WRITE", "0x6e0")
    kvm.exit_chain(h, v, (write,), lambda: guest.wake(h, task, v))
