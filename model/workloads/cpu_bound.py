"""cpu-bound: one thread per vCPU that never sleeps; only the guest tick exits."""

from __future__ import annotations

from model import guest
from model.vcpu import Task


def build(h, vm, knobs, rng) -> None:
    chunk_ns = knobs.chunk_us * 1_000
    for v in vm.vcpus:
        guest.start_task(h, Task(f"cpu{v.index}", _loop(h, vm.index, chunk_ns), v))


def _loop(h, vm_index: int, chunk_ns: int):
    while True:
        yield ("run", chunk_ns, False)
        h.stats.add_work(vm_index, "compute_ns", chunk_ns)
