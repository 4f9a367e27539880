"""The balances that hold in every run, on every workload (MODEL.md, issue 2/3)."""

import pytest

from tests.model.conftest import run

CASES = {
    "cpu-bound": {"workload.kind": "cpu-bound"},
    "cyclictest": {"workload.kind": "cyclictest"},
    "hackbench": {"workload.kind": "hackbench", "workload.hackbench.groups": 1, "workload.hackbench.senders": 4,
                  "workload.hackbench.receivers": 4},
    "ebizzy": {"workload.kind": "ebizzy"},
    "lockbench": {"workload.kind": "lockbench"},
    "vmexit": {"workload.kind": "vmexit", "vm.idle": "poll"},
    "ebizzy-overcommit-same": {"workload.kind": "ebizzy", "overcommit": 2.0, "corunner.workload": "same"},
    "hackbench-floating-rome-xapic-avic": {"workload.kind": "hackbench", "hardware": "rome", "pinning": "none",
                                          "overcommit": 1.5, "vm.apic": "xapic", "vm.avic": True,
                                          "workload.hackbench.groups": 1},
    "lockbench-pv-off-overcommit": {"workload.kind": "lockbench", "overcommit": 2.0, "corunner.workload": "same",
                                    "features.pv_spinlock": False},
    "lockbench-boost-queue-head": {"workload.kind": "lockbench", "overcommit": 2.0, "corunner.workload": "same",
                                   "features.boost_queue_head": True, "workload.lockbench.cs_ns": 20000},
    "cyclictest-genoa-x2avic-halt-poll": {"workload.kind": "cyclictest", "hardware": "genoa", "vm.avic": True,
                                          "overcommit": 2.0},
    "hackbench-crowded": {"workload.kind": "hackbench", "workload.hackbench.groups": 2},
    "ebizzy-two-threads-per-vcpu-spinning": {"workload.kind": "ebizzy", "features.pv_tlb_flush": False},
    "ipi_benchmark-broadcast-rome-avic-halting": {"workload.kind": "ipi_benchmark", "hardware": "rome",
                                                  "vm.apic": "xapic", "vm.avic": True, "vm.halt_poll_ns": 0},
    "ipi_benchmark-multicast-pv-cluster": {"workload.kind": "ipi_benchmark", "vm.apic": "x2apic_cluster",
                                           "workload.ipi_benchmark.mode": "multicast",
                                           "features.ipi_shorthand": False},
    # kernel versions, VM hints, partial cpu-bound co-runners, floating threads (newidle balance)
    "ebizzy-guest-415-host-53": {"workload.kind": "ebizzy", "guest.kernel": "4.15", "host.kernel": "5.3",
                                 "overcommit": 2.0},
    "lockbench-guest-417-pv-wait-early": {"workload.kind": "lockbench", "guest.kernel": "4.17", "overcommit": 2.0,
                                          "corunner.workload": "same"},
    "hackbench-hint-dedicated-cpu-pm": {"workload.kind": "hackbench", "vm.hint_dedicated": True, "vm.cpu_pm": True,
                                        "workload.hackbench.groups": 1},
    "hackbench-hint-dedicated-haltpoll": {"workload.kind": "hackbench", "vm.hint_dedicated": True,
                                          "workload.hackbench.groups": 1, "overcommit": 1.5},
    "cyclictest-cpu-pm-no-hv-timer": {"workload.kind": "cyclictest", "vm.cpu_pm": True},
    "ebizzy-stress-cpu-2-corunners-floating": {"workload.kind": "ebizzy", "corunner.workload": "cpu-bound",
                                               "workload.cpu_bound.threads": 2, "overcommit": 2.0,
                                               "pinning": "none"},
    "cpu-bound-floating-newidle": {"workload.kind": "cpu-bound", "workload.cpu_bound.threads": 5,
                                   "pinning": "none", "overcommit": 1.5},
    "hackbench-sapphirerapids-ipiv": {"workload.kind": "hackbench", "hardware": "sapphirerapids",
                                      "vm.apic": "x2apic_phys", "workload.hackbench.groups": 1},
    # pbzip2: futex queues, a shootdown per block; faster blocks so that 20 ms hold several
    "pbzip2": {"workload.kind": "pbzip2", "workload.pbzip2.compress_speed_mb": 400.0},
    "pbzip2-overcommit-same-pv-tlb-off-boost": {"workload.kind": "pbzip2", "workload.pbzip2.compress_speed_mb": 400.0,
                                                "overcommit": 2.0, "corunner.workload": "same",
                                                "features.pv_tlb_flush": False, "features.boost_user_irq": True},
}


PROGRESS = {"cpu-bound": "compute_s_per_s", "cyclictest": "timer_latency_avg_us", "hackbench": "messages_per_s",
            "ebizzy": "records_per_s", "lockbench": "acquisitions_per_s", "vmexit": "vmexit_op_cycles",
            "ipi_benchmark": "ipi_benchmark_op_ns", "pbzip2": "pbzip2_blocks_per_s"}


@pytest.mark.parametrize("case", CASES)
def test_invariants_hold(case):
    r = run(seed=3, **{"vm.vcpus": 8, "sim.duration_ms": 25, "sim.warmup_ms": 5, **CASES[case]})
    inv = r.invariants
    # each pCPU's measured time splits exactly into guest, exit, idle, poll and switch
    assert inv["pcpu_time_error_ns"] == 0
    # every IPI sent is handled, pending in an IRR, or still on its way
    assert inv["ipis_sent"] == inv["ipis_handled"] + inv["ipis_pending"] + inv["ipis_in_flight"]
    # the exit table adds up to the exits counted
    assert inv["exit_table_samples"] == inv["exits_counted"]
    shares = ["pcpu_guest_pct", "pcpu_exit_pct", "pcpu_idle_pct", "pcpu_poll_pct", "pcpu_switch_pct"]
    assert sum(r.metrics[k] for k in shares) == pytest.approx(100.0)
    # the workload makes progress: no lost wake-up, no deadlock
    kind = CASES[case]["workload.kind"]
    assert r.metrics[PROGRESS[kind]] > 0
    vcpu_shares = r.metrics["guest_pct"] + r.metrics["exit_pct"] + r.metrics["steal_pct"] + r.metrics["halted_pct"]
    assert vcpu_shares == pytest.approx(100.0, abs=1e-6)
