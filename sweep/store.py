"""The sweep's Parquet datasets: fixed schemas, atomic batch commits, resume and compaction.

Layout of an output directory::

    OUTPUT/manifest.json          what ran (sweep.manifest)
    OUTPUT/runs/hardware=H/workload=W/part-*.parquet    one row per point
    OUTPUT/exits/hardware=H/workload=W/part-*.parquet   the points' exit tables
    OUTPUT/design.parquet         sobol/morris: the sampler's rows (problem space)
    OUTPUT/.staging/              commits in progress (never read by readers)
    OUTPUT/.lock                  held by the one process writing

Readers only ever see complete files: a batch is written with pyarrow.dataset
into ``.staging/<id>.tmp/``, the directory is renamed to ``.staging/<id>/``
(the commit point), and its files are then renamed into ``runs/`` and
``exits/`` (exits first, so a run row never lacks its exits).  A process that
dies before the commit point leaves a ``.tmp`` directory, which is deleted;
one that dies after it leaves a ready directory, which the next writer rolls
forward.  Compaction uses the same journal, plus a list of the files it
replaces, deleted before the new files move in.  Rows are therefore never
half-written, and never doubled: the writer only runs points absent from
``runs/``, after rolling every pending commit forward.

The ``hardware`` and ``workload`` partition columns are both in the
directory names (hive partitioning) and in the files, in the contract's
column order, which every reader keeps.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from model.result import METRIC_NAMES
from model.scenario import flat_schema

RUNS_DIR = "runs"
EXITS_DIR = "exits"
STAGING_DIR = ".staging"
LOCK_FILE = ".lock"
DESIGN_FILE = "design.parquet"
READY_SUFFIX = ""
PENDING_SUFFIX = ".tmp"
REPLACES_FILE = "replaces.json"
# Batch files are written while workers wait: snappy costs ~2 ms a file of ~150 columns, zstd ~6 ms.
# Compaction rewrites them with zstd, which is smaller and paid once.
BATCH_COMPRESSION = "snappy"
PARQUET_COMPRESSION = "zstd"
ROW_GROUP_ROWS = 64 * 1024  # compacted files: row groups of this many rows
MAX_ROWS_PER_FILE = 1024 * 1024  # compacted files: at most this many rows each
COMMIT_ORDER = (EXITS_DIR, RUNS_DIR)  # exits first: a visible run always has its exits

STATUS_OK = "ok"
STATUS_ERROR = "error"

_PA_TYPES: dict[type, pa.DataType] = {
    bool: pa.bool_(),
    int: pa.int64(),
    float: pa.float64(),
    str: pa.string(),
}

RUN_FIXED: tuple[tuple[str, pa.DataType], ...] = (
    ("point_id", pa.string()),
    ("sweep", pa.string()),
    ("config_hash", pa.string()),
    ("design_index", pa.int64()),
    ("replicate", pa.int32()),
    ("seed", pa.int64()),
    ("status", pa.string()),
    ("error_type", pa.string()),
    ("error", pa.string()),
    ("wall_s", pa.float64()),
)
PARTITIONS: tuple[tuple[str, pa.DataType], ...] = (("hardware", pa.string()), ("workload", pa.string()))
PARTITION_NAMES = tuple(name for name, _ in PARTITIONS)
PARTITIONING = ds.partitioning(pa.schema(list(PARTITIONS)), flavor="hive")
EXIT_FIELDS: tuple[tuple[str, pa.DataType], ...] = (
    ("point_id", pa.string()),
    ("sweep", pa.string()),
    ("config_hash", pa.string()),
    ("replicate", pa.int32()),
    ("seed", pa.int64()),
    ("hardware", pa.string()),
    ("workload", pa.string()),
    ("reason", pa.string()),
    ("detail", pa.string()),
    ("samples", pa.int64()),
    ("total_ns", pa.int64()),
    ("min_ns", pa.int64()),
    ("max_ns", pa.int64()),
)


def metric_columns() -> tuple[str, ...]:
    """Metric columns of the runs dataset.

    ``wall_s`` is both a fixed column and a metric name; the fixed column (the
    runner's measure of the simulate call, also set for error rows) is kept and
    the metric is not repeated.
    """
    fixed = {name for name, _ in RUN_FIXED}
    return tuple(m for m in METRIC_NAMES if m not in fixed)


def runs_schema() -> pa.Schema:
    """The runs dataset in contract order: fixed, scenario parameters, metrics, then ``workload``."""
    fields = [pa.field(n, t) for n, t in RUN_FIXED]
    fields += [pa.field(key, _PA_TYPES[kind]) for key, kind in flat_schema().items()]
    fields += [pa.field(m, pa.float64()) for m in metric_columns()]
    names = {f.name for f in fields}
    fields += [pa.field(n, t) for n, t in PARTITIONS if n not in names]
    return pa.schema(fields)


def exits_schema() -> pa.Schema:
    return pa.schema([pa.field(n, t) for n, t in EXIT_FIELDS])


# -- layout and locking ---------------------------------------------------------------


def is_sweep_output(output: Path) -> bool:
    return (output / "manifest.json").exists() or (output / RUNS_DIR).exists()


@contextlib.contextmanager
def locked(output: Path) -> Iterator[None]:
    """Hold the output's write lock; refuse (RuntimeError) if another process holds it."""
    output.mkdir(parents=True, exist_ok=True)
    with open(output / LOCK_FILE, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RuntimeError(f"{output} is being written by another sweep process") from None
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def remove_outputs(output: Path) -> None:
    """Delete what a sweep wrote (for ``--restart``); leaves anything else alone."""
    for name in (RUNS_DIR, EXITS_DIR, STAGING_DIR):
        shutil.rmtree(output / name, ignore_errors=True)
    for name in ("manifest.json", DESIGN_FILE):
        with contextlib.suppress(FileNotFoundError):
            (output / name).unlink()


# -- commits ----------------------------------------------------------------------------


def new_batch_id(prefix: str = "part") -> str:
    """Sortable by time, unique across processes."""
    return f"{prefix}-{time.time_ns():020d}-{secrets.token_hex(4)}"


def partition_dir(hardware: str, workload: str) -> Path:
    """``hardware=H/workload=W`` (values URI-escaped, as pyarrow's hive partitioning reads them)."""
    return Path(f"hardware={quote(hardware, safe='')}") / f"workload={quote(workload, safe='')}"


def _write_partitioned(table: pa.Table, base_dir: Path, batch_id: str) -> None:
    """One file per (hardware, workload) of ``table``, under its hive directory.

    The partition columns stay inside the files too, so that every reader
    (pyarrow, Polars, DuckDB; with or without hive partitioning) sees the
    columns in the contract's order, and a single file describes itself.
    """
    hardware, workload = (table.column(name).to_pylist() for name in PARTITION_NAMES)
    for hw, wl in sorted(set(zip(hardware, workload, strict=True))):
        mask = pc.and_(pc.equal(table.column("hardware"), hw), pc.equal(table.column("workload"), wl))
        ds.write_dataset(
            table.filter(mask),
            base_dir / partition_dir(hw, wl),
            format="parquet",
            basename_template=f"{batch_id}-{{i}}.parquet",
            existing_data_behavior="overwrite_or_ignore",
            file_options=ds.ParquetFileFormat().make_write_options(compression=BATCH_COMPRESSION),
            use_threads=False,
        )


def stage(output: Path, runs: pa.Table, exits: pa.Table | None, batch_id: str | None = None) -> Path:
    """Write one batch under ``.staging`` and mark it ready; return the ready directory."""
    batch_id = batch_id or new_batch_id()
    pending = output / STAGING_DIR / (batch_id + PENDING_SUFFIX)
    if runs.num_rows:
        _write_partitioned(runs, pending / RUNS_DIR, batch_id)
    if exits is not None and exits.num_rows:
        _write_partitioned(exits, pending / EXITS_DIR, batch_id)
    pending.mkdir(parents=True, exist_ok=True)
    ready = output / STAGING_DIR / (batch_id + READY_SUFFIX)
    os.replace(pending, ready)  # the commit point
    return ready


def commit(output: Path, ready: Path) -> None:
    """Roll a ready staging directory forward: delete what it replaces, move its files in."""
    replaces = ready / REPLACES_FILE
    if replaces.exists():
        for rel in json.loads(replaces.read_text()):
            with contextlib.suppress(FileNotFoundError):
                (output / rel).unlink()
    for top in COMMIT_ORDER:
        src_root = ready / top
        if not src_root.exists():
            continue
        for src in sorted(src_root.rglob("*.parquet")):
            dst = output / top / src.relative_to(src_root)
            dst.parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, dst)
    shutil.rmtree(ready)


def write_batch(output: Path, runs: pa.Table, exits: pa.Table | None) -> None:
    """Stage and commit one batch of rows."""
    commit(output, stage(output, runs, exits))


def recover(output: Path) -> int:
    """Finish what a dead writer left: drop unfinished batches, roll ready ones forward."""
    staging = output / STAGING_DIR
    if not staging.exists():
        return 0
    rolled = 0
    for entry in sorted(staging.iterdir()):
        if entry.name.endswith(PENDING_SUFFIX) or not entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True) if entry.is_dir() else entry.unlink()
        else:
            commit(output, entry)
            rolled += 1
    return rolled


def pending_commits(output: Path) -> int:
    staging = output / STAGING_DIR
    if not staging.exists():
        return 0
    return sum(1 for e in staging.iterdir() if e.is_dir() and not e.name.endswith(PENDING_SUFFIX))


# -- reading ------------------------------------------------------------------------------


def runs_dataset(output: Path) -> ds.Dataset | None:
    """The runs dataset with the contract schema (None if nothing was written yet)."""
    return _dataset(output / RUNS_DIR, runs_schema())


def exits_dataset(output: Path) -> ds.Dataset | None:
    return _dataset(output / EXITS_DIR, exits_schema())


def _dataset(path: Path, schema: pa.Schema) -> ds.Dataset | None:
    if not path.exists() or not any(path.rglob("*.parquet")):
        return None
    return ds.dataset(path, schema=schema, format="parquet", partitioning=PARTITIONING)


def read_runs(output: Path, columns: list[str] | None = None) -> pa.Table:
    dataset = runs_dataset(output)
    if dataset is None:
        return runs_schema().empty_table().select(columns) if columns else runs_schema().empty_table()
    return dataset.to_table(columns=columns)


def done_ids(output: Path) -> set[str]:
    """Point ids already written (ok or error)."""
    return set(read_runs(output, ["point_id"]).column("point_id").to_pylist())


@dataclass(frozen=True, slots=True)
class Counts:
    ok: int
    error: int
    rows: int
    distinct: int

    @property
    def duplicates(self) -> int:
        return self.rows - self.distinct


def counts(output: Path) -> Counts:
    table = read_runs(output, ["point_id", "status"])
    status = table.column("status")
    ok = int(pc.sum(pc.equal(status, STATUS_OK)).as_py() or 0)
    error = int(pc.sum(pc.equal(status, STATUS_ERROR)).as_py() or 0)
    distinct = len(pc.unique(table.column("point_id"))) if table.num_rows else 0
    return Counts(ok=ok, error=error, rows=table.num_rows, distinct=distinct)


def data_files(output: Path, top: str) -> list[Path]:
    root = output / top
    return sorted(root.rglob("*.parquet")) if root.exists() else []


# -- compaction ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CompactResult:
    files_before: int
    files_after: int
    rows: int


def compact(output: Path, min_files: int = 2) -> CompactResult:
    """Rewrite each partition's many batch files into few, with large row groups.

    Each partition is one journalled commit: the new files are staged, the
    list of old files is recorded, then the old files are deleted and the new
    ones moved in.  A crash at any point leaves either the old files or (after
    the next writer's roll-forward) the new ones, never both.
    """
    before = after = rows = 0
    for top, schema in ((RUNS_DIR, runs_schema()), (EXITS_DIR, exits_schema())):
        by_dir: dict[Path, list[Path]] = {}
        for path in data_files(output, top):
            by_dir.setdefault(path.parent, []).append(path)
        for directory, files in sorted(by_dir.items()):
            before += len(files)
            if len(files) < min_files:
                after += len(files)
                continue
            n_rows, n_files = _compact_partition(output, top, directory, files, schema)
            rows += n_rows
            after += n_files
    return CompactResult(before, after, rows)


def _compact_partition(
    output: Path, top: str, directory: Path, files: list[Path], schema: pa.Schema
) -> tuple[int, int]:
    batch_id = new_batch_id("compact")
    pending = output / STAGING_DIR / (batch_id + PENDING_SUFFIX)
    target = pending / top / directory.relative_to(output / top)
    source = ds.dataset([str(f) for f in files], schema=schema, format="parquet")
    n_rows = source.count_rows()
    written: list[str] = []
    ds.write_dataset(
        source,
        target,
        format="parquet",
        basename_template=f"{batch_id}-{{i}}.parquet",
        existing_data_behavior="overwrite_or_ignore",
        file_options=ds.ParquetFileFormat().make_write_options(compression=PARQUET_COMPRESSION),
        max_rows_per_file=MAX_ROWS_PER_FILE,
        min_rows_per_group=ROW_GROUP_ROWS,
        max_rows_per_group=ROW_GROUP_ROWS,
        preserve_order=True,
        file_visitor=lambda f: written.append(f.path),
    )
    (pending / REPLACES_FILE).write_text(json.dumps([str(f.relative_to(output)) for f in files]))
    ready = output / STAGING_DIR / (batch_id + READY_SUFFIX)
    os.replace(pending, ready)
    commit(output, ready)
    return n_rows, len(written)


# -- small atomic files -------------------------------------------------------------------------


def write_json_atomic(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False, allow_nan=False, default=str) + "\n")
    os.replace(tmp, path)


def write_table_atomic(path: Path, table: pa.Table) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    pq.write_table(table, tmp, compression=PARQUET_COMPRESSION)
    os.replace(tmp, path)
