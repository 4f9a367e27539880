"""Run points on Ray: batches sized from measured simulation time, a bounded number in flight.

The driver takes points lazily, packs them into batches that should each take
about ``batch_seconds`` (the first batches hold one point, to measure), keeps
at most :data:`IN_FLIGHT_PER_WORKER` batches per worker in flight, and hands
every finished batch to a sink (the store) as soon as :func:`ray.wait` returns
it.  Batches are plain Ray tasks with ``max_retries`` for worker death and
``retry_exceptions=False``: a simulation that raises is an error row, never a
retry.  A batch that still fails after Ray's retries is split into single
points; a single point that still kills its worker becomes an error row named
after Ray's exception, so one poisonous point cannot stall a sweep.

SIGINT and SIGTERM ask for a clean stop: nothing new is submitted, finished
batches are still stored, the rest is cancelled.  A second signal aborts.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import signal
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from sweep.points import Point
from sweep.progress import ProgressReporter
from sweep.worker import Outcome, describe, run_batch

IN_FLIGHT_PER_WORKER = 2  # one running, one queued: workers never wait for the driver
WAIT_TIMEOUT_S = 0.5  # how often the driver wakes to check for a stop request
MAX_BATCH_POINTS = 10_000
TAIL_BATCHES_PER_WORKER = 2  # near the end, batches shrink so that the workers finish together
RAY_LOGGING_LEVEL = logging.WARNING

Sink = Callable[[Sequence[Point], Sequence[Outcome]], None]


@dataclass(frozen=True, slots=True)
class RunOptions:
    batch_seconds: float = 5.0
    max_retries: int = 3
    fail_fast: bool = False
    address: str | None = None
    num_cpus: int | None = None
    simulator: str = "model:simulate"


@dataclass(slots=True)
class RunSummary:
    submitted: int = 0
    done: int = 0
    ok: int = 0
    errors: int = 0
    batches: int = 0
    workers: int = 0
    elapsed_s: float = 0.0
    sim_s: float = 0.0  # summed wall time of the simulate calls
    stopped: str | None = None  # "interrupted" | "fail-fast" | None
    batch_sizes: list[int] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.done / self.elapsed_s if self.elapsed_s > 0 else 0.0


# -- Ray ---------------------------------------------------------------------------------------


def start_ray(address: str | None, num_cpus: int | None) -> bool:
    """Join ``address`` (or ``RAY_ADDRESS``) or start Ray in-process; True if we started it.

    A Ray already initialised in this process is used as it is.
    """
    import ray

    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    common = {"logging_level": RAY_LOGGING_LEVEL, "log_to_driver": False, "configure_logging": True}
    if address:
        ray.init(address=address, **common)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, **common)
    return True


def cluster_workers(num_cpus: int | None) -> int:
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1)) or 1
    return max(1, min(cpus, num_cpus) if num_cpus else cpus)


# -- batching ----------------------------------------------------------------------------------


@dataclass(slots=True)
class Batcher:
    """Batch sizes from the measured mean simulation time (one point until measured)."""

    batch_seconds: float
    workers: int
    points_timed: int = 0
    seconds_timed: float = 0.0

    def observe(self, outcomes: Sequence[Outcome]) -> None:
        walls = [o.wall_s for o in outcomes if math.isfinite(o.wall_s)]
        self.points_timed += len(walls)
        self.seconds_timed += sum(walls)

    def size(self, remaining: int | None) -> int:
        if self.points_timed == 0:
            return 1
        mean = max(self.seconds_timed / self.points_timed, 1e-6)
        n = max(1, min(MAX_BATCH_POINTS, round(self.batch_seconds / mean)))
        if remaining is not None:
            n = min(n, max(1, math.ceil(remaining / (self.workers * TAIL_BATCHES_PER_WORKER))))
        return n


# -- stop requests ------------------------------------------------------------------------------


class StopFlag:
    """Set by the first SIGINT/SIGTERM; the second one raises KeyboardInterrupt."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __bool__(self) -> bool:
        return self.reason is not None

    def set(self, reason: str) -> None:
        self.reason = self.reason or reason


@contextlib.contextmanager
def catch_stop_signals(flag: StopFlag, on_first: Callable[[], None]) -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        if flag:
            raise KeyboardInterrupt
        flag.set("interrupted")
        on_first()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# -- the loop ---------------------------------------------------------------------------------------


def execute(
    points: Iterable[Point],
    total_missing: int,
    sink: Sink,
    options: RunOptions,
    progress: ProgressReporter,
) -> RunSummary:
    """Run ``points`` on the current Ray cluster; ``sink`` gets each finished batch."""
    import ray
    from ray.exceptions import RayError

    remote = ray.remote(run_batch).options(
        max_retries=options.max_retries, retry_exceptions=False, num_cpus=1, name="sweep-batch"
    )
    workers = cluster_workers(options.num_cpus)
    summary = RunSummary(workers=workers)
    batcher = Batcher(options.batch_seconds, workers)
    source = iter(points)
    retry: deque[Point] = deque()  # points of crashed batches, rerun one at a time
    pending: dict[object, list[Point]] = {}
    stop = StopFlag()
    max_in_flight = workers * IN_FLIGHT_PER_WORKER
    start = time.perf_counter()

    def submit(batch: list[Point]) -> None:
        ref = remote.remote(options.simulator, [(p.point_id, p.scenario, p.seed) for p in batch])
        pending[ref] = batch
        summary.submitted += len(batch)
        summary.batches += 1
        summary.batch_sizes.append(len(batch))

    def handle(batch: list[Point], outcomes: Sequence[Outcome]) -> None:
        sink(batch, outcomes)
        batcher.observe(outcomes)
        errors = sum(not o.ok for o in outcomes)
        summary.done += len(outcomes)
        summary.errors += errors
        summary.ok += len(outcomes) - errors
        summary.sim_s += sum(o.wall_s for o in outcomes if math.isfinite(o.wall_s))
        progress.advance(len(outcomes), errors)
        if errors and options.fail_fast:
            stop.set("fail-fast")

    def collect(ref: object) -> None:
        batch = pending.pop(ref)
        try:
            outcomes = ray.get(ref)
        except RayError as err:
            if stop:
                return  # stopping: these points stay missing and run next time
            if len(batch) > 1:
                retry.extend(batch)
                return
            outcomes = [Outcome.failed(batch[0].point_id, type(err).__name__, describe(err))]
        handle(batch, outcomes)

    with catch_stop_signals(stop, progress.stopping):
        try:
            exhausted = False
            while True:
                while not stop and len(pending) < max_in_flight:
                    if retry:
                        submit([retry.popleft()])
                        continue
                    if exhausted:
                        break
                    n = batcher.size(total_missing - summary.submitted)
                    batch = list(itertools.islice(source, n))
                    if not batch:
                        exhausted = True
                        break
                    submit(batch)
                if not pending:
                    break
                ready, _ = ray.wait(list(pending), num_returns=1, timeout=WAIT_TIMEOUT_S)
                for ref in ready:
                    collect(ref)
                progress.refresh()
                if stop:
                    break
        finally:
            _finish(pending, collect, stop)
    summary.elapsed_s = time.perf_counter() - start
    summary.stopped = stop.reason
    return summary


def _finish(pending: dict[object, list[Point]], collect: Callable[[object], None], stop: StopFlag) -> None:
    """Store batches that already finished; cancel the others."""
    import ray

    if not pending:
        return
    refs = list(pending)
    ready, rest = ray.wait(refs, num_returns=len(refs), timeout=0)
    stop.set("interrupted")
    for ref in ready:
        collect(ref)
    for ref in rest:
        with contextlib.suppress(Exception):
            ray.cancel(ref, force=True)
        pending.pop(ref, None)
