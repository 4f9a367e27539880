"""Launch or resume a sweep: check the output, run the missing points, keep the manifest.

This is the plain-function core of ``sweep launch`` (the command only parses
options and prints).  Resuming is the default: a sweep whose output exists
runs only the points absent from ``runs/``; a changed config is refused with
what changed; ``restart`` deletes what the sweep wrote and starts over.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from sweep import config as config_mod
from sweep import design, manifest, points, rows, runner, store
from sweep.config import SweepConfig
from sweep.progress import NullProgress, ProgressReporter
from sweep.worker import Outcome, load_simulator

COMMIT_INTERVAL_S = 1.0  # finished batches are committed together at most this often (or batch_seconds)
MANIFEST_INTERVAL_S = 30.0  # how often a running sweep refreshes the manifest's counts
MAX_DIFF_LINES = 12  # changed keys listed when a resume is refused


class OutputConflict(Exception):
    """The output holds a different sweep (or something else); ``lines`` say what differs."""

    def __init__(self, output: Path, lines: list[str]):
        self.output = output
        self.lines = lines
        super().__init__(f"{output}: " + "; ".join(lines))


@dataclass(frozen=True, slots=True)
class LaunchResult:
    output: Path
    total: int
    done_before: int
    summary: runner.RunSummary | None
    counts: store.Counts

    @property
    def missing(self) -> int:
        return max(self.total - self.counts.ok - self.counts.error, 0)


def check_output(config: SweepConfig, output: Path) -> None:
    """Raise :class:`OutputConflict` unless ``output`` is empty, absent, or this very sweep."""
    existing = manifest.read(output)
    if existing is not None:
        if existing.get("config_hash") != config.config_hash():
            old = {k: v for k, v in existing.get("config", {}).items() if k not in config_mod.UNHASHED_KEYS}
            changes = config_mod.diff(old, config.hashed_part()) or ["config_hash differs"]
            if len(changes) > MAX_DIFF_LINES:
                changes = [*changes[:MAX_DIFF_LINES], f"... and {len(changes) - MAX_DIFF_LINES} more"]
            raise OutputConflict(
                output, [f"the config changed since this output was written: {c}" for c in changes]
            )
        return
    if (output / store.RUNS_DIR).exists():
        hashes = set(store.read_runs(output, ["config_hash"]).column("config_hash").to_pylist())
        if hashes - {config.config_hash()}:
            raise OutputConflict(output, ["runs/ holds rows of another config and there is no manifest.json"])


@dataclass(slots=True)
class _Tally:
    """Keeps the manifest's counts roughly current during a run (every MANIFEST_INTERVAL_S)."""

    config: SweepConfig
    output: Path
    total: int
    created: str | None
    counts: store.Counts
    written_at: float = field(default_factory=time.monotonic)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        errors = sum(not o.ok for o in outcomes)
        c = self.counts
        n = len(outcomes)
        self.counts = store.Counts(c.ok + n - errors, c.error + errors, c.rows + n, c.distinct + n)
        if time.monotonic() - self.written_at >= MANIFEST_INTERVAL_S:
            manifest.write(self.output, manifest.build(self.config, self.total, self.created, self.counts))
            self.written_at = time.monotonic()


@dataclass(slots=True)
class _Committer:
    """Collects finished batches and commits them together every ``interval_s``.

    One commit writes a file per (hardware, workload) partition for runs and
    for exits; with many workers and short batches, committing each batch
    alone would cost the driver more CPU than it saves in lost work after a
    crash (at most ``interval_s`` of results, which then simply run again).
    """

    output: Path
    stamp: rows.Stamp
    interval_s: float
    tally: _Tally
    points: list[points.Point] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)
    since: float | None = None

    def add(self, batch: Sequence[points.Point], outcomes: Sequence[Outcome]) -> None:
        now = time.monotonic()
        self.since = now if self.since is None else self.since
        self.points.extend(batch)
        self.outcomes.extend(outcomes)
        if now - self.since >= self.interval_s:
            self.flush()

    def flush(self) -> None:
        if self.points:
            store.write_batch(self.output, *rows.tables(self.stamp, self.points, self.outcomes))
            self.tally.add(self.outcomes)
        self.points, self.outcomes, self.since = [], [], None


def write_design(config: SweepConfig, output: Path) -> None:
    """``design.parquet``: sobol/morris sample rows in problem space, for the analysis."""
    matrix = design.sample_matrix(config.space, config.seed)
    if matrix is None or config.space.design not in config_mod.SALIB_DESIGNS:
        return
    names = list(config.space.params)
    columns = {"design_index": pa.array(range(len(matrix)), pa.int64())}
    columns.update({name: pa.array(matrix[:, i], pa.float64()) for i, name in enumerate(names)})
    store.write_table_atomic(output / store.DESIGN_FILE, pa.table(columns))


def launch(
    config: SweepConfig,
    *,
    restart: bool = False,
    simulator: str = "model:simulate",
    progress: ProgressReporter | None = None,
    total: int | None = None,
) -> LaunchResult:
    """Run every missing point of ``config`` into ``config.output``; return what was done.

    Raises :class:`~sweep.config.ConfigError` (impossible points, bad
    simulator) or :class:`OutputConflict` before anything is written.
    """
    progress = progress or NullProgress()
    total = points.check(config) if total is None else total
    try:
        load_simulator(simulator)
    except ValueError as err:
        raise config_mod.ConfigError([f"--simulator: {err}"]) from None
    output = config.output
    if not restart:
        check_output(config, output)
    options = runner.RunOptions(
        batch_seconds=config.run.batch_seconds,
        max_retries=config.run.max_retries,
        fail_fast=config.run.fail_fast,
        address=config.run.address,
        num_cpus=config.run.num_cpus,
        simulator=simulator,
    )
    stamp = rows.Stamp(config.name, config.config_hash())
    with store.locked(output):
        store.recover(output)
        if restart:
            store.remove_outputs(output)
        previous = manifest.read(output)
        created = previous.get("created") if previous else None
        done = store.done_ids(output)
        manifest.write(output, manifest.build(config, total, created, store.counts(output)))
        write_design(config, output)
        summary = None
        missing = total - len(done)
        if missing > 0:
            tally = _Tally(config, output, total, created, store.counts(output))
            interval = min(COMMIT_INTERVAL_S, config.run.batch_seconds)
            committer = _Committer(output, stamp, interval, tally)
            started = runner.start_ray(options.address, options.num_cpus)
            progress.start(total, len(done))
            try:
                summary = runner.execute(
                    points.iter_points(config, skip=done), missing, committer.add, options, progress
                )
            finally:
                committer.flush()  # what finished is kept, on a stop or an error too
                progress.close()
                counts = store.counts(output)
                manifest.write(output, manifest.build(config, total, created, counts))
                if started:
                    runner.stop_ray()
        counts = store.counts(output)
    return LaunchResult(output, total, len(done), summary, counts)
