"""Entities: VMs, vCPU threads, guest frames, interrupts and guest tasks.

A vCPU is seen from two sides.  The host sees a thread with a state
(``GUEST``, ``EXIT``, ``HALTED``, ``POLL``, ``RUNNABLE``) and KVM's flags
(``preempted``, ``ready``, ``preempted_in_kernel``, the steal-time preempted
bit, ``pv_unhalted``, ``dy_eligible``...).  The guest sees a CPU that executes
a stack of *frames*: the bottom one is the current task's work or the idle
loop, interrupt handlers are pushed on top.  Guest code makes progress only
while the thread is in ``GUEST``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from model.host import Pcpu


class VcpuState(IntEnum):
    """Host-side thread state of a vCPU (MODEL.md section 3).

    Every state enum of the model has its own range of values (vCPU states
    0-4, pCPU modes 10-15 in model.host, frame kinds 20-23, time buckets
    30-32, cpuidle-haltpoll phases 40-42, pv_node states 50-52
    in model.locks), so comparing values of two different enums is never true."""

    GUEST = 0  # running guest code
    EXIT = 1  # in KVM: an exit chain, the context switch in, the entry wait
    HALTED = 2  # blocked in kvm_vcpu_block()
    RUNNABLE = 3  # on its pCPU's run queue, not running (steal time)
    POLL = 4  # HALTED while halt-polling on the pCPU


class FrameKind(IntEnum):
    """What one guest frame executes.  PVWAIT: a PV spinlock waiter halted in pv_wait() (kvm_wait's HLT)."""

    WORK = 20
    SPIN = 21
    IDLE = 22
    PVWAIT = 23


class Acct(IntEnum):
    """vCPU time buckets (``Vcpu.acct[bucket - ACCT_BASE]``); steal = RUNNABLE."""

    RUN = 30
    RUNNABLE = 31
    HALTED = 32


class HaltpollPhase(IntEnum):
    """cpuidle-haltpoll phase of an idle vCPU (``Vcpu.hp_phase``; the governor in model.guest)."""

    SELECT = 40  # the governor chooses (haltpoll_select)
    POLL = 41  # polling with TIF_POLLING_NRFLAG set (haltpoll state 0)
    HALT = 42  # halted (haltpoll state 1: default_enter_idle)


GUEST, EXIT, HALTED, RUNNABLE, POLL = VcpuState
WORK, SPIN, IDLE, PVWAIT = FrameKind
ACCT_RUN, ACCT_RUNNABLE, ACCT_HALTED = Acct
ACCT_BASE = Acct.RUN.value


@dataclass(slots=True, eq=False)
class Frame:
    """One level of what the guest CPU is executing."""

    kind: FrameKind
    remaining: float = 0.0  # WORK: full-speed ns still to execute
    kernel: bool = True  # CPL 0 (kernel) or user
    on_done: Callable[[], Any] | None = None  # WORK: called when it completes
    handler: bool = False  # an interrupt handler (interrupts stay masked)
    spin_kind: str = ""  # SPIN: "csfm" (IPI acknowledgements), "qspin", "rwsem"
    budget: float = float("inf")  # SPIN: spinning left in the bounded loop (PV spinlock, rwsem)
    ple_at: int = -1  # SPIN: when the current PLE window runs out (-1: no PLE exit due)
    waiter: Any = None  # SPIN "qspin": the lock waiter (model.locks.Waiter) spinning here
    halted: bool = False  # PVWAIT: its HLT was executed; the next resume returns from pv_wait
    batch: Any = None  # WORK: a run of syscalls as one frame (model.workloads.hackbench): told when it (re)starts and of TIF_NEED_RESCHED


@dataclass(slots=True, eq=False)
class Irq:
    """An interrupt on its way to or pending in a vCPU (one IRR entry)."""

    kind: str  # "ipi", "timer", "resched", "flush"...
    cost_ns: float  # handler work in the guest
    on_handled: Callable[[], Any] | None = None  # when the handler completes
    sent_ns: int = -1  # for IPI latency; -1 for non-IPIs
    counted: bool = False  # an IPI counted in the delivered/pending invariant


@dataclass(slots=True, eq=False)
class Task:
    """A guest thread: a generator of ops, run by the guest scheduler."""

    name: str
    gen: Any
    vcpu: Vcpu
    runnable: bool = True
    ran_since: int = 0  # when it last got the vCPU (guest time slice)
    wake_pending: bool = False  # woken while still on its way to sleep
    resume_with: Callable[[], Any] | None = None  # what a woken task does first (retry a lock)
    saved: Frame | None = None  # user work interrupted by a guest preemption
    vruntime: int = 0  # guest CFS virtual runtime (nice 0: 1:1 with run time)
    exec_start: int = 0  # when its current run on the vCPU was last charged


@dataclass(slots=True, eq=False)
class Vm:
    index: int
    workload: str
    vcpus: list[Vcpu] = field(default_factory=list)
    last_boosted: int = -1  # kvm->last_boosted_vcpu
    mm: Any = None  # workload-wide state (locks, counters)
    stats: Any = None  # the VM's counters (model.metrics.VmStats)


@dataclass(slots=True, eq=False)
class Vcpu:
    vm: Vm
    index: int  # within the VM
    gid: int  # host-wide thread id
    pinned: int | None  # pCPU id for dedicated pinning
    rng: np.random.Generator
    pcpu: Pcpu = None  # type: ignore[assignment]  # current or last pCPU (set by build)
    state: VcpuState = RUNNABLE
    # CFS
    vruntime: int = 0
    exec_start: int = 0
    # KVM flags
    preempted: bool = False
    ready: bool = False
    preempted_in_kernel: bool = False
    steal_preempted: bool = False  # the guest-visible steal-time preempted bit
    pv_unhalted: bool = False
    in_spin_loop: bool = False
    dy_eligible: bool = False
    halt_requested: bool = False
    halt_poll_ns: int = 0  # dynamic halt-polling window
    halt_start: int = 0
    polls: int = 0
    polls_ok: int = 0
    ple_window: float = 0.0  # current PLE window / pause filter count
    tlb_flush_pending: bool = False  # PV TLB flush: flush on next entry
    # interrupts
    irr: deque = field(default_factory=deque)  # pending Irqs
    irqs_off: bool = False  # guest RFLAGS.IF = 0 (local_irq_save: spin_lock_irqsave until irqrestore)
    # guest execution
    frames: list = field(default_factory=list)
    seg_start: int = -1  # when the top frame started executing; -1 when not executing
    seg_event: Any = None
    ple_timer: Any = None  # the PLE exit's re-armable Timer (model.spin), made on first use
    speed: float = 1.0
    exit_event: Any = None
    conts: deque = field(default_factory=deque)  # what the guest does once back from its exits
    queued_exits: deque = field(default_factory=deque)  # chains waiting for the current one
    # guest scheduler
    gq: deque = field(default_factory=deque)  # runnable guest tasks
    gcurr: Task | None = None
    guest_resched: bool = False  # TIF_NEED_RESCHED in the guest: a woken task should run
    gmin_vruntime: int = 0  # the guest cfs_rq's min_vruntime
    polling: bool = False  # TIF_POLLING_NRFLAG of the guest idle task (idle=poll, haltpoll's poll state)
    hp_phase: HaltpollPhase = HaltpollPhase.SELECT  # cpuidle-haltpoll phase (model.guest)
    hp_limit_ns: int = 0  # cpuidle-haltpoll dev->poll_limit_ns
    hp_last_poll_timed_out: bool = False  # last state was poll and it hit its limit (dev->poll_time_limit)
    hp_since: int = 0  # when the current poll or halt began
    hp_event: Any = None  # end of the current poll window
    tick_event: Any = None
    tick_stopped: bool = False  # ts->tick_stopped: the sched tick stopped for HLT idle (model.timer.tick_stop)
    timer_event: Any = None  # workload hrtimer (cyclictest)
    timer_advance_ns: int | None = None  # apic->lapic_timer.timer_advance_ns (None: not yet created)
    expired_tscdeadline: int = -1  # apic->lapic_timer.expired_tscdeadline, ns (-1: none)
    # time accounting
    acct: list[int] = field(default_factory=lambda: [0, 0, 0])  # ns per Acct bucket, in Acct order
    acct_state: Acct = ACCT_RUNNABLE
    acct_since: int = 0
    spin_ns: int = 0
    csfm_ns: int = 0

    def account(self, bucket: Acct, now: int) -> None:
        """Close the open interval into its bucket and open one for ``bucket``."""
        self.acct[self.acct_state - ACCT_BASE] += now - self.acct_since
        self.acct_state = bucket
        self.acct_since = now

    @property
    def top(self) -> Frame | None:
        return self.frames[-1] if self.frames else None

    @property
    def idle(self) -> bool:
        """The guest has nothing to run on this vCPU (idle loop at the bottom)."""
        return self.gcurr is None

    def __repr__(self) -> str:  # keep dataclass reprs from recursing through the VM
        return f"Vcpu(vm={self.vm.index}, index={self.index}, state={VcpuState(self.state).name})"
