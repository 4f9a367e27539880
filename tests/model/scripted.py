"""Scripted guests for mechanism tests: each vCPU of the measured VM runs a given op list.

``scripted_host(scripts, **overrides)`` builds and starts a small host whose
measured VM runs, on vCPU ``i``, one task executing ``scripts[i]`` (a list of
guest ops, see ``model.guest``) and then sleeping for good; vCPUs without a
script idle.  Co-runner VMs (overcommit) run their usual workload.
"""

from __future__ import annotations

from model import apic, guest, scheduler
from model.ops import BLOCK, Call
from model.simulate import build, start
from model.vcpu import Irq, Task
from model.workloads import BUILDERS
from tests.model.conftest import scenario


def mark(log: dict, key: str):
    """An op that records the time it runs at under ``key`` and goes on."""

    def op(h, task):
        log[key] = h.engine.now
        guest.advance(h, task)

    return Call(op)


def probe(log: dict, key: str, fn):
    """An op that records ``fn(h)`` under ``key`` and goes on."""

    def op(h, task):
        log[key] = fn(h)
        guest.advance(h, task)

    return Call(op)


def preempt(h, v) -> None:
    """The host scheduler switches ``v`` out for the other runnable thread on its pCPU.

    That thread (a co-runner vCPU) runs its whole slice unless ``run_again``
    brings ``v`` back first."""
    p = v.pcpu
    other = p.rq[0]
    other.vruntime = min(other.vruntime, v.vruntime - 1)
    p.next_buddy = other
    scheduler.resched(h, p)


def run_again(h, v) -> None:
    """The host scheduler switches the runnable ``v`` back in on its pCPU."""
    p = v.pcpu
    v.vruntime = min(v.vruntime, p.curr.vruntime - 1)
    p.next_buddy = v
    scheduler.resched(h, p)


def send_ipi(log: dict, key: str, target_index: int, cost_ns: float = 1_000.0):
    """An op that sends one IPI to vCPU ``target_index``; ``log[key]`` = when its handler ran."""

    def op(h, task):
        target = task.vcpu.vm.vcpus[target_index]
        log[key + "_sent"] = h.engine.now
        irq = Irq("ipi", cost_ns, lambda: log.__setitem__(key, h.engine.now))
        apic.send(h, task.vcpu, [target], [irq], lambda: guest.advance(h, task), multicast=False)

    return Call(op)


def scripted_host(scripts: dict[int, list], seed: int = 1, **overrides):
    def thread(ops):
        yield from ops
        yield BLOCK

    kind = overrides.pop("workload.kind", "cpu-bound")
    real = BUILDERS[kind]

    def build_scripted(h, vm, knobs, rng):
        if vm.index != 0:
            real(h, vm, knobs, rng)
            return
        for i, ops in scripts.items():
            guest.start_task(h, Task(f"script{i}", thread(ops), vm.vcpus[i]))

    BUILDERS[kind] = build_scripted
    try:
        h = build(scenario(**{"workload.kind": kind, **overrides}), seed)
    finally:
        BUILDERS[kind] = real
    start(h)
    h.stats.start_measuring(0)
    return h
