"""hackbench: groups of senders and receivers passing 100-byte messages.

Every sender writes one message to each receiver of its group per round (a
write() syscall each), and blocks while a receiver has ``burst`` unread
messages (the socket buffer is full).  A receiver reads everything queued for
it, or blocks.  Waking a task on another, idle vCPU sends a RESCHEDULE IPI.
Metric: messages received per second; ``hackbench_time_s`` is the time the
real run of groups x senders x receivers x loops messages would take.
"""

from __future__ import annotations

from model import guest
from model.vcpu import Task


class Group:
    __slots__ = ("queued", "readers_waiting", "writers_waiting")

    def __init__(self, receivers: int) -> None:
        self.queued = [0] * receivers
        self.readers_waiting: list[Task | None] = [None] * receivers
        self.writers_waiting: list[Task] = []


def build(h, vm, knobs, rng) -> None:
    vcpus = vm.vcpus
    slot = 0
    for g in range(knobs.groups):
        group = Group(knobs.receivers)
        for r in range(knobs.receivers):
            task = Task(f"recv{g}.{r}", None, vcpus[slot % len(vcpus)])
            task.gen = _receiver(h, vm.index, task, group, r, knobs)
            guest.start_task(h, task)
            slot += 1
        for s in range(knobs.senders):
            task = Task(f"send{g}.{s}", None, vcpus[slot % len(vcpus)])
            task.gen = _sender(h, task, group, knobs)
            guest.start_task(h, task)
            slot += 1


def _sender(h, task: Task, group: Group, knobs):
    """Write rounds until some receiver's buffer is full, then sleep.

    The first round's writes wake the sleeping receivers at once; the rounds
    that fill the rest of the buffers are executed as one op (the sender
    does not block in between), and wake whoever fell asleep meanwhile."""
    n = knobs.receivers
    while True:
        while max(group.queued) >= knobs.burst:
            group.writers_waiting.append(task)
            yield ("block",)
        rounds = knobs.burst - max(group.queued)
        yield ("run", knobs.send_ns * n, True)
        yield from _deliver(group, 1)
        if rounds > 1:
            yield ("run", knobs.send_ns * n * (rounds - 1), True)
            yield from _deliver(group, rounds - 1)


def _deliver(group: Group, messages: int):
    """Queue ``messages`` for every receiver; wake the ones asleep on an empty queue."""
    for r in range(len(group.queued)):
        group.queued[r] += messages
        reader = group.readers_waiting[r]
        if reader is not None:
            group.readers_waiting[r] = None
            yield ("wake", reader)


def _receiver(h, vm_index: int, task: Task, group: Group, r: int, knobs):
    while True:
        while group.queued[r] == 0:
            group.readers_waiting[r] = task
            yield ("block",)
        n = group.queued[r]
        group.queued[r] = 0
        yield ("run", knobs.recv_ns * n, True)
        h.stats.add_work(vm_index, "messages", n)
        writers, group.writers_waiting = group.writers_waiting, []
        for w in writers:
            yield ("wake", w)
