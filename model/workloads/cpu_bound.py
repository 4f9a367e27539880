"""cpu-bound: threads that never sleep; only the guest tick exits (``stress --cpu N``).

``threads`` (None: one per vCPU) threads are placed on vCPUs 0, 1, ... round
robin; a vCPU without a thread stays idle (HLT, or whatever ``vm.idle`` says),
as in an 8-vCPU VM running ``stress --cpu 2``.  More threads than vCPUs share
them through the guest scheduler's time slices.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from model import guest
from model.ops import Run
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host


def build(h: Host, vm, knobs, rng) -> None:
    chunk_ns = knobs.chunk_us * 1_000
    n = len(vm.vcpus) if knobs.threads is None else knobs.threads
    for k in range(n):
        v = vm.vcpus[k % len(vm.vcpus)]
        guest.start_task(h, Task(f"cpu{k}", _loop(h, vm.index, chunk_ns), v))


def _loop(h: Host, vm_index: int, chunk_ns: int):
    while True:
        yield Run(chunk_ns, False)
        h.stats.add_work(vm_index, "compute_ns", chunk_ns)
