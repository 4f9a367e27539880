"""TLB shootdowns and PV TLB flush (MODEL.md section 10; model/tlb.py)."""

import pytest

from model import apic, tlb
from model.simulate import build, start
from tests.model.conftest import run, scenario

EBIZZY = {"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 40, "sim.warmup_ms": 5}


def _flush_sends(monkeypatch):
    """Spy on apic.send: (sender, targets, their queues' lengths) of every flush IPI."""
    sends = []
    real = apic.send

    def spy(h, src, targets, irqs, cont, multicast):
        if irqs and irqs[0].kind == "flush":
            queues = [len(src.vm.mm.call_single_queue[t.index]) for t in targets]
            sends.append((src, list(targets), [t.steal_preempted for t in targets], queues, multicast))
        return real(h, src, targets, irqs, cont, multicast)

    monkeypatch.setattr(apic, "send", spy)
    return sends


def test_pv_tlb_flush_sends_no_shootdown_ipi_to_a_preempted_target(monkeypatch):
    sends = _flush_sends(monkeypatch)
    kw = {**EBIZZY, "overcommit": 2.0}
    r = run(**kw, **{"features.pv_tlb_flush": True})
    assert r.metrics["tlb_flushes_deferred"] > 0
    assert sends and not any(any(pre) for _, _, pre, _, _ in sends)
    sends.clear()
    run(**kw, **{"features.pv_tlb_flush": False})
    assert any(any(pre) for _, _, pre, _, _ in sends)  # without PV TLB flush they do get IPIs


def test_an_ipi_goes_only_to_targets_whose_call_queue_was_empty(monkeypatch):
    sends = _flush_sends(monkeypatch)
    r = run(**EBIZZY, **{"features.pv_tlb_flush": False})
    assert sends
    # llist_add() returned true: our csd is the only one queued when the IPI is sent
    assert all(q == 1 for _, _, _, queues, _ in sends for q in queues)
    # concurrent shootdowns share IPIs: fewer IPIs than (shootdowns x 7 other vCPUs)
    assert r.metrics["ipis_per_s"] < 7 * r.metrics["tlb_shootdowns_per_s"]
    assert r.metrics["smp_call_function_many_pct"] > 0
    # one target: send_call_function_single_ipi (unicast); several: the mask send
    assert all(multicast == (len(targets) > 1) for _, targets, _, _, multicast in sends)


def _host_at(ms: float = 2.0, **kw):
    h = build(scenario(**{**EBIZZY, **kw}), seed=1)
    start(h)
    h.engine.run(int(ms * 1e6))
    return h


@pytest.mark.parametrize("pv", [False, True])
def test_lazy_cpus_are_skipped_unless_page_tables_were_freed(pv):
    h = _host_at(**{"features.pv_tlb_flush": pv})
    vcpus = h.vms[0].vcpus
    me, idle, preempted = vcpus[0], vcpus[1:3], vcpus[3]
    for t in vcpus:
        t.steal_preempted = False
    saved = [(t, t.gcurr) for t in idle]
    for t in idle:
        t.gcurr = None  # lazy TLB: nothing of this mm runs there
    preempted.steal_preempted = True
    targets, deferred, lazy = tlb.flush_targets(h, me, freed_tables=False)
    assert not set(idle) & set(targets) and lazy == 2
    assert (preempted in deferred) == pv and (preempted in targets) != pv
    targets, deferred, lazy = tlb.flush_targets(h, me, freed_tables=True)
    assert set(idle) <= set(targets) and lazy == 0
    assert me not in targets and (preempted in deferred) == pv
    for t, cur in saved:
        t.gcurr = cur


def test_pv_tlb_flush_defers_exactly_the_preempted_targets():
    h = _host_at(**{"features.pv_tlb_flush": True})
    vcpus = h.vms[0].vcpus
    me, target = vcpus[0], vcpus[1]
    for t in vcpus[1:]:
        t.steal_preempted = t is target
    targets, deferred, _ = tlb.flush_targets(h, me, freed_tables=True)
    assert deferred == [target] and target not in targets
