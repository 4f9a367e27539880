"""Kernel versions and VM hints (model/kernels.py, MODEL.md section 12b)."""

import pytest

from model import Scenario, ScenarioError
from model.kernels import DEFAULT_GUEST, DEFAULT_HOST, DERIVED, RELEASES, RULE_BY_KEY, RULES, defaults
from tests.model.conftest import run


def _sc(guest="5.8", host="5.13", **kw):
    return Scenario.build({"guest": {"kernel": guest}, "host": {"kernel": host}}, kw)


# One case per row of the table: (key, guest, host, value), on both sides of the release that changed it.
ROWS = [
    ("features.pv_tlb_flush", "4.15", "5.13", False),
    ("features.pv_tlb_flush", "4.16", "5.13", True),
    ("features.pv_tlb_flush", "5.8", "4.15", False),  # the host must advertise it too
    ("features.pv_wait_early", "4.16", "5.13", False),
    ("features.pv_wait_early", "4.17", "5.13", True),
    ("features.pv_wait_early", "5.3", "5.13", True),
    ("features.pv_wait_early", "5.4", "5.13", False),  # 89340d0935c9 reverted it
    ("features.pv_send_ipi", "4.18", "5.13", False),
    ("features.pv_send_ipi", "4.19", "4.19", True),
    ("features.pv_sched_yield", "5.2", "5.13", False),
    ("features.pv_sched_yield", "5.3", "5.3", True),
    ("features.pv_sched_yield", "5.8", "5.2", False),
    ("features.boost_ready", "5.8", "5.2", False),
    ("features.boost_ready", "5.8", "5.3", True),
    ("features.boost_queue_head", "5.8", "5.2", False),
    ("features.boost_queue_head", "5.8", "5.3", True),
    ("features.rwsem_reader_spin", "5.2", "5.13", False),
    ("features.rwsem_reader_spin", "5.3", "5.13", True),
    ("features.rwsem_reader_spin", "5.10", "5.13", True),
    ("features.rwsem_reader_spin", "5.11", "5.13", False),  # 617f3ef95177
    ("features.ipi_fastpath", "5.8", "5.4", False),
    ("features.ipi_fastpath", "5.8", "5.5", True),
    ("features.timer_fastpath", "5.8", "5.7", False),
    ("features.timer_fastpath", "5.8", "5.8", True),
    ("features.boost_user_irq", "5.8", "5.12", False),
    ("features.boost_user_irq", "5.8", "5.13", True),
    ("features.pv_sched_yield_skip_idle", "5.16", "5.13", False),
    ("features.pv_sched_yield_skip_idle", "5.17", "5.13", True),
    ("features.ipi_shorthand", "5.3", "5.13", False),
    ("features.ipi_shorthand", "5.4", "5.13", True),  # 832df3d47bad
    ("features.call_single_if_polling", "5.7", "5.13", False),
    ("features.call_single_if_polling", "5.8", "5.13", True),  # b2a02fc43a1f
    ("features.sched_yield_undercommit_bail", "5.8", "5.12", False),
    ("features.sched_yield_undercommit_bail", "5.8", "5.13", True),  # 72b268a8e930 (5.13-rc4)
    ("vm.steal_preempted_on_halt", "5.8", "5.18", True),
    ("vm.steal_preempted_on_halt", "5.8", "5.19", False),  # 54aa83c90198
]


@pytest.mark.parametrize(("key", "guest", "host", "value"), ROWS)
def test_each_rule_follows_the_release_that_merged_it(key, guest, host, value):
    assert _sc(guest, host).flat()[key] is value


def test_every_row_of_the_table_is_tested_and_cites_a_commit():
    tested = {key for key, *_ in ROWS} | {"vm.haltpoll_available", "vm.poll_control_available",
                                          "vm.realtime_hint_available"}
    assert {r.key for r in RULES} == tested
    assert all(r.commit for r in RULES)


@pytest.mark.parametrize(("key", "guest", "host", "value"), ROWS[::3])
def test_an_explicit_value_overrides_the_version_default(key, guest, host, value):
    sc = _sc(guest, host, **{key: not value})
    assert sc.flat()[key] is (not value)


def test_defaults_are_a_513_host_and_a_58_guest_and_keep_the_old_feature_values():
    flat = Scenario.build().flat()
    assert (flat["guest.kernel"], flat["host.kernel"]) == (DEFAULT_GUEST, DEFAULT_HOST) == ("5.8", "5.13")
    old = {"ipi_fastpath": True, "timer_fastpath": True, "boost_ready": True, "boost_user_irq": True,
           "pv_sched_yield": True, "pv_sched_yield_skip_idle": False, "pv_tlb_flush": True, "pv_send_ipi": True,
           "pv_spinlock": True, "pv_wait_early": False, "ple": True}
    assert {k: flat[f"features.{k}"] for k in old} == old
    assert flat["features.boost_queue_head"] is True  # 266e85a5ec91 is in 5.3, not an RFC
    assert flat["vm.steal_preempted_on_halt"] is True and flat["vm.idle"] == "hlt"


def test_resolved_values_are_concrete_and_validation_is_idempotent():
    sc = _sc("4.15", "5.4")
    assert all(sc.flat()[k] is not None for k in DERIVED)
    again = Scenario.model_validate(sc.model_dump())
    assert again.flat() == sc.flat()
    # model_dump() makes every resolved key explicit; given() leaves them unset, so a new kernel counts
    assert Scenario.build(sc.model_dump(), {"host.kernel": "5.13"}).features.boost_user_irq is False
    assert Scenario.build(sc.given(), {"host.kernel": "5.13"}).features.boost_user_irq is True
    explicit = _sc("5.8", "5.13", **{"features.boost_ready": False})
    assert Scenario.build(explicit.given(), {"host.kernel": "5.3"}).features.boost_ready is False


def test_bad_release_lists_the_allowed_ones_and_yaml_numbers_are_read_with_care():
    with pytest.raises(ScenarioError, match="guest.kernel: '6.1' is not a release.*allowed: 4.15, 4.16"):
        Scenario.build({"guest": {"kernel": "6.1"}})
    with pytest.raises(ScenarioError, match="ambiguous.*quote it"):
        Scenario.build({"host": {"kernel": 5.1}})  # YAML 5.10 and 5.1 are the same number
    assert Scenario.build({"host": {"kernel": 5.8}}).host.kernel == "5.8"
    assert Scenario.build({"guest": {"kernel": 4.2}}).guest.kernel == "4.20"


def test_a_kernel_error_is_reported_together_with_field_errors():
    with pytest.raises(ScenarioError) as err:
        Scenario.build({"host": {"kernel": "9.9"}, "vm": {"vcpu": 3}})
    text = str(err.value)
    assert "host.kernel" in text and "vm.vcpu: unknown key" in text
    assert text.count("host.kernel") == 1


def test_releases_are_ordered_and_cover_the_defaults():
    assert list(RELEASES) == sorted(RELEASES, key=lambda r: tuple(map(int, r.split("."))))
    assert defaults("5.8", "5.13") == {r.key: Scenario.build().flat().get(r.key, r.key.endswith("available"))
                                      for r in RULES}
    assert RULE_BY_KEY["features.boost_queue_head"].commit == "266e85a5ec91"


# -- VM hints ---------------------------------------------------------------------


def test_cpu_pm_turns_ple_off_and_the_hv_timer_off_on_intel():
    sc = _sc(**{"vm.cpu_pm": True})
    assert sc.vm.hlt_passthrough is True and sc.features.ple is False and sc.vm.hv_timer is False
    plain = _sc()
    assert plain.vm.hv_timer is True and plain.features.ple is True
    assert Scenario.build({"hardware": "rome"}).vm.hv_timer is False  # no VMX preemption timer on AMD


def test_hlt_passthrough_is_the_old_name_of_cpu_pm():
    sc = Scenario.build({"vm": {"hlt_passthrough": True}})
    assert sc.vm.cpu_pm is True and sc.features.ple is False
    with pytest.raises(ScenarioError, match="vm.hlt_passthrough.*older name"):
        Scenario.build({"vm": {"hlt_passthrough": True, "cpu_pm": False}})


def test_explicit_values_that_contradict_a_hint_are_errors():
    with pytest.raises(ScenarioError) as err:
        Scenario.build({"vm": {"cpu_pm": True, "hint_dedicated": True},
                        "features": {"ple": True, "pv_spinlock": True}})
    assert "features.ple" in str(err.value) and "features.pv_spinlock" in str(err.value)
    with pytest.raises(ScenarioError, match="vm.hv_timer: true is impossible"):
        Scenario.build({"vm": {"cpu_pm": True, "hv_timer": True}})


def test_kvm_hint_dedicated_turns_pv_features_off_and_loads_haltpoll_with_host_poll_control():
    sc = _sc(**{"vm.hint_dedicated": True})
    f = sc.features
    assert (f.pv_spinlock, f.pv_tlb_flush, f.pv_sched_yield) == (False, False, False)
    assert f.pv_send_ipi is True  # not a KVM_HINTS_REALTIME casualty
    assert sc.vm.idle == "haltpoll" and sc.vm.poll_control is True
    old_guest = _sc("5.3", "5.13", **{"vm.hint_dedicated": True})  # cpuidle-haltpoll is 5.4
    assert old_guest.vm.idle == "hlt" and old_guest.vm.poll_control is False
    old_host = _sc("5.8", "5.3", **{"vm.hint_dedicated": True})  # no MSR_KVM_POLL_CONTROL before 5.4
    assert old_host.vm.idle == "haltpoll" and old_host.vm.poll_control is False
    assert _sc("4.15", "5.13", **{"vm.hint_dedicated": True}).features.pv_spinlock is True  # no hint in 4.15


def _exits(result, reason):
    return sum(row.samples for row in result.exits if row.reason == reason)


def test_cpu_pm_removes_hlt_and_pause_exits():
    spin = {"workload.kind": "lockbench", "vm.vcpus": 8, "overcommit": 2.0, "corunner.workload": "same",
            "workload.lockbench.cs_ns": 20000, "features.pv_spinlock": False,
            "sim.duration_ms": 30, "sim.warmup_ms": 5}
    plain, pm = run(**spin), run(**spin, **{"vm.cpu_pm": True})
    assert _exits(plain, "PAUSE") > 0 and plain.metrics["directed_yield_attempts"] > 0
    assert _exits(pm, "PAUSE") == 0 and pm.metrics["directed_yield_attempts"] == 0  # no kvm_vcpu_on_spin
    idle = {"workload.kind": "cpu-bound", "workload.cpu_bound.threads": 2, "vm.vcpus": 8,
            "sim.duration_ms": 20, "sim.warmup_ms": 0}  # the 6 idle vCPUs halt once, at the start
    plain, pm = run(**idle), run(**idle, **{"vm.cpu_pm": True})
    assert _exits(plain, "HLT") > 0 and plain.metrics["halted_pct"] > 50
    assert _exits(pm, "HLT") == 0 and pm.metrics["halted_pct"] == 0  # idle vCPUs stay in the guest


def test_host_does_not_halt_poll_when_the_guest_has_poll_control():
    kw = {"workload.kind": "hackbench", "vm.vcpus": 8, "workload.hackbench.groups": 1,
          "workload.hackbench.senders": 2, "workload.hackbench.receivers": 2,
          "sim.duration_ms": 20, "sim.warmup_ms": 4}
    plain = run(**kw, **{"vm.idle": "hlt"})
    ctrl = run(**kw, **{"vm.idle": "hlt", "vm.poll_control": True})
    assert plain.metrics["pcpu_poll_pct"] > 0
    assert ctrl.metrics["pcpu_poll_pct"] == 0
    assert _exits(ctrl, "HLT") > 0  # the guest still halts; only the host's polling is gone
