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

The ``hardware`` and ``workload`` partition columns are in the directory
names only (hive partitioning), so that pandas, Polars and DuckDB all read
``runs/`` as it is.  The schemas are :func:`runs_columns` and
:func:`exits_columns`, derived from ``model.result`` and ``model.scenario``;
``manifest.json`` carries them (:func:`schema_json`) for readers that do not
import the model.  A metric that does not apply to a run is null.
"""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from functools import cache
from pathlib import Path
from typing import Any, get_args
from urllib.parse import quote

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
from pydantic import BaseModel

from model.hardware import Profile
from model.result import (
    BOOKKEEPING,
    EXIT_COLUMNS,
    EXIT_COUNTERS,
    EXIT_MEANINGS,
    METRIC_NAMES,
    ExitRow,
    ci95_of,
    metric_info,
    unit,
)
from model.scenario import Scenario, flat_schema

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

# Column roles, as manifest.json names them (pipelines read the roles from there).
ROLE_ID = "id"  # identifies the run: point_id, sweep, config_hash, design_index, replicate, seed
ROLE_STATUS = "status"  # status, error_type, error
ROLE_PARAM = "param"  # a scenario parameter
ROLE_METRIC = "metric"  # a measured result
ROLE_UNCERTAINTY = "uncertainty"  # within-run 95 % half-width of the metric named in ``of``
ROLE_BOOKKEEPING = "bookkeeping"  # about the run, not the system (sim_s, events, wall_s)
ROLE_PARTITION = "partition"  # in the directory names only
ROLE_EXIT = "exit"  # a column of the exit table


@dataclass(frozen=True, slots=True)
class Column:
    """One column of a dataset: the single description that the Parquet schema, ``manifest.json``
    and ``docs/dataset.md`` are all derived from."""

    name: str
    type: pa.DataType
    role: str
    meaning: str
    unit: str = ""
    counter: str = ""  # the kernel counter or tool output the column corresponds to
    better: str = ""  # "higher", "lower" or "" (metrics)
    of: str = ""  # uncertainty columns: the metric they qualify
    partition: bool = False  # a hive partition: in the directory names, not inside the files
    default: Any = None  # parameters: the scenario's default

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": str(self.type), "role": self.role}
        for key in ("unit", "meaning", "counter", "better", "of"):
            value = getattr(self, key)
            if value:
                out[key] = value
        if self.partition:
            out["partition"] = True
        if self.role == ROLE_PARAM:
            out["default"] = self.default
        return out


ID_COLUMNS: tuple[tuple[str, pa.DataType, str, str], ...] = (
    ("point_id", pa.string(), ROLE_ID, "stable hash of the resolved scenario and the replicate"),
    ("sweep", pa.string(), ROLE_ID, "the sweep's name"),
    ("config_hash", pa.string(), ROLE_ID, "hash of the sweep config that planned the run"),
    ("design_index", pa.int64(), ROLE_ID, "row of the design (the same for every replicate)"),
    ("replicate", pa.int32(), ROLE_ID, "replicate number, 0 .. replicates - 1"),
    ("seed", pa.int64(), ROLE_ID, "the run's seed (feature on/off pairs share it)"),
    ("status", pa.string(), ROLE_STATUS, "ok, or error when the simulation raised"),
    ("error_type", pa.string(), ROLE_STATUS, "exception class of a failed run"),
    ("error", pa.string(), ROLE_STATUS, "first line of the exception's message"),
    ("wall_s", pa.float64(), ROLE_BOOKKEEPING, "wall time of the simulate call (set for failed runs too)"),
    (
        "code_version",
        pa.string(),
        ROLE_BOOKKEEPING,
        "git describe of the code that ran the point (that of its launch: a resumed sweep can mix versions)",
    ),
)
# (name, the flat scenario key it shows, meaning); ``hardware`` is itself a scenario parameter.
PARTITIONS: tuple[tuple[str, str], ...] = (("hardware", "hardware"), ("workload", "workload.kind"))
PARTITION_NAMES = tuple(name for name, _ in PARTITIONS)
PARTITIONING = ds.partitioning(pa.schema([(n, pa.string()) for n in PARTITION_NAMES]), flavor="hive")
EXIT_ID_COLUMNS = ("point_id", "sweep", "config_hash", "replicate", "seed")


def field_comments(cls: type) -> dict[str, str]:
    """``name -> comment`` of the fields of a class whose source says ``name: type = ...  # comment``."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out = {}
    for match in re.finditer(r"^ {4}(\w+):[^\n#]*#\s*(.+)$", source, flags=re.MULTILINE):
        out[match.group(1)] = match.group(2).strip()
    return out


# What a parameter means, for the fields whose source line carries no comment, and for the features,
# whose comment names the kernel commit (kept as the column's source).  Docs only: the scenario's
# models stay the definition of the parameters and their types.
PARAM_MEANINGS: dict[str, str] = {
    "hardware": "hardware profile (model.hardware.PROFILES): costs and capabilities of the host CPU",
    "pinning": "vCPU threads pinned one per pCPU (dedicated) or floating (none)",
    "overcommit": "vCPUs of all VMs / pCPUs; co-runner VMs fill the host up to it",
    "topology.sockets": "host sockets",
    "topology.cores_per_socket": "host cores per socket",
    "topology.threads_per_core": "SMT threads per core",
    "vm.vcpus": "vCPUs of the measured VM",
    "vm.apic": "guest APIC mode: xAPIC (MMIO), x2APIC physical or x2APIC cluster destination mode",
    "vm.idle": "guest idle: hlt (exits to KVM) or poll (idle=poll, never halts)",
    "workload.kind": "the measured VM's workload",
    "workload.hackbench.groups": "hackbench groups",
    "workload.hackbench.senders": "hackbench senders per group",
    "workload.hackbench.receivers": "hackbench receivers per group",
    "workload.hackbench.message_bytes": "hackbench message size",
    "workload.cyclictest.interval_us": "cyclictest timer interval",
    "workload.ebizzy.threads_per_vcpu": "ebizzy threads per vCPU",
    "workload.ebizzy.chunk_kib": "ebizzy chunk size",
    "workload.lockbench.threads_per_vcpu": "lockbench threads per vCPU",
    "workload.vmexit.test": "kvm-unit-tests vmexit test",
    "corunner.workload": "what the co-runner VMs run (same: the measured VM's workload)",
    "sim.duration_ms": "simulated time of a run, warm-up included",
    "sim.warmup_ms": "warm-up not measured",
    "features.ipi_fastpath": "KVM x2APIC ICR-write fastpath (handle_fastpath_set_x2apic_icr_irqoff)",
    "features.timer_fastpath": "KVM TSC-deadline timer fastpath (handle_fastpath_set_tscdeadline)",
    "features.boost_ready": "kvm_vcpu_on_spin boosts preempted runnable vCPUs (vcpu->ready)",
    "features.boost_user_irq": "boost vCPUs with a pending interrupt even at CPL 3",
    "features.boost_queue_head": "KICK_CPU yields to the kicked qspinlock queue head",
    "features.pv_sched_yield": "guest PV sched yield: yield to a preempted IPI target (KVM_HC_SCHED_YIELD)",
    "features.pv_sched_yield_skip_idle": "PV sched yield skips idle targets",
    "features.pv_tlb_flush": "guest PV TLB flush: defer flushes of preempted vCPUs (KVM_VCPU_FLUSH_TLB)",
    "features.pv_send_ipi": "guest PV send-IPI hypercall (KVM_HC_SEND_IPI), one exit per multicast",
    "features.pv_spinlock": "guest paravirt qspinlock: pv_wait halts, pv_kick wakes (KVM_HC_KICK_CPU)",
    "features.pv_wait_early": "pv_wait_early: a waiter halts early when the previous node is preempted",
    "features.ple": "Pause-loop exiting (Intel PLE / AMD pause filter)",
    "features.sched_yield_undercommit_bail": "kvm_sched_yield yields nothing when the caller's pCPU runs one task",
}


def _param_docs() -> dict[str, tuple[str, Any, str]]:
    """``dotted key -> (meaning, default, source)`` of every scenario parameter, from the scenario's
    models: :data:`PARAM_MEANINGS`, else the field's comment in the source (a feature's comment, its
    commit, becomes the source), with the allowed values of a choice."""
    out: dict[str, tuple[str, Any, str]] = {}
    cost_comments = field_comments(Profile)

    def walk(model: type[BaseModel], prefix: str, instance: BaseModel) -> None:
        comments = cost_comments if prefix == "costs." else field_comments(model)
        for name, info in model.model_fields.items():
            value = getattr(instance, name)
            key = prefix + name
            if isinstance(value, BaseModel):
                walk(type(value), f"{key}.", value)
                continue
            comment = comments.get(name) or info.description or ""
            source = ""
            if prefix == "costs.":
                meaning = f"override of the hardware profile's {name} (null: the profile's)"
                meaning += f": {comment}" if comment else ""
            elif key in PARAM_MEANINGS:
                meaning = PARAM_MEANINGS[key]
                source = comment
                if comment and not prefix.startswith("features."):
                    meaning, source = f"{meaning} ({comment})", ""
            else:
                meaning = comment
            choices = [a for a in get_args(info.annotation) if isinstance(a, str)]
            if choices and len(choices) == len(get_args(info.annotation)):
                meaning += f"; one of {', '.join(choices)}"
            out[key] = (meaning, value, source)

    walk(Scenario, "", Scenario())
    return out


def _unit_of_param(name: str) -> str:
    found = unit(name)
    return "" if found == "count" else found


@cache
def runs_columns() -> tuple[Column, ...]:
    """The runs dataset, in contract order: ids and status, scenario parameters, metrics, partitions.

    Derived from ``model.scenario.flat_schema()`` (parameters) and
    ``model.result.METRICS`` (metrics), so a new parameter or metric needs no
    edit here.  ``wall_s`` is both a fixed column and a metric name; the fixed
    column (the runner's measure of the simulate call, also set for error
    rows) is kept and the metric is not repeated.  The partition columns come
    last, as every hive reader (pyarrow, Polars, DuckDB) puts them.
    """
    columns = [
        Column(n, t, role, meaning, unit=unit(n) if n == "wall_s" else "")
        for n, t, role, meaning in ID_COLUMNS
    ]
    fixed = {c.name for c in columns}
    docs = _param_docs()
    partition_keys = {key: name for name, key in PARTITIONS}
    params = []
    for key, kind in flat_schema().items():
        meaning, default, source = docs.get(key, ("", None, ""))
        is_partition = partition_keys.get(key) == key
        column = Column(
            key,
            _PA_TYPES[kind],
            ROLE_PARAM,
            meaning,
            _unit_of_param(key),
            source,
            partition=is_partition,
            default=default,
        )
        params.append(column)
    columns += [c for c in params if not c.partition]
    for name in METRIC_NAMES:
        if name in fixed:
            continue
        info = metric_info(name)
        base = ci95_of(name)
        role = ROLE_UNCERTAINTY if base else ROLE_BOOKKEEPING if name in BOOKKEEPING else ROLE_METRIC
        columns.append(
            Column(name, pa.float64(), role, info.meaning, unit(name), info.counter, info.better, base or "")
        )
    columns += [c for c in params if c.partition]
    for name, key in PARTITIONS:
        if name != key:
            columns.append(
                Column(name, pa.string(), ROLE_PARTITION, f"partition: the value of {key}", partition=True)
            )
    return tuple(columns)


@cache
def exits_columns() -> tuple[Column, ...]:
    """The exits dataset: the run's ids, the fields of ``model.result.ExitRow``, the partitions."""
    runs = {c.name: c for c in runs_columns()}
    columns = [runs[n] for n in EXIT_ID_COLUMNS]
    types = {f.name: f.type for f in dataclass_fields(ExitRow)}
    for name in EXIT_COLUMNS:
        kind = {"str": str, "int": int, "float": float}.get(str(types[name]), str)
        columns.append(
            Column(
                name,
                _PA_TYPES[kind],
                ROLE_EXIT,
                EXIT_MEANINGS.get(name, ""),
                "ns" if name.endswith("_ns") else "count" if name == "samples" else "",
                EXIT_COUNTERS.get(name, ""),
            )
        )
    columns += [
        Column(name, pa.string(), ROLE_PARTITION, runs[name].meaning, partition=True)
        for name in PARTITION_NAMES
    ]
    return tuple(columns)


def metric_columns() -> tuple[str, ...]:
    """Metric columns of the runs dataset (metrics, uncertainties, bookkeeping), in the model's order."""
    fixed = {name for name, *_ in ID_COLUMNS}
    return tuple(m for m in METRIC_NAMES if m not in fixed)


def _schema(columns: tuple[Column, ...], files: bool) -> pa.Schema:
    return pa.schema([pa.field(c.name, c.type) for c in columns if not (files and c.partition)])


@cache
def runs_schema() -> pa.Schema:
    """The runs dataset as readers see it (partition columns included, last)."""
    return _schema(runs_columns(), files=False)


@cache
def runs_file_schema() -> pa.Schema:
    """The columns inside a runs file: the partition columns live in the directory names only, so
    that no reader finds the same column twice with two types."""
    return _schema(runs_columns(), files=True)


@cache
def exits_schema() -> pa.Schema:
    return _schema(exits_columns(), files=False)


@cache
def exits_file_schema() -> pa.Schema:
    return _schema(exits_columns(), files=True)


def schema_json() -> dict[str, Any]:
    """The datasets' schemas and column roles, as ``manifest.json`` records them."""
    return {
        "partitions": list(PARTITION_NAMES),
        "runs": [c.as_json() for c in runs_columns()],
        "exits": [c.as_json() for c in exits_columns()],
    }


# -- layout and locking ---------------------------------------------------------------


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


# -- commits ----------------------------------------------------------------------------


def new_batch_id(prefix: str = "part") -> str:
    """Sortable by time, unique across processes."""
    return f"{prefix}-{time.time_ns():020d}-{secrets.token_hex(4)}"


def partition_dir(hardware: str, workload: str) -> Path:
    """``hardware=H/workload=W`` (values URI-escaped, as pyarrow's hive partitioning reads them)."""
    return Path(f"hardware={quote(hardware, safe='')}") / f"workload={quote(workload, safe='')}"


def _write_partitioned(table: pa.Table, base_dir: Path, batch_id: str) -> None:
    """One file per (hardware, workload) of ``table``, under its hive directory.

    The partition columns are in the directory names only, not inside the
    files: a column stored in both places would reach pandas (pyarrow) as
    ``string`` from the files and ``dictionary`` from the paths, which it
    refuses to merge.  ``workload.kind`` (the scenario parameter behind the
    ``workload`` partition) stays in the files, so a single file still says
    what ran, except its hardware.
    """
    hardware, workload = (table.column(name).to_pylist() for name in PARTITION_NAMES)
    body = table.drop_columns(list(PARTITION_NAMES))
    for hw, wl in sorted(set(zip(hardware, workload, strict=True))):
        mask = pc.and_(pc.equal(table.column("hardware"), hw), pc.equal(table.column("workload"), wl))
        ds.write_dataset(
            body.filter(mask),
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


def code_versions(output: Path) -> list[str]:
    """The code versions that produced the rows, sorted (empty for rows written before the column)."""
    column = read_runs(output, ["code_version"]).column("code_version")
    return sorted(v for v in pc.unique(column).to_pylist() if v)


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
    for top, schema in ((RUNS_DIR, runs_file_schema()), (EXITS_DIR, exits_file_schema())):
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
