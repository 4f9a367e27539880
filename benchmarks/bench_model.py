"""Simulator speed: simulated seconds per wall second on one core.

    python benchmarks/bench_model.py [--repeats 3] [--duration-ms 200]

Scenarios:
- ``cascadelake-ebizzy-oc2``: the 2-socket 24-core SMT Cascade Lake host with two
  96-vCPU VMs at overcommit 2, one running ebizzy, one cpu-bound (the talk's setup);
  target: faster than real time (> 1 simulated s per wall s).
- ``rome-180-hackbench``: the ROME host with one 180-vCPU hackbench VM.
Prints the median over the repeats (the machines are shared and noisy).
"""

from __future__ import annotations

import argparse
import statistics
import time

from model import Scenario, simulate

SCENARIOS = {
    "cascadelake-ebizzy-oc2": {
        "hardware": "cascadelake",
        "topology": {"sockets": 2, "cores_per_socket": 24, "threads_per_core": 2},
        "overcommit": 2.0,
        "vm": {"vcpus": 96},
        "workload": {"kind": "ebizzy"},
        "corunner": {"workload": "cpu-bound"},
    },
    "rome-180-hackbench": {
        "hardware": "rome",
        "topology": {"sockets": 2, "cores_per_socket": 48, "threads_per_core": 2},
        "vm": {"vcpus": 180, "apic": "xapic", "avic": True, "hlt_passthrough": True},
        "workload": {"kind": "hackbench"},
    },
}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--duration-ms", type=float, default=200.0)
    ap.add_argument("--only", choices=list(SCENARIOS))
    args = ap.parse_args()
    warmup = min(20.0, args.duration_ms / 5)
    print(f"{'scenario':28} {'sim s/wall s':>12} {'events/s':>10} {'wall s':>8}  (median of {args.repeats})")
    for name, data in SCENARIOS.items():
        if args.only and name != args.only:
            continue
        sc = Scenario.build({**data, "sim": {"duration_ms": args.duration_ms, "warmup_ms": warmup}})
        speeds, rates, walls = [], [], []
        for seed in range(1, args.repeats + 1):
            t0 = time.perf_counter()
            result = simulate(sc, seed)
            wall = time.perf_counter() - t0
            if not result.ok:
                raise SystemExit(f"{name}: {result.error_type}: {result.error}")
            speeds.append(args.duration_ms / 1e3 / wall)
            rates.append(result.metrics["events"] / wall)
            walls.append(wall)
        print(f"{name:28} {statistics.median(speeds):12.3f} {statistics.median(rates):10,.0f} "
              f"{statistics.median(walls):8.2f}")


if __name__ == "__main__":
    main()
