"""Simulator speed: events per simulated second, cost per event, simulated seconds per CPU / wall second.

    python benchmarks/bench_model.py [--repeats 3] [--warmup-ms W --duration-ms D] [--only NAME] [--events]

Scenarios (issue 11):
- ``cascadelake-ebizzy-oc2`` (the goal scenario): the 2-socket 24-core SMT Cascade Lake
  host, a 96-vCPU ebizzy VM and 96 cpu-bound co-runner vCPUs (overcommit 2);
  target: >= 1 simulated s per wall s on one core.
- ``rome-180-hackbench``: the ROME host with one 180-vCPU hackbench VM.

For each: events processed per simulated second, heap pushes (scheduled events)
per simulated second, ns of CPU per processed event, simulated s per CPU s
(``time.process_time``) and per wall s (``time.perf_counter``), each the median
of ``--repeats`` runs (seeds 1..N; the machines are shared and noisy, so CPU time
is the figure to compare), over the window after each scenario's warm-up (ebizzy:
25-40 ms, hackbench: 5-25 ms; about 15 s of CPU in all on a 2-core box).

Loop figures, in the same process: ns per event (one push + one pop + one
handler call that re-schedules itself) for a bare ``heapq`` loop, for this
project's ``model.engine.Engine`` and for SimPy (``simpy``, in the ``test`` extra:
``pip install -e ".[test]"``; reported as missing when it is not installed),
with the same number of pending events and the same delays.

``--events`` adds, per scenario (seed 1, the same window), the event mix: heap
pops per simulated second by handler (``Timer:`` = a re-armable timer's entry,
split into fired and re-filed), and the dead entries of cancelled events --
where "fewer events" (issue 11) has to start.
"""

from __future__ import annotations

import argparse
import collections
import heapq
import statistics
import time

from model import Scenario
from model.engine import Engine, Timer
from model.simulate import build, start

# name: (scenario, warm-up ms, end ms); the figures cover [warm-up, end]
SCENARIOS = {
    "cascadelake-ebizzy-oc2": ({
        "hardware": "cascadelake",
        "topology": {"sockets": 2, "cores_per_socket": 24, "threads_per_core": 2},
        "overcommit": 2.0,
        "vm": {"vcpus": 96},
        "workload": {"kind": "ebizzy"},
        "corunner": {"workload": "cpu-bound"},
    }, 25.0, 40.0),
    "rome-180-hackbench": ({
        "hardware": "rome",
        "topology": {"sockets": 2, "cores_per_socket": 48, "threads_per_core": 2},
        "vm": {"vcpus": 180, "apic": "xapic", "avic": True, "hlt_passthrough": True},
        "workload": {"kind": "hackbench"},
    }, 5.0, 25.0),
}

LOOP_PENDING = 256  # pending events in the loop benchmarks (the goal scenario keeps a few hundred)


DELAYS = 1 << 16  # a table of pseudo-random delays, indexed by a running count


def _delays() -> list[int]:
    """Deterministic pseudo-random delays in [1, 10_000] ns (a 31-bit LCG; no numpy in the loop)."""
    x, out = 12345, []
    for _ in range(DELAYS):
        x = (1103515245 * x + 12345) & 0x7FFFFFFF
        out.append(1 + (x >> 8) % 10_000)
    return out


def loop_heapq(n_events: int) -> float:
    """ns per event of a bare heapq loop: [time, seq, handler, args] entries like the engine's."""
    delays = _delays()
    mask = DELAYS - 1
    heap: list = []
    seq = 0
    now = 0

    def handler(k: int) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(heap, [now + delays[k & mask], seq, handler, (k + 1,)])

    for i in range(LOOP_PENDING):
        seq += 1
        heapq.heappush(heap, [delays[i], seq, handler, (i,)])
    pop = heapq.heappop
    t0 = time.process_time()
    for _ in range(n_events):
        now, _, fn, args = pop(heap)
        fn(*args)
    return (time.process_time() - t0) / n_events * 1e9


def loop_engine(n_events: int) -> float:
    """ns per event of model.engine.Engine with the same pattern."""
    delays = _delays()
    mask = DELAYS - 1
    eng = Engine()

    def handler(k: int) -> None:
        eng.after(delays[k & mask], handler, k + 1)

    for i in range(LOOP_PENDING):
        eng.after(delays[i], handler, i)
    t0 = time.process_time()
    while eng.processed < n_events:  # in chunks of simulated time
        eng.run(eng.now + 1_000_000)
    return (time.process_time() - t0) / eng.processed * 1e9


def loop_simpy(n_events: int) -> float | None:
    """ns per event of SimPy: a timeout event whose callback schedules the next one."""
    try:
        import simpy
    except ImportError:
        return None
    delays = _delays()
    mask = DELAYS - 1
    env = simpy.Environment()

    def fire(ev) -> None:
        k = ev.value
        env.timeout(delays[k & mask], k + 1).callbacks.append(fire)

    for i in range(LOOP_PENDING):
        env.timeout(delays[i], i).callbacks.append(fire)
    step = env.step
    t0 = time.process_time()
    for _ in range(n_events):
        step()
    return (time.process_time() - t0) / n_events * 1e9


def _warmed_up(data: dict, warmup_ms: float, duration_ms: float, seed: int):
    """The scenario's host, started and run to the end of its warm-up."""
    h = build(Scenario.build({**data, "sim": {"duration_ms": duration_ms, "warmup_ms": warmup_ms}}), seed)
    start(h)
    h.engine.run(int(warmup_ms * 1e6))
    return h


def bench_scenario(data: dict, warmup_ms: float, duration_ms: float, seed: int) -> dict[str, float]:
    """One run; the figures cover the window after the warm-up (the goal scenario's ebizzy
    reaches its steady state, lock-holder preemption included, only after ~25 ms)."""
    eng = _warmed_up(data, warmup_ms, duration_ms, seed).engine
    p0, s0 = eng.processed, eng.pushes
    c0, w0 = time.process_time(), time.perf_counter()
    eng.run(int(duration_ms * 1e6))
    cpu, wall = time.process_time() - c0, time.perf_counter() - w0
    sim_s = (duration_ms - warmup_ms) / 1e3
    processed = eng.processed - p0
    return {
        "events_per_sim_s": processed / sim_s,
        "pushes_per_sim_s": (eng.pushes - s0) / sim_s,
        "ns_per_event": cpu / processed * 1e9,
        "sim_s_per_cpu_s": sim_s / cpu,
        "sim_s_per_wall_s": sim_s / wall,
        "cpu_s": cpu,
    }


def event_mix(data: dict, warmup_ms: float, duration_ms: float, seed: int = 1) -> tuple[collections.Counter, float]:
    """Heap pops in the window by what they ran: the engine's own loop (``Engine.run``), unrolled
    here so that each pop can be attributed; returns (counts, simulated seconds)."""
    eng = _warmed_up(data, warmup_ms, duration_ms, seed).engine
    heap, until, mix = eng._heap, int(duration_ms * 1e6), collections.Counter()
    while heap and heap[0][0] <= until:
        time_ns, _, handler, args = heapq.heappop(heap)
        if handler is None:
            mix["(dead: cancelled event)"] += 1
            continue
        eng.now = time_ns
        timer = getattr(handler, "__self__", None)
        if timer.__class__ is Timer:
            refiled, dropped = eng.timer_refiled, timer.deadline < 0
            name = timer.handler.__module__ + "." + timer.handler.__qualname__
            handler(*args)
            what = "re-filed" if eng.timer_refiled > refiled else "dropped" if dropped else "fired"
            mix[f"Timer:{name} ({what})"] += 1
            continue
        handler(*args)
        mix[f"{handler.__module__}.{handler.__qualname__}"] += 1
    eng.now = until
    return mix, (duration_ms - warmup_ms) / 1e3


def print_event_mix(name: str, mix: collections.Counter, sim_s: float, top: int = 12) -> None:
    total = sum(mix.values())
    print(f"\nevent mix, {name} (seed 1): {total / sim_s:,.0f} heap pops per simulated s")
    for what, n in mix.most_common(top):
        print(f"  {n / sim_s:13,.0f} /sim s {100 * n / total:5.1f} %  {what}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--warmup-ms", type=float, help="override every scenario's warm-up (not measured)")
    ap.add_argument("--duration-ms", type=float, help="override every scenario's end time")
    ap.add_argument("--only", choices=list(SCENARIOS))
    ap.add_argument("--loop-events", type=int, default=200_000)
    ap.add_argument("--events", action="store_true", help="also print each scenario's event mix")
    args = ap.parse_args()
    n = args.repeats
    print(f"scenarios: measured window after the warm-up, median of {n} seeds; CPU = time.process_time")
    print(f"{'scenario':24} {'window ms':>10} {'events/sim s':>13} {'pushes/sim s':>13} {'ns/event':>9} "
          f"{'sim s/CPU s':>12} {'sim s/wall s':>12} {'CPU s':>7}")
    mixes = []
    for name, (data, warm, end) in SCENARIOS.items():
        if args.only and name != args.only:
            continue
        warm = args.warmup_ms if args.warmup_ms is not None else warm
        end = args.duration_ms if args.duration_ms is not None else end
        runs = [bench_scenario(data, warm, end, seed) for seed in range(1, n + 1)]
        med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        print(f"{name:24} {f'{warm:g}-{end:g}':>10} {med['events_per_sim_s']:13,.0f} "
              f"{med['pushes_per_sim_s']:13,.0f} {med['ns_per_event']:9,.0f} {med['sim_s_per_cpu_s']:12.5f} "
              f"{med['sim_s_per_wall_s']:12.5f} {med['cpu_s']:7.2f}")
        if args.events:
            mixes.append((name, *event_mix(data, warm, end)))
    for name, mix, sim_s in mixes:
        print_event_mix(name, mix, sim_s)
    print(f"\nloop, ns per event (push + pop + a handler that re-schedules), {LOOP_PENDING} pending, "
          f"{args.loop_events:,} events, median of {n}:")
    for label, fn in (("heapq (bare)", loop_heapq), ("model.engine.Engine", loop_engine), ("simpy", loop_simpy)):
        figures = [fn(args.loop_events) for _ in range(n)]
        if figures[0] is None:
            print(f"  {label:22} MISSING: simpy is not installed (pip install simpy, or pip install -e \".[test]\")")
            continue
        print(f"  {label:22} {statistics.median(figures):8,.0f}")


if __name__ == "__main__":
    main()
