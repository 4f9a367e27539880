"""Synthetic sweep outputs with planted effects, of the exact shape the sweep writes.

For the report's tests and benchmark: the report can be checked against
effects it must recover (a feature that multiplies a metric by 1.2 must come
out at 1.2), and timed at any size, without running the simulator.  Nothing
here restates the dataset contract: the columns, their types and roles, and
the manifest's ``schema`` come from ``sweep.store`` (itself derived from the
model's result record and scenario), and the files are written the way the
store writes them (hive partitions in the paths only).  A metric this module
has no value model for is null (not applicable), as the model leaves a metric
that does not apply.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from sweep import store

Effect = float | Mapping[float, float]  # a ratio on/off, or one per overcommit level

# metric -> (base value, exponent of overcommit, workload kinds it applies to; empty: all)
METRIC_MODEL: dict[str, tuple[float, float, tuple[str, ...]]] = {
    "messages_per_s": (2.0e6, -0.6, ("hackbench",)),
    "hackbench_time_s": (0.8, 0.6, ("hackbench",)),
    "records_per_s": (9.0e4, -0.5, ("ebizzy",)),
    "acquisitions_per_s": (3.0e6, -0.8, ("lockbench",)),
    "lock_wait_p99_us": (12.0, 1.0, ("lockbench",)),
    "compute_s_per_s": (8.0, -1.0, ("cpu-bound",)),
    "timer_latency_min_us": (2.0, 0.1, ("cyclictest",)),
    "timer_latency_avg_us": (6.0, 0.5, ("cyclictest",)),
    "timer_latency_p50_us": (5.0, 0.4, ("cyclictest",)),
    "timer_latency_p99_us": (30.0, 1.0, ("cyclictest",)),
    "timer_latency_max_us": (120.0, 1.2, ("cyclictest",)),
    "ipis_per_s": (5.0e4, -0.2, ()),
    "ipi_latency_p50_us": (3.0, 0.5, ()),
    "ipi_latency_p99_us": (25.0, 1.0, ()),
    "exits_per_s": (1.5e5, -0.1, ()),
    "exit_pct": (4.0, 0.2, ()),
    "steal_pct": (5.0, 1.0, ()),
    "guest_pct": (70.0, -0.2, ()),
    "halted_pct": (20.0, -0.3, ()),
    "host_context_switches_per_s": (2.0e5, 0.5, ()),
    "sim_s": (0.18, 0.0, ()),
    "events": (4.0e6, 0.3, ()),
}
DESIGN_FILE = "design.parquet"  # the sampler's rows in problem space, as the sweep writes them
# Exit reasons of a synthetic run, as model.metrics records them: (reason, detail, samples, mean ns)
EXITS: tuple[tuple[str, str, int, int], ...] = (
    ("EXTERNAL_INTERRUPT", "", 4000, 900),
    ("MSR_WRITE", "0x830", 6000, 1400),
    ("MSR_WRITE", "0x6e0", 2500, 1100),
    ("HLT", "", 3000, 2500),
    ("PAUSE", "", 800, 1800),
    ("VMCALL", "", 500, 1600),
)


@dataclass
class GridSpec:
    """A full-factorial synthetic sweep.  ``effects[feature][metric]`` is the planted ratio on/off."""

    hardware: Sequence[str] = ("cascadelake", "rome")
    workloads: Sequence[str] = ("hackbench",)
    overcommit: Sequence[float] = (1.0, 2.0)
    vcpus: Sequence[int] = (8,)
    apic: Sequence[str] = ("x2apic_cluster",)
    features: Sequence[str] = ("features.ipi_fastpath",)
    effects: Mapping[str, Mapping[str, Effect]] = field(default_factory=dict)
    replicates: int = 3
    noise: float = 0.05
    seed: int = 0
    failed_fraction: float = 0.0
    missing_fraction: float = 0.0
    name: str = "synthetic"
    design: str = "grid"
    report_metrics: Sequence[str] | None = None
    report_by: Sequence[str] | None = None
    exits: bool = True


def _factors(spec: GridSpec) -> dict[str, list[Any]]:
    """The varying factors in design order (the last varies fastest)."""
    factors: dict[str, list[Any]] = {
        "hardware": list(spec.hardware),
        "workload.kind": list(spec.workloads),
        "overcommit": [float(x) for x in spec.overcommit],
        "vm.vcpus": [int(x) for x in spec.vcpus],
        "vm.apic": list(spec.apic),
    }
    factors.update({f: [False, True] for f in spec.features})
    return factors


def _design(spec: GridSpec) -> pl.DataFrame:
    """One row per run: the factors' values, design_index and replicate."""
    factors = _factors(spec)
    sizes = [len(v) for v in factors.values()]
    points = int(np.prod(sizes))
    index = np.repeat(np.arange(points, dtype=np.int64), spec.replicates)
    replicate = np.tile(np.arange(spec.replicates, dtype=np.int32), points)
    codes = np.unravel_index(index, sizes)
    columns = {
        name: np.asarray(values, dtype=object if isinstance(values[0], str) else None)[code]
        for (name, values), code in zip(factors.items(), codes, strict=True)
    }
    return pl.DataFrame({"design_index": index, "replicate": replicate, **columns})


def _effect_multiplier(design: pl.DataFrame, spec: GridSpec, metric: str) -> np.ndarray:
    """Product of the planted ratios of the features that are on in each run."""
    factor = np.ones(design.height)
    over = design["overcommit"].to_numpy()
    for feature, per_metric in spec.effects.items():
        effect = per_metric.get(metric)
        if effect is None:
            continue
        on = design[feature].to_numpy().astype(bool)
        if isinstance(effect, Mapping):
            ratio = np.array([effect.get(float(o), 1.0) for o in over])
        else:
            ratio = np.full(design.height, float(effect))
        factor *= np.where(on, ratio, 1.0)
    return factor


def _metrics(design: pl.DataFrame, spec: GridSpec, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every metric: base x overcommit^k x hardware and vCPU factors x planted effects x noise; NaN
    where the metric does not apply to the run's workload."""
    over = design["overcommit"].to_numpy()
    hw_codes = design["hardware"].cast(pl.Categorical).to_physical().to_numpy()
    vcpus = design["vm.vcpus"].to_numpy()
    kind = design["workload.kind"].to_numpy()
    out: dict[str, np.ndarray] = {}
    for metric, (base, exponent, kinds) in METRIC_MODEL.items():
        value = base * over**exponent * (1.0 + 0.15 * hw_codes) * (vcpus / 8.0) ** 0.1
        value = value * _effect_multiplier(design, spec, metric)
        value = value * np.exp(spec.noise * rng.standard_normal(design.height))
        if kinds:
            value = np.where(np.isin(kind, kinds), value, np.nan)
        out[metric] = value
    out["wall_s"] = 0.5 + 0.1 * rng.random(design.height)
    return out


def config_hash(spec_text: str) -> str:
    return hashlib.sha256(spec_text.encode()).hexdigest()[:16]


def runs_frame(spec: GridSpec) -> pl.DataFrame:
    """The runs table of a grid sweep (every column of the schema, partitions included), before
    missing runs are dropped and files written."""
    rng = np.random.default_rng(spec.seed)
    design = _design(spec)
    metrics = _metrics(design, spec, rng)
    n = design.height
    failed = rng.random(n) < spec.failed_fraction
    for name, values in metrics.items():
        if name != "wall_s":
            values[failed] = np.nan
    chash = config_hash(repr(spec))
    index = design["design_index"]
    values: dict[str, Any] = {
        "point_id": pl.format("{}-{}-{}", pl.lit(chash[:8]), index, design["replicate"]),
        "sweep": pl.lit(spec.name),
        "config_hash": pl.lit(chash),
        "design_index": index,
        "replicate": design["replicate"],
        "seed": (1000 + design["replicate"]).cast(pl.Int64),
        "status": pl.Series(np.where(failed, "error", "ok")),
        "error_type": pl.Series(np.where(failed, "SimulationError", "")).replace("", None),
        "error": pl.Series(np.where(failed, "synthetic failure: event queue overflow", "")).replace("", None),
        "workload": design["workload.kind"],
    }
    values.update({c: design[c] for c in design.columns if c not in ("design_index", "replicate")})
    values.update(metrics)
    for column in store.runs_columns():  # within-run 95 % half-widths: about 2 % where the metric applies
        if column.role == store.ROLE_UNCERTAINTY and column.of in metrics:
            spread = 2.0 * (1.0 + 0.1 * rng.random(n))
            values[column.name] = np.where(np.isnan(metrics[column.of]), np.nan, spread)
    return complete(pl.DataFrame({"design_index": index}), values)


def complete(frame: pl.DataFrame, values: Mapping[str, Any]) -> pl.DataFrame:
    """Every column of the runs schema, in order, with its type: ``values`` where given (Series,
    expressions or scalars), else the parameter's default or null."""
    columns = []
    for column in store.runs_columns():
        dtype = _POLARS[str(column.type)]
        value = values.get(column.name, column.default if column.role == store.ROLE_PARAM else None)
        if isinstance(value, np.ndarray | pl.Series):
            value = pl.Series(value)
            value = value.fill_nan(None) if value.dtype.is_float() else value
        expr = (
            value
            if isinstance(value, pl.Expr)
            else pl.lit(value)
            if not isinstance(value, pl.Series)
            else value
        )
        columns.append((expr if isinstance(expr, pl.Expr) else pl.lit(expr)).cast(dtype).alias(column.name))
    return frame.select(columns)


_POLARS: dict[str, pl.DataType] = {
    "string": pl.String(),
    "int64": pl.Int64(),
    "int32": pl.Int32(),
    "double": pl.Float64(),
    "bool": pl.Boolean(),
}


def exits_frame(runs: pl.DataFrame, seed: int = 0) -> pl.DataFrame:
    """A few exit rows per ok run, MSR_WRITE split by MSR."""
    ok = runs.filter(pl.col("status") == "ok").select(
        "point_id", "sweep", "config_hash", "replicate", "seed", "hardware", "workload"
    )
    k = len(EXITS)
    rng = np.random.default_rng(seed)
    rows = ok.height * k
    base = ok.select(pl.all().repeat_by(k).explode()) if ok.height else ok
    samples = np.tile([e[2] for e in EXITS], ok.height) + rng.integers(0, 100, rows)
    mean_ns = np.tile([e[3] for e in EXITS], ok.height) * (1.0 + 0.1 * rng.random(rows))
    return base.with_columns(
        pl.Series("reason", np.tile([e[0] for e in EXITS], ok.height)),
        pl.Series("detail", np.tile([e[1] for e in EXITS], ok.height)),
        pl.Series("samples", samples.astype(np.int64)),
        pl.Series("total_ns", (samples * mean_ns).astype(np.int64)),
        pl.Series("min_ns", (mean_ns * 0.4).astype(np.int64)),
        pl.Series("max_ns", (mean_ns * 8.0).astype(np.int64)),
    )


def write_partitioned(frame: pl.DataFrame, directory: Path, file_schema: pa.Schema) -> None:
    """Write a frame as the sweep's store does: one zstd Parquet file per (hardware, workload),
    under ``hardware=H/workload=W``, the partition columns in the paths only."""
    for (hardware, workload), part in frame.group_by("hardware", "workload", maintain_order=True):
        target = directory / store.partition_dir(str(hardware), str(workload))
        target.mkdir(parents=True, exist_ok=True)
        table = part.select(file_schema.names).to_arrow().cast(file_schema)
        pq.write_table(table, target / "part-0.parquet", compression="zstd", row_group_size=64 * 1024)


def manifest(
    name: str,
    design: str,
    params: Mapping[str, Any],
    metrics: Sequence[str] | None,
    counts: Mapping[str, int],
    problem: Mapping[str, Any] | None = None,
    replicates: int = 1,
    by: Sequence[str] | None = None,
    with_schema: bool = True,
) -> dict[str, Any]:
    """A manifest.json of the contract's shape."""
    config = {
        "name": name,
        "description": f"synthetic {design} sweep with planted effects",
        "space": {"design": design, "params": dict(params)},
        "replicates": replicates,
        "report": {"metrics": list(metrics) if metrics else None, "by": list(by) if by else None},
    }
    out: dict[str, Any] = {
        "name": name,
        "config": config,
        "config_hash": config_hash(json.dumps(config, sort_keys=True, default=str)),
        "counts": dict(counts),
        "code_version": "synthetic",
        "launches": [
            {
                "started": "2026-01-01T00:00:00+00:00",
                "finished": "2026-01-01T00:01:40+00:00",
                "elapsed_s": 100.0,
                "runs_written": counts.get("ok", 0) + counts.get("error", 0),
            }
        ],
        "elapsed_s": 100.0,
        "schema": store.schema_json() if with_schema else None,
    }
    if problem is not None:
        out["problem"] = dict(problem)
    return out


def _drop_missing(runs: pl.DataFrame, fraction: float, seed: int) -> pl.DataFrame:
    if fraction <= 0:
        return runs
    keep = np.random.default_rng(seed + 1).random(runs.height) >= fraction
    return runs.filter(pl.Series(keep))


def write_grid_sweep(
    output_dir: Path | str, spec: GridSpec, transform: Callable[[pl.DataFrame], pl.DataFrame] | None = None
) -> Path:
    """Write a synthetic grid sweep (runs, exits, manifest) into ``output_dir``; return it.

    ``transform`` edits the planned runs first (drop design points, change values): what it returns
    is the plan the manifest counts."""
    output_dir = Path(output_dir)
    full = runs_frame(spec)
    full = transform(full) if transform is not None else full
    runs = _drop_missing(full, spec.missing_fraction, spec.seed)
    write_partitioned(runs, output_dir / "runs", store.runs_file_schema())
    if spec.exits:
        write_partitioned(exits_frame(runs, spec.seed), output_dir / "exits", store.exits_file_schema())
    counts = _counts(runs, full.height)
    params = {k: list(v) for k, v in _factors(spec).items()}
    doc = manifest(
        spec.name, spec.design, params, spec.report_metrics, counts, None, spec.replicates, spec.report_by
    )
    (output_dir / "manifest.json").write_text(json.dumps(doc, indent=2))
    return output_dir


def _counts(runs: pl.DataFrame, total: int) -> dict[str, int]:
    ok = int((runs["status"] == "ok").sum())
    error = runs.height - ok
    return {"ok": ok, "error": error, "missing": total - runs.height, "total": total}


def write_design_sweep(
    output_dir: Path | str,
    design: str,
    problem: Mapping[str, Any],
    x: np.ndarray,
    outputs: Mapping[str, np.ndarray],
    *,
    replicates: int = 1,
    drop_points: Sequence[int] = (),
    failed_points: Sequence[int] = (),
    name: str = "synthetic-design",
    hardware: str = "cascadelake",
    workload: str = "hackbench",
) -> Path:
    """Write a sampled sweep (sobol, morris): row i of ``x`` is design_index i, with the metric
    values ``outputs[metric][i]`` in every replicate; ``drop_points`` rows are left out (missing),
    ``failed_points`` rows are kept with status error and NaN metrics."""
    output_dir = Path(output_dir)
    rows, _ = x.shape
    index = np.repeat(np.arange(rows, dtype=np.int64), replicates)
    replicate = np.tile(np.arange(replicates, dtype=np.int32), rows)
    values = {
        "point_id": pl.Series([f"p{i}-{r}" for i, r in zip(index, replicate, strict=True)]),
        "sweep": name,
        "config_hash": "design",
        "design_index": pl.Series(index),
        "replicate": pl.Series(replicate),
        "seed": pl.Series((1000 + replicate).astype(np.int64)),
        "status": "ok",
        "wall_s": pl.Series(np.full(len(index), 0.5)),
        "hardware": hardware,
        "workload": workload,
        "workload.kind": workload,
        **{n: pl.Series(x[index, j]) for j, n in enumerate(problem["names"])},
        **{m: pl.Series(np.asarray(v, dtype=np.float64)[index]) for m, v in outputs.items()},
        "sim_s": pl.Series(np.full(len(index), 0.18)),
    }
    frame = complete(pl.DataFrame({"_": np.zeros(len(index))}), values)
    failed = pl.col("design_index").is_in(list(failed_points))
    frame = frame.with_columns(
        pl.when(failed).then(pl.lit("error")).otherwise(pl.col("status")).alias("status"),
        pl.when(failed).then(pl.lit("SimulationError")).otherwise(pl.col("error_type")).alias("error_type"),
        pl.when(failed).then(pl.lit("synthetic failure")).otherwise(pl.col("error")).alias("error"),
        *[pl.when(failed).then(None).otherwise(pl.col(m)).alias(m) for m in outputs],
    )
    kept = frame.filter(~pl.col("design_index").is_in(list(drop_points)))
    write_partitioned(kept, output_dir / "runs", store.runs_file_schema())
    pl.DataFrame(
        {
            "design_index": np.arange(rows, dtype=np.int64),
            **{n: x[:, j] for j, n in enumerate(problem["names"])},
        }
    ).write_parquet(output_dir / DESIGN_FILE)
    problem = {**problem, "X_file": DESIGN_FILE, "scales": ["linear"] * len(problem["names"])}
    counts = _counts(kept, frame.height)
    params = {
        n: {"low": lo, "high": hi} for n, (lo, hi) in zip(problem["names"], problem["bounds"], strict=True)
    }
    doc = manifest(name, design, params, list(outputs), counts, problem, replicates)
    (output_dir / "manifest.json").write_text(json.dumps(doc, indent=2))
    return output_dir
