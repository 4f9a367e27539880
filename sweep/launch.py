"""Launch or resume a sweep: check the output, run the missing points, keep the manifest.

This is the plain-function core of ``sweep launch`` (the command only parses
options and prints).  Resuming is the default: a sweep whose output exists
runs only the points absent from ``runs/``; a changed config is refused with
what changed; ``restart`` deletes what this sweep wrote (and nothing else) and
starts over.

Everything that can refuse a launch is checked before anything is written:
the config and its design, the simulator, the output location (a directory,
writable), what the output holds (this sweep's manifest and data files only;
a foreign file in ``runs/`` or ``exits/`` is refused, never deleted), and the
Ray cluster (reachable).  A refusal leaves the output as it was (the ``.lock``
a refused launch created is removed again).  The runs dataset is read once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep import config as config_mod
from sweep import design, manifest, points, rows, runner, store
from sweep.config import SweepConfig
from sweep.errors import EXIT_CLUSTER, OutputError, UserError, os_problem
from sweep.progress import NullProgress, ProgressReporter
from sweep.worker import Outcome, load_simulator

COMMIT_INTERVAL_S = 1.0  # finished batches are committed together at most this often (or batch_seconds)
MANIFEST_INTERVAL_S = 30.0  # how often a running sweep refreshes the manifest's counts
MAX_DIFF_LINES = 12  # changed keys listed when a resume is refused
MAX_LISTED_FILES = 5  # foreign files named when a launch is refused
CONNECT_TIMEOUT_S = 5.0  # probe of a cluster address before Ray is asked to join it (Ray waits minutes)
# The data files the store writes: ``hardware=H/workload=W/<batch id>-<i>.parquet``, the batch id from
# :func:`sweep.store.new_batch_id` (``part`` for a batch, ``compact`` for a compacted file).
DATA_FILE = re.compile(r"^hardware=[^/]+/workload=[^/]+/(part|compact)-\d{20}-[0-9a-f]{8}-\d+\.parquet$")
OWN_FILES = (manifest.MANIFEST_FILE, store.DESIGN_FILE)  # besides the data files and .staging/


class OutputConflict(UserError):
    """The output holds a different sweep, or something that is not a sweep's; ``lines`` say what."""

    def __init__(self, output: Path, lines: list[str], hint: str = ""):
        self.output = output
        super().__init__(lines, f"sweep: refusing to use {output}", hint)

    @property
    def lines(self) -> list[str]:
        return self.problems


class ClusterError(UserError):
    """The Ray cluster cannot be reached or joined."""

    exit_code = EXIT_CLUSTER


@dataclass(frozen=True, slots=True)
class LaunchResult:
    output: Path
    total: int
    done_before: int
    summary: runner.RunSummary | None
    counts: store.Counts
    invalid: points.Invalid = field(default_factory=points.Invalid)

    @property
    def missing(self) -> int:
        return max(self.total - self.counts.ok - self.counts.error, 0)


# -- what the output holds ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutputState:
    """One look at an output: its manifest, its data files (ours and foreign), the runs' counts."""

    manifest: dict[str, Any] | None
    ours: tuple[Path, ...]  # relative to the output
    foreign: tuple[Path, ...]
    done: frozenset[str]
    hashes: frozenset[str]
    counts: store.Counts

    @staticmethod
    def empty() -> OutputState:
        return OutputState(None, (), (), frozenset(), frozenset(), store.Counts(0, 0, 0, 0))


def check_output_path(output: Path) -> None:
    """Raise :class:`OutputError` unless ``output`` is (or can be made) a writable directory."""
    if output.exists() and not output.is_dir():
        raise OutputError(f"{output}: exists and is not a directory; give a directory with -o")
    parent = output
    while not parent.exists():
        if parent.parent == parent:
            break
        parent = parent.parent
    if parent != output and not parent.is_dir():
        raise OutputError(f"{output}: {parent} is a file, not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{output}: {parent} is not writable")


def read_manifest(output: Path) -> dict[str, Any] | None:
    """The output's manifest, or None; :class:`OutputConflict` if it is not a sweep's manifest."""
    try:
        data = manifest.read(output)
    except (OSError, ValueError) as err:  # unreadable, not JSON, not UTF-8
        reason = os_problem(manifest.path(output), err) if isinstance(err, OSError) else str(err)
        raise OutputConflict(
            output, [f"{manifest.MANIFEST_FILE} is not a sweep manifest ({reason})"]
        ) from None
    if data is None:
        return None
    missing = [k for k in ("name", "config_hash", "counts") if not isinstance(data, dict) or k not in data]
    total = (
        data.get("counts", {}).get("total")
        if isinstance(data, dict) and isinstance(data.get("counts"), dict)
        else None
    )
    if missing or not isinstance(total, int):
        what = f"lacks {', '.join(missing)}" if missing else "has no counts.total"
        raise OutputConflict(output, [f"{manifest.MANIFEST_FILE} is not a sweep manifest (it {what})"])
    return data


def survey_files(output: Path) -> tuple[list[Path], list[Path]]:
    """Files under ``runs/`` and ``exits/``: (the store's data files, anything else)."""
    ours: list[Path] = []
    foreign: list[Path] = []
    for top in (store.RUNS_DIR, store.EXITS_DIR):
        root = output / top
        if not root.is_dir():
            if root.exists():
                foreign.append(root.relative_to(output))
            continue
        for path in sorted(root.rglob("*")):
            if path.is_dir() and not path.is_symlink():
                continue
            rel = path.relative_to(root).as_posix()
            ok = DATA_FILE.match(rel) and path.is_file() and not path.is_symlink()
            (ours if ok else foreign).append(path.relative_to(output))
    return ours, foreign


def read_own_runs(output: Path, files: Sequence[Path], columns: list[str]) -> Any:
    """The given columns of the runs in the store's own data files (foreign files are never read);
    :class:`OutputConflict` if one cannot be read."""
    import pyarrow.dataset as ds

    runs_dir = output / store.RUNS_DIR
    paths = [str(output / p) for p in files if p.parts[0] == store.RUNS_DIR]
    if not paths:
        return store.runs_schema().empty_table().select(columns)
    try:
        dataset = ds.dataset(
            paths,
            schema=store.runs_schema(),
            format="parquet",
            partitioning=store.PARTITIONING,
            partition_base_dir=str(runs_dir),
        )
        return dataset.to_table(columns=columns)
    except Exception as err:  # noqa: BLE001 - pyarrow's errors for unreadable files have no common base
        raise OutputConflict(output, [f"runs/ cannot be read ({type(err).__name__}: {err})"]) from None


def survey(output: Path) -> OutputState:
    """Look at ``output`` once: manifest, data files, and (when every file is ours) the runs."""
    if not output.exists():
        return OutputState.empty()
    info = read_manifest(output)
    ours, foreign = survey_files(output)
    table = read_own_runs(output, ours, ["point_id", "status", "config_hash"])
    ids = table.column("point_id").to_pylist()
    status = table.column("status").to_pylist()
    ok = status.count(store.STATUS_OK)
    counts = store.Counts(
        ok=ok, error=status.count(store.STATUS_ERROR), rows=len(ids), distinct=len(set(ids))
    )
    hashes = frozenset(table.column("config_hash").to_pylist())
    return OutputState(info, tuple(ours), tuple(foreign), frozenset(ids), hashes, counts)


def _listed(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:MAX_LISTED_FILES])
    return shown + (f" and {len(paths) - MAX_LISTED_FILES} more" if len(paths) > MAX_LISTED_FILES else "")


def conflicts(config: SweepConfig, output: Path, state: OutputState, *, restart: bool) -> list[str]:
    """Why ``output`` cannot take this launch (empty if it can)."""
    if state.foreign:
        return [
            (
                f"runs/ or exits/ hold files that are not this sweep's data ({_listed(state.foreign)}); "
                "move them elsewhere (nothing was deleted)"
            )
        ]
    info = state.manifest
    if info is None:
        if state.ours:
            return ["runs/ or exits/ hold data but there is no manifest.json: not an output of this sweep"]
        if restart and output.exists() and any(p.name != store.LOCK_FILE for p in output.iterdir()):
            return [
                (
                    "not a sweep output (no manifest.json); --restart deletes only the files a sweep's "
                    "manifest stands for (nothing was deleted)"
                )
            ]
        return []
    if restart:
        if info.get("name") != config.name:
            return [
                f"it holds sweep {info.get('name')!r}, not {config.name!r}; --restart only starts the same sweep over"
            ]
        return []
    if info.get("config_hash") != config.config_hash():
        old = {k: v for k, v in (info.get("config") or {}).items() if k not in config_mod.UNHASHED_KEYS}
        changes = config_mod.diff(old, config.hashed_part()) or ["config_hash differs"]
        if len(changes) > MAX_DIFF_LINES:
            changes = [*changes[:MAX_DIFF_LINES], f"... and {len(changes) - MAX_DIFF_LINES} more"]
        return [f"the config changed since this output was written: {c}" for c in changes]
    if state.hashes - {config.config_hash()}:
        return ["runs/ holds rows of another config than its manifest's"]
    return []


def check_output(config: SweepConfig, output: Path, *, restart: bool = False) -> OutputState:
    """Survey ``output`` and raise :class:`OutputConflict` unless this launch may use it."""
    state = survey(output)
    problems = conflicts(config, output, state, restart=restart)
    if problems:
        hint = (
            ""
            if restart or state.foreign or state.manifest is None
            else "Use --restart to start over, or another --output."
        )
        raise OutputConflict(output, problems, hint)
    return state


def remove_own_files(output: Path, state: OutputState) -> None:
    """Delete what this sweep wrote (``--restart``): its data files, manifest, design, staging;
    then the partition directories left empty.  Nothing else."""
    for rel in state.ours:
        with contextlib.suppress(FileNotFoundError):
            (output / rel).unlink()
    for name in OWN_FILES:
        with contextlib.suppress(FileNotFoundError):
            (output / name).unlink()
    shutil.rmtree(output / store.STAGING_DIR, ignore_errors=True)
    for top in (store.RUNS_DIR, store.EXITS_DIR):
        root = output / top
        if root.is_dir():
            for path in sorted(root.rglob("*"), key=lambda p: -len(p.parts)):
                with contextlib.suppress(OSError):
                    path.rmdir()  # only empty directories go
            with contextlib.suppress(OSError):
                root.rmdir()


# -- Ray ----------------------------------------------------------------------------------------


def check_address(address: str | None) -> None:
    """Raise :class:`ClusterError` unless ``address`` (HOST:PORT, ray://HOST:PORT) accepts a connection."""
    if not address or address == "auto":
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterError(f"--address {address!r}: expected auto, HOST:PORT or ray://HOST:PORT")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ClusterError(
            f"cannot reach the Ray cluster at {address} ({reason}); is its head running (`ray start --head`)? "
            "Nothing was written."
        ) from None


def join_ray(address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray (see :func:`sweep.runner.start_ray`); True if started here."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    check_address(address)
    try:
        return runner.start_ray(address, num_cpus)
    except Exception as err:  # noqa: BLE001 - Ray raises assorted types for a cluster it cannot join
        where = f"the Ray cluster at {address}" if address else "Ray in this process"
        raise ClusterError(
            f"cannot start or join {where} ({type(err).__name__}: {err}); nothing was written"
        ) from None


@contextlib.contextmanager
def claimed(output: Path) -> Iterator[None]:
    """Hold the output's lock; if the body fails before writing, remove the lock file (and the
    directory) this call created, so that a refused launch leaves nothing behind.

    Another process holding the lock is an :class:`OutputConflict`; a location the
    file system refuses (read-only, full, under /proc) an :class:`~sweep.errors.OutputError`.
    """
    created_dir = not output.exists()
    created_lock = not (output / store.LOCK_FILE).exists()
    try:
        with contextlib.ExitStack() as stack:
            try:
                stack.enter_context(store.locked(output))
            except RuntimeError as err:
                raise OutputConflict(output, [f"in use: {err}"]) from None
            except OSError as err:
                raise OutputError(f"{output}: cannot create or lock it ({os_problem(output, err)})") from None
            yield
    except BaseException:
        if created_lock:
            with contextlib.suppress(OSError):
                (output / store.LOCK_FILE).unlink()
        if created_dir:
            with contextlib.suppress(OSError):
                output.rmdir()  # only if nothing else is in it
        raise


# -- running ------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """Keeps the counts current (no re-reading the dataset) and the manifest's roughly so."""

    config: SweepConfig
    output: Path
    total: int
    created: str | None
    counts: store.Counts
    clock: manifest.Clock | None = None  # the real elapsed time of the launches, kept in the manifest
    written_at: float = field(default_factory=time.monotonic)

    def add(self, outcomes: Sequence[Outcome]) -> None:
        errors = sum(not o.ok for o in outcomes)
        c = self.counts
        n = len(outcomes)
        self.counts = store.Counts(c.ok + n - errors, c.error + errors, c.rows + n, c.distinct + n)
        if time.monotonic() - self.written_at >= MANIFEST_INTERVAL_S:
            self.write()

    def write(self) -> None:
        manifest.write(
            self.output, manifest.build(self.config, self.total, self.created, self.counts, self.clock)
        )
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
    if config.space.design not in config_mod.SALIB_DESIGNS:
        return
    import pyarrow as pa

    matrix = design.sample_matrix(config.space, config.seed)
    assert matrix is not None
    names = list(config.space.params)
    columns = {"design_index": pa.array(range(len(matrix)), pa.int64())}
    columns.update({name: pa.array(matrix[:, i], pa.float64()) for i, name in enumerate(names)})
    store.write_table_atomic(output / store.DESIGN_FILE, pa.table(columns))


def _options(config: SweepConfig, simulator: str) -> runner.RunOptions:
    run = config.run
    return runner.RunOptions(
        batch_seconds=run.batch_seconds,
        max_retries=run.max_retries,
        fail_fast=run.fail_fast,
        address=run.address,
        num_cpus=run.num_cpus,
        simulator=simulator,
    )


def launch(
    config: SweepConfig,
    *,
    restart: bool = False,
    simulator: str = "model:simulate",
    progress: ProgressReporter | None = None,
    total: int | None = None,
) -> LaunchResult:
    """Run every missing point of ``config`` into ``config.output``; return what was done.

    Raises :class:`~sweep.config.ConfigError` (impossible points, bad simulator),
    :class:`~sweep.errors.OutputError` (an unusable location), :class:`OutputConflict`
    (another sweep's or foreign files) or :class:`ClusterError` before anything is written.
    """
    progress = progress or NullProgress()
    total = points.check(config) if total is None else total
    try:
        load_simulator(simulator)
    except ValueError as err:
        raise config_mod.ConfigError([f"--simulator: {err}"]) from None
    output = config.output
    check_output_path(output)
    options = _options(config, simulator)
    started = False
    try:
        with claimed(output):
            store.recover(output)
            clock = manifest.Clock()  # real elapsed time from here, Ray's start included
            state = check_output(config, output, restart=restart)
            missing = total if restart else total - len(state.done)
            if missing > 0:
                started = join_ray(options.address, options.num_cpus)
            if restart:
                remove_own_files(output, state)
                state = OutputState.empty()
            created = state.manifest.get("created") if state.manifest else None
            tally = _Tally(config, output, total, created, state.counts, clock.follows(state.manifest))
            tally.write()
            write_design(config, output)
            summary, invalid = None, points.Invalid()
            if missing > 0:
                committer = _Committer(
                    output,
                    rows.Stamp(config.name, config.config_hash(), clock.code_version),
                    min(COMMIT_INTERVAL_S, config.run.batch_seconds),
                    tally,
                )
                progress.start(total, len(state.done))
                try:
                    summary = runner.execute(
                        points.iter_points(config, skip=state.done, invalid=invalid),
                        missing,
                        committer.add,
                        options,
                        progress,
                    )
                finally:
                    committer.flush()  # what finished is kept, on a stop or an error too
                    progress.close()
                    clock.stop()
                    tally.write()
            else:
                clock.stop()
                tally.write()
    finally:
        if started:
            runner.stop_ray()
    return LaunchResult(output, total, len(state.done), summary, tally.counts, invalid)
