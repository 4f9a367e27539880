"""The microbenchmark cases of conf/validation/published.yaml, within +-10 % of the published ratios."""

from pathlib import Path

import pytest
import yaml

from tests.model.conftest import run

PUBLISHED = {c["id"]: c for c in yaml.safe_load((Path(__file__).parents[2] / "conf/validation/published.yaml").read_text())}
TOLERANCE = 0.10
# kvm-unit-tests on 2 vCPUs: the target waits in the guest (idle=poll), APICv, no halt polling
MICRO = {"hardware": "skylake", "workload.kind": "vmexit", "vm.vcpus": 2, "vm.idle": "poll", "vm.halt_poll_ns": 0,
         "vm.apic": "x2apic_phys", "vm.apicv": True, "sim.duration_ms": 20, "sim.warmup_ms": 2}


def _ratio_ok(simulated: float, published: float) -> None:
    assert simulated == pytest.approx(published, rel=TOLERANCE), f"simulated {simulated:.3f}, published {published:.3f}"


def test_ipi_fastpath_unicast():
    values = PUBLISHED["ipi-fastpath-unicast"]["values"]
    off = run(**MICRO, **{"workload.vmexit.test": "ipi", "features.ipi_fastpath": False}).metrics["vmexit_op_cycles"]
    on = run(**MICRO, **{"workload.vmexit.test": "ipi", "features.ipi_fastpath": True}).metrics["vmexit_op_cycles"]
    _ratio_ok(on / off, values["fastpath"] / values["no_fastpath"])


def test_timer_fastpath_tscdeadline_immed():
    values = PUBLISHED["timer-fastpath-tscdeadline-immed"]["values"]
    kw = {**MICRO, "workload.vmexit.test": "tscdeadline_immed"}
    off = run(**kw, **{"features.timer_fastpath": False}).metrics["vmexit_op_cycles"]
    on = run(**kw, **{"features.timer_fastpath": True}).metrics["vmexit_op_cycles"]
    _ratio_ok(on / off, values["timer_fastpath_on"] / values["timer_fastpath_off"])


def test_timer_fastpath_cyclictest():
    values = PUBLISHED["timer-fastpath-cyclictest"]["values"]
    # the timer must fire while the vCPU is in guest mode for either path to matter: idle=poll
    kw = {"hardware": "skylake", "workload.kind": "cyclictest", "vm.vcpus": 2, "vm.idle": "poll",
          "topology.cores_per_socket": 2, "sim.duration_ms": 300, "sim.warmup_ms": 10}
    off = run(**kw, **{"features.timer_fastpath": False}).metrics["timer_latency_avg_us"]
    on = run(**kw, **{"features.timer_fastpath": True}).metrics["timer_latency_avg_us"]
    _ratio_ok(on / off, values["timer_fastpath_on"] / values["timer_fastpath_off"])
