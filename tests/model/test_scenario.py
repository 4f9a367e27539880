import pytest
from pydantic import ValidationError

from model import Scenario, ScenarioError, flat_schema


def test_defaults_validate_and_flatten_to_the_fixed_schema():
    sc = Scenario.build()
    flat = sc.flat()
    assert list(flat) == list(flat_schema())
    assert flat["vm.vcpus"] == 8 and flat["features.ipi_fastpath"] is True


def test_every_bad_key_is_reported_with_what_is_allowed():
    with pytest.raises(ScenarioError) as err:
        Scenario.build({"vm": {"apic": "x2apic"}}, {"vm.vcpu": 4, "features.ple": "maybe", "hardware": "epyc"})
    text = str(err.value)
    assert "vm.vcpu: unknown key; did you mean 'vm.vcpus'?" in text
    assert "vm.apic" in text and "x2apic_phys" in text
    assert "features.ple" in text
    assert len(err.value.problems) == 3  # hardware is checked after the field errors


def test_unknown_hardware_lists_the_profiles():
    with pytest.raises(ScenarioError, match="allowed: rome, cascadelake, skylake, sapphirerapids, genoa"):
        Scenario.build({"hardware": "epyc"})


def test_impossible_overcommit_says_what_would_work():
    with pytest.raises(ScenarioError, match="raise overcommit to at least 2"):
        Scenario.build({"topology": {"sockets": 1, "cores_per_socket": 2, "threads_per_core": 2}, "vm": {"vcpus": 8}})


def test_scenario_is_frozen_and_input_is_not_mutated():
    data = {"vm": {"vcpus": 4}}
    sc = Scenario.build(data, {"vm.apic": "xapic"})
    assert data == {"vm": {"vcpus": 4}}
    with pytest.raises(ValidationError):
        sc.vm.vcpus = 5  # type: ignore[misc]


def test_cost_overrides_apply_to_the_profile():
    from model.simulate import Host

    host = Host(Scenario.build({"costs": {"exit_hlt_ns": 1234}}), seed=1)
    assert host.prof.exit_hlt_ns == 1234
