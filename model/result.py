"""What a simulation returns: a flat metrics record of fixed schema and an exit table.

This module is the one definition of what a run measures.  :data:`METRICS`
names every metric (the name carries its unit, see :func:`unit`), says what it
means, which kernel counter or tool output it corresponds to, and whether a
higher or a lower value is better; :class:`ExitRow`'s fields are the columns of
the exit table.  ``sweep.store`` derives the Parquet schemas from them and
writes them into each sweep's ``manifest.json``; ``docs/dataset.md`` is
generated from the same schema.  A new metric is one entry here (a plain
string is accepted too: a meaning with no counter and no direction).

A metric that does not apply to a run (timer latency when no timer fired, a
share of zero time) is NaN in :attr:`Result.metrics`, never absent: the record
has the same keys for every run, and the dataset stores those NaNs as null.
Unless the name says otherwise (``corunner_``, ``pcpu_``, ``host_``), a metric
is about the measured VM (VM 0).  A metric ending in ``_ci95_pct`` is the
within-run 95 % half-width, in percent, of the metric it extends
(``messages_per_s_ci95_pct`` of ``messages_per_s``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from typing import Literal

Better = Literal["higher", "lower", ""]
CI95_SUFFIX = "_ci95_pct"  # within-run 95 % half-width of another metric, in % of it


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: what it means, the kernel counter (or tool output) it stands for, its direction."""

    meaning: str
    counter: str = ""  # "" : no kernel counter (a model-internal figure)
    better: Better = ""  # "" : neither (a rate that only describes the run)


M = Metric

# The order is the column order of the dataset.
METRICS: dict[str, Metric | str] = {
    # workload
    "messages_per_s": M("hackbench messages passed per second", "hackbench output (Time:)", "higher"),
    "hackbench_time_s": M(
        "time hackbench needs for its groups x senders x receivers x loops messages",
        "hackbench output (Time:)",
        "lower",
    ),
    "records_per_s": M("ebizzy records per second", "ebizzy output (records/s)", "higher"),
    "pbzip2_blocks_per_s": M(
        "pbzip2: blocks compressed per second (counted in 1/32 blocks as compression progresses)",
        "pbzip2 -v: input size / block size / real time",
        "higher",
    ),
    "pbzip2_wall_s": M(
        "time pbzip2 needs to compress workload.pbzip2.input_bytes at that rate",
        "time pbzip2 (real)",
        "lower",
    ),
    "acquisitions_per_s": M("lockbench lock acquisitions per second", "lockbench output", "higher"),
    "lock_wait_p99_us": M("lockbench: 99th percentile of the wait for the lock", "lockbench output", "lower"),
    "compute_s_per_s": M(
        "cpu-bound: guest seconds of work completed per second, all vCPUs",
        "guest /proc/stat user time",
        "higher",
    ),
    "vmexit_op_cycles": M(
        "vmexit microbenchmark: average cycles per operation", "kvm-unit-tests vmexit output", "lower"
    ),
    "ipi_benchmark_op_ns": M(
        "ipi_benchmark: mean ns of one call-function call with wait=1 (send to all acknowledged)",
        "ipi_benchmark module output (second column / NTIMES)",
        "lower",
    ),
    "ipi_benchmark_oneway_ns": M(
        "ipi_benchmark: mean ns from the call to a target's handler having run",
        "ipi_benchmark module output (first column / NTIMES)",
        "lower",
    ),
    "ipi_benchmark_unicast_total_ns": M(
        "ipi_benchmark 'Normal IPI': ns per call x workload.ipi_benchmark.ops", "ipi_benchmark module output", "lower"
    ),
    "ipi_benchmark_broadcast_total_ns": M(
        "ipi_benchmark 'Broadcast IPI': ns per call x workload.ipi_benchmark.ops",
        "ipi_benchmark module output",
        "lower",
    ),
    "ipi_benchmark_multicast_total_ns": M(
        "ipi_benchmark to vCPUs 1..targets: ns per call x workload.ipi_benchmark.ops",
        "ipi_benchmark module output",
        "lower",
    ),
    "timer_latency_min_us": M(
        "timer latency (deadline to the woken thread running), minimum", "cyclictest Min", "lower"
    ),
    "timer_latency_avg_us": M("timer latency, mean", "cyclictest Avg", "lower"),
    "timer_latency_p50_us": M("timer latency, median", "cyclictest histogram (-h), median", "lower"),
    "timer_latency_p99_us": M("timer latency, 99th percentile", "cyclictest histogram (-h), p99", "lower"),
    "timer_latency_max_us": M("timer latency, maximum", "cyclictest Max", "lower"),
    "corunner_messages_per_s": M("co-runner VMs: hackbench messages per second, summed", "hackbench output"),
    "corunner_records_per_s": M("co-runner VMs: ebizzy records per second, summed", "ebizzy output"),
    "corunner_acquisitions_per_s": M(
        "co-runner VMs: lockbench acquisitions per second, summed", "lockbench output"
    ),
    "corunner_compute_s_per_s": M(
        "co-runner VMs: cpu-bound work per second, summed", "guest /proc/stat user time"
    ),
    # within-run uncertainty of each workload's main metric (batch means over the window, model.metrics)
    **{
        f"{m}_ci95_pct": M(f"within-run 95 % half-width of {m}, in % of it (batch means)", "", "lower")
        for m in ("messages_per_s", "hackbench_time_s", "records_per_s", "acquisitions_per_s", "compute_s_per_s",
                  "vmexit_op_cycles", "timer_latency_avg_us", "ipi_benchmark_op_ns", "ipi_benchmark_oneway_ns",
                  "pbzip2_blocks_per_s", "pbzip2_wall_s")
    },
    "warmup_bias_pct": M(
        "start transient left in the measured window: the main metric's mean minus its mean after MSER"
        " truncation (White 1997) of its batch means, in % of the latter; comparable to its _ci95_pct or"
        " to a compared effect: lengthen sim.warmup_ms (model.metrics)",
        "",
        "",
    ),
    # interrupts
    "ipis_per_s": M("IPIs sent per second (one per destination vCPU)", "kvm_apic_ipi tracepoint"),
    "ipi_latency_p50_us": M(
        "IPI latency, ICR write to the handler starting, median",
        "kvm_apic_ipi to kvm_apic_accept_irq / guest handler entry (trace timestamps)",
        "lower",
    ),
    "ipi_latency_p99_us": M("IPI latency, 99th percentile", "as ipi_latency_p50_us", "lower"),
    # guest scheduler (model.guest: try_to_wake_up, resched_curr, preemption)
    "guest_wakeups_per_s": M(
        "guest try_to_wake_up() calls that woke a sleeping task, per second",
        "guest sched:sched_wakeup tracepoint; schedstat ttwu_count",
    ),
    "resched_ipis_per_s": M(
        "guest RESCHEDULE IPIs sent (resched_curr to a remote vCPU that does not poll), per second",
        "guest /proc/interrupts RES",
    ),
    "wakelist_ipis_per_s": M(
        "guest wake-ups queued on a remote LLC's wake list with a call-function-single IPI, per second",
        "guest /proc/interrupts CAL (ttwu_queue_wakelist -> send_call_function_single_ipi)",
    ),
    "wakeups_polling_no_ipi_per_s": M(
        "guest wake-ups of a vCPU polling with TIF_POLLING_NRFLAG: no IPI sent, per second",
        "set_nr_and_not_polling() / set_nr_if_polling() true (no kernel counter)",
    ),
    "guest_preemptions_per_s": M(
        "guest task preemptions (return to user or tick with TIF_NEED_RESCHED), per second",
        "guest sched:sched_switch with prev_state R; nr_involuntary_switches",
    ),
    "wakeup_preemptions_per_s": M(
        "guest wake-ups whose check_preempt_wakeup() preempts the running task, per second",
        "guest sched:sched_wakeup followed by sched_switch (no kernel counter)",
    ),
    "tick_restarts_per_s": M(
        "guest idle exits that restart a tick stopped for HLT idle (tick_nohz_idle_exit), each with a"
        " TSC-deadline write, per second",
        "guest timer:tick_stop with success=0 -> hrtimer_start of tick_sched_timer (no kernel counter)",
    ),
    # exits
    "exits_per_s": M(
        "VM exits per second, all vCPUs of the VM", "kvm_exit tracepoint; kvm stat exits", "lower"
    ),
    "exit_pct": M(
        "share of the VM's vCPU time spent in exits", "kvm_exit to kvm_entry (perf kvm stat time)", "lower"
    ),
    "ple_exits_per_s": M(
        "PAUSE exits per second", "kvm_exit reason PAUSE_INSTRUCTION (VMX) / PAUSE (SVM)", "lower"
    ),
    # time shares of the VM's vCPUs (of vCPU-seconds)
    "guest_pct": M("share of vCPU time running guest code", "host /proc/PID/stat guest_time", "higher"),
    "steal_pct": M(
        "share of vCPU time runnable but not running (steal)",
        "guest /proc/stat steal (MSR_KVM_STEAL_TIME)",
        "lower",
    ),
    "halted_pct": M("share of vCPU time halted (blocked or polling)", "kvm stat halt_exits, halt_wakeup"),
    "spin_pct": M(
        "share of vCPU time spinning at CPL 0 (locks, IPI acknowledgements)",
        "guest perf: native_queued_spin_lock_slowpath, smp_call_function_many",
        "lower",
    ),
    "smp_call_function_many_pct": M(
        "share of guest time waiting for IPI acknowledgements", "guest perf: smp_call_function_many", "lower"
    ),
    # boost and yield
    "directed_yield_attempts": M(
        "kvm_vcpu_on_spin / boost calls of yield_to", "kvm stat directed_yield_attempted (5.12+)"
    ),
    "directed_yield_successes": M(
        "yield_to calls that yielded", "kvm stat directed_yield_successful (5.12+)"
    ),
    "directed_yield_esrch": M(
        "yield_to calls that failed with ESRCH (both queues hold one task)", "yield_to() return value -ESRCH"
    ),
    "pv_sched_yields": M("SCHED_YIELD hypercalls", "kvm_hypercall tracepoint, nr KVM_HC_SCHED_YIELD (11)"),
    "kicks": M("KICK_CPU hypercalls", "kvm_hypercall tracepoint, nr KVM_HC_KICK_CPU (5)"),
    "spinlock_steals_per_s": M(
        "queued-spinlock acquisitions ahead of queued waiters (PV unfair trylock) per second",
        "qspinlock_stat pv_lock_stealing (CONFIG_QUEUED_LOCK_STAT)",
    ),
    "pv_waits_per_s": M(
        "queued-spinlock waiters halting in pv_wait (kvm_wait's HLT) per second",
        "qspinlock_stat pv_wait_head + pv_wait_node; kvm_exit HLT",
    ),
    "queue_head_boosts": M(
        "KICK_CPU yields to the kicked queue head (266e85a5ec91)", "(no upstream counter of its own)"
    ),
    "sched_yield_undercommit_bails": M(
        "kvm_sched_yield calls (SCHED_YIELD, KICK_CPU boost) that bailed out: the caller's pCPU runs one task",
        "72b268a8e930; counted in kvm stat directed_yield_attempted, not in directed_yield_successful",
    ),
    "tlb_shootdowns_per_s": M(
        "TLB shootdowns (call-function-many flushes) per second", "guest /proc/interrupts TLB", "lower"
    ),
    "tlb_flushes_deferred": M(
        "flushes left to a preempted target by PV TLB flush", "steal_time.preempted KVM_VCPU_FLUSH_TLB"
    ),
    "halt_poll_success_pct": M(
        "share of halt-polls ended by a wake-up (not by the poll limit)",
        "kvm stat halt_successful_poll / halt_attempted_poll",
        "higher",
    ),
    # host
    "pcpu_guest_pct": M("share of pCPU time running guest code (all VMs)", "host /proc/stat guest"),
    "pcpu_exit_pct": M("share of pCPU time in KVM handling exits", "host perf kvm stat time", "lower"),
    "pcpu_idle_pct": M("share of pCPU time idle", "host /proc/stat idle"),
    "pcpu_poll_pct": M(
        "share of pCPU time halt-polling", "kvm stat halt_poll_success_ns + halt_poll_fail_ns"
    ),
    "pcpu_switch_pct": M("share of pCPU time context switching", "host perf sched", "lower"),
    "host_context_switches_per_s": M("host context switches per second, all pCPUs", "host /proc/stat ctxt"),
    # the run itself
    "sim_s": M("simulated seconds measured (after warm-up)"),
    "events": M("events processed by the event loop, warm-up included"),
    "wall_s": M("wall time of the simulation"),
}

METRIC_NAMES: tuple[str, ...] = tuple(METRICS)
BOOKKEEPING: tuple[str, ...] = ("sim_s", "events", "wall_s")  # about the run, not the system

# Units by name suffix, longest first: every metric name carries its unit.
UNITS: tuple[tuple[str, str], ...] = (
    (CI95_SUFFIX, "%"),
    ("_per_s", "1/s"),
    ("_s_per_s", "s/s"),
    ("_cycles", "cycles"),
    ("_pct", "%"),
    ("_us", "µs"),
    ("_ns", "ns"),
    ("_ms", "ms"),
    ("_s", "s"),
)


def unit(name: str) -> str:
    """The unit a metric's name carries (``count`` for a bare counter such as ``kicks``)."""
    for suffix, text in sorted(UNITS, key=lambda u: -len(u[0])):
        if name.endswith(suffix):
            return text
    return "count"


def metric_info(name: str) -> Metric:
    """The :class:`Metric` entry of ``name`` (a plain-string entry as a meaning only).

    A ``*_ci95_pct`` metric without its own entry inherits a meaning from the
    metric it extends, and is better lower.
    """
    entry = METRICS.get(name)
    if isinstance(entry, Metric):
        return entry
    if isinstance(entry, str):
        return Metric(entry)
    base = ci95_of(name)
    if base is not None:
        return Metric(f"within-run 95 % half-width of {base}, in % of it (batch means)", "", "lower")
    raise KeyError(name)


def ci95_of(name: str) -> str | None:
    """The metric a ``*_ci95_pct`` metric qualifies, or None."""
    if name.endswith(CI95_SUFFIX):
        base = name.removesuffix(CI95_SUFFIX)
        return base if base in METRICS else None
    return None


@dataclass(frozen=True, slots=True)
class ExitRow:
    """One line of a run's exit table (``perf kvm stat`` per reason; MSR_WRITE split by MSR)."""

    reason: str  # VMX/SVM exit reason name, as kvm_exit prints it
    detail: str  # MSR_WRITE: the MSR ("0x6e0"); else ""
    samples: int  # exits of this reason
    total_ns: int  # time from kvm_exit to the next kvm_entry, summed
    min_ns: int
    max_ns: int

    @property
    def avg_ns(self) -> float:
        return self.total_ns / self.samples if self.samples else math.nan


# Columns of one exit-table row, in order (the fields of ExitRow).
EXIT_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(ExitRow))
EXIT_MEANINGS: dict[str, str] = {
    "reason": "VMX/SVM exit reason, as the kvm_exit tracepoint names it",
    "detail": "MSR_WRITE: the MSR written (e.g. 0x6e0 TSC deadline, 0x830 x2APIC ICR); else empty",
    "samples": "exits of this reason in the run (after warm-up)",
    "total_ns": "time from kvm_exit to the next kvm_entry, summed over the exits",
    "min_ns": "shortest exit of this reason",
    "max_ns": "longest exit of this reason",
}
EXIT_COUNTERS: dict[str, str] = {
    "reason": "kvm_exit exit_reason",
    "samples": "perf kvm stat report: Samples",
    "total_ns": "perf kvm stat report: Time",
    "min_ns": "perf kvm stat report: Min Time",
    "max_ns": "perf kvm stat report: Max Time",
}


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
