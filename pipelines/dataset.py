"""Open a sweep's output directory: the runs and exits datasets and the manifest.

This module is the only place that knows the dataset contract written by
``sweep/``: the fixed columns, the hive partitions, which columns are scenario
parameters and which are metrics.  Everything else in ``pipelines`` receives a
:class:`Dataset` and works on its LazyFrames.  Nothing here runs a simulation.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import polars as pl

# Columns every runs file has, with the type the contract gives them.
FIXED_COLUMNS: dict[str, pl.DataType] = {
    "point_id": pl.String(),
    "sweep": pl.String(),
    "config_hash": pl.String(),
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
EXIT_SCHEMA: dict[str, pl.DataType] = {
    "point_id": pl.String(),
    "sweep": pl.String(),
    "config_hash": pl.String(),
    "replicate": pl.Int32(),
    "seed": pl.Int64(),
    "reason": pl.String(),
    "detail": pl.String(),
    "samples": pl.Int64(),
    "total_ns": pl.Int64(),
    "min_ns": pl.Int64(),
    "max_ns": pl.Int64(),
}
# Scenario parameters whose names carry no dot.
UNDOTTED_PARAMS = ("hardware", "pinning", "overcommit")
# Metrics that are run bookkeeping rather than results: never a default of interest.
BOOKKEEPING_METRICS = ("sim_s", "events", "wall_s")
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
    warnings: list[str] = field(default_factory=list)

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


@lru_cache(maxsize=1)
def contract_names() -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Parameter and metric names from ``model`` (names only), or empty when it cannot load.

    The report must work on a dataset even while ``model`` is being changed or
    is not installed, so a failing import falls back to classifying columns by
    their names and types (see :func:`classify_columns`).
    """
    try:
        from model import METRIC_NAMES, flat_schema
    except Exception:  # noqa: BLE001 - any failure of an optional import means "no names"
        return (), ()
    try:
        return tuple(flat_schema()), tuple(METRIC_NAMES)
    except Exception:  # noqa: BLE001
        return (), tuple(METRIC_NAMES)


def classify_columns(schema: pl.Schema) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a runs schema into (parameters, metrics), each in schema order.

    A column is a metric when ``model.METRIC_NAMES`` has it, a parameter when
    ``model.flat_schema()`` has it; unknown columns are parameters when dotted or
    one of :data:`UNDOTTED_PARAMS`, metrics when numeric.  ``wall_s`` is both a
    fixed column and a metric; the ``workload`` partition is neither.
    """
    known_params, known_metrics = contract_names()
    params: list[str] = []
    metrics: list[str] = []
    for name, dtype in schema.items():
        if name in known_metrics or name == "wall_s":
            metrics.append(name)
        elif name in FIXED_COLUMNS or name == "workload":
            continue
        elif name in known_params or "." in name or name in UNDOTTED_PARAMS:
            params.append(name)
        elif dtype.is_numeric():
            metrics.append(name)
    return tuple(params), tuple(metrics)


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
    missing = [c for c in (*FIXED_COLUMNS, *PARTITIONS) if c not in schema]
    if missing:
        raise ReportError(f"{runs_dir} is not a kvmsweep runs dataset: missing columns {', '.join(missing)}")
    runs = _cast_known(runs, schema, {**FIXED_COLUMNS, **PARTITIONS})
    params, metrics = classify_columns(schema)
    exits = _open_exits(output_dir / "exits", warnings)
    return Dataset(output_dir, runs, exits, manifest, params, metrics, warnings)


def _open_exits(exits_dir: Path, warnings: list[str]) -> pl.LazyFrame | None:
    """The exits scan, or None when the sweep wrote none (the exits section says so)."""
    if not _has_parquet(exits_dir):
        return None
    exits = scan_partitioned(exits_dir)
    schema = _collect_schema(exits, exits_dir)
    missing = [c for c in ("reason", "detail", "samples", "total_ns", "min_ns", "max_ns") if c not in schema]
    if missing:
        warnings.append(f"{exits_dir} lacks columns {', '.join(missing)}: no exit tables")
        return None
    return _cast_known(exits, schema, {**EXIT_SCHEMA, **PARTITIONS})


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
