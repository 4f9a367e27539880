"""Time ``write_report`` over a synthetic sweep of about a million runs, and its peak memory.

The dataset is generated once (``--data DIR`` keeps it for the next run) by
``tests/pipelines/synthetic.py``, with the dataset contract's exact columns
(every parameter and metric of the schema), six varying features, hardware x
workload partitions, ~6 exit rows per run, 0.5 % failed and 0.2 % missing
runs.  Then the whole report (tables, bootstrap, grid analyses, plots,
Markdown, HTML) is written ``--repeat`` times, each in a fresh process whose
peak resident memory is read from ``getrusage``; the median wall time and the
largest peak are printed, with each run's CPU time and the machine's load
average (on a shared machine the wall time follows the load).  Target: under
10 s on a 2-core machine.

    nice .venv/bin/python benchmarks/bench_report.py [--repeat 3] [--data DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

REPO = Path(__file__).resolve().parents[1]
FEATURES = (
    "features.ipi_fastpath",
    "features.timer_fastpath",
    "features.boost_ready",
    "features.boost_queue_head",
    "features.pv_sched_yield",
    "features.pv_tlb_flush",
)


def spec() -> Any:  # a GridSpec (tests/ is imported lazily: not part of the install)
    from tests.pipelines.synthetic import GridSpec

    return GridSpec(
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


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def child(directory: Path) -> None:
    """One timed report in this process: print its wall time and peak memory as JSON."""
    from pipelines import write_report

    before = resource.getrusage(resource.RUSAGE_SELF)
    started = time.perf_counter()
    write_report(directory)
    seconds = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_SELF)
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    print(json.dumps({"seconds": seconds, "cpu_s": cpu, "peak_mib": peak_mib()}))


def generate(directory: Path) -> None:
    from tests.pipelines.synthetic import write_grid_sweep

    started = time.perf_counter()
    write_grid_sweep(directory, spec())
    print(f"generated {directory} in {time.perf_counter() - started:.1f} s (peak {peak_mib():,.0f} MiB)")


def run_child(flag: str, directory: Path) -> str:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, __file__, flag, str(directory)], env=env, capture_output=True, text=True, check=False
    )
    if done.returncode:
        raise SystemExit(done.stderr[-4000:])
    return done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs (default 3)")
    parser.add_argument("--data", type=Path, help="dataset directory to reuse (generated there if absent)")
    parser.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.child)
    if args.generate:
        return generate(args.generate)
    with tempfile.TemporaryDirectory(prefix="kvmsweep-bench-") as tmp:
        directory = args.data or Path(tmp) / "sweep"
        if not (directory / "manifest.json").exists():
            print(run_child("--generate", directory), end="")
        runs = pl.scan_parquet(directory / "runs" / "**" / "*.parquet", hive_partitioning=True)
        exits = pl.scan_parquet(directory / "exits" / "**" / "*.parquet", hive_partitioning=True)
        n_runs = runs.select(pl.len()).collect().item()
        n_exits = exits.select(pl.len()).collect().item()
        columns = len(runs.collect_schema())
        print(f"dataset: {n_runs:,} runs x {columns} columns, {n_exits:,} exit rows")
        times, peaks = [], []
        for i in range(args.repeat):
            result = json.loads(run_child("--child", directory).strip().splitlines()[-1])
            times.append(result["seconds"])
            peaks.append(result["peak_mib"])
            print(
                f"  run {i + 1}: {times[-1]:.2f} s wall, {result['cpu_s']:.2f} s CPU, "
                f"peak memory {peaks[-1]:,.0f} MiB; load average {os.getloadavg()[0]:.1f}"
            )
        print(
            f"write_report over {n_runs:,} runs: median {statistics.median(times):.2f} s "
            f"(min {min(times):.2f}, max {max(times):.2f}, {len(times)} runs); "
            f"peak memory {max(peaks):,.0f} MiB"
        )
    return None


if __name__ == "__main__":
    main()
