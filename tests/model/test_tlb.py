"""TLB shootdowns and PV TLB flush (MODEL.md section 10)."""

from model import apic
from tests.model.conftest import run


def test_pv_tlb_flush_sends_no_shootdown_ipi_to_a_preempted_target(monkeypatch):
    sent_to_preempted = []
    real_send = apic.send

    def spy(h, src, targets, irqs, cont, multicast):
        if irqs and irqs[0].kind == "flush":
            sent_to_preempted.extend(t for t in targets if t.steal_preempted)
        return real_send(h, src, targets, irqs, cont, multicast)

    monkeypatch.setattr(apic, "send", spy)
    kw = {"workload.kind": "ebizzy", "vm.vcpus": 8, "overcommit": 2.0, "sim.duration_ms": 40, "sim.warmup_ms": 5}
    r = run(**kw, **{"features.pv_tlb_flush": True})
    assert r.metrics["tlb_flushes_deferred"] > 0
    assert sent_to_preempted == []
    sent_to_preempted.clear()
    run(**kw, **{"features.pv_tlb_flush": False})
    assert sent_to_preempted  # without PV TLB flush they do get IPIs


def test_shootdown_sender_waits_for_every_acknowledgement():
    r = run(**{"workload.kind": "ebizzy", "vm.vcpus": 8, "sim.duration_ms": 30, "sim.warmup_ms": 5,
               "features.pv_tlb_flush": False})
    assert r.metrics["tlb_shootdowns_per_s"] > 0
    assert r.metrics["smp_call_function_many_pct"] > 0
    assert r.metrics["ipis_per_s"] >= 7 * r.metrics["tlb_shootdowns_per_s"] * 0.9
