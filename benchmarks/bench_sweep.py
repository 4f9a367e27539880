"""Sweep runner cost: overhead against a plain simulate loop, and the speed-up from 1 to 2 workers.

    python benchmarks/bench_sweep.py [--repeats 5] [--duration-ms 100] [--replicates 6] [--workers 2]
    python benchmarks/bench_sweep.py --plan conf/rome.yaml [--rows N] [--workers 2] [--launch]

``--plan CONF`` checks ``sweep plan``'s estimate instead (see :func:`check_plan`):
it runs the plan (its own time, estimate and spread), then measures the CPU
time of ``--rows`` design rows (replicate 0; default all of them, one
replicate of the sweep; a number N times N rows spread evenly over the design
order) and scales it to every point.  ``--launch`` then also runs ``sweep
launch CONF --num-cpus WORKERS`` end to end into a temp dir and times it (run
it on a quiet machine: it uses WORKERS cores).  Prints the commit measured.

The same 72 points (by default) run three ways, each ``--repeats`` times:

- ``loop``: ``simulate(point.scenario, point.seed)`` in a plain loop (points built beforehand);
- ``runner 1 worker``: ``sweep.launch`` with ``run.num_cpus: 1`` on an in-process Ray,
  writing Parquet as it goes;
- ``runner N workers``: the same with N workers (default 2).

Runner times are the run phase (first submission to last commit, with the
points generated lazily and every batch written); Ray's start-up (a few
seconds, once per sweep) is printed separately.  The three are interleaved in
rotating order, so that the load of a shared machine hits them alike, and the
medians are compared.  Targets: overhead of the 1-worker runner against the
loop <= 5 %; speed-up from 1 to 2 workers >= 1.8x.  On a machine with only 2
cores the driver and anything else running share them with the 2 workers.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from sweep import config as config_mod
from sweep import launch, points
from sweep.worker import load_simulator

TARGET_OVERHEAD = 0.05
TARGET_SPEEDUP = 1.8


def bench_config(duration_ms: float, replicates: int, output: Path, workers: int) -> config_mod.SweepConfig:
    """A small host, three workloads, two fastpath toggles: 12 rows x replicates."""
    data: dict[str, Any] = {
        "name": "bench",
        "base": {
            "hardware": "cascadelake",
            "topology": {"sockets": 1, "cores_per_socket": 4, "threads_per_core": 1},
            "vm": {"vcpus": 4},
            "sim": {"duration_ms": duration_ms, "warmup_ms": duration_ms / 10},
        },
        "space": {
            "design": "grid",
            "params": {
                "workload.kind": ["hackbench", "cyclictest", "cpu-bound"],
                "features.ipi_fastpath": [True, False],
                "features.timer_fastpath": [True, False],
            },
        },
        "replicates": replicates,
        "seed": 1,
        "run": {"output": str(output), "num_cpus": workers},
    }
    return config_mod.from_dict(data)


def time_loop(config: config_mod.SweepConfig) -> float:
    """``simulate`` over the sweep's points in a plain loop (points built before the clock starts)."""
    simulate = load_simulator("model:simulate")
    todo = list(points.iter_points(config))
    start = time.perf_counter()
    for point in todo:
        simulate(point.scenario, point.seed)
    return time.perf_counter() - start


def time_runner(config: config_mod.SweepConfig) -> float:
    """Run phase of a fresh sweep (``restart``): lazy points, Ray batches, Parquet commits."""
    result = launch.launch(config, restart=True)
    assert result.summary is not None and result.missing == 0, result
    return result.summary.elapsed_s


def check_plan(conf: str, rows: int | None, workers: int, run_launch: bool) -> None:
    """``sweep plan``'s estimate against the measured CPU time of the sweep's rows (and a launch)."""
    import subprocess
    import sys

    from sweep import plan as plan_mod

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, check=False
    )
    config = config_mod.load(Path(conf))
    print(
        f"{conf} at commit {commit.strip()}{' (modified)' if dirty.stdout.strip() else ''}, "
        f"{os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; estimates for {workers} workers"
    )
    start = time.perf_counter()
    found = plan_mod.plan(config, sample=0, cpus=workers)
    plan_wall = time.perf_counter() - start
    assert found.cpu_s is not None and found.cpu_range_s is not None
    low, high = found.cpu_range_s
    print(
        f"plan:     {found.total} points, {found.cpu_s:7.1f} CPU s (spread {low:.1f}-{high:.1f}) -> "
        f"{found.cpu_s / workers / 60:5.1f} min on {workers} workers; plan took {plan_wall:.0f} s "
        f"({len(found.timed)} points timed in {found.timing_s:.0f} s)"
    )
    all_rows = list(points.design_rows(config))
    picked = all_rows if rows is None else [all_rows[i] for i in points._spread(len(all_rows), rows)]
    simulate = load_simulator("model:simulate")
    cpu = 0.0
    for row in picked:
        scenario = points.build_scenario(config.base, row.values)
        seed = points.derive_seed(config.seed, 0, scenario.flat())
        before = time.process_time()
        simulate(scenario, seed)
        cpu += time.process_time() - before
    measured = cpu * len(all_rows) / len(picked) * config.replicates
    print(
        f"measured: {len(picked)} of {len(all_rows)} rows x 1 replicate, {cpu:.1f} CPU s -> "
        f"{measured:7.1f} CPU s in all -> {measured / workers / 60:5.1f} min on {workers} workers; "
        f"plan / measured = {found.cpu_s / measured:.2f}"
    )
    if run_launch:
        scratch = Path(tempfile.mkdtemp(prefix="bench-plan-"))
        try:
            start = time.perf_counter()
            cmd = [sys.executable, "-m", "sweep.cli", "launch", conf, "-o", str(scratch / "out")]
            subprocess.run([*cmd, "--num-cpus", str(workers), "-q"], check=True)
            wall = time.perf_counter() - start
            print(
                f"launch:   {found.total} points, report included, {wall / 60:.1f} min on {workers} workers"
            )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration-ms", type=float, default=100.0)
    ap.add_argument("--replicates", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--plan", metavar="CONF", help="check sweep plan's estimate for CONF instead")
    ap.add_argument("--rows", type=int, help="--plan: rows timed, spread over the design (default all)")
    ap.add_argument("--launch", action="store_true", help="--plan: also time sweep launch CONF end to end")
    args = ap.parse_args()
    if args.plan:
        check_plan(args.plan, args.rows, args.workers, args.launch)
        return
    import ray

    scratch = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    try:
        one = bench_config(args.duration_ms, args.replicates, scratch / "one", 1)
        many = bench_config(args.duration_ms, args.replicates, scratch / "many", args.workers)
        n = points.check(one)
        print(
            f"{n} points, {args.duration_ms:g} ms simulated each, {os.cpu_count()} cores, "
            f"load {os.getloadavg()[0]:.1f}; medians of {args.repeats}, interleaved"
        )
        start = time.perf_counter()
        ray.init(
            num_cpus=args.workers, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False
        )
        startup = time.perf_counter() - start
        time_loop(one)
        time_runner(many)  # start and warm every worker process
        runs: dict[str, list[float]] = {
            "loop": [],
            "runner 1 worker": [],
            f"runner {args.workers} workers": [],
        }
        jobs = [lambda: time_loop(one), lambda: time_runner(one), lambda: time_runner(many)]
        for repeat in range(args.repeats):
            order = [(repeat + k) % len(jobs) for k in range(len(jobs))]  # rotate: load drifts hit all alike
            for k in order:
                runs[list(runs)[k]].append(jobs[k]())
        ray.shutdown()
        medians = {name: statistics.median(values) for name, values in runs.items()}
        for name, values in runs.items():
            print(f"{name:18} {medians[name]:7.2f} s  {n / medians[name]:7.1f} sims/s   runs: {_fmt(values)}")
        m_loop, m_one, m_many = medians.values()
        print(f"Ray start-up (once per sweep, not included above): {startup:.1f} s")
        print(
            f"overhead of the runner, 1 worker vs loop: {(m_one / m_loop - 1) * 100:+.1f} %  (target <= {TARGET_OVERHEAD:.0%})"
        )
        print(
            f"speed-up 1 -> {args.workers} workers: {m_one / m_many:.2f}x  (target >= {TARGET_SPEEDUP}x for 2)"
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in values)


if __name__ == "__main__":
    main()
