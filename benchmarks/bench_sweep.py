"""Sweep runner cost: overhead against a plain simulate loop, and the speed-up from 1 to 2 workers.

    python benchmarks/bench_sweep.py [--repeats 5] [--duration-ms 100] [--replicates 6] [--workers 2]

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--duration-ms", type=float, default=100.0)
    ap.add_argument("--replicates", type=int, default=6)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
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
