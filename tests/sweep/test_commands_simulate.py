"""``sweep simulate``: one run from the command line."""

import json

from typer.testing import CliRunner

from sweep.cli import app

FAST = ["-s", "topology.cores_per_socket=2", "-s", "topology.sockets=1", "-s", "vm.vcpus=2",
        "-s", "sim.duration_ms=5", "-s", "sim.warmup_ms=1"]


def test_simulate_prints_metrics_and_the_exit_table():
    result = CliRunner().invoke(app, ["simulate", *FAST, "-s", "workload.kind=cpu-bound"])
    assert result.exit_code == 0, result.output
    assert "compute_s_per_s" in result.output
    assert "MSR_WRITE 0x6e0" in result.output and "PREEMPTION_TIMER" in result.output


def test_simulate_json_is_deterministic_and_carries_the_scenario(tmp_path):
    path = tmp_path / "host.yaml"
    path.write_text("hardware: rome\nworkload: {kind: hackbench, hackbench: {groups: 1}}\n")
    runs = [CliRunner().invoke(app, ["simulate", str(path), *FAST, "--seed", "4", "--json"]) for _ in range(2)]
    assert all(r.exit_code == 0 for r in runs), runs[0].output
    a, b = (json.loads(r.output) for r in runs)
    a["metrics"].pop("wall_s"), b["metrics"].pop("wall_s")
    assert a["metrics"] == b["metrics"] and a["exits"] == b["exits"]
    assert a["scenario"]["hardware"] == "rome" and a["seed"] == 4


def test_bad_keys_get_one_error_listing_each_with_what_is_allowed():
    result = CliRunner().invoke(app, ["simulate", "-s", "vm.vcpu=4", "-s", "vm.apic=x2apic", "-s", "novalue"])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert "-s 'novalue': expected KEY=VALUE" in result.stderr
    assert "vm.vcpu: unknown key; did you mean 'vm.vcpus'?" in result.stderr  # reported together


def test_bad_values_are_listed_together():
    result = CliRunner().invoke(app, ["simulate", "-s", "vm.vcpu=4", "-s", "vm.apic=x2apic"])
    assert result.exit_code == 2
    assert "vm.vcpu: unknown key; did you mean 'vm.vcpus'?" in result.output
    assert "x2apic_phys" in result.output
