"""The host's pCPUs and the exact split of their time.

Each pCPU is always in exactly one mode: running guest code, in KVM handling
an exit, idle, halt-polling, or context switching.  A mode change closes the
open interval into its bucket, so the buckets add up to the elapsed time by
construction; the invariant test checks it on every workload.  A *chain* is a
run of back-to-back phases (an exit, a guest handler, another exit) that the
model processes as one event; its phases are booked when the chain is flushed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

GUEST, EXIT, IDLE, POLL, SWITCH = range(5)
MODE_NAMES = ("guest", "exit", "idle", "poll", "switch")
CHAIN = -1  # the pCPU is in a chain of phases started at ``since``


@dataclass(slots=True, eq=False)
class Pcpu:
    id: int
    socket: int
    sibling: int | None
    curr: Any = None  # the running vCPU thread, None when idle
    rq: list = field(default_factory=list)  # runnable threads that are not running
    min_vruntime: int = 0
    need_resched: bool = False
    pick_pending: bool = False  # an idle pCPU will pick after the wake-up IPI
    next_buddy: Any = None  # cfs_rq->next, set by yield_to
    skip_buddy: Any = None  # cfs_rq->skip, set by yield
    slice_end: Any = None  # the slice-end Timer (model.engine), made on first use
    curr_start: int = 0  # when curr was picked (for its slice)
    mode: int = IDLE
    since: int = 0
    chain: tuple = ()  # ((mode, ns), ...) while mode == CHAIN
    acct: list = field(default_factory=lambda: [0, 0, 0, 0, 0])
    switches: int = 0
    repicks: int = 0  # __schedule() picked the running thread again: no switch
    idle_stamp: int = -1  # rq->idle_stamp: when the pCPU went idle; -1 when busy
    avg_idle_ns: int = 1_000_000  # rq->avg_idle, initially 2 * sysctl_sched_migration_cost
    newidle_pulls: int = 0  # threads pulled by newidle_balance

    @property
    def nr_running(self) -> int:
        return len(self.rq) + (self.curr is not None)

    def set_mode(self, mode: int, now: int) -> None:
        self.flush(now)
        self.mode = mode
        self.since = now

    def start_chain(self, phases: tuple, now: int) -> None:
        """Enter a chain of ``(mode, ns)`` phases that starts now."""
        self.flush(now)
        self.mode = CHAIN
        self.chain = phases
        self.since = now

    def flush(self, now: int) -> None:
        """Book the open interval [since, now) into the buckets."""
        if self.mode != CHAIN:
            self.acct[self.mode] += now - self.since
            self.since = now
            return
        t = self.since
        rest: list = []
        for mode, ns in self.chain:
            take = min(ns, now - t) if now > t else 0
            self.acct[mode] += take
            t += take
            if take < ns:
                rest.append((mode, ns - take))
        self.since = now
        if rest:
            self.chain = tuple(rest)
        else:
            # the chain is over: the time after it stays in its last mode until set_mode
            self.mode = self.chain[-1][0]
            self.chain = ()

    @property
    def busy(self) -> bool:
        """Busy for SMT purposes: any thread on the pCPU (guest, exit, poll or switch)."""
        return self.curr is not None
