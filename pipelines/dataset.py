"""Open a sweep's output directory: the runs and exits datasets and the manifest.

The column roles (identifiers, parameters, metrics, within-run uncertainties,
partitions), units and directions come from ``manifest.json``'s ``schema``,
which ``sweep`` derives from the model's result record: this package never
imports ``model`` and never guesses a role from a name when the manifest says
it.  (An output without a schema in its manifest, from an older sweep, falls
back to classifying columns by name and type, with a warning.)  Everything
else in ``pipelines`` receives a :class:`Dataset` and works on its LazyFrames.
Nothing here runs a simulation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

# Roles in manifest.json's schema (written by sweep.store).
ROLE_ID = "id"
ROLE_STATUS = "status"
ROLE_PARAM = "param"
ROLE_METRIC = "metric"
ROLE_UNCERTAINTY = "uncertainty"
ROLE_BOOKKEEPING = "bookkeeping"
ROLE_PARTITION = "partition"
# Columns the report's own steps read, with the type they need (not the schema, which the
# manifest carries): it refuses a dataset without them.
REQUIRED: dict[str, pl.DataType] = {
    "point_id": pl.String(),
    "design_index": pl.Int64(),
    "replicate": pl.Int32(),
    "seed": pl.Int64(),
    "status": pl.String(),
    "error_type": pl.String(),
    "error": pl.String(),
    "wall_s": pl.Float64(),
}
# Hive partitions: directory names ``hardware=rome/workload=hackbench``.
PARTITIONS: dict[str, pl.DataType] = {"hardware": pl.String(), "workload": pl.String()}
# What the exit tables read (pipelines.exits).
EXITS_USED: dict[str, pl.DataType] = {
    "reason": pl.String(),
    "detail": pl.String(),
    "samples": pl.Int64(),
    "total_ns": pl.Int64(),
    "min_ns": pl.Int64(),
    "max_ns": pl.Int64(),
}
ARROW_TYPES: dict[str, pl.DataType] = {
    "string": pl.String(),
    "large_string": pl.String(),
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "double": pl.Float64(),
    "bool": pl.Boolean(),
}
# The default metrics of interest, in order, when neither the caller nor the
# manifest names any: each workload's figure of merit, then latencies and costs.
DEFAULT_METRICS = (
    "messages_per_s",
    "records_per_s",
    "acquisitions_per_s",
    "compute_s_per_s",
    "vmexit_op_cycles",
    "lock_wait_p99_us",
    "timer_latency_avg_us",
    "timer_latency_p99_us",
    "ipi_latency_p50_us",
    "exits_per_s",
    "steal_pct",
)
FEATURE_PREFIX = "features."
# Used only for an output whose manifest has no schema (see :func:`guess_roles`).
FALLBACK_ID = ("point_id", "sweep", "config_hash", "design_index", "replicate", "seed")
FALLBACK_STATUS = ("status", "error_type", "error")
FALLBACK_UNDOTTED_PARAMS = ("hardware", "pinning", "overcommit")
FALLBACK_BOOKKEEPING = ("sim_s", "events", "wall_s")


@dataclass(frozen=True)
class ColumnInfo:
    """What the manifest says of one column."""

    name: str
    role: str
    type: str = ""
    unit: str = ""
    meaning: str = ""
    better: str = ""  # "higher", "lower" or ""
    of: str = ""  # uncertainty columns: the metric they qualify

    @property
    def direction(self) -> str:
        """``higher is better`` / ``lower is better`` / ``""``."""
        return f"{self.better} is better" if self.better else ""


class ReportError(ValueError):
    """A problem the user can fix, told in one line (the CLI prints it and exits 2)."""


@dataclass(frozen=True)
class Dataset:
    """A sweep's output: lazy runs/exits scans, the manifest, and the column roles."""

    output_dir: Path
    runs: pl.LazyFrame
    exits: pl.LazyFrame | None
    manifest: dict[str, Any]
    params: tuple[str, ...]
    metrics: tuple[str, ...]
    columns: dict[str, ColumnInfo] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def info(self, column: str) -> ColumnInfo:
        return self.columns.get(column) or ColumnInfo(column, "")

    @property
    def uncertainty(self) -> dict[str, str]:
        """``metric -> its within-run 95 % half-width column (%)`` for the metrics that have one."""
        return {c.of: c.name for c in self.columns.values() if c.role == ROLE_UNCERTAINTY and c.of}

    @property
    def bookkeeping(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns.values() if c.role == ROLE_BOOKKEEPING)

    @property
    def description(self) -> str:
        return str(_dig(self.manifest, "config", "description") or "")

    @property
    def code_version(self) -> str | None:
        """The code versions that ran the rows ("a, b" when a resumed sweep mixed them); for rows
        written before they carried one, the manifest's (that of the latest launch)."""
        if "code_version" in self.runs.collect_schema().names():
            column = self.runs.select(pl.col("code_version").drop_nulls().unique()).collect().to_series()
            if column.len():
                return ", ".join(sorted(column.to_list()))
        value = self.manifest.get("code_version")
        return str(value) if value else None

    @property
    def elapsed_s(self) -> float | None:
        """Real wall time of the sweep's launches, added up (None when the manifest lacks it)."""
        value = self.manifest.get("elapsed_s")
        return float(value) if isinstance(value, int | float) else None

    @property
    def launches(self) -> list[dict[str, Any]]:
        value = self.manifest.get("launches")
        return [x for x in value if isinstance(x, dict)] if isinstance(value, list) else []

    @property
    def name(self) -> str:
        """The sweep's name from the manifest, else the directory's name."""
        return str(self.manifest.get("name") or self.output_dir.name)

    @property
    def design(self) -> str | None:
        """``config.space.design`` (grid, factorial, random, lhs, sobol, morris) or None."""
        return _dig(self.manifest, "config", "space", "design")

    @property
    def problem(self) -> dict[str, Any] | None:
        """The SALib problem dict of sobol and morris designs, else None."""
        problem = self.manifest.get("problem")
        return problem if isinstance(problem, dict) else None

    @property
    def manifest_metrics(self) -> list[str] | None:
        """``config.report.metrics``: the sweep's metrics of interest, if it names any."""
        metrics = _dig(self.manifest, "config", "report", "metrics")
        return [str(m) for m in metrics] if isinstance(metrics, list) and metrics else None

    @property
    def manifest_by(self) -> list[str] | None:
        """``config.report.by``: the sweep's breakdown columns, if it names any."""
        by = _dig(self.manifest, "config", "report", "by")
        return [str(b) for b in by] if isinstance(by, list) and by else None

    @property
    def replicates(self) -> int | None:
        """``config.replicates``: how many times the sweep runs each design row."""
        value = _dig(self.manifest, "config", "replicates")
        return int(value) if isinstance(value, int) and value >= 1 else None

    @property
    def design_file(self) -> Path | None:
        """The sampler's rows in problem space (sobol, morris), when the sweep wrote them."""
        name = (self.problem or {}).get("X_file")
        path = self.output_dir / str(name) if name else None
        return path if path is not None and path.is_file() else None

    @property
    def expected_total(self) -> int | None:
        """``counts.total`` from the manifest: the number of runs the sweep planned."""
        total = _dig(self.manifest, "counts", "total")
        return int(total) if isinstance(total, int | float) else None

    @property
    def group_columns(self) -> tuple[str, ...]:
        """Columns a breakdown may use: every parameter (hardware first), plus the ``workload`` partition."""
        first = tuple(c for c in ("hardware",) if c in self.params)
        extra = ("workload",) if "workload" not in self.params else ()
        return first + tuple(c for c in self.params if c not in first) + extra


def _dig(tree: Any, *keys: str) -> Any:
    """``tree[k1][k2]...`` or None where any level is absent or not a mapping."""
    for key in keys:
        if not isinstance(tree, dict):
            return None
        tree = tree.get(key)
    return tree


def roles_from_manifest(manifest: dict[str, Any]) -> dict[str, ColumnInfo] | None:
    """The runs columns the manifest's ``schema`` describes, or None when it has no schema."""
    runs = _dig(manifest, "schema", "runs")
    if not isinstance(runs, list) or not runs:
        return None
    out: dict[str, ColumnInfo] = {}
    for entry in runs:
        if isinstance(entry, dict) and "name" in entry and "role" in entry:
            keys = ("type", "unit", "meaning", "better", "of")
            out[str(entry["name"])] = ColumnInfo(
                str(entry["name"]), str(entry["role"]), **{k: str(entry.get(k) or "") for k in keys}
            )
    return out or None


def guess_roles(schema: pl.Schema) -> dict[str, ColumnInfo]:
    """Column roles from names and types, for an output whose manifest has no schema: dotted and a
    few known names are parameters, other numeric columns metrics (``*_ci95_pct`` uncertainties)."""
    out: dict[str, ColumnInfo] = {}
    for name, dtype in schema.items():
        if name in FALLBACK_ID:
            role = ROLE_ID
        elif name in FALLBACK_STATUS:
            role = ROLE_STATUS
        elif name == "workload":
            role = ROLE_PARTITION
        elif name in FALLBACK_BOOKKEEPING:
            role = ROLE_BOOKKEEPING
        elif "." in name or name in FALLBACK_UNDOTTED_PARAMS:
            role = ROLE_PARAM
        elif name.endswith("_ci95_pct") and dtype.is_numeric():
            out[name] = ColumnInfo(name, ROLE_UNCERTAINTY, of=name.removesuffix("_ci95_pct"), unit="%")
            continue
        elif dtype.is_numeric():
            role = ROLE_METRIC
        else:
            continue
        out[name] = ColumnInfo(name, role)
    return out


def split_roles(schema: pl.Schema, columns: dict[str, ColumnInfo]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(parameters, metrics) present in the data, in schema order; metrics include the numeric
    bookkeeping columns (never a default of interest; ``code_version`` is text, read by
    :attr:`Dataset.code_version`) but not the uncertainty columns, which go with their metric."""
    params = tuple(n for n in schema if n in columns and columns[n].role == ROLE_PARAM)

    def is_metric(n: str) -> bool:
        role = columns[n].role if n in columns else None
        return role == ROLE_METRIC or (role == ROLE_BOOKKEEPING and schema[n].is_numeric())

    metrics = tuple(n for n in schema if is_metric(n))
    return params, metrics


def read_manifest(output_dir: Path) -> tuple[dict[str, Any], list[str]]:
    """The parsed ``manifest.json`` and warnings; an absent manifest is a warning, not an error."""
    path = output_dir / "manifest.json"
    if not path.exists():
        return {}, [f"{path} not found: missing points cannot be counted and the design is unknown"]
    try:
        manifest = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ReportError(f"cannot read {path}: {err}") from None
    if not isinstance(manifest, dict):
        raise ReportError(f"{path}: expected a JSON object with keys name, config, counts")
    return manifest, []


def _has_parquet(directory: Path) -> bool:
    return directory.is_dir() and any(directory.rglob("*.parquet"))


def scan_partitioned(directory: Path) -> pl.LazyFrame:
    """Lazy scan of a hive-partitioned Parquet dataset with the partition types fixed.

    Files may differ in their column sets (an older sweep, a newer model): missing
    columns come back as nulls and extra ones are ignored, relative to the first file.
    """
    return pl.scan_parquet(
        directory / "**" / "*.parquet",
        hive_partitioning=True,
        hive_schema=PARTITIONS,
        missing_columns="insert",
        extra_columns="ignore",
    )


def _cast_known(lf: pl.LazyFrame, schema: pl.Schema, wanted: dict[str, pl.DataType]) -> pl.LazyFrame:
    """Cast the contract's columns to their contract types where a file stored another type."""
    casts = [pl.col(c).cast(t) for c, t in wanted.items() if c in schema and schema[c] != t]
    return lf.with_columns(casts) if casts else lf


def _collect_schema(lf: pl.LazyFrame, directory: Path) -> pl.Schema:
    try:
        return lf.collect_schema()
    except (pl.exceptions.PolarsError, OSError) as err:
        raise ReportError(
            f"cannot read the Parquet dataset {directory}: {str(err).splitlines()[0]}"
        ) from None


def open_dataset(output_dir: Path | str) -> Dataset:
    """Open ``OUTPUT`` lazily: scans of ``runs/`` and ``exits/``, the manifest, column roles.

    Raises :class:`ReportError` when the directory or the runs dataset is missing
    or lacks the contract's fixed columns.
    """
    output_dir = Path(output_dir)
    if not output_dir.is_dir():
        raise ReportError(f"no such sweep output directory: {output_dir}")
    runs_dir = output_dir / "runs"
    if not _has_parquet(runs_dir):
        raise ReportError(f"{output_dir} holds no runs dataset: expected Parquet files under {runs_dir}/")
    manifest, warnings = read_manifest(output_dir)
    runs = scan_partitioned(runs_dir)
    schema = _collect_schema(runs, runs_dir)
    missing = [c for c in (*REQUIRED, *PARTITIONS) if c not in schema]
    if missing:
        raise ReportError(f"{runs_dir} is not a kvmsweep runs dataset: missing columns {', '.join(missing)}")
    columns = roles_from_manifest(manifest)
    if columns is None:
        columns = guess_roles(schema)
        if manifest:
            warnings.append(
                "manifest.json has no schema (an older sweep): column roles are guessed from their names"
            )
    wanted = {**REQUIRED, **PARTITIONS}
    wanted.update(
        {n: ARROW_TYPES[c.type] for n, c in columns.items() if c.type in ARROW_TYPES and n in schema}
    )
    runs = _cast_known(runs, schema, wanted)
    params, metrics = split_roles(schema, columns)
    exits = _open_exits(output_dir / "exits", warnings)
    return Dataset(output_dir, runs, exits, manifest, params, metrics, columns, warnings)


def _open_exits(exits_dir: Path, warnings: list[str]) -> pl.LazyFrame | None:
    """The exits scan, or None when the sweep wrote none (the exits section says so)."""
    if not _has_parquet(exits_dir):
        return None
    exits = scan_partitioned(exits_dir)
    schema = _collect_schema(exits, exits_dir)
    missing = [c for c in EXITS_USED if c not in schema]
    if missing:
        warnings.append(f"{exits_dir} lacks columns {', '.join(missing)}: no exit tables")
        return None
    return _cast_known(exits, schema, {**EXITS_USED, **PARTITIONS})


def check_allowed(kind: str, requested: Iterable[str], allowed: Sequence[str]) -> list[str]:
    """``requested`` as a list, or :class:`ReportError` naming the unknown ones and the allowed values."""
    requested = list(dict.fromkeys(requested))
    unknown = [r for r in requested if r not in allowed]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        raise ReportError(
            f"unknown {kind}{plural} {', '.join(repr(u) for u in unknown)}; allowed: {', '.join(allowed)}"
        )
    return requested


def is_feature(name: str) -> bool:
    """Whether a parameter column is one of the boolean mechanisms under study."""
    return name.startswith(FEATURE_PREFIX)
