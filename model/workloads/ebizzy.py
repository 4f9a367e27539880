"""ebizzy -M: 2 threads per vCPU; each record copies a 512 KiB chunk, searches it, frees it.

With -M ebizzy never uses mmap, so every free trims the heap: the kernel takes
mmap_sem for writing, zaps the pages, returns them to the buddy allocator
under ``zone->lock`` (a queued spinlock) and flushes remote TLBs with a
synchronous call-function-many while still holding mmap_sem; the next malloc
faults the pages back in under mmap_sem for reading, taking pages from the
buddy allocator under ``zone->lock`` again.  Metric: records/s.
"""

from __future__ import annotations

from model import guest, locks, tlb
from model.vcpu import Task

PAGE_KIB = 4
FREES_PAGE_TABLES = True  # a heap trim unmaps whole page tables (free_pgtables)


class Mm:
    """The ebizzy process's address space."""

    __slots__ = ("mmap_sem", "zone_lock")

    def __init__(self) -> None:
        self.mmap_sem = locks.RwSem()
        self.zone_lock = locks.QSpinLock()


def build(h, vm, knobs, rng) -> None:
    vm.mm = Mm()
    copy_ns = knobs.chunk_kib * 1024 / h.prof.memcpy_gbps  # bytes / (GB/s) = ns
    fault_ns = knobs.chunk_kib // PAGE_KIB * knobs.fault_ns
    for v in vm.vcpus:
        for k in range(knobs.threads_per_vcpu):
            task = Task(f"ebizzy{v.index}.{k}", None, v)
            task.gen = _thread(h, vm, knobs, copy_ns, fault_ns)
            guest.start_task(h, task)


def _thread(h, vm, knobs, copy_ns: float, fault_ns: float):
    sem, zone = vm.mm.mmap_sem, vm.mm.zone_lock
    while True:
        yield ("call", locks.down_read, sem)  # malloc: fault the chunk back in
        yield ("call", locks.spin_lock, zone)
        yield ("run", knobs.zone_lock_ns, True)
        yield ("call", locks.spin_unlock, zone)
        yield ("run", fault_ns, True)
        yield ("call", locks.up_read, sem)
        yield ("run", copy_ns + knobs.search_ns, False)  # memcpy + search, user mode
        yield ("call", locks.down_write, sem)  # free: trim the heap
        yield ("run", knobs.trim_ns, True)
        yield ("call", locks.spin_lock, zone)
        yield ("run", knobs.zone_lock_ns, True)
        yield ("call", locks.spin_unlock, zone)
        yield ("call", tlb.shootdown, knobs.flush_ns, FREES_PAGE_TABLES)
        yield ("call", locks.up_write, sem)
        h.stats.add_work(vm.index, "records", 1)
