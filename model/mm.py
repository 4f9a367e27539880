"""Guest memory management on ebizzy's paths: anonymous faults, the page allocator, the LRU, MADV_DONTNEED.

One :class:`Mm` per VM (the guest is one NUMA node: one ``pglist_data``, one
zone, one LRU lock) holding the process's ``mmap_sem``, the zone's
``zone->lock``, the node's LRU lock, each CPU's per-CPU page list and LRU
pagevec, the mm's ``tlb_flush_pending`` count and each CPU's
``call_single_queue``.  The paths, as the 5.4-5.13 kernel runs them:

**Anonymous fault** (``do_user_addr_fault`` -> ``handle_mm_fault`` ->
``do_anonymous_page``), mmap_sem held **for read**:
``alloc_zeroed_user_highpage_movable`` -> ``rmqueue_pcplist`` takes the page
from this CPU's pcp list; when the list is empty ``rmqueue_bulk`` refills
``pcp->batch`` pages under ``zone->lock`` (interrupts off: the pcp path runs
under ``local_irq_save``).  ``clear_page``, ``set_pte_at`` under the thread's
own page-table lock (split PTE locks: uncontended, folded into the fault
cost), then ``lru_cache_add`` puts the page in this CPU's pagevec; the
``PAGEVEC_SIZE``-th page drains it (``__pagevec_lru_add`` ->
``pagevec_lru_move_fn``), taking the LRU lock with ``spin_lock_irqsave``
once for the whole pagevec.

**MADV_DONTNEED** (``do_madvise``: ``madvise_need_mmap_write`` is false for
it, so mmap_sem is taken **for read**) -> ``madvise_dontneed_single_vma`` ->
``zap_page_range``: ``lru_add_drain``; ``tlb_gather_mmu``
(``inc_tlb_flush_pending``); ``zap_pte_range`` under the page-table lock;
``tlb_finish_mmu``: when another thread is zapping the same mm at the same
time (``mm_tlb_flush_nested``: ``tlb_flush_pending`` > 1) it forces a full
flush with ``freed_tables`` (7a30df49f63a, 5.2); ``tlb_flush_mmu`` ->
``flush_tlb_mm_range`` (model.tlb), then ``tlb_flush_mmu_free`` ->
``free_pages_and_swap_cache`` -> ``release_pages``: each page comes off the
LRU under the LRU lock (irqsave), dropped and retaken every
``SWAP_CLUSTER_MAX`` pages; ``free_unref_page_list`` puts the pages on this
CPU's pcp list and, each time it reaches ``pcp->high``,
``free_pcppages_bulk`` returns ``pcp->batch`` pages under ``zone->lock``
(interrupts off); ``dec_tlb_flush_pending``.  Page tables are not freed
(``zap_page_range`` never calls ``free_pgtables``).

Nothing here takes mmap_sem for writing, so no ebizzy thread ever sleeps on
it.  The zone and LRU locks are irqsave (``QSpinLock(irqsave=True)``): their
waiters and holders run with IF = 0, so a TLB-flush IPI to them waits until
the lock is dropped.

Costs are derived from the hardware profile: page work costs the cache lines
it touches, ``cacheline_miss_ns`` for a line another CPU touched last and
``cache_hit_ns`` for its own (the counts below); ``clear_page`` and the copy
run at ``memcpy_gbps``.

**The mmap_sem cache line** (:class:`SharedLine`).  ``mm->mmap_sem``'s count
and owner share one cache line (``struct rw_semaphore``: count, owner, osq,
wait_lock, wait_list: 40 bytes), and every reader updates it with a locked
instruction: ``do_user_addr_fault`` -> ``down_read_trylock`` ->
``__down_read_trylock`` (5.1+, ddb20d1d3aed: ``atomic_long_try_cmpxchg_acquire``
starting from ``RWSEM_UNLOCKED_VALUE``, so with another reader inside the first
cmpxchg fails and is retried with the value it read), ``rwsem_set_reader_owned``
(a store to ``owner``), and ``up_read`` -> ``atomic_long_add_return_release``.
A locked RMW needs the line exclusive: it waits for the RMWs queued before it
and then pays one cache-to-cache transfer from the CPU that wrote it last
(``c2c_local_ns`` within a socket, ``c2c_remote_ns`` across; ``cache_hit_ns``
from its own core).  The line is a FIFO server: with 160 threads faulting,
2 transfers per fault (the retry of a failed trylock is a third when others
queue for the line, so the line has been handed on), this -- not the work
of a fault -- bounds the VM's fault rate.  Reader-owned rwsems never sleep
here; the atomics are the cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from model import locks, tlb
from model.ops import Call, Run
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host

PAGE_SIZE = 4096  # x86 base page (4 KiB pages: the arena heap is trimmed page by page)
PAGEVEC_SIZE = 15  # include/linux/pagevec.h: lru_cache_add drains at the 15th page
SWAP_CLUSTER_MAX = 32  # release_pages: lru_lock dropped and retaken every 32 pages (lock_batch)
# zone_batchsize() for a zone of >= 1 GiB (5.4-5.13): min(managed / 1024, 1 MiB / PAGE_SIZE) = 256,
# / 4 = 64, rounddown_pow_of_two(64 + 32) - 1 = 63; pageset_set_batch(): high = 6 * batch.
PCP_BATCH = 63
PCP_HIGH = 6 * PCP_BATCH

# Cache lines each step touches (derived from the data it touches and who touched it last).
# A thread's own pages are hot in its cache: it faulted them, added them to the LRU one pagevec
# at a time (so on the LRU list they sit in runs of PAGEVEC_SIZE, their neighbours each other)
# and zapped them; another CPU's lines miss (cacheline_miss_ns), our own hit (cache_hit_ns).
LOCK_MISSES = 2  # taking a lock last held by another CPU: its line and the list head next to it
LRU_ADD_MISSES = 1  # __pagevec_lru_add: the list's old first page (another CPU's), once per pagevec
LRU_RUN_MISSES = 2  # release_pages -> del_page_from_lru_list: the two outer neighbours of each run
LRU_PAGE_HITS = 4  # per page: flags, page->lru, the neighbour's lru, the lruvec counters
BUDDY_MISSES = 2  # __rmqueue_smallest / __free_one_page per page: the cold free page and its neighbour/buddy
ZAP_PTE_HITS = 3  # zap_pte_range per page: the pte, page_remove_rmap's _mapcount, the mmu_gather slot


class SharedLine:
    """One cache line written with locked instructions by many CPUs: a FIFO server of transfers.

    ``rmw`` books locked RMWs requested now by a vCPU on its current pCPU:
    each starts when the RMWs booked before it are done (the line is held
    exclusive by one core at a time) and takes one transfer from the pCPU that
    wrote the line last -- ``cache_hit_ns`` from the same core (itself or its
    SMT sibling), ``c2c_local_ns`` from another core of the socket,
    ``c2c_remote_ns`` from the other socket.  ``count`` > 1: the line is
    handed to another core between them (a cmpxchg retried while others queue)
    and comes back at the same cost.  It returns the stall: the time until the
    last of them completes."""

    __slots__ = ("busy_ns", "free_at", "last", "transfers")

    def __init__(self) -> None:
        self.free_at = 0.0  # when the RMWs booked so far are done
        self.last = None  # the pCPU (host.Pcpu) that wrote the line last
        self.transfers = 0  # RMWs that moved the line from another core
        self.busy_ns = 0.0  # line time booked (for tests and utilisation)

    def transfer_ns(self, prof, pcpu) -> float:
        last = self.last
        if last is None or last is pcpu or last.id == pcpu.sibling:
            return prof.cache_hit_ns
        return prof.c2c_local_ns if last.socket == pcpu.socket else prof.c2c_remote_ns

    def busy(self, now: float) -> bool:
        """RMWs are queued for the line or in flight: other CPUs wait for it."""
        return self.free_at > now

    def rmw(self, h: Host, v, count: int = 1) -> float:
        now = h.engine.now
        prof = h.prof
        pcpu = v.pcpu
        cost = self.transfer_ns(prof, pcpu)
        if cost != prof.cache_hit_ns:
            self.transfers += count
        t = max(float(now), self.free_at) + count * cost
        self.busy_ns += count * cost
        self.last = pcpu
        self.free_at = t
        return t - now


def _stall_work(h: Host, v, stall: float) -> float:
    """Stall ns as guest work: a WORK frame runs at the SMT speed, a wait for a cache line does not."""
    sib = v.pcpu.sibling
    return stall * (h.prof.smt_speed if sib is not None and h.pcpus[sib].curr is not None else 1.0)


def _down_read_trylock(h: Host, v, mm: Mm) -> float:
    """The line transfers of __down_read_trylock (5.1+): the stall, as guest work."""
    line = mm.mmap_sem_line
    # the first cmpxchg expects RWSEM_UNLOCKED_VALUE: it fails while another reader is inside
    # and is retried at once; the retry needs the line again if others queue for it
    retry_transfers = mm.mmap_sem.readers > 1 and line.busy(h.engine.now)
    stall = line.rmw(h, v, 2 if retry_transfers else 1)
    if not retry_transfers and mm.mmap_sem.readers > 1:
        stall += h.prof.cache_hit_ns  # the retry finds the line still in this core
    return _stall_work(h, v, stall)


def _rwsem_rmw(h: Host, v, mm: Mm) -> float:
    """One locked RMW on the rwsem's line (__down_read's fetch_add, __up_read's add_return)."""
    return _stall_work(h, v, mm.mmap_sem_line.rmw(h, v))


class Mm:
    """The ebizzy process's address space and the guest's page allocator / LRU state."""

    __slots__ = ("call_single_queue", "lru_lock", "mmap_sem", "mmap_sem_line", "pagevec", "pcp",
                 "tlb_flush_pending", "zone_lock")

    def __init__(self, nr_cpus: int, rng: np.random.Generator) -> None:
        self.mmap_sem = locks.RwSem()
        self.mmap_sem_line = SharedLine()  # mmap_sem's count + owner: one cache line
        self.zone_lock = locks.QSpinLock(irqsave=True)  # zone->lock: spin_lock under local_irq_save
        self.lru_lock = locks.QSpinLock(irqsave=True)  # pgdat->lru_lock (5.4-5.10) / lruvec lock (5.11+)
        # pages on each CPU's pcp list at time 0: unknown, so drawn over [0, high)
        self.pcp = [int(x) for x in rng.integers(0, PCP_HIGH, nr_cpus)]
        self.pagevec = [0] * nr_cpus  # pages in each CPU's lru_add pagevec
        self.tlb_flush_pending = 0  # mm->tlb_flush_pending: mmu_gathers in progress
        self.call_single_queue: list[list] = [[] for _ in range(nr_cpus)]  # per-CPU csd llist (kernel/smp.c)


def _locked(h: Host, task: Task, lock: locks.QSpinLock, misses: float, hits: float, counter: str):
    """spin_lock_irqsave(lock); work of ``misses`` + ``hits`` cache lines; spin_unlock_irqrestore(lock)."""
    h.stats.count(task.vcpu, counter)
    prof = h.prof
    yield Call(locks.spin_lock, lock)  # the lock is irqsave: IF = 0 from here to the unlock
    yield Run((misses + LOCK_MISSES) * prof.cacheline_miss_ns + hits * prof.cache_hit_ns, True)
    yield Call(locks.spin_unlock, lock)


def fault_in(h: Host, task: Task, mm: Mm, pages: int):
    """memcpy() into the regrown heap: each destination page faults (do_anonymous_page).

    Per page: ``down_read_trylock`` (its line transfers), the fault (entry,
    ``rmqueue_pcplist``, ``clear_page``, ``set_pte_at``, ``lru_cache_add``),
    ``up_read`` (one transfer), then the user copy of the page; two ops per
    page, since each RMW must be booked on the line when it is issued."""
    prof = h.prof
    clear_ns = PAGE_SIZE / prof.memcpy_gbps  # clear_page: bytes / (GB/s) = ns
    copy_ns = PAGE_SIZE / prof.memcpy_gbps  # the user copy of one page
    sem = mm.mmap_sem
    for _ in range(pages):
        v = task.vcpu
        cpu = v.index
        yield Call(locks.down_read, sem)  # do_user_addr_fault: mmap_sem for read
        stall = _down_read_trylock(h, task.vcpu, mm)
        if mm.pcp[cpu] == 0:  # rmqueue_pcplist: list empty -> rmqueue_bulk(zone, 0, pcp->batch)
            if stall:
                yield Run(stall, True)
                stall = 0.0
            yield from _locked(h, task, mm.zone_lock, PCP_BATCH * BUDDY_MISSES, 0, "zone_lock_acquisitions")
            cpu = task.vcpu.index
            mm.pcp[cpu] += PCP_BATCH
        mm.pcp[cpu] -= 1
        mm.pagevec[cpu] += 1
        drain = mm.pagevec[cpu] == PAGEVEC_SIZE
        if drain:
            mm.pagevec[cpu] = 0
        yield Run(stall + prof.page_fault_ns + clear_ns, True)
        if drain:  # lru_cache_add: the pagevec is full -> __pagevec_lru_add
            yield from _locked(h, task, mm.lru_lock, LRU_ADD_MISSES, PAGEVEC_SIZE * LRU_PAGE_HITS,
                               "lru_lock_acquisitions")
        yield Call(locks.up_read, sem)
        yield Run(_rwsem_rmw(h, task.vcpu, mm) + copy_ns, False)


def madvise_dontneed(h: Host, task: Task, mm: Mm, ptl: locks.QSpinLock, pages: int):
    """madvise(MADV_DONTNEED) of ``pages`` pages of the thread's arena heap (glibc shrink_heap)."""
    yield Call(locks.down_read, mm.mmap_sem)  # madvise_need_mmap_write(MADV_DONTNEED) == 0
    stall = _rwsem_rmw(h, task.vcpu, mm)  # __down_read: atomic_long_fetch_add_acquire
    yield from _lru_add_drain(h, task, mm)  # zap_page_range -> lru_add_drain
    mm.tlb_flush_pending += 1  # tlb_gather_mmu -> inc_tlb_flush_pending
    yield Call(locks.spin_lock, ptl)  # zap_pte_range: pte_offset_map_lock
    yield Run(stall + pages * ZAP_PTE_HITS * h.prof.cache_hit_ns, True)
    yield Call(locks.spin_unlock, ptl)
    # tlb_finish_mmu: a concurrent zapper of this mm forces fullmm + freed_tables (7a30df49f63a)
    freed_tables = mm.tlb_flush_pending > 1
    if freed_tables:
        h.stats.count(task.vcpu, "tlb_flushes_nested")
    yield Run(h.prof.tlb_flush_ns, True)  # flush_tlb_mm_range: this CPU's own flush first
    yield Call(tlb.flush_tlb_others, mm, freed_tables)
    # tlb_flush_mmu_free -> free_pages_and_swap_cache -> release_pages
    left = pages
    while left:
        n = min(left, SWAP_CLUSTER_MAX)
        left -= n
        runs = n / PAGEVEC_SIZE  # runs of our pages met in this batch, each with two cold neighbours
        yield from _locked(h, task, mm.lru_lock, runs * LRU_RUN_MISSES, n * LRU_PAGE_HITS, "lru_lock_acquisitions")
    # free_unref_page_list -> free_unref_page_commit; free_pcppages_bulk whenever pcp->count >= pcp->high
    left = pages
    while left:
        cpu = task.vcpu.index
        n = min(left, PCP_HIGH - mm.pcp[cpu])
        mm.pcp[cpu] += n
        left -= n
        if mm.pcp[cpu] >= PCP_HIGH:
            mm.pcp[cpu] -= PCP_BATCH
            yield from _locked(h, task, mm.zone_lock, PCP_BATCH * BUDDY_MISSES, 0, "zone_lock_acquisitions")
    mm.tlb_flush_pending -= 1  # tlb_finish_mmu -> dec_tlb_flush_pending
    yield Call(locks.up_read, mm.mmap_sem)
    yield Run(_rwsem_rmw(h, task.vcpu, mm), True)  # __up_read: atomic_long_add_return_release


def _lru_add_drain(h: Host, task: Task, mm: Mm):
    """lru_add_drain(): this CPU's partly filled pagevec goes onto the LRU."""
    cpu = task.vcpu.index
    n = mm.pagevec[cpu]
    if n:
        mm.pagevec[cpu] = 0
        yield from _locked(h, task, mm.lru_lock, LRU_ADD_MISSES, n * LRU_PAGE_HITS, "lru_lock_acquisitions")
