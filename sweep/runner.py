"""Run points on Ray: batches sized from measured simulation time, a bounded number in flight.

The driver takes points lazily (shuffled within a sliding window, see
:func:`interleave`) and packs them into batches that should each take about
``batch_seconds`` (the first batches hold one point, to measure).  It keeps
:data:`IN_FLIGHT_PER_WORKER` batches per worker in flight, so a worker never
waits for the driver (exactly one per worker when ``num_cpus`` caps the
workers of a bigger cluster), and hands every finished batch to a sink as
soon as :func:`ray.wait` returns it, after refilling the workers.

Batches are plain Ray tasks with ``max_retries`` for worker death and
``retry_exceptions=False``: a simulation that raises is an error row, never a
retry.  A batch that still fails after Ray's retries is split into single
points; a single point that still kills its worker becomes an error row named
after Ray's exception, so one poisonous point cannot stall a sweep.

SIGINT and SIGTERM ask for a clean stop: nothing new is submitted, finished
batches are still stored, the rest is cancelled.  A second signal aborts.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import itertools
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep.points import Point
from sweep.progress import ProgressReporter
from sweep.worker import Outcome, describe, run_batch

IN_FLIGHT_PER_WORKER = 2  # one running, one queued: workers never wait for the driver
WAIT_TIMEOUT_S = 0.5  # how often the driver wakes to check for a stop request
MAX_BATCH_POINTS = 2_000  # bounds a task's arguments (~2.4 kB per pickled scenario)
TAIL_BATCHES_PER_WORKER = 2
# Points are submitted in a shuffled order within a sliding window of this many points: design
# order groups costly points together (all hackbench, then all cpu-bound), which skews the
# measured mean time and leaves one worker with the costly batches at the end.  Order does
# not change any result (seeds do not depend on it).
SHUFFLE_WINDOW = 2048
SHUFFLE_SEED = 0  # near the end, batches shrink so that the workers finish together
RAY_LOGGING_LEVEL = logging.WARNING
# Ray warns at every start that token authentication is on (the secure default); that is not news.
RAY_NOTICE_LOGGER = "ray._private.authentication.authentication_token_setup"
RAY_NOTICE_PREFIX = "Token authentication is enabled for this Ray cluster"

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

    A Ray already initialised in this process is used as it is.  Joining a
    cluster is plain ``ray.init(address=...)``.  An in-process Ray is a
    :class:`LocalSession`: loopback only, its own temp dir, cleaned up when
    the launcher stops or dies.  Call :func:`stop_ray` when done (it also
    runs at interpreter exit).
    """
    import ray

    if ray.is_initialized():
        return False
    stop_ray()  # the leftovers of an in-process Ray shut down with a bare ray.shutdown()
    _quiet_ray_notices()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        _use_local_token()
        with no_cluster_mode() if loopback_only(address) else contextlib.nullcontext():
            ray.init(address=address, **RAY_COMMON)
    else:
        global _local
        _local = LocalSession.start(num_cpus or os.cpu_count() or 1)
        atexit.unregister(stop_ray)  # once, however many launches this process makes
        atexit.register(stop_ray)
    return True


def stop_ray() -> None:
    """Shut down the Ray this process started (and, for an in-process one, everything it left)."""
    global _local
    import ray

    if ray.is_initialized():
        ray.shutdown()
    if _local is not None:
        session, _local = _local, None
        session.close()


RAY_COMMON: dict[str, Any] = {
    "logging_level": RAY_LOGGING_LEVEL,
    "log_to_driver": False,
    "configure_logging": True,
}
LOOPBACK = "127.0.0.1"
# Ray's own switch for a machine that is no cluster (its default on macOS and Windows): the local
# node IP is the loopback address (ray._private.services.get_node_ip_address), so that GCS, raylet,
# object manager, core workers and agents bind 127.0.0.1 (ray-project/ray#59852: servers bind the
# node IP, not 0.0.0.0).  ``ray.init(_node_ip_address="127.0.0.1")`` alone is not enough: ray.init
# maps a loopback address to the external one (services.resolve_ip_for_localhost) unless this is off.
NO_CLUSTER_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
PROBE_TIMEOUT_S = 2.0  # a local port that does not answer at once is not there
WATCHDOG_STOP_TIMEOUT_S = 35.0  # watchdog.KILL_WINDOW_S plus its start-up
MAX_TEMP_PARENT_CHARS = 40  # Ray's Unix socket paths (<temp>/session_<date>_<pid>/sockets/...) must fit 107 bytes


@dataclass
class LocalSession:
    """An in-process Ray that is a good citizen of the machine it runs on.

    - **Loopback only**: every Ray process listens on 127.0.0.1 (:data:`NO_CLUSTER_ENV`).
    - **No dashboard**: ``include_dashboard=False``.  Ray still starts, and needs, the per-node
      ``DashboardAgent`` and ``RuntimeEnvAgent`` (the raylet fate-shares with them and asks the
      latter for every worker's environment; ray-project/ray#19420 declined to make them optional)
      and a head-side API process; on loopback, none of them serves a UI.
    - **Its own temp dir** (``_temp_dir``), removed at the end, so no ``/tmp/ray/session_*`` is left.
    - **Cleaned up when the launcher dies**, SIGKILL included, by :mod:`sweep.watchdog`: every
      process of the session carries a random mark in its environment, and the watchdog kills the
      marked processes and removes the temp dir as soon as the launcher's end of its pipe closes.
    """

    temp_dir: Path
    watchdog: subprocess.Popen[bytes]

    @staticmethod
    def start(num_cpus: int) -> LocalSession:
        import ray

        from sweep import watchdog as watchdog_mod

        parent = tempfile.gettempdir()
        temp_dir = Path(
            tempfile.mkdtemp(prefix="kvmsweep-ray-", dir=parent if len(parent) <= MAX_TEMP_PARENT_CHARS else "/tmp")
        )
        mark = uuid.uuid4().hex
        env = {k: v for k, v in os.environ.items() if k != watchdog_mod.MARK_ENV}
        watchdog = subprocess.Popen(
            [sys.executable, "-I", watchdog_mod.__file__, mark, str(temp_dir), str(os.getpid())],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env=env,
            start_new_session=True,  # a Ctrl-C to the launcher's process group does not reach it
        )
        session = LocalSession(temp_dir, watchdog)
        try:
            # The mark is inherited by every process ray.init starts, and by theirs.
            with no_cluster_mode({watchdog_mod.MARK_ENV: mark}):
                ray.init(
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    _node_ip_address=LOOPBACK,
                    _temp_dir=str(temp_dir),
                    **RAY_COMMON,
                )
        except BaseException:
            with contextlib.suppress(Exception):
                ray.shutdown()
            session.close()
            raise
        return session

    def close(self) -> None:
        """Let the watchdog kill what Ray left and remove the temp dir; wait for it."""
        if self.watchdog.stdin is not None:
            with contextlib.suppress(OSError):
                self.watchdog.stdin.close()
        try:
            self.watchdog.wait(WATCHDOG_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.watchdog.kill()
            self.watchdog.wait()
        shutil.rmtree(self.temp_dir, ignore_errors=True)


_local: LocalSession | None = None


@contextlib.contextmanager
def no_cluster_mode(extra_env: dict[str, str] | None = None) -> Iterator[None]:
    """Ray's node IP is 127.0.0.1 while this lasts (:data:`NO_CLUSTER_ENV`), for this process and
    the processes it starts; ``extra_env`` is added to their environment too."""
    from ray._private import ray_constants

    added = {**NO_CLUSTER_ENV, **(extra_env or {})}
    saved_env = {k: os.environ.get(k) for k in added}
    saved_flag = ray_constants.ENABLE_RAY_CLUSTER
    os.environ.update(added)
    ray_constants.ENABLE_RAY_CLUSTER = False  # read at each call; the env var only at import
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def loopback_only(address: str) -> bool:
    """Whether ``address`` is a GCS on 127.0.0.1 that this machine's external IP does not reach.

    Ray joins a loopback address through the machine's external IP
    (``services.canonicalize_bootstrap_address``), as if the head were bound
    there; that is right for a head started with plain ``ray start --head``.  A head started on
    loopback only (a :class:`LocalSession`, or ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 ray start
    --head``) is joined on loopback instead.  Decided by one TCP probe of the external IP, so
    joining a remote cluster is exactly ``ray.init(address=...)``.
    """
    import ipaddress

    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not port.isdigit() or "://" in address:
        return False
    try:
        if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
            return False
    except ValueError:  # a host name: not loopback
        return False
    from ray._private import services

    external = services.get_node_ip_address()  # 127.0.0.1 itself on a machine without another address
    try:
        socket.create_connection((external, int(port)), timeout=PROBE_TIMEOUT_S).close()
    except OSError:
        return True
    return False


def _use_local_token() -> None:
    """Send the local Ray auth token (``~/.ray/auth_token``) when joining a cluster.

    A local ``ray.init()`` turns token authentication on by itself when a token
    exists; joining an existing cluster does not, and a head started with
    ``ray start`` on this machine then refuses the driver.  This applies Ray's
    own rule for local clusters; ``RAY_AUTH_MODE``, if set, still decides.
    """
    try:
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )
    except ImportError:  # another Ray version: leave authentication to Ray
        return
    maybe_enable_token_auth_if_token_available(warn_if_disabled=False)


def _quiet_ray_notices() -> None:
    notice = logging.getLogger(RAY_NOTICE_LOGGER)
    if not any(isinstance(f, _DropNotice) for f in notice.filters):
        notice.addFilter(_DropNotice())


class _DropNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(RAY_NOTICE_PREFIX)


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
        if remaining is not None and self.workers > 1:
            # Shrink near the end so that workers finish together.  By count, not by the mean:
            # the first few points measured may be far from typical.
            n = min(n, max(1, math.ceil(remaining / (self.workers * TAIL_BATCHES_PER_WORKER))))
        return n


def interleave(points: Iterable[Point], window: int, seed: int) -> Iterator[Point]:
    """``points`` in a random order within a sliding window of ``window`` (a streaming shuffle)."""
    rng = random.Random(seed)
    buffer: list[Point] = []
    for point in points:
        buffer.append(point)
        if len(buffer) >= window:
            i = rng.randrange(len(buffer))
            buffer[i], buffer[-1] = buffer[-1], buffer[i]
            yield buffer.pop()
    rng.shuffle(buffer)
    yield from buffer


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


def in_flight_limit(workers: int, cluster_cpus: int) -> int:
    """Batches in flight: a queued one per worker, or exactly ``workers`` when capping a bigger cluster."""
    return workers * IN_FLIGHT_PER_WORKER if workers >= cluster_cpus else workers


@dataclass
class _Dispatch:
    """The state of one :func:`execute`: what is in flight, what to retry, what was done."""

    remote: Any
    source: Iterator[Point]
    total_missing: int
    sink: Sink
    options: RunOptions
    progress: ProgressReporter
    summary: RunSummary
    batcher: Batcher
    max_in_flight: int
    stop: StopFlag = field(default_factory=StopFlag)
    pending: dict[Any, list[Point]] = field(default_factory=dict)
    retry: deque[Point] = field(default_factory=deque)  # points of crashed batches, rerun one at a time
    submitted: int = 0
    exhausted: bool = False

    def top_up(self) -> None:
        """Submit batches until the in-flight limit (or the points) run out."""
        while not self.stop and len(self.pending) < self.max_in_flight:
            if self.retry:
                self._submit([self.retry.popleft()])
                continue
            if self.exhausted:
                return
            batch = list(
                itertools.islice(self.source, self.batcher.size(self.total_missing - self.submitted))
            )
            if not batch:
                self.exhausted = True
                return
            self.submitted += len(batch)
            self._submit(batch)

    def _submit(self, batch: list[Point]) -> None:
        ref = self.remote.remote(self.options.simulator, [(p.point_id, p.scenario, p.seed) for p in batch])
        self.pending[ref] = batch
        self.summary.batches += 1
        self.summary.batch_sizes.append(len(batch))

    def fetch(self, ref: Any) -> tuple[list[Point], Sequence[Outcome]] | None:
        """A finished batch's outcomes; None when its points were queued for retry (or dropped on stop)."""
        import ray
        from ray.exceptions import RayError

        batch = self.pending.pop(ref)
        try:
            outcomes = ray.get(ref)
        except RayError as err:
            if self.stop:
                return None  # stopping: these points stay missing and run next time
            if len(batch) > 1:
                self.retry.extend(batch)
                return None
            outcomes = [Outcome.failed(batch[0].point_id, type(err).__name__, describe(err))]
        self.batcher.observe(outcomes)
        return batch, outcomes

    def store(self, batch: list[Point], outcomes: Sequence[Outcome]) -> None:
        self.sink(batch, outcomes)
        errors = sum(not o.ok for o in outcomes)
        summary = self.summary
        summary.done += len(outcomes)
        summary.errors += errors
        summary.ok += len(outcomes) - errors
        summary.sim_s += sum(o.wall_s for o in outcomes if math.isfinite(o.wall_s))
        self.progress.advance(len(outcomes), errors)
        if errors and self.options.fail_fast:
            self.stop.set("fail-fast")

    def step(self) -> bool:
        """Wait for finished batches, refill, then store them; False when all is done."""
        import ray

        self.top_up()
        if not self.pending:
            return False
        ready, _ = ray.wait(list(self.pending), num_returns=1, timeout=WAIT_TIMEOUT_S)
        finished = [f for f in (self.fetch(ref) for ref in ready) if f is not None]
        self.top_up()  # keep the workers busy while the driver writes
        for batch, outcomes in finished:
            self.store(batch, outcomes)
        self.progress.refresh()
        return not self.stop

    def finish(self) -> None:
        """Store batches that already finished; cancel the others."""
        import ray

        if not self.pending:
            return
        self.stop.set("interrupted")
        refs = list(self.pending)
        ready, rest = ray.wait(refs, num_returns=len(refs), timeout=0)
        for ref in ready:
            done = self.fetch(ref)
            if done is not None:
                self.store(*done)
        for ref in rest:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
            self.pending.pop(ref, None)


@functools.cache
def _remote_batch() -> Any:
    """``run_batch`` as a Ray remote function, made once per process (Ray exports it once per job)."""
    import ray

    return ray.remote(run_batch)


def execute(
    points: Iterable[Point],
    total_missing: int,
    sink: Sink,
    options: RunOptions,
    progress: ProgressReporter,
) -> RunSummary:
    """Run ``points`` on the current Ray cluster; ``sink`` gets each finished batch."""

    remote = _remote_batch().options(
        max_retries=options.max_retries, retry_exceptions=False, num_cpus=1, name="sweep-batch"
    )
    cluster_cpus = cluster_workers(None)
    workers = cluster_workers(options.num_cpus)
    dispatch = _Dispatch(
        remote=remote,
        source=interleave(points, SHUFFLE_WINDOW, SHUFFLE_SEED),
        total_missing=total_missing,
        sink=sink,
        options=options,
        progress=progress,
        summary=RunSummary(workers=workers),
        batcher=Batcher(options.batch_seconds, workers),
        max_in_flight=in_flight_limit(workers, cluster_cpus),
    )
    start = time.perf_counter()
    with catch_stop_signals(dispatch.stop, progress.stopping):
        try:
            while dispatch.step():
                pass
        finally:
            dispatch.finish()
    dispatch.summary.elapsed_s = time.perf_counter() - start
    dispatch.summary.stopped = dispatch.stop.reason
    return dispatch.summary
