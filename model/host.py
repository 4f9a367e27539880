"""The host: its pCPUs and the exact split of their time, and the typed context a run shares.

Each pCPU is always in exactly one mode: running guest code, in KVM handling
an exit, idle, halt-polling, or context switching.  A mode change closes the
open interval into its bucket, so the buckets add up to the elapsed time by
construction; the invariant test checks it on every workload.  A *chain* is a
run of back-to-back phases (an exit, a guest handler, another exit) that the
model processes as one event; its phases are booked when the chain is flushed.

:class:`Host` is everything one run shares (the clock, the hardware, the
pCPUs, the VMs); its attributes are declared slots, so a misspelt attribute
raises instead of quietly adding a field.  :class:`Hooks` is how the
mechanisms reach each other without importing each other: the host scheduler
calls the hypervisor through the preempt notifiers KVM registers
(``preempt_notifier_register()`` in ``vcpu_load()``, ops ``kvm_sched_in`` /
``kvm_sched_out``), and KVM and the guest scheduler tell the guest's locks
what those would observe.  ``model.simulate.build`` wires the real ones; a
mechanism test can wire recording ones on a bare host.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from model.engine import Engine
from model.hardware import PROFILES, Profile
from model.metrics import Stats
from model.topology import CpuTopology

if TYPE_CHECKING:
    from model.scenario import Scenario
    from model.vcpu import Frame, Vcpu, Vm


class PcpuMode(IntEnum):
    """What a pCPU is doing; each mode but CHAIN is a time bucket (``Pcpu.acct[mode - MODE_BASE]``).

    The values are disjoint from every other state enum (model.vcpu), so
    comparing a pCPU mode with a vCPU state or a frame kind is never true."""

    GUEST = 10
    EXIT = 11
    IDLE = 12
    POLL = 13
    SWITCH = 14
    CHAIN = 15  # in a chain of phases started at ``since``; not a bucket (flush books the phases)


GUEST, EXIT, IDLE, POLL, SWITCH, CHAIN = PcpuMode
MODE_BASE = PcpuMode.GUEST.value  # acct[mode - MODE_BASE]: the buckets in PcpuMode order
MODE_NAMES = ("guest", "exit", "idle", "poll", "switch")  # the buckets, in acct order


@dataclass(slots=True, eq=False)
class Pcpu:
    id: int
    socket: int
    sibling: int | None
    curr: Vcpu | None = None  # the running vCPU thread, None when idle
    rq: list[Vcpu] = field(default_factory=list)  # runnable threads that are not running
    min_vruntime: int = 0
    need_resched: bool = False
    pick_pending: bool = False  # an idle pCPU will pick after the wake-up IPI
    next_buddy: Vcpu | None = None  # cfs_rq->next, set by yield_to and by a wake-up that preempts
    skip_buddy: Vcpu | None = None  # cfs_rq->skip, set by yield
    last_buddy: Vcpu | None = None  # cfs_rq->last, set on wake-up preemption of a crowded queue (LAST_BUDDY)
    slice_end: Any = None  # the slice-end Timer (model.engine), made on first use
    curr_start: int = 0  # when curr was picked (for its slice)
    mode: PcpuMode = IDLE
    since: int = 0
    chain: tuple[tuple[PcpuMode, int], ...] = ()  # ((mode, ns), ...) while mode == CHAIN
    acct: list[int] = field(default_factory=lambda: [0, 0, 0, 0, 0])  # ns per bucket, in MODE_NAMES order
    switches: int = 0
    repicks: int = 0  # __schedule() picked the running thread again: no switch
    idle_stamp: int = -1  # rq->idle_stamp: when the pCPU went idle; -1 when busy
    avg_idle_ns: int = 1_000_000  # rq->avg_idle, initially 2 * sysctl_sched_migration_cost
    newidle_pulls: int = 0  # threads pulled by newidle_balance

    @property
    def nr_running(self) -> int:
        return len(self.rq) + (self.curr is not None)

    def set_mode(self, mode: PcpuMode, now: int) -> None:
        self.flush(now)
        self.mode = mode
        self.since = now

    def start_chain(self, phases: tuple[tuple[PcpuMode, int], ...], now: int) -> None:
        """Enter a chain of ``(mode, ns)`` phases that starts now."""
        self.flush(now)
        self.mode = CHAIN
        self.chain = phases
        self.since = now

    def flush(self, now: int) -> None:
        """Book the open interval [since, now) into the buckets."""
        if self.mode != CHAIN:
            self.acct[self.mode - MODE_BASE] += now - self.since
            self.since = now
            return
        t = self.since
        rest: list = []
        for mode, ns in self.chain:
            take = min(ns, now - t) if now > t else 0
            self.acct[mode - MODE_BASE] += take
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


# -- hooks -------------------------------------------------------------------


def _unwired(*args: Any) -> None:
    """The default of every hook: nothing registered it (``model.simulate.build`` wires them all)."""
    raise RuntimeError("a Host.hooks hook was called, but nothing registered it (see the traceback for which)")


@dataclass(slots=True, eq=False)
class Hooks:
    """The narrow calls between mechanisms that would otherwise import each other.

    Host scheduler -> hypervisor (model.kvm registers them, ``kvm.register``):

    - ``sched_in(h, v)``: ``kvm_sched_in()`` + ``vcpu_load()`` once the context
      switch to vCPU thread ``v`` is done (preempt_ops.sched_in, fired by
      finish_task_switch).
    - ``sched_out(h, v, runnable)``: ``kvm_sched_out()`` as ``v`` is switched
      out (preempt_ops.sched_out, fired by prepare_task_switch); ``runnable``
      is the kernel's ``current->on_rq`` (preempted, not blocked).
    - ``resched_curr(h, v)``: resched_curr() on the pCPU running ``v``: the
      reschedule IPI takes a vCPU out of guest mode; a halt-polling one stops
      (kvm_vcpu_block polls only while !need_resched()).
    - ``smt_speed_changed(h, v)``: the SMT sibling of ``v``'s pCPU went busy
      or idle, so ``v``'s guest code runs at another speed (hardware, no kernel
      call).

    Hypervisor and guest scheduler -> guest locks (model.locks registers them,
    ``locks.register``):

    - ``vcpu_preempted(h, v)``: kvm_sched_out() of a still-runnable ``v``
      (``vcpu->preempted``, the steal-time KVM_VCPU_PREEMPTED bit): guest code
      that polls ``vcpu_is_preempted()`` on that CPU reacts
      (rwsem_spin_on_owner's owner_on_cpu(), pv_wait_early in pv_wait_node).
    - ``rwsem_spin_need_resched(h, v, frame)``: the guest tick set
      TIF_NEED_RESCHED while ``frame`` is an rwsem optimistic spin on ``v``:
      rwsem_optimistic_spin() sees need_resched() and the writer goes to sleep.
    """

    sched_in: Callable[[Host, Vcpu], None] = _unwired
    sched_out: Callable[[Host, Vcpu, bool], None] = _unwired
    resched_curr: Callable[[Host, Vcpu], None] = _unwired
    smt_speed_changed: Callable[[Host, Vcpu], None] = _unwired
    vcpu_preempted: Callable[[Host, Vcpu], None] = _unwired
    rwsem_spin_need_resched: Callable[[Host, Vcpu, Frame], None] = _unwired


# -- the host ----------------------------------------------------------------

# (vCPU buckets of the measured VM, pCPU buckets) at one instant (model.simulate._snapshot)
Snapshot = tuple[list[list[int]], list[list[int]]]


@dataclass(slots=True, eq=False, init=False, repr=False)
class Host:
    """Everything one run shares: the clock, the hardware, the pCPUs, the VMs.

    Built empty of VMs and with unwired hooks; ``model.simulate.build`` adds
    the VMs and registers the mechanisms."""

    sc: Scenario
    seed: int
    prof: Profile  # the hardware profile with the scenario's cost overrides
    engine: Engine
    stats: Stats
    topo: CpuTopology
    pcpus: list[Pcpu]
    socket_cpus: list[list[int]]  # pCPU ids of each socket
    tick_ns: int  # the guest's tick period (CONFIG_HZ = vm.guest_hz)
    vms: list[Vm]  # the measured VM first, then the co-runners
    vcpus: list[Vcpu]  # every VM's, in gid order
    hooks: Hooks
    warm: Snapshot | None  # the buckets at the end of the warm-up
    warm_switches: int  # context switches at the end of the warm-up
    switches_measured: int  # context switches in the measured window

    def __init__(self, sc: Scenario, seed: int) -> None:
        self.sc = sc
        self.seed = seed
        self.prof = PROFILES[sc.hardware].with_overrides(sc.costs.model_dump())
        self.engine = Engine()
        self.stats = Stats(self.engine)
        t = sc.topology
        self.topo = CpuTopology(t.sockets, t.cores_per_socket, t.threads_per_core)
        self.pcpus = [
            Pcpu(i, self.topo.socket_of(i), self.topo.sibling_of(i)) for i in range(self.topo.pcpus)
        ]
        self.socket_cpus = [self.topo.cpus_of_socket(s) for s in range(t.sockets)]
        self.tick_ns = 1_000_000_000 // sc.vm.guest_hz
        self.vms = []
        self.vcpus = []
        self.hooks = Hooks()
        self.warm = None
        self.warm_switches = 0
        self.switches_measured = 0

    def rng(self, stream: int, *key: int) -> np.random.Generator:
        return np.random.default_rng(np.random.SeedSequence(self.seed, spawn_key=(stream, *key)))
