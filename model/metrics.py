"""Counters and samples gathered during a run, and the metrics computed from them.

Everything about "the VM" is about the measured VM (index 0); co-runners only
contribute their workload throughput.  Counting starts at the end of the
warm-up (``start_measuring``), except the few totals the invariants need,
which count from time 0.

**Within-run uncertainty** (MODEL.md section 12c): the measured window is cut
into :data:`CI_BATCHES` equal batches; the measured VM's work and samples are
also counted per batch, and each workload's main metric gets
``<metric>_ci95_pct``, the 95 % half-width of its batch means in percent of the
metric: ``t(0.975, B-1) * s / sqrt(B) / mean`` (the method of batch means;
Schmeiser 1982 recommends 10 to 30 batches).  Twenty batches leave 19 degrees
of freedom (t = 2.09, little wider than the normal 1.96) while keeping each
batch long; the batch means are treated as independent, which holds only
when a batch (window / 20) is much longer than the run's correlation time --
one host slice is 3-12 ms, so a 200 ms window understates the uncertainty
under overcommit and sweeps should measure seconds.

**Start transient.**  A warm-up too short leaves the measured window starting
in the transient from the initial state (an ebizzy VM under overcommit starts
uncollapsed and falls into the shootdown collapse within 100-400 ms), which
biases the mean and which batch means cannot see.  ``warmup_bias_pct`` says
how much: the main metric's batch means are truncated at the MSER point
(White 1997, "An effective truncation heuristic for bias reduction in
simulation output"; MSER-5 of White, Cobb and Spratt 2000 with our batches as
its batches), d* = argmin over d <= B/2 of sum_{i>d} (y_i - ybar_d)^2 / (B-d)^2,
and the metric is the mean of all batches minus the mean after d*, in % of
the latter.  Near 0: no start transient.  Comparable to ``<metric>_ci95_pct``
or to the effect a sweep compares: the window starts before the steady state;
lengthen ``sim.warmup_ms``.  (MSER alone also cuts an early outlier of a
stationary run; the bias it would remove is what matters.)
"""

from __future__ import annotations

import math
from collections import defaultdict
from typing import TYPE_CHECKING

import numpy as np

from model.result import METRIC_NAMES, ExitRow
from model.vcpu import Vcpu

if TYPE_CHECKING:
    from model.host import Host

MEASURED_VM = 0
CI_BATCHES = 20  # batches of the measured window for the batch-means intervals
CI_LEVEL = 0.95
MSER_MIN_BATCHES = 4  # fewer batch means than this: no truncation point (warmup_bias_pct is NaN)


class Stats:
    def __init__(self, clock=None) -> None:
        self.clock = clock  # anything with ``now`` (the engine)
        self.measuring = False
        self.t_start = 0
        self.batch_ns = 1.0
        self.work_batches: dict[str, np.ndarray] = {}  # measured VM: work per batch
        self.sample_batches: dict[str, list[int]] = defaultdict(list)  # batch of each sample
        # exit table of the measured VM: (reason, detail) -> [samples, total, min, max]
        self.exits: dict[tuple[str, str], list[int]] = {}
        self.exits_counted = 0
        self.ipi_latencies: list[int] = []
        self.ipis = 0
        self.timer_latencies: list[int] = []
        self.lock_waits: list[int] = []
        self.vmexit_ops: list[int] = []
        self.ipi_benchmark_ops: list[int] = []  # ipi_benchmark: ns per call (send to all acknowledged)
        self.ipi_benchmark_oneway: list[int] = []  # ipi_benchmark: ns from the call to each handler done
        self.work: dict[int, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        self.counters: dict[str, int] = defaultdict(int)
        # invariants: from time 0, every VM
        self.ipi_sent_total = 0
        self.ipi_handled_total = 0

    def start_measuring(self, now: int, window_ns: int | None = None) -> None:
        """Reset the counters; ``window_ns`` (the measured window) sets the batches (None: one)."""
        sent, handled = self.ipi_sent_total, self.ipi_handled_total
        self.__init__(self.clock)
        self.ipi_sent_total, self.ipi_handled_total = sent, handled
        self.measuring = True
        self.t_start = now
        self.batch_ns = max(window_ns, 1) / CI_BATCHES if window_ns is not None else math.inf

    def batch(self) -> int:
        """The batch of the measured window that ``now`` falls in."""
        return min(int((self.clock.now - self.t_start) / self.batch_ns), CI_BATCHES - 1)

    # -- recorders (hot: keep them short) ------------------------------------------

    def record_exit(self, v: Vcpu, reason: str, detail: str, ns: int) -> None:
        if not self.measuring or v.vm.index != MEASURED_VM:
            return
        self.exits_counted += 1
        row = self.exits.get((reason, detail))
        if row is None:
            self.exits[(reason, detail)] = [1, ns, ns, ns]
            return
        row[0] += 1
        row[1] += ns
        row[2] = min(row[2], ns)
        row[3] = max(row[3], ns)

    def ipi_sent(self, v: Vcpu) -> None:
        self.ipi_sent_total += 1
        if self.measuring and v.vm.index == MEASURED_VM:
            self.ipis += 1

    def ipi_handled(self, v: Vcpu, latency_ns: int) -> None:
        self.ipi_handled_total += 1
        if self.measuring and v.vm.index == MEASURED_VM:
            self.ipi_latencies.append(latency_ns)

    def count(self, v: Vcpu, name: str, n: int = 1) -> None:
        if self.measuring and v.vm.index == MEASURED_VM:
            self.counters[name] += n

    def ple_exit(self, v: Vcpu) -> None:
        self.count(v, "ple_exits")

    def directed_yield(self, v: Vcpu, outcome: str) -> None:
        self.count(v, "directed_yield_attempts")
        self.count(v, f"directed_yield_{outcome}")

    def pv_sched_yield(self, v: Vcpu) -> None:
        self.count(v, "pv_sched_yields")

    def kick(self, v: Vcpu) -> None:
        self.count(v, "kicks")

    def queue_head_boost(self, v: Vcpu) -> None:
        self.count(v, "queue_head_boosts")

    def sched_yield_undercommit_bail(self, v: Vcpu) -> None:
        self.count(v, "sched_yield_undercommit_bails")

    def add_work(self, vm_index: int, name: str, amount: float) -> None:
        if self.measuring:
            self.work[vm_index][name] += amount
            if vm_index == MEASURED_VM:
                per_batch = self.work_batches.get(name)
                if per_batch is None:
                    per_batch = self.work_batches[name] = np.zeros(CI_BATCHES)
                per_batch[self.batch()] += amount

    def sample(self, v: Vcpu, name: str, ns: int) -> None:
        if self.measuring and v.vm.index == MEASURED_VM:
            getattr(self, name).append(ns)
            self.sample_batches[name].append(self.batch())

    def exit_rows(self) -> tuple[ExitRow, ...]:
        return tuple(
            ExitRow(reason, detail, n, total, lo, hi)
            for (reason, detail), (n, total, lo, hi) in sorted(self.exits.items())
        )


def batch_means_ci95_pct(batch_means) -> float:
    """95 % half-width of the grand mean of ``batch_means``, in % of it (NaN if undefined)."""
    y = np.asarray(batch_means, dtype=np.float64)
    y = y[np.isfinite(y)]
    if len(y) < 2:
        return math.nan
    mean = float(y.mean())
    if mean == 0:
        return math.nan
    from scipy.stats import t as student_t

    half = float(student_t.ppf(0.5 + CI_LEVEL / 2, len(y) - 1)) * float(y.std(ddof=1)) / math.sqrt(len(y))
    return 100.0 * half / abs(mean)


def mser_truncation(batch_means) -> int:
    """MSER truncation point of ``batch_means``: how many leading batches to drop.

    White (1997): the d in 0..B/2 that minimises the squared standard error of
    the mean of the batches after d, sum_{i>d} (y_i - ybar_d)^2 / (B-d)^2;
    the smallest such d on ties."""
    y = np.asarray(batch_means, dtype=np.float64)
    n = len(y)
    best_d, best = 0, math.inf
    for d in range(n // 2 + 1):
        tail = y[d:]
        score = float(((tail - tail.mean()) ** 2).sum()) / (n - d) ** 2
        if score < best:
            best_d, best = d, score
    return best_d


def warmup_bias_pct(batch_means) -> float:
    """Mean of all batches minus the mean after the MSER truncation, in % of the latter (NaN if undefined)."""
    y = np.asarray(batch_means, dtype=np.float64)
    y = y[np.isfinite(y)]
    if len(y) < MSER_MIN_BATCHES:
        return math.nan
    steady = float(y[mser_truncation(y):].mean())
    if steady == 0:
        return math.nan
    return 100.0 * (float(y.mean()) - steady) / abs(steady)


def _sample_batches(st: Stats, name: str) -> np.ndarray | None:
    """A mean of samples' batch means: each batch's samples' mean (batches without one left out)."""
    values = np.asarray(getattr(st, name), dtype=np.float64)
    batches = np.asarray(st.sample_batches.get(name, ()), dtype=np.int64)
    if len(values) == 0:
        return None
    sums = np.bincount(batches, weights=values, minlength=CI_BATCHES)
    counts = np.bincount(batches, minlength=CI_BATCHES)
    return sums[counts > 0] / counts[counts > 0]


def _ci(batch_means: np.ndarray | None) -> float:
    return batch_means_ci95_pct(batch_means) if batch_means is not None else math.nan


def _pct(values: list[int], q: float) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), q)) if values else math.nan


def compute(h: Host, vcpu_totals: list[list[int]], pcpu_totals: list[list[int]], wall_s: float) -> dict[str, float]:
    """The fixed metrics record of a finished run."""
    st: Stats = h.stats
    sim_ns = h.engine.now - st.t_start
    sim_s = sim_ns / 1e9
    m = {name: math.nan for name in METRIC_NAMES}
    w0 = st.work[MEASURED_VM]
    co = defaultdict(float)
    for vm_index, work in st.work.items():
        if vm_index != MEASURED_VM:
            for k, val in work.items():
                co[k] += val
    kind = h.sc.workload.kind
    main = None  # batch means of the workload's main metric (work per batch for a rate), for warmup_bias_pct
    if kind == "hackbench":
        m["messages_per_s"] = w0["messages"] / sim_s
        hb = h.sc.workload.hackbench
        total = hb.groups * hb.senders * hb.receivers * hb.loops
        m["hackbench_time_s"] = total / m["messages_per_s"] if m["messages_per_s"] > 0 else math.inf
        main = st.work_batches.get("messages")
        m["messages_per_s_ci95_pct"] = _ci(main)
        # time = total / rate: the same relative half-width to first order (delta method)
        m["hackbench_time_s_ci95_pct"] = m["messages_per_s_ci95_pct"]
    elif kind == "ebizzy":
        m["records_per_s"] = w0["records"] / sim_s
        main = st.work_batches.get("records")
        m["records_per_s_ci95_pct"] = _ci(main)
    elif kind == "pbzip2":
        m["pbzip2_blocks_per_s"] = w0["block_progress"] / sim_s
        pb = h.sc.workload.pbzip2
        blocks = pb.input_bytes / pb.block_bytes
        m["pbzip2_wall_s"] = blocks / m["pbzip2_blocks_per_s"] if m["pbzip2_blocks_per_s"] > 0 else math.inf
        main = st.work_batches.get("block_progress")
        m["pbzip2_blocks_per_s_ci95_pct"] = _ci(main)
        m["pbzip2_wall_s_ci95_pct"] = m["pbzip2_blocks_per_s_ci95_pct"]  # time = total / rate (delta method)
    elif kind == "lockbench":
        m["acquisitions_per_s"] = w0["acquisitions"] / sim_s
        m["lock_wait_p99_us"] = _pct(st.lock_waits, 99) / 1e3
        main = st.work_batches.get("acquisitions")
        m["acquisitions_per_s_ci95_pct"] = _ci(main)
    elif kind == "cpu-bound":
        m["compute_s_per_s"] = w0["compute_ns"] / 1e9 / sim_s
        main = st.work_batches.get("compute_ns")
        m["compute_s_per_s_ci95_pct"] = _ci(main)
    elif kind == "vmexit" and st.vmexit_ops:
        m["vmexit_op_cycles"] = float(np.mean(st.vmexit_ops)) * h.prof.tsc_ghz
        main = _sample_batches(st, "vmexit_ops")
        m["vmexit_op_cycles_ci95_pct"] = _ci(main)
    elif kind == "ipi_benchmark" and st.ipi_benchmark_ops:
        ib = h.sc.workload.ipi_benchmark
        per_op = float(np.mean(st.ipi_benchmark_ops))
        m["ipi_benchmark_op_ns"] = per_op
        m["ipi_benchmark_oneway_ns"] = float(np.mean(st.ipi_benchmark_oneway))
        main = _sample_batches(st, "ipi_benchmark_ops")
        m["ipi_benchmark_op_ns_ci95_pct"] = _ci(main)
        m["ipi_benchmark_oneway_ns_ci95_pct"] = _ci(_sample_batches(st, "ipi_benchmark_oneway"))
        m[f"ipi_benchmark_{ib.mode}_total_ns"] = per_op * ib.ops
    if st.timer_latencies:
        lat = np.asarray(st.timer_latencies, dtype=np.float64) / 1e3
        m["timer_latency_min_us"] = float(lat.min())
        m["timer_latency_avg_us"] = float(lat.mean())
        m["timer_latency_p50_us"] = float(np.percentile(lat, 50))
        m["timer_latency_p99_us"] = float(np.percentile(lat, 99))
        m["timer_latency_max_us"] = float(lat.max())
        timer_batches = _sample_batches(st, "timer_latencies")
        m["timer_latency_avg_us_ci95_pct"] = _ci(timer_batches)
        if main is None:
            main = timer_batches  # cyclictest: the latency is the main metric
    m["warmup_bias_pct"] = warmup_bias_pct(main) if main is not None else math.nan
    corunners = [vm for vm in h.vms if vm.index != MEASURED_VM]
    co_kinds = {vm.workload for vm in corunners}
    for name, key, scale in (
        ("corunner_messages_per_s", "messages", 1.0),
        ("corunner_records_per_s", "records", 1.0),
        ("corunner_acquisitions_per_s", "acquisitions", 1.0),
        ("corunner_compute_s_per_s", "compute_ns", 1e-9),
    ):
        if key in co or _kind_of(key) in co_kinds:
            m[name] = co[key] * scale / sim_s
    m["ipis_per_s"] = st.ipis / sim_s
    m["ipi_latency_p50_us"] = _pct(st.ipi_latencies, 50) / 1e3
    m["ipi_latency_p99_us"] = _pct(st.ipi_latencies, 99) / 1e3
    exit_ns = sum(row[1] for row in st.exits.values())
    exits = sum(row[0] for row in st.exits.values())
    run, runnable, halted = (sum(t[i] for t in vcpu_totals) for i in range(3))
    vcpu_ns = run + runnable + halted
    vm0 = h.vms[MEASURED_VM].vcpus
    spin_ns = sum(v.spin_ns for v in vm0)
    csfm_ns = sum(v.csfm_ns for v in vm0)
    guest_ns = max(run - exit_ns, 0)
    m["exits_per_s"] = exits / sim_s
    m["exit_pct"] = 100.0 * exit_ns / vcpu_ns
    m["ple_exits_per_s"] = st.counters["ple_exits"] / sim_s
    m["guest_pct"] = 100.0 * guest_ns / vcpu_ns
    m["steal_pct"] = 100.0 * runnable / vcpu_ns
    m["halted_pct"] = 100.0 * halted / vcpu_ns
    m["spin_pct"] = 100.0 * spin_ns / vcpu_ns
    m["smp_call_function_many_pct"] = 100.0 * csfm_ns / guest_ns if guest_ns else math.nan
    for name in ("directed_yield_attempts", "pv_sched_yields", "kicks", "queue_head_boosts",
                 "sched_yield_undercommit_bails", "tlb_flushes_deferred"):
        m[name] = float(st.counters[name])
    m["directed_yield_successes"] = float(st.counters["directed_yield_yielded"])
    m["directed_yield_esrch"] = float(st.counters["directed_yield_esrch"])
    m["tlb_shootdowns_per_s"] = st.counters["tlb_shootdowns"] / sim_s
    m["spinlock_steals_per_s"] = st.counters["spinlock_steals"] / sim_s
    m["pv_waits_per_s"] = st.counters["pv_waits"] / sim_s
    for name in ("guest_wakeups", "resched_ipis", "wakelist_ipis", "wakeups_polling_no_ipi", "guest_preemptions",
                 "wakeup_preemptions", "tick_restarts"):
        m[f"{name}_per_s"] = st.counters[name] / sim_s
    polls = sum(v.polls for v in vm0)
    m["halt_poll_success_pct"] = 100.0 * sum(v.polls_ok for v in vm0) / polls if polls else math.nan
    pcpu_ns = sum(sum(t) for t in pcpu_totals)
    for i, name in enumerate(("pcpu_guest_pct", "pcpu_exit_pct", "pcpu_idle_pct", "pcpu_poll_pct",
                              "pcpu_switch_pct")):
        m[name] = 100.0 * sum(t[i] for t in pcpu_totals) / pcpu_ns
    m["host_context_switches_per_s"] = h.switches_measured / sim_s
    m["sim_s"] = sim_s
    m["events"] = float(h.engine.processed)
    m["wall_s"] = wall_s
    return m


def _kind_of(work_key: str) -> str:
    return {"messages": "hackbench", "records": "ebizzy", "acquisitions": "lockbench",
            "compute_ns": "cpu-bound"}[work_key]
