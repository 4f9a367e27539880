"""Time ``write_report`` over a synthetic sweep of about a million runs.

The dataset is generated once into a temporary directory (or ``--data DIR``,
kept for the next run), with the contract's shape: ~70 parameter and metric
columns, six varying features, hardware x workload partitions, ~6 exit rows
per run, 0.5 % failed and 0.2 % missing runs.  Then the whole report (tables,
bootstrap, SALib-free grid analyses, plots, Markdown, HTML) is written
``--repeat`` times and the median wall time printed.  Target: under 10 s on a
2-core machine.

    .venv/bin/python benchmarks/bench_report.py [--repeat 5] [--data DIR]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl

from pipelines import write_report
from tests.pipelines.synthetic import GridSpec, write_grid_sweep

FEATURES = (
    "features.ipi_fastpath",
    "features.timer_fastpath",
    "features.boost_ready",
    "features.boost_queue_head",
    "features.pv_sched_yield",
    "features.pv_tlb_flush",
)
SPEC = GridSpec(
    hardware=("cascadelake", "icelake", "rome"),
    workloads=("hackbench", "cyclictest"),
    overcommit=(1.0, 1.5, 2.0, 3.0, 4.0),
    vcpus=(4, 8, 16, 32),
    apic=("xapic", "x2apic_phys", "x2apic_cluster"),
    features=FEATURES,
    effects={
        "features.ipi_fastpath": {"messages_per_s": 1.15, "ipi_latency_p50_us": 0.7},
        "features.timer_fastpath": {
            "timer_latency_avg_us": {1.0: 0.95, 1.5: 0.9, 2.0: 0.85, 3.0: 0.8, 4.0: 0.75}
        },
        "features.boost_queue_head": {"steal_pct": 0.9},
    },
    replicates=44,  # 23,040 design points x 44 = 1,013,760 runs
    failed_fraction=0.005,
    missing_fraction=0.002,
    name="bench-1m",
    report_metrics=(
        "messages_per_s",
        "timer_latency_avg_us",
        "timer_latency_p99_us",
        "ipi_latency_p50_us",
        "exits_per_s",
        "steal_pct",
    ),
)


def ensure_dataset(directory: Path) -> int:
    """Write the synthetic sweep unless ``directory`` already holds it; return its run count."""
    if not (directory / "manifest.json").exists():
        started = time.perf_counter()
        write_grid_sweep(directory, SPEC)
        print(f"generated {directory} in {time.perf_counter() - started:.1f} s")
    return pl.scan_parquet(directory / "runs", hive_partitioning=True).select(pl.len()).collect().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs (default 5)")
    parser.add_argument("--data", type=Path, help="dataset directory to reuse (generated there if absent)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kvmsweep-bench-") as tmp:
        directory = args.data or Path(tmp) / "sweep"
        runs = ensure_dataset(directory)
        exits = pl.scan_parquet(directory / "exits", hive_partitioning=True).select(pl.len()).collect().item()
        print(f"dataset: {runs:,} runs, {exits:,} exit rows")
        times = []
        for i in range(args.repeat):
            started = time.perf_counter()
            write_report(directory)
            times.append(time.perf_counter() - started)
            print(f"  run {i + 1}: {times[-1]:.2f} s")
        print(
            f"write_report over {runs:,} runs: median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs)"
        )


if __name__ == "__main__":
    main()
