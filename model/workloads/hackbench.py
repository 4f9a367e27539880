"""hackbench (rt-tests): groups of senders and receivers passing small messages.

As the program runs (hackbench.c): every receiver owns one channel, an
AF_UNIX stream socketpair (``-p``: a pipe); each of the group's senders
writes one ``message_bytes`` message to every receiver of its group in turn
(``for loops: for each receiver: write()``), and each receiver read()s one
message at a time.  The kernel decides who sleeps and who wakes:

Sockets (net/unix/af_unix.c, net/core/sock.c):
- unix_stream_sendmsg() charges each message's skb *truesize* to the sending
  socket (skb_set_owner_w); sock_alloc_send_pskb() lets the write proceed
  while ``sk_wmem_alloc < sk_sndbuf`` and otherwise sleeps the writer in
  sock_wait_for_wmem().  All senders of a receiver share the socket's end,
  so they share its buffer;
- the write queues the skb on the receiver and calls sk_data_ready
  (sock_def_readable): a receiver asleep on the empty queue is woken;
- each read frees an skb (sock_wfree -> unix_write_space), which wakes the
  sleeping writers only once unix_writable(): ``wmem_alloc << 2 <= sndbuf``,
  i.e. when the queue has drained to a quarter of the buffer.

Pipes (fs/pipe.c, 5.6+): 16 page slots (PIPE_DEF_BUFFERS); a small write
merges into the last page while it has room (PIPE_BUF_FLAG_CAN_MERGE); a
writer sleeps when all slots are used and the last page is full; pipe_write
wakes the reader only if the pipe was empty, pipe_read wakes one writer
(exclusive wait) after a read that found the pipe full.

Reference semantics: one op per write() (the skb is charged to the socket when the write
starts and queued on the receiver when it ends, where a sleeping reader is woken) and one op
per read() (sock_wfree, and the writers' wake-up); every op ends with a return to user mode,
where a pending guest reschedule is taken.  ``BATCH = False`` runs exactly that.

Batching (``BATCH = True``, AF_UNIX) runs several syscalls of one task as one WORK frame and
gives the same sleeps, wake-ups and messages (tests/model/test_hackbench.py): the frame's
progress tells how many syscalls have completed at any instant, so the channels' charge and
queue are exact whenever someone looks (:meth:`Channel.charged`, :meth:`Channel.queue_len`),
and a batch ends early wherever a boundary matters -- TIF_NEED_RESCHED set on its vCPU, the
write that must wake a reader which fell asleep meanwhile (:meth:`Channel.arm`), the read at
which sleeping writers may be woken.  A sender batches only writes that cannot find a full
buffer (:func:`_plan`); near a full buffer it writes one message per op.  Pipes run one op
per syscall.  Under SMT the batched frames round their end to the ns once instead of once a
syscall (a few ns apart).

Per-message costs (``send_ns``, ``recv_ns``): the guest's write() and read()
of one message, syscall entry/exit included; see the Hackbench knobs.
Metric: messages received per second; ``hackbench_time_s`` is the time the
real run of groups x senders x receivers x loops messages would take.
"""

from __future__ import annotations

import math
from functools import lru_cache
from typing import TYPE_CHECKING

from model import guest
from model.ops import BLOCK, RETURN_TO_USER, Run, Wake
from model.vcpu import Task

if TYPE_CHECKING:
    from model.host import Host

# Linear skb of one small unix stream message, x86-64 5.x (include/linux/skbuff.h):
SKB_SHARED_INFO_BYTES = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
SK_BUFF_BYTES = 256  # SKB_DATA_ALIGN(sizeof(struct sk_buff)) (224 bytes, cache-line aligned)
SMP_CACHE_BYTES = 64  # SKB_DATA_ALIGN alignment
KMALLOC_MIN_BYTES = 8  # smallest kmalloc size class; classes are powers of two above 128 bytes
PIPE_DEF_BUFFERS = 16  # fs/pipe.c: default pipe ring size (16 pages)
PAGE_BYTES = 4096
# Batching (exact, see the module docstring): a sender's batch is at most this many rounds of
# writes to all its receivers; False runs one op per write() and per read() (the reference the
# tests compare the batches with).
BATCH = True
SEND_BATCH_ROUNDS = 4
late_wakes = [0]  # wake-ups applied after the write that should have made them (a check for the tests)
EPS_NS = 1e-6  # float slack when counting completed writes from a frame's remaining work


def unix_skb_truesize(message_bytes: int) -> int:
    """skb->truesize of the linear skb that sock_alloc_send_pskb() allocates for one message.

    __alloc_skb(): size = SKB_DATA_ALIGN(len) + shinfo, rounded up by kmalloc to
    its size class (ksize); truesize = SKB_TRUESIZE(ksize - shinfo) = ksize + sk_buff.
    100 bytes: 128 + 320 = 448 -> kmalloc-512 -> truesize 768."""
    head = -(-message_bytes // SMP_CACHE_BYTES) * SMP_CACHE_BYTES + SKB_SHARED_INFO_BYTES
    ksize = _kmalloc_size(head)
    return ksize + SK_BUFF_BYTES


def _kmalloc_size(n: int) -> int:
    """kmalloc size classes: 8 ... 64, 96, 128, 192, then powers of two."""
    for size in (8, 16, 32, 64, 96, 128, 192):
        if n <= size:
            return size
    return 1 << math.ceil(math.log2(n))



class Channel:
    """One receiver's socketpair (or pipe): what is queued, who sleeps on it.

    AF_UNIX accounting (exact at every instant, batches included):
    - ``wmem``: skbs charged to the sending socket (sk_wmem_alloc / truesize) by single writes
      (charged when they start: sock_alloc_send_pskb -> skb_set_owner_w) and by batch writes
      already applied, less the reads applied (sock_wfree);
    - ``queued``: messages on the receive queue, as applied;
    - ``inflight``: sender batches still to apply writes here, with how many they applied;
      ``planned``: their writes not applied yet (``wmem + planned`` bounds the charge from above);
    - ``rbatch``: the receiver's batch of reads in progress (its reads are applied at its end).
    """

    __slots__ = (
        "capacity",
        "index",
        "inflight",
        "pending",
        "per_page",
        "pipe",
        "planned",
        "queued",
        "rbatch",
        "read_total",
        "reader",
        "wake_at",
        "wmem",
        "writers",
        "written_total",
    )

    def __init__(self, knobs, index: int = 0) -> None:
        self.pipe = knobs.pipe
        self.index = index
        if knobs.pipe:
            self.per_page = PAGE_BYTES // knobs.message_bytes
            self.capacity = PIPE_DEF_BUFFERS * self.per_page
            self.wake_at = 0
        else:
            truesize = unix_skb_truesize(knobs.message_bytes)
            self.per_page = 0
            # writes proceed while wmem_alloc < sndbuf: ceil(sndbuf / truesize) skbs fit
            self.capacity = -(-knobs.sndbuf_bytes // truesize)
            # unix_writable(): (wmem_alloc << 2) <= sndbuf
            self.wake_at = knobs.sndbuf_bytes // (4 * truesize)
        self.queued = 0
        self.pending = 0  # pipe: writes in progress (pipe_write takes its slot when it starts)
        self.wmem = 0
        self.planned = 0
        self.inflight: dict[SendBatch, int] = {}
        self.rbatch: RecvBatch | None = None
        self.written_total = 0
        self.read_total = 0
        self.reader: Task | None = None
        self.writers: list[Task] = []

    def charged(self, h: Host) -> int:
        """sk_wmem_alloc now, in skbs: writes started and not yet read (batches included)."""
        return self._with_batches(h, self.wmem, SendBatch.started_count)

    def queue_len(self, h: Host) -> int:
        """Messages on the receive queue now: writes completed and not yet read (batches included)."""
        return self._with_batches(h, self.queued, SendBatch.done)

    def _with_batches(self, h: Host, base: int, progress) -> int:
        """``base`` plus the in-flight sender batches' writes to this channel that ``progress``
        counts and that are not applied yet, less what the reader's batch has read by now."""
        for b, applied in self.inflight.items():
            base += b.writes_to(self.index, progress(b, h)) - applied
        rb = self.rbatch
        return base - rb.done(h) if rb is not None else base

    def apply_writes(self, h: Host) -> None:
        """Apply the writes that in-flight sender batches have completed by now (the reader looks)."""
        for b, applied in self.inflight.items():
            n = b.writes_to(self.index, b.done(h)) - applied
            if n:
                self._applied(b, applied + n, n)

    def _applied(self, b: SendBatch, total: int, n: int) -> None:
        self.inflight[b] = total
        self._applied_n(n)

    def _applied_n(self, n: int) -> None:
        self.queued += n
        self.wmem += n
        self.planned -= n
        self.written_total += n

    def writable(self, h: Host | None = None) -> bool:
        """Can one more message be written now without sleeping?"""
        if not self.pipe:
            return (self.charged(h) if self.inflight or self.rbatch else self.wmem) < self.capacity
        if self.queued + self.pending == 0:
            return True
        if self.written_total % self.per_page:
            return True  # merges into the last page
        return self._slots_used() < PIPE_DEF_BUFFERS

    def _slots_used(self) -> int:
        if self.queued + self.pending == 0:
            return 0
        return (self.written_total - 1) // self.per_page - self.read_total // self.per_page + 1

    def pipe_full(self) -> bool:
        """pipe_full(): every slot in use (the writers' wait condition)."""
        return self._slots_used() >= PIPE_DEF_BUFFERS

    def arm(self, h: Host) -> None:
        """The reader sleeps on an empty queue: the first in-flight batch write here must wake it.

        Every batch that is not executing is cut to end with its next write here, and so is
        the executing batch whose next write here completes first; each ends its op with a
        wake-up if the reader still sleeps then.  An armed batch that stops executing before
        its write arms the channel again (:meth:`SendBatch.paused`)."""
        best, best_t, best_m = None, math.inf, 0
        for b in list(self.inflight):
            m = b.next_write_to(self.index, b.done(h))
            if m is None:
                continue
            t = b.time_of(h, m)
            if t == math.inf:
                b.arm_at(h, self, m)
            elif t < best_t:
                best, best_t, best_m = b, t, m
        if best is not None:
            best.arm_at(h, self, best_m)


class _Batch:
    """Consecutive syscalls of one task as one WORK frame: ``k`` of ``cost`` ns each.

    The frame's progress says how many have completed at any instant, so others can see
    the exact state without an event per syscall; the batch ends early (:meth:`truncate`)
    wherever a syscall boundary matters: TIF_NEED_RESCHED set (the return to user mode after
    the current syscall schedules), a reader to wake, a threshold to cross."""

    __slots__ = ("_memo", "cost", "frame", "k", "v")

    def __init__(self, k: int, cost: int) -> None:
        self.k = k
        self.cost = cost
        self.frame = None
        self.v = None
        self._memo = (-1, -1, 0, 0.0)  # (now, k, done, remaining): done() is asked many times an instant

    def attach(self, h: Host, v, frame) -> None:
        self.v = v
        self.frame = frame

    def done(self, h: Host) -> int:
        """Syscalls completed by now."""
        f = self.frame
        if f is None:
            return self.k
        now = h.engine.now
        memo = self._memo
        if memo[0] == now and memo[1] == self.k and f.remaining == memo[3]:
            return memo[2]
        left = guest.executed_ns(h, self.v, f)
        d = int((self.k * self.cost - left + EPS_NS) // self.cost)
        d = min(max(d, 0), self.k)
        self._memo = (now, self.k, d, f.remaining)
        return d

    def truncate(self, h: Host, m: int) -> None:
        """End the batch after ``m`` syscalls (the task plans the rest again)."""
        if m >= self.k or self.frame is None:
            return
        drop = self.k - m
        self._dropping(m)
        self.k = m
        guest.shorten(h, self.v, self.frame, drop * self.cost)

    def _dropping(self, m: int) -> None:
        pass

    def resched(self, h: Host, f) -> None:
        """TIF_NEED_RESCHED: the return to user mode after the current syscall schedules."""
        self.truncate(h, self.done(h) + 1)

    def resumed(self, h: Host, v, f) -> None:
        pass

    def paused(self, h: Host) -> None:
        pass


class SendBatch(_Batch):
    """write()s of one sender, AF_UNIX: write i (0-based) goes to channel ``(j0 + i) % n``,
    starts after ``i`` writes' work and completes after ``i + 1``.

    Exactness of the sk_wmem_alloc checks: the batch was planned at ``t0`` only for channels
    whose charge plus every write that all senders can start within the batch's window stays
    below sk_sndbuf (:func:`_plan`), so none of its writes would have slept; the window is kept
    by ending the batch with its current write whenever it would run past it (after an
    interrupt, an exit, an SMT slowdown: :meth:`resumed`)."""

    __slots__ = ("armed", "channels", "j0", "n", "registered", "t_last")

    def __init__(self, channels: list, j0: int, k: int, cost: int, t_last: float) -> None:
        super().__init__(k, cost)
        self.armed: list | None = None  # channels whose sleeping reader this batch's last write wakes
        self.channels = channels
        self.n = len(channels)
        self.j0 = j0
        self.t_last = t_last  # the latest start of a write the capacity check covered
        self.registered = list(self.touched())
        for r, c in self.registered:
            c.inflight[self] = 0
            c.planned += self.writes_to(r, k)

    def started_count(self, h: Host) -> int:
        d = self.done(h)
        return d + 1 if d < self.k else d

    def writes_to(self, r: int, m: int) -> int:
        """How many of the first ``m`` writes go to channel ``r``."""
        off = (r - self.j0) % self.n
        return 0 if m <= off else (m - off - 1) // self.n + 1

    def next_write_to(self, r: int, done: int) -> int | None:
        """The write count at whose completion the next write to channel ``r`` (after ``done``) lands."""
        n = self.n
        off = (r - self.j0) % n
        i = off if done <= off else off + (done - off + n - 1) // n * n
        return i + 1 if i < self.k else None

    def time_of(self, h: Host, m: int) -> float:
        """When write ``m - 1`` completes if the frame runs on undisturbed (inf: not executing)."""
        v, f = self.v, self.frame
        if f is None or not (v.seg_start >= 0 and v.frames and v.frames[-1] is f):
            return math.inf
        left = guest.executed_ns(h, v, f) - (self.k - m) * self.cost
        return h.engine.now + left / v.speed

    def touched(self):
        n = self.n
        for i in range(min(self.k, n)):
            r = (self.j0 + i) % n
            yield r, self.channels[r]

    def _dropping(self, m: int) -> None:
        for r, c in self.touched():
            c.planned -= self.writes_to(r, self.k) - self.writes_to(r, m)

    def arm_at(self, h: Host, c: Channel, m: int) -> None:
        """End with write ``m - 1`` (to ``c``, whose reader sleeps)."""
        if self.armed is None:
            self.armed = []
        self.armed.append(c)
        self.truncate(h, m)

    def truncate(self, h: Host, m: int) -> None:
        if m >= self.k or self.frame is None:
            return
        super().truncate(h, m)
        self._rearm(h)

    def _rearm(self, h: Host) -> None:
        """Armed channels this batch no longer writes to (it was cut shorter): arm them again."""
        if not self.armed:
            return
        lost = [c for c in self.armed if self.writes_to(c.index, self.k) == self.writes_to(c.index, self.done(h))]
        if lost:
            self.armed = [c for c in self.armed if c not in lost]
            for c in lost:
                if c.reader is not None:
                    c.arm(h)

    def paused(self, h: Host) -> None:
        """The frame stops executing: the channels it was armed for need another first writer."""
        if self.armed:
            armed, self.armed = self.armed, []
            for c in armed:
                if c.reader is not None:
                    c.arm(h)

    def resumed(self, h: Host, v, f) -> None:
        """The frame (re)starts: if its last write would start after ``t_last``, end with the current one."""
        d = int((self.k * self.cost - f.remaining + EPS_NS) // self.cost)
        if d + 1 >= self.k:
            return
        if h.engine.now + (f.remaining - (self.k - d - 1) * self.cost) / v.speed \
                + (self.k - d - 2) * self.cost / v.speed > self.t_last:
            drop = self.k - d - 1
            self._dropping(d + 1)
            self.k = d + 1
            f.remaining = max(f.remaining - drop * self.cost, 0.0)
            self._rearm(h)

    def finish(self) -> list:
        """The frame completed: apply every write; the channels whose sleeping reader it wakes."""
        wake = []
        for r, c in self.registered:
            total = self.writes_to(r, self.k)
            applied = c.inflight.pop(self)
            if total > applied:
                c._applied_n(total - applied)
                if c.reader is not None:
                    wake.append(c)
                    if (self.j0 + self.k - 1) % self.n != r:
                        late_wakes[0] += 1  # the write to c was not the last one (never, if exact)
        self.frame = None
        return wake


class RecvBatch(_Batch):
    """read()s of one receiver, of messages already on its queue (AF_UNIX)."""

    __slots__ = ()


class Group:
    __slots__ = ("channels",)

    def __init__(self, knobs) -> None:
        self.channels = [Channel(knobs, r) for r in range(knobs.receivers)]


def build(h: Host, vm, knobs, rng) -> None:
    vcpus = vm.vcpus
    slot = 0
    for g in range(knobs.groups):
        group = Group(knobs)
        for r in range(knobs.receivers):
            task = Task(f"recv{g}.{r}", None, vcpus[slot % len(vcpus)])
            task.gen = _receiver(h, vm.index, task, group.channels[r], knobs)
            guest.start_task(h, task)
            slot += 1
        for s in range(knobs.senders):
            task = Task(f"send{g}.{s}", None, vcpus[slot % len(vcpus)])
            task.gen = _sender(h, task, group, knobs)
            guest.start_task(h, task)
            slot += 1


@lru_cache(maxsize=256)
def _bounds(senders: int, n: int, cost: int, speed: float) -> tuple[int, ...]:
    """Writes all senders can start on one channel within a batch of r rounds (index r), at ``speed``."""
    return (senders,) + tuple(senders * (int((r * n - 1) * cost / speed // (n * cost)) + 1)
                              for r in range(1, SEND_BATCH_ROUNDS + 1))


def _plan(h: Host, task: Task, channels: list, j: int, knobs) -> tuple[int, float]:
    """How many writes from channel ``j`` on can run as one batch, exactly (0 or 1: one write).

    A channel may take batch writes only while its charge now (sk_wmem_alloc, exact) plus
    every write the group's senders can start within the batch's window stays below
    sk_sndbuf: a sender writes a given channel once per round of ``n`` writes of ``send_ns``,
    at most at full speed, so in a window of W ns each starts at most ``W // (n * send_ns) + 1``
    writes there.  The window is the batch's work at the vCPU's present speed (the batch ends
    early if it runs slower: :meth:`SendBatch.resumed`); the rounds are the most, up to
    ``SEND_BATCH_ROUNDS``, that every channel allows.  The batch ends with the first write to
    a channel whose reader sleeps (it wakes it) and before a channel with writers asleep."""
    v = task.vcpu
    if v.guest_resched:
        return 0, 0.0  # a boundary is due at once
    n = len(channels)
    cost = knobs.send_ns
    speed = v.speed
    rounds = SEND_BATCH_ROUNDS
    bounds = _bounds(knobs.senders, n, cost, speed)
    stop = n
    for i in range(n):
        c = channels[(j + i) % n]
        if c.writers:
            stop = i
            break
        room = c.capacity - c.wmem - c.planned  # wmem + planned bounds the charge from above
        if room <= bounds[rounds]:
            room = c.capacity - c.charged(h)
            while rounds and room <= bounds[rounds]:
                rounds -= 1
        if not rounds:
            stop = i
            break
        if c.reader is not None:
            if rounds * n > i + 1:
                rounds = 0
                stop = i + 1
            break
    k = stop if rounds == 0 or stop < n else rounds * n
    if k <= 1:
        return 0, 0.0
    return k, h.engine.now + (k - 1) * cost / speed


def _sender(h: Host, task: Task, group: Group, knobs):
    """write() one message to each receiver in turn, forever; sleep on a full channel."""
    channels = group.channels
    n = len(channels)
    cost = knobs.send_ns
    batching = BATCH and not knobs.pipe
    j = 0
    while True:
        k, t_last = _plan(h, task, channels, j, knobs) if batching else (0, 0.0)
        if k > 1:
            b = SendBatch(channels, j, k, cost, t_last)
            yield Run(k * cost, True, b)
            j = (j + b.k) % n
            for c in b.finish():
                reader = c.reader
                c.reader = None
                yield Wake(reader)  # sock_def_readable
            yield RETURN_TO_USER
            continue
        ch = channels[j]
        while not ch.writable(h):
            ch.writers.append(task)  # sock_wait_for_wmem / pipe_write's wait
            rb = ch.rbatch
            if rb is not None:  # the reader's batch must stop where unix_writable() may turn true
                rb.truncate(h, rb.done(h) + max(ch.charged(h) - ch.wake_at, 1))
            yield BLOCK
        if ch.pipe:
            ch.pending += 1  # pipe_write (under pipe->mutex) takes the slot, or merges, when it starts
            ch.written_total += 1
        else:
            ch.wmem += 1  # sock_alloc_send_pskb -> skb_set_owner_w: charged when the write starts
        yield Run(cost, True)
        was_empty = ch.queued == 0
        ch.queued += 1
        if ch.pipe:
            ch.pending -= 1
        else:
            ch.written_total += 1
        j = (j + 1) % n
        reader = ch.reader
        if reader is not None and (was_empty or not ch.pipe):
            ch.reader = None
            yield Wake(reader)  # sock_def_readable / pipe_write's rd_wait
        yield RETURN_TO_USER


def _receiver(h: Host, vm_index: int, task: Task, ch: Channel, knobs):
    """read() one message at a time; sleep on an empty channel; wake writers per the kernel."""
    cost = knobs.recv_ns
    batching = BATCH and not knobs.pipe
    while True:
        ch.apply_writes(h)
        while ch.queued == 0:
            ch.reader = task
            ch.arm(h)
            yield BLOCK
            ch.apply_writes(h)
        if ch.pipe:
            was_full = ch.pipe_full()
            yield Run(cost, True)
            ch.queued -= 1
            ch.read_total += 1
            h.stats.add_work(vm_index, "messages", 1)
            if ch.writers and was_full:
                yield Wake(ch.writers.pop(0))  # pipe_read wakes one writer (exclusive wait)
            yield RETURN_TO_USER
            continue
        k = ch.queued if batching else 1
        if ch.writers:
            over = ch.charged(h) - ch.wake_at
            if over > 0:
                k = min(k, over)  # stop where unix_writable() may turn true
        rb = RecvBatch(k, cost)
        ch.rbatch = rb
        yield Run(k * cost, True, rb)
        k = rb.k
        ch.rbatch = None
        ch.queued -= k
        ch.wmem -= k  # sock_wfree
        ch.read_total += k
        h.stats.add_work(vm_index, "messages", k)
        if ch.writers and ch.charged(h) <= ch.wake_at:  # unix_write_space: unix_writable()
            writers, ch.writers = ch.writers, []
            for w in writers:
                yield Wake(w)
        yield RETURN_TO_USER
