"""The typed host context, the state enums and the hooks between mechanisms (model.host).

The last tests drive the host CFS (model.scheduler) on a bare Host whose hooks
only record what the scheduler tells the hypervisor: no KVM, guest or
workload is built, which is the point of the hooks.
"""

from __future__ import annotations

import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

from model import scheduler
from model.host import CHAIN, EXIT, GUEST, IDLE, MODE_NAMES, Hooks, Host, Pcpu, PcpuMode
from model.locks import PvNodeState
from model.scheduler import CFS, slice_ns
from model.simulate import build
from model.vcpu import RUNNABLE, Acct, FrameKind, HaltpollPhase, Vcpu, VcpuState, Vm
from tests.model.conftest import scenario

STATE_ENUMS = (VcpuState, PcpuMode, FrameKind, Acct, HaltpollPhase, PvNodeState)


def test_the_state_enums_share_no_value():
    """``v.state == WORK`` or ``p.mode == GUEST`` on the wrong object can never be true."""
    values = [m.value for enum in STATE_ENUMS for m in enum]
    assert len(values) == len(set(values))


def test_pcpu_buckets_follow_the_mode_order():
    """Pcpu.acct is indexed by mode - MODE_BASE, in MODE_NAMES order; CHAIN books its phases."""
    p = Pcpu(0, 0, None)
    p.set_mode(GUEST, 0)
    p.set_mode(EXIT, 100)
    p.start_chain(((EXIT, 10), (GUEST, 20)), 150)
    assert p.mode == CHAIN
    p.flush(180)  # the chain's end (its last phase's mode stays)
    assert p.mode == GUEST and p.chain == ()
    p.set_mode(IDLE, 200)
    booked = dict(zip(MODE_NAMES, p.acct))
    assert booked == {"guest": 100 + 20 + 20, "exit": 50 + 10, "idle": 0, "poll": 0, "switch": 0}
    assert [m.name.lower() for m in PcpuMode if m is not CHAIN] == list(MODE_NAMES)


def test_host_rejects_an_undeclared_attribute():
    h = Host(scenario(), seed=1)
    with pytest.raises(AttributeError):
        h.warm_switchs = 0  # a typo of warm_switches
    h.warm_switches = 3  # declared


def test_an_unwired_hook_raises_and_build_wires_every_hook():
    h = Host(scenario(), seed=1)
    with pytest.raises(RuntimeError, match="nothing registered it"):
        h.hooks.sched_in(h, None)
    unwired = Hooks().sched_in
    built = build(scenario(**{"workload.kind": "cpu-bound", "vm.vcpus": 2}), seed=1)
    assert all(getattr(built.hooks, f.name) is not unwired for f in dataclasses.fields(Hooks))


def test_the_host_scheduler_imports_no_hypervisor_guest_or_lock_code():
    tree = ast.parse(Path(scheduler.__file__).read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            imported |= {node.module, *(f"{node.module}.{a.name}" for a in node.names)}
        elif isinstance(node, ast.Import):
            imported |= {a.name for a in node.names}
    assert not imported & {"model.kvm", "model.guest", "model.locks"}


# -- the host CFS on a bare Host with recording hooks ----------------------------------


def _bare_host(threads: int) -> tuple[Host, list, list[Vcpu]]:
    """A 2-pCPU host, no VMs built, hooks that record; ``threads`` vCPU threads pinned to pCPU 0."""
    h = Host(scenario(**{"topology.cores_per_socket": 2, "topology.threads_per_core": 1, "vm.vcpus": 2}), seed=1)
    calls: list = []
    h.hooks = Hooks(
        sched_in=lambda h, v: calls.append(("sched_in", v.gid, h.engine.now)),
        sched_out=lambda h, v, runnable: calls.append(("sched_out", v.gid, runnable)),
        resched_curr=lambda h, v: calls.append(("resched_curr", v.gid, h.engine.now)),
        smt_speed_changed=lambda h, v: calls.append(("smt_speed_changed", v.gid)),
    )
    vm = Vm(0, "none")
    vcpus = [Vcpu(vm, i, i, 0, np.random.default_rng(i)) for i in range(threads)]
    for v in vcpus:
        v.pcpu = h.pcpus[0]
    return h, calls, vcpus


def _start_running(h: Host, v: Vcpu) -> None:
    v.state = RUNNABLE
    h.pcpus[0].rq.append(v)
    scheduler.schedule(h, h.pcpus[0])


def test_a_woken_thread_preempts_only_beyond_the_wakeup_granularity():
    """check_preempt_wakeup(): preempt when curr's vruntime leads the woken one's by more than
    sysctl_sched_wakeup_granularity; otherwise the woken thread waits for curr's slice end
    (sched_slice() of 2 threads: latency / 2)."""
    for ran_ms, preempts in ((3, False), (5, True)):
        h, calls, (a, b) = _bare_host(2)
        _start_running(h, a)
        p = h.pcpus[0]
        switch_ns = int(h.prof.ctx_switch_ns + h.prof.vcpu_entry_ns)
        h.engine.run(ran_ms * 1_000_000)
        assert calls == [("sched_in", a.gid, switch_ns)] and p.curr is a
        scheduler.wake(h, b, waker=None)
        assert b in p.rq and a.vruntime - b.vruntime == ran_ms * 1_000_000
        if preempts:
            assert ran_ms * 1_000_000 > CFS.wakeup_granularity_ns
            assert calls[-1] == ("resched_curr", a.gid, h.engine.now) and p.need_resched
        else:
            assert len(calls) == 1 and not p.need_resched
            h.engine.run(slice_ns(2) + 1)  # the slice end: check_preempt_tick()
            assert calls[-1] == ("resched_curr", a.gid, p.curr_start + slice_ns(2))


def test_the_thread_that_leaves_is_switched_out_and_the_leftmost_switched_in():
    """leave() fires sched_out (still runnable: preempted) and __schedule() picks the smallest
    vruntime; sched_in follows after the context switch and the vCPU entry."""
    h, calls, (a, b, c) = _bare_host(3)
    _start_running(h, a)
    p = h.pcpus[0]
    h.engine.run(10_000_000)
    for v, lag_ns in ((b, 1_000_000), (c, 6_000_000)):
        scheduler.wake(h, v, waker=None)
        v.vruntime = a.vruntime - lag_ns
    del calls[:]
    scheduler.leave(h, p, a, runnable=True)
    assert calls == [("sched_out", a.gid, True)]
    assert p.curr is c and sorted(v.gid for v in p.rq) == [a.gid, b.gid]
    switch_ns = int(h.prof.ctx_switch_ns + h.prof.vcpu_entry_ns)
    h.engine.run(h.engine.now + switch_ns)
    assert calls[-1] == ("sched_in", c.gid, h.engine.now) and c.state == VcpuState.EXIT
