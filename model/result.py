"""What a simulation returns: a flat metrics record of fixed schema and an exit table.

Every metric name carries its unit.  A metric that does not apply to a run
(timer latency when no timer fired) is NaN, never absent: the schema is the
same for every run.  Unless the name says otherwise (``corunner_``, ``pcpu_``,
``host_``), a metric is about the measured VM (VM 0).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

# name -> one-line meaning.  The order is the column order of the dataset.
METRICS: dict[str, str] = {
    # workload
    "messages_per_s": "hackbench messages passed per second",
    "hackbench_time_s": "time hackbench needs for its groups x senders x receivers x loops messages",
    "records_per_s": "ebizzy records per second",
    "acquisitions_per_s": "lockbench lock acquisitions per second",
    "lock_wait_p99_us": "lockbench: 99th percentile of the wait for the lock",
    "compute_s_per_s": "cpu-bound: guest seconds of work completed per second, all vCPUs",
    "vmexit_op_cycles": "vmexit microbenchmark: average cycles per operation",
    "ipi_benchmark_ns_per_op": "ipi_benchmark: mean ns of one call-function call with wait=1 (send to all acknowledged)",
    "ipi_benchmark_oneway_ns": "ipi_benchmark: mean ns from the call to a target's handler having run",
    "ipi_benchmark_unicast_total_ns": "ipi_benchmark 'Normal IPI': ns per call x workload.ipi_benchmark.ops",
    "ipi_benchmark_broadcast_total_ns": "ipi_benchmark 'Broadcast IPI': ns per call x workload.ipi_benchmark.ops",
    "ipi_benchmark_multicast_total_ns": "ipi_benchmark to vCPUs 1..targets: ns per call x workload.ipi_benchmark.ops",
    "timer_latency_min_us": "timer latency (deadline to the woken thread running), minimum",
    "timer_latency_avg_us": "timer latency, mean",
    "timer_latency_p50_us": "timer latency, median",
    "timer_latency_p99_us": "timer latency, 99th percentile",
    "timer_latency_max_us": "timer latency, maximum",
    "corunner_messages_per_s": "co-runner VMs: hackbench messages per second, summed",
    "corunner_records_per_s": "co-runner VMs: ebizzy records per second, summed",
    "corunner_acquisitions_per_s": "co-runner VMs: lockbench acquisitions per second, summed",
    "corunner_compute_s_per_s": "co-runner VMs: cpu-bound work per second, summed",
    # interrupts
    "ipis_per_s": "IPIs sent per second (one per destination vCPU)",
    "ipi_latency_p50_us": "IPI latency, ICR write to the handler starting, median",
    "ipi_latency_p99_us": "IPI latency, 99th percentile",
    # exits
    "exits_per_s": "VM exits per second, all vCPUs of the VM",
    "exit_pct": "share of the VM's vCPU time spent in exits",
    "ple_exits_per_s": "PAUSE exits per second",
    # time shares of the VM's vCPUs (of vCPU-seconds)
    "guest_pct": "share of vCPU time running guest code",
    "steal_pct": "share of vCPU time runnable but not running (steal)",
    "halted_pct": "share of vCPU time halted (blocked or polling)",
    "spin_pct": "share of vCPU time spinning at CPL 0 (locks, IPI acknowledgements)",
    "smp_call_function_many_pct": "share of guest time waiting for IPI acknowledgements",
    # boost and yield
    "directed_yield_attempts": "kvm_vcpu_on_spin / boost calls of yield_to",
    "directed_yield_successes": "yield_to calls that yielded",
    "directed_yield_esrch": "yield_to calls that failed with ESRCH (both queues hold one task)",
    "pv_sched_yields": "SCHED_YIELD hypercalls",
    "kicks": "KICK_CPU hypercalls",
    "spinlock_steals_per_s": "queued-spinlock acquisitions ahead of queued waiters (PV unfair trylock) per second",
    "pv_waits_per_s": "queued-spinlock waiters halting in pv_wait (kvm_wait's HLT) per second",
    "queue_head_boosts": "KICK_CPU yields to the kicked queue head",
    "tlb_shootdowns_per_s": "TLB shootdowns (call-function-many flushes) per second",
    "tlb_flushes_deferred": "flushes left to a preempted target by PV TLB flush",
    "halt_poll_success_pct": "share of halt-polls ended by a wake-up (not by the poll limit)",
    # host
    "pcpu_guest_pct": "share of pCPU time running guest code (all VMs)",
    "pcpu_exit_pct": "share of pCPU time in KVM handling exits",
    "pcpu_idle_pct": "share of pCPU time idle",
    "pcpu_poll_pct": "share of pCPU time halt-polling",
    "pcpu_switch_pct": "share of pCPU time context switching",
    "host_context_switches_per_s": "host context switches per second, all pCPUs",
    # the run itself
    "sim_s": "simulated seconds measured (after warm-up)",
    "events": "events processed by the event loop, warm-up included",
    "wall_s": "wall time of the simulation",
}

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)

# Columns of one exit-table row.  ``detail`` splits MSR_WRITE by MSR ("0x6e0").
EXIT_COLUMNS: tuple[str, ...] = ("reason", "detail", "samples", "total_ns", "min_ns", "max_ns")


@dataclass(frozen=True, slots=True)
class ExitRow:
    reason: str
    detail: str
    samples: int
    total_ns: int
    min_ns: int
    max_ns: int

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.samples if self.samples else math.nan


@dataclass(frozen=True, slots=True)
class Result:
    """One run.  ``error`` is set (and metrics are NaN) when the simulation raised."""

    metrics: dict[str, float]
    exits: tuple[ExitRow, ...] = ()
    error_type: str | None = None
    error: str | None = None
    timer_latencies_us: tuple[float, ...] = field(default=(), repr=False)
    # balances the tests check on every run (model.simulate.invariants)
    invariants: dict[str, float] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return self.error is None

    @staticmethod
    def failed(exc: BaseException, wall_s: float) -> Result:
        metrics = {name: math.nan for name in METRIC_NAMES}
        metrics["wall_s"] = wall_s
        return Result(metrics=metrics, error_type=type(exc).__name__, error=str(exc))


def exit_table(rows: tuple[ExitRow, ...]) -> list[dict[str, object]]:
    """``perf kvm stat`` form: one line per reason, with the MSR split after MSR_WRITE."""
    by_reason: dict[str, list[ExitRow]] = {}
    for row in rows:
        by_reason.setdefault(row.reason, []).append(row)
    total_samples = sum(r.samples for r in rows) or 1
    total_ns = sum(r.total_ns for r in rows) or 1
    lines: list[dict[str, object]] = []
    for reason, group in sorted(by_reason.items(), key=lambda kv: -sum(r.total_ns for r in kv[1])):
        samples = sum(r.samples for r in group)
        time_ns = sum(r.total_ns for r in group)
        lines.append(
            {
                "reason": reason,
                "samples": samples,
                "samples_pct": 100.0 * samples / total_samples,
                "time_pct": 100.0 * time_ns / total_ns,
                "min_us": min(r.min_ns for r in group) / 1000,
                "max_us": max(r.max_ns for r in group) / 1000,
                "avg_us": time_ns / samples / 1000,
            }
        )
        for row in group:
            if row.detail:
                lines.append({"reason": f"  {reason} {row.detail}", "samples": row.samples})
    return lines
