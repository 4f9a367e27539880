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

Timing granularity: a sender's consecutive writes run as one op until a write
goes to a receiver that is asleep or has an empty queue (the wake-up happens
right there), a channel is full, or a round is done; a receiver's reads run
as one op, split where its reads make sleeping writers wakeable.  Every op
ends with a return to user mode, where a pending guest reschedule is taken.

Per-message costs (``send_ns``, ``recv_ns``): the guest's write() and read()
of one message, syscall entry/exit included; see the Hackbench knobs.
Metric: messages received per second; ``hackbench_time_s`` is the time the
real run of groups x senders x receivers x loops messages would take.
"""

from __future__ import annotations

import math

from model import guest
from model.vcpu import Task

# Linear skb of one small unix stream message, x86-64 5.x (include/linux/skbuff.h):
SKB_SHARED_INFO_BYTES = 320  # SKB_DATA_ALIGN(sizeof(struct skb_shared_info))
SK_BUFF_BYTES = 256  # SKB_DATA_ALIGN(sizeof(struct sk_buff)) (224 bytes, cache-line aligned)
SMP_CACHE_BYTES = 64  # SKB_DATA_ALIGN alignment
KMALLOC_MIN_BYTES = 8  # smallest kmalloc size class; classes are powers of two above 128 bytes
PIPE_DEF_BUFFERS = 16  # fs/pipe.c: default pipe ring size (16 pages)
PAGE_BYTES = 4096
# A receiver's reads in one op, at most (time granularity; the kernel reads one message per read()).
READ_BATCH_MAX = 64


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
    """One receiver's socketpair (or pipe): what is queued, who sleeps on it."""

    __slots__ = (
        "capacity",
        "per_page",
        "pipe",
        "queued",
        "read_total",
        "reader",
        "wake_at",
        "writers",
        "written_total",
    )

    def __init__(self, knobs) -> None:
        self.pipe = knobs.pipe
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
        self.written_total = 0
        self.read_total = 0
        self.reader: Task | None = None
        self.writers: list[Task] = []

    def writable(self) -> bool:
        """Can one more message be written now without sleeping?"""
        if not self.pipe:
            return self.queued < self.capacity
        if self.queued == 0:
            return True
        if self.written_total % self.per_page:
            return True  # merges into the last page
        return self._slots_used() < PIPE_DEF_BUFFERS

    def _slots_used(self) -> int:
        if self.queued == 0:
            return 0
        return (self.written_total - 1) // self.per_page - self.read_total // self.per_page + 1

    def pipe_full(self) -> bool:
        """pipe_full(): every slot in use (the writers' wait condition)."""
        return self._slots_used() >= PIPE_DEF_BUFFERS


class Group:
    __slots__ = ("channels",)

    def __init__(self, knobs) -> None:
        self.channels = [Channel(knobs) for _ in range(knobs.receivers)]


def build(h, vm, knobs, rng) -> None:
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


def _sender(h, task: Task, group: Group, knobs):
    """write() one message to each receiver in turn, forever; sleep on a full channel."""
    channels = group.channels
    n = len(channels)
    j = 0
    while True:
        ch = channels[j]
        while not ch.writable():
            ch.writers.append(task)  # sock_wait_for_wmem / pipe_write's wait
            yield ("block",)
        targets = []
        while len(targets) < n:
            c = channels[(j + len(targets)) % n]
            if not c.writable():
                break
            targets.append(c)
            if c.reader is not None or c.queued == 0:
                break  # this write wakes (or may have to wake) its receiver: end the op here
        yield ("run", knobs.send_ns * len(targets), True)
        for c in targets:
            if not c.writable():
                break  # another sender filled it meanwhile: sleep on it next
            was_empty = c.queued == 0
            c.queued += 1
            c.written_total += 1
            j = (j + 1) % n
            reader = c.reader
            if reader is not None and (was_empty or not c.pipe):
                c.reader = None
                yield ("wake", reader)  # sock_def_readable / pipe_write's rd_wait
        yield ("return_to_user",)


def _receiver(h, vm_index: int, task: Task, ch: Channel, knobs):
    """read() one message at a time; sleep on an empty channel; wake writers per the kernel."""
    while True:
        while ch.queued == 0:
            ch.reader = task
            yield ("block",)
        k = min(ch.queued, READ_BATCH_MAX)
        if ch.writers:
            if ch.pipe:
                k = 1  # each read of a full pipe wakes one writer
            elif ch.queued > ch.wake_at:
                k = min(k, ch.queued - ch.wake_at)  # stop where unix_writable() turns true
        was_full = ch.pipe and ch.pipe_full()
        yield ("run", knobs.recv_ns * k, True)
        ch.queued -= k
        ch.read_total += k
        h.stats.add_work(vm_index, "messages", k)
        if ch.writers:
            if ch.pipe:
                if was_full:
                    yield ("wake", ch.writers.pop(0))
            elif ch.queued <= ch.wake_at:
                writers, ch.writers = ch.writers, []
                for w in writers:
                    yield ("wake", w)
        yield ("return_to_user",)
