"""pbzip2 (parallel bzip2, 1.1.x) compressing one file: a reader, ``threads`` compressors, a writer.

The threads exchange blocks as pbzip2 does: the reader (``producer``) read()s
``block_bytes`` of input at a time into a new buffer and queues it on the
FIFO (a pthread mutex and two condition variables, ``notFull`` and
``notEmpty``; ``queue_blocks`` slots); each compressor (``consumer``) takes
the oldest block, signals ``notFull``, compresses it with
``BZ2_bzBuffToBuffCompress`` and stores the result in the output table
under the output mutex, signalling the writer; the writer
(``fileWriter``) write()s the blocks in order, sleeping on its condition
variable while the next one is not done.  Metric: blocks written per
second, and ``pbzip2_wall_s``, the time the whole ``input_bytes`` would
take at that rate.

**Sleeping and waking** (glibc nptl, 2.26+, on the guest's futexes):
- ``pthread_mutex_lock`` of a default (``PTHREAD_MUTEX_NORMAL``) mutex is
  ``lll_lock``: one CAS; when it fails the thread sets the lock word to 2
  and calls ``futex(FUTEX_WAIT)`` at once (only ``PTHREAD_MUTEX_ADAPTIVE_NP``
  spins, ``max_adaptive_count`` iterations, and pbzip2 does not use it);
  ``pthread_mutex_unlock`` of a contended lock (word 2) calls
  ``futex(FUTEX_WAKE, 1)``.  The woken waiter retries the CAS: no hand-off.
- ``pthread_cond_wait`` (``__pthread_cond_wait_common``) unlocks the mutex
  and sleeps in ``futex(FUTEX_WAIT)`` on the condvar's sequence word;
  ``pthread_cond_signal`` wakes one waiter with ``futex(FUTEX_WAKE, 1)`` only
  when there is one; the woken thread re-takes the mutex.
- A FUTEX_WAKE in the guest is ``futex_wake`` -> ``wake_up_q`` ->
  ``try_to_wake_up``: the guest scheduler's rules (model.guest.wake_task): a
  RESCHEDULE IPI (or the wakelist call-function IPI) only to a target vCPU
  that is not polling.  A woken thread's vCPU that the host has preempted
  keeps the IPI pending in its PIR until it runs again.

**The kernel-mode IPI senders** (52acd22faa1a: "benchmarks like pbzip2 ...
do the TLB shootdown in kernel mode and most of the time they are running
in user mode"): every block, ``BZ2_bzCompressInit`` mallocs ``arr1``
(4 x block), ``arr2`` (4 x (block + BZ_N_OVERSHOOT)) and ``ftab``
(4 x 65537) and ``BZ2_bzCompressEnd`` frees them.  In a compressor's own
glibc arena (a non-main heap: one arena per thread up to 8 x cores) they
are below the dynamic mmap threshold after the first block (the first
free of an mmapped chunk raises ``mp_.mmap_threshold`` to its size and
``trim_threshold`` to twice that), so they come from the heap top and their
free coalesces into a top chunk larger than ``trim_threshold``:
``heap_trim`` -> ``shrink_heap`` -> ``madvise(MADV_DONTNEED)`` of all but
``M_TOP_PAD``, which zaps the pages and ends in ``flush_tlb_mm_range`` (a
synchronous call-function-many to the other CPUs running the process,
model.mm / model.tlb).  The next block faults the same pages back in.  The
sender spins at CPL 0 for the acknowledgements; a target the host has
preempted while it compressed (user mode) answers only when it runs
again, and ``kvm_vcpu_on_spin`` boosts it only with ``boost_user_irq``
(model.spin).  The reader's and writer's frees (900 kB input buffers in
the reader's arena, compressed buffers freed into the compressors' arenas,
below the trim threshold) are left out: they trim less than once a block.
pbzip2's cap on buffered output blocks is not modelled either (the writer
keeps up).

Costs (every one named below with its source):
- compression: ``compress_speed_mb`` per core, derived from a published
  single-core bzip2 -9 figure scaled by clock (:data:`LZBENCH_BZIP2_9_MB_PER_S`);
  the page faults of the regrown heap are part of it (they are subtracted);
- read()/write(): a syscall plus the copy at the profile's ``memcpy_gbps``
  (derived); the compressed size from the published bzip2 -9 ratio;
- futex syscalls: ``futex_wait_ns`` / ``futex_wake_ns`` (assumed, see the
  knobs), each < 0.01 % of a block's compression.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

from model import guest, locks, mm
from model.ops import BLOCK, RETURN_TO_USER, Run, Wake
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host

# published: lzbench 1.8 README (inikep/lzbench), "1 core of Intel Core i7-8700K", silesia.tar:
# bzip2 1.0.8 -9 compresses at 15 MB/s (lzbench: input bytes * 1000 / ns, i.e. 10^6 B/s) to
# 54,572,811 of 211,947,520 bytes (25.75 %).
LZBENCH_BZIP2_9_MB_PER_S = 15.0
LZBENCH_BZIP2_9_RATIO = 54_572_811 / 211_947_520
# published: Intel ARK, Core i7-8700K max turbo 4.7 GHz (one busy core, as lzbench runs).  Same
# Skylake core as Cascade Lake-SP; bzip2 is scaled by clock to the profile's tsc_ghz (derived).
LZBENCH_CPU_GHZ = 4.7

# bzip2 1.0.8 bzlib.c BZ2_bzCompressInit: arr1 = n * 4, arr2 = (n + BZ_N_OVERSHOOT) * 4,
# ftab = 65537 * 4 bytes, n = 100000 * blockSize100k.
BZ_N_OVERSHOOT = 34
BZ_FTAB_BYTES = 65_537 * 4
# glibc mallopt(3): M_TOP_PAD default 128 * 1024 (heap_trim keeps this much of the top chunk).
GLIBC_TOP_PAD = 128 * 1024
# The compression of a block runs as this many ops, each crediting 1/PROGRESS_CHUNKS block to the
# throughput count (time granularity of the metric only: user work between two chunks is contiguous).
PROGRESS_CHUNKS = 32
SYSCALL_NS = 100.0  # assumed: syscall entry + exit on Cascade Lake (no KPTI: not Meltdown-affected)


def compress_ns(h: Host, knobs) -> float:
    """One block's BZ2_bzBuffToBuffCompress at full speed (derived, see the module docstring)."""
    rate = knobs.compress_speed_mb
    if rate is None:
        rate = LZBENCH_BZIP2_9_MB_PER_S * h.prof.tsc_ghz / LZBENCH_CPU_GHZ
    return knobs.block_bytes / (rate * 1e6) * 1e9


def trimmed_pages(block_bytes: int) -> int:
    """Pages heap_trim returns after BZ2_bzCompressEnd (and the next block faults back in)."""
    n = block_bytes // 100_000 * 100_000 if block_bytes >= 100_000 else block_bytes
    freed = 4 * n + 4 * (n + BZ_N_OVERSHOOT) + BZ_FTAB_BYTES
    return max(0, (freed - GLIBC_TOP_PAD) // mm.PAGE_SIZE)


class Mutex:
    """A glibc default mutex: the lock word's owner and the futex waiters."""

    __slots__ = ("owner", "waiters")

    def __init__(self) -> None:
        self.owner: Task | None = None
        self.waiters: deque[Task] = deque()


class Cond:
    """A pthread condition variable: the threads asleep in pthread_cond_wait."""

    __slots__ = ("waiters",)

    def __init__(self) -> None:
        self.waiters: deque[Task] = deque()


class Pbzip2:
    """The process: its FIFO, output table, locks and condition variables."""

    __slots__ = ("capacity", "done", "fifo", "fifo_mut", "next_block", "next_write", "not_empty", "not_full",
                 "out_mut", "writer_cond")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.fifo: deque[int] = deque()
        self.fifo_mut = Mutex()
        self.not_full = Cond()
        self.not_empty = Cond()
        self.out_mut = Mutex()
        self.writer_cond = Cond()
        self.done: set[int] = set()  # compressed blocks not yet written
        self.next_block = 0  # the reader's next block number
        self.next_write = 0  # the writer's next block number


def build(h: Host, vm, knobs, rng) -> None:
    vcpus = vm.vcpus
    n = len(vcpus) if knobs.threads is None else knobs.threads
    vm.mm = mm.Mm(len(vcpus), rng)
    proc = Pbzip2(knobs.queue_blocks or n)
    # Steady state at t = 0: each compressor part-way through a block (the share left drawn; the
    # compressor nearest its end holds the oldest block), the FIFO full behind them.
    phases = sorted(float(x) for x in rng.random(n))
    work_ns = compress_ns(h, knobs)
    pages = trimmed_pages(knobs.block_bytes)
    fault_user_ns = pages * mm.PAGE_SIZE / h.prof.memcpy_gbps  # mm.fault_in's user part: inside the compression
    order = [int(i) for i in rng.permutation(n)]  # which vCPU's compressor holds which block
    for block, k in enumerate(order):
        task = Task(f"pbzip2.c{k}", None, vcpus[k % len(vcpus)])
        task.gen = _consumer(h, vm, task, proc, knobs, locks.QSpinLock(), block, phases[block], work_ns,
                             pages, fault_user_ns)
        guest.start_task(h, task)
    proc.next_block = n
    for _ in range(proc.capacity):
        proc.fifo.append(proc.next_block)
        proc.next_block += 1
    reader = Task("pbzip2.reader", None, vcpus[n % len(vcpus)])
    reader.gen = _reader(h, reader, proc, knobs)
    guest.start_task(h, reader)
    writer = Task("pbzip2.writer", None, vcpus[(n + 1) % len(vcpus)])
    writer.gen = _writer(h, vm.index, writer, proc, knobs)
    guest.start_task(h, writer)


# -- glibc nptl on futexes ----------------------------------------------------------


def _lock(task: Task, m: Mutex, knobs):
    """pthread_mutex_lock -> lll_lock: CAS, else FUTEX_WAIT until the word is free (retry)."""
    while m.owner is not None:
        m.waiters.append(task)  # lock word 2: the unlocker will FUTEX_WAKE
        yield Run(knobs.futex_wait_ns, True)  # futex_wait: a wake-up meanwhile makes block return
        yield BLOCK
        if task in m.waiters:
            m.waiters.remove(task)
    m.owner = task


def _unlock(m: Mutex, knobs):
    """pthread_mutex_unlock -> lll_unlock: FUTEX_WAKE one waiter if the lock was contended."""
    m.owner = None
    if m.waiters:
        w = m.waiters.popleft()
        yield Run(knobs.futex_wake_ns, True)
        yield Wake(w)
        yield RETURN_TO_USER


def _cond_wait(task: Task, c: Cond, m: Mutex, knobs):
    """pthread_cond_wait: release the mutex, FUTEX_WAIT on the condvar, re-take the mutex."""
    c.waiters.append(task)
    yield from _unlock(m, knobs)
    yield Run(knobs.futex_wait_ns, True)
    yield BLOCK
    if task in c.waiters:
        c.waiters.remove(task)
    yield from _lock(task, m, knobs)


def _cond_signal(c: Cond, knobs):
    """pthread_cond_signal: FUTEX_WAKE one waiter, if any (no syscall otherwise)."""
    if c.waiters:
        w = c.waiters.popleft()
        yield Run(knobs.futex_wake_ns, True)
        yield Wake(w)
        yield RETURN_TO_USER


# -- the threads -----------------------------------------------------------------------


def _reader(h: Host, task: Task, proc: Pbzip2, knobs):
    """producer(): read() a block into a new buffer, queue it (wait while the FIFO is full)."""
    read_ns = SYSCALL_NS + knobs.block_bytes / h.prof.memcpy_gbps  # copy_to_user from the page cache
    while True:
        yield Run(read_ns, True)
        yield RETURN_TO_USER
        yield from _lock(task, proc.fifo_mut, knobs)
        while len(proc.fifo) >= proc.capacity:
            yield from _cond_wait(task, proc.not_full, proc.fifo_mut, knobs)
        proc.fifo.append(proc.next_block)
        proc.next_block += 1
        yield from _unlock(proc.fifo_mut, knobs)
        yield from _cond_signal(proc.not_empty, knobs)


def _consumer(h: Host, vm, task: Task, proc: Pbzip2, knobs, ptl, first: int, phase: float, work_ns: float,
              pages: int, fault_user_ns: float):
    """consumer(): take a block, compress it (BZ2 state malloc'd and freed), hand it to the writer."""
    space = vm.mm
    block = first
    chunk_ns = max(work_ns - fault_user_ns, 0.0) / PROGRESS_CHUNKS
    left = round(phase * PROGRESS_CHUNKS)  # the first block is part-way done (steady-state start)
    while True:
        for _ in range(left):
            yield Run(chunk_ns, False)  # BWT sort, MTF/Huffman coding of the block
            h.stats.add_work(vm.index, "block_progress", 1 / PROGRESS_CHUNKS)
        # BZ2_bzCompressEnd -> free(arr1, arr2, ftab) -> heap_trim -> shrink_heap -> MADV_DONTNEED
        yield from mm.madvise_dontneed(h, task, space, ptl, pages)
        yield RETURN_TO_USER
        yield from _lock(task, proc.out_mut, knobs)
        proc.done.add(block)
        yield from _unlock(proc.out_mut, knobs)
        yield from _cond_signal(proc.writer_cond, knobs)
        yield from _lock(task, proc.fifo_mut, knobs)
        while not proc.fifo:
            yield from _cond_wait(task, proc.not_empty, proc.fifo_mut, knobs)
        block = proc.fifo.popleft()
        yield from _unlock(proc.fifo_mut, knobs)
        yield from _cond_signal(proc.not_full, knobs)
        # BZ2_bzCompressInit: the heap regrows; the sort's first pass faults arr1/arr2/ftab back in
        yield from mm.fault_in(h, task, space, pages)
        left = PROGRESS_CHUNKS


def _writer(h: Host, vm_index: int, task: Task, proc: Pbzip2, knobs):
    """fileWriter(): write() the blocks in order; sleep on the condvar while the next is not done."""
    write_ns = SYSCALL_NS + knobs.block_bytes * LZBENCH_BZIP2_9_RATIO / h.prof.memcpy_gbps
    while True:
        yield from _lock(task, proc.out_mut, knobs)
        while proc.next_write not in proc.done:
            yield from _cond_wait(task, proc.writer_cond, proc.out_mut, knobs)
        proc.done.discard(proc.next_write)
        proc.next_write += 1
        yield from _unlock(proc.out_mut, knobs)
        yield Run(write_ns, True)  # write() of the compressed block into the page cache
        yield RETURN_TO_USER
        h.stats.add_work(vm_index, "blocks_written", 1)
