"""lockbench: threads take one shared queued spinlock, critical section ``cs_ns``.

Metric: acquisitions/s; the wait for the lock is sampled for its p99.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import guest, locks
from model.ops import Call, Run
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host

# Each thread's think time is drawn once, uniform in [LOW, LOW + 1) x think_ns, so the
# threads drift apart instead of arriving at the lock in lockstep (assumed spread).
THINK_SPREAD_LOW = 0.5


def build(h: Host, vm, knobs, rng) -> None:
    lock = locks.QSpinLock()
    for v in vm.vcpus:
        for k in range(knobs.threads_per_vcpu):
            think = knobs.think_ns * (THINK_SPREAD_LOW + rng.random())
            task = Task(f"lock{v.index}.{k}", None, v)
            task.gen = _thread(h, vm.index, lock, knobs.cs_ns, think)
            guest.start_task(h, task)


def _thread(h: Host, vm_index: int, lock, cs_ns: int, think_ns: float):
    while True:
        yield Run(think_ns, False)
        yield Call(locks.spin_lock, lock)
        yield Run(cs_ns, True)
        yield Call(locks.spin_unlock, lock)
        h.stats.add_work(vm_index, "acquisitions", 1)
