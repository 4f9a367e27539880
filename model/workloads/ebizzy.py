"""ebizzy -M (LTP ebizzy 0.3, glibc malloc): ``threads_per_vcpu`` threads per vCPU.  Metric: records/s.

Each thread loops over ``search_mem()``: ``alloc_mem(chunk_size)``,
``memcpy`` of a source chunk into it, ``bsearch`` for a random key,
``free_mem``.  ``-M`` sets ``mallopt(M_MMAP_MAX, 0)``: the copy comes from
the thread's glibc arena heap, and ``free()`` merges it into the top chunk,
which then exceeds ``M_TRIM_THRESHOLD`` (128 KiB), so ``heap_trim`` ->
``shrink_heap`` returns it with ``madvise(MADV_DONTNEED)``.  The next
``malloc`` regrows the heap without a syscall (the heap stays mprotected),
and the copy faults every destination page back in.  The kernel side of
both (faults, page allocator, LRU, zap, TLB shootdown) is model.mm; the
call trace of the shootdown is the one in 17e433b54393
(``SyS_madvise`` -> ``zap_page_range`` -> ``tlb_finish_mmu`` ->
``flush_tlb_mm_range``).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from model import guest, locks, mm
from model.ops import Run
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host

RECORD_BYTES = 8  # ebizzy: record_t is a size_t; bsearch over chunk_size / record_size records


def build(h: Host, vm, knobs, rng) -> None:
    vm.mm = mm.Mm(len(vm.vcpus), rng)
    pages = knobs.chunk_kib * 1024 // mm.PAGE_SIZE
    # bsearch: log2(records) probes into a freshly copied chunk, each a cache miss (derived)
    search_ns = math.ceil(math.log2(knobs.chunk_kib * 1024 // RECORD_BYTES)) * h.prof.cacheline_miss_ns
    for v in vm.vcpus:
        for k in range(knobs.threads_per_vcpu):
            task = Task(f"ebizzy{v.index}.{k}", None, v)
            ptl = locks.QSpinLock()  # the page-table lock of this thread's arena heap (split PTE lock)
            task.gen = _thread(h, vm, task, ptl, pages, search_ns)
            guest.start_task(h, task)


def _thread(h: Host, vm, task: Task, ptl: locks.QSpinLock, pages: int, search_ns: float):
    space = vm.mm
    while True:
        yield from mm.fault_in(h, task, space, pages)  # malloc + memcpy: fault the chunk back in
        yield Run(search_ns, False)  # bsearch
        yield from mm.madvise_dontneed(h, task, space, ptl, pages)  # free -> heap_trim -> shrink_heap
        h.stats.add_work(vm.index, "records", 1)
