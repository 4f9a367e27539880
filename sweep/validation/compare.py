"""One case's runs against its published values: a table with one row per (series, condition).

The table's columns are structured (numbers, booleans and short enums), so that
everything shown (terminal, ``validation.md``, the README) is formatted from
them, never re-parsed from text:

* ``verdict``: ``baseline``, ``pass``, ``fail``, ``not modelled``, ``no data``;
* ``interval_verdict``: whether the whole bootstrap interval of the ratio
  passes (``pass``), fails (``fail``) or straddles a bound (``mixed``);
* ``tolerance_kind`` (``factor``/``ratio``), ``tolerance_value``, and the
  pass region of the simulated ratio ``pass_low``..``pass_high``;
* ``within_run_ci95_pct`` / ``baseline_within_run_ci95_pct``: the mean over
  replicates of the run's own 95 % interval of the metric, in % of it (the
  dataset's ``<metric>_ci95_pct`` column; null when the model does not give one);
* ``warmup_bias_pct`` / ``baseline_warmup_bias_pct``: the largest ``|warmup_bias_pct|``
  over the replicates (the start transient left in the measured window, MSER
  truncation, model.metrics), which belongs to the run's main metric -- the
  series metric of every shipped case; null when the runs do not report it;
* ``reason``: why a row is not modelled or has no data; ``published_note``:
  published.yaml's note on the series (results published in words).

What is compared is a shape, not an absolute number: the ratio of a condition
to the case's baseline.  The simulated ratio is the ratio of the means over
replicates, with a 95 % percentile-bootstrap interval (replicates resampled
jointly when the two conditions share their seeds, i.e. differ only in
``features.*``).  The verdict uses the point estimate.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sweep.validation.cases import CI_SUFFIX, WARMUP_BIAS, Case
from sweep.validation.spec import EPS, Series, Tolerance, improvement
from sweep.validation.stats import RatioEstimate, ratio_interval

BASELINE, PASS, FAIL, MIXED, NOT_MODELLED, NO_DATA = (
    "baseline",
    "pass",
    "fail",
    "mixed",
    "not modelled",
    "no data",
)
VERDICTS = (BASELINE, PASS, FAIL, NOT_MODELLED, NO_DATA)

COLUMNS: dict[str, pl.DataType] = {
    "case": pl.String(),
    "series": pl.String(),
    "metric": pl.String(),
    "condition": pl.String(),
    "baseline": pl.String(),
    "published": pl.Float64(),
    "published_ratio": pl.Float64(),
    "published_improvement": pl.Float64(),
    "simulated": pl.Float64(),
    "simulated_ratio": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "simulated_improvement": pl.Float64(),
    "within_run_ci95_pct": pl.Float64(),
    "baseline_within_run_ci95_pct": pl.Float64(),
    "warmup_bias_pct": pl.Float64(),
    "baseline_warmup_bias_pct": pl.Float64(),
    "replicates": pl.Int64(),
    "paired": pl.Boolean(),
    "higher_is_better": pl.Boolean(),
    "tolerance_kind": pl.String(),
    "tolerance_value": pl.Float64(),
    "pass_low": pl.Float64(),
    "pass_high": pl.Float64(),
    "verdict": pl.String(),
    "interval_verdict": pl.String(),
    "reduced": pl.Boolean(),
    "reason": pl.String(),
    "published_note": pl.String(),
}


def empty_table() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)


def read_runs(output: Path, columns: list[str]) -> pl.DataFrame:
    """The ok runs of a sweep output with the given columns (those the dataset has)."""
    from pipelines.dataset import scan_partitioned
    from sweep import store

    runs_dir = Path(output) / store.RUNS_DIR
    if not runs_dir.is_dir() or not any(runs_dir.rglob("*.parquet")):
        return pl.DataFrame()
    lf = scan_partitioned(runs_dir)
    schema = lf.collect_schema()
    wanted = [c for c in dict.fromkeys(["status", "replicate", "seed", *columns]) if c in schema]
    return lf.select(wanted).filter(pl.col("status") == store.STATUS_OK).collect()


def _selected(runs: pl.DataFrame, select: Mapping[str, Any], metric: str) -> pl.DataFrame:
    """``replicate, seed, value, ci, bias`` of the runs that match, the metric finite, one row per
    replicate (``bias``: the largest ``|warmup_bias_pct|`` of the replicate's runs)."""
    empty = pl.DataFrame(
        schema={"replicate": pl.Int64, "seed": pl.Int64, "value": pl.Float64, "ci": pl.Float64, "bias": pl.Float64}
    )
    if runs.is_empty() or metric not in runs.columns or any(k not in runs.columns for k in select):
        return empty
    cond = pl.all_horizontal([pl.col(k) == v for k, v in select.items()]) if select else pl.lit(True)
    ci = (
        pl.col(metric + CI_SUFFIX).cast(pl.Float64)
        if metric + CI_SUFFIX in runs.columns
        else pl.lit(None, pl.Float64)
    )
    bias = pl.col(WARMUP_BIAS).cast(pl.Float64).abs() if WARMUP_BIAS in runs.columns else pl.lit(None, pl.Float64)
    frame = runs.filter(cond).select(
        pl.col("replicate").cast(pl.Int64),
        pl.col("seed").cast(pl.Int64),
        pl.col(metric).cast(pl.Float64).alias("value"),
        ci.alias("ci"),
        bias.alias("bias"),
    )
    frame = frame.filter(pl.col("value").is_finite())
    # one value per replicate (a design with duplicated rows would average them)
    return (
        frame.group_by("replicate")
        .agg(
            pl.col("seed").first(),
            pl.col("value").mean(),
            pl.col("ci").filter(pl.col("ci").is_finite()).mean(),
            pl.col("bias").filter(pl.col("bias").is_finite()).max(),
        )
        .sort("replicate")
    )


def interval_verdict_of(tol: Tolerance, est: RatioEstimate, pub_ratio: float, higher: bool) -> str | None:
    """``pass`` if every ratio of the interval passes, ``fail`` if none does, else ``mixed``."""
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return None
    low, high = tol.pass_range(pub_ratio, higher)
    if low - EPS <= est.low and est.high <= high + EPS:
        return PASS
    if est.high < low - EPS or est.low > high + EPS:
        return FAIL
    return MIXED


def _mean(frame: pl.DataFrame, column: str) -> float | None:
    return _finite_or_none(frame[column].mean() if frame.height else None)


def _max(frame: pl.DataFrame, column: str) -> float | None:
    return _finite_or_none(frame[column].max() if frame.height else None)


def _finite_or_none(value: Any) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _series_rows(case: Case, series: Series, runs: pl.DataFrame) -> list[dict[str, Any]]:
    compare = case.compare
    pub = case.series_values(series)
    baseline = compare.conditions[compare.baseline]
    base = _selected(runs, {**series.select, **baseline.select}, series.metric)
    rows: list[dict[str, Any]] = []
    for name, condition in compare.conditions.items():
        pub_ratio = pub.ratios[name]
        tol = series.tolerance
        row: dict[str, Any] = {
            "case": case.id,
            "series": series.label,
            "metric": series.metric,
            "condition": name,
            "baseline": compare.baseline,
            "published": pub.values[name] if pub.values else None,
            "published_ratio": pub_ratio,
            "published_improvement": improvement(pub_ratio, series.higher_is_better),
            "higher_is_better": series.higher_is_better,
            "tolerance_kind": tol.kind,
            "tolerance_value": tol.value,
            "reduced": case.quick,
            "published_note": pub.note or None,
        }
        if name != compare.baseline and math.isfinite(pub_ratio):
            row["pass_low"], row["pass_high"] = tol.pass_range(pub_ratio, series.higher_is_better)
        reason = series.not_modelled or condition.not_modelled
        if reason:
            row.update(verdict=BASELINE if name == compare.baseline else NOT_MODELLED, reason=reason)
            rows.append(row)
            continue
        if name == compare.baseline:
            row.update(
                simulated=_mean(base, "value"),
                simulated_ratio=1.0 if base.height else None,
                within_run_ci95_pct=_mean(base, "ci"),
                warmup_bias_pct=_max(base, "bias"),
                replicates=base.height,
                verdict=BASELINE,
            )
            rows.append(row)
            continue
        cond = _selected(runs, {**series.select, **condition.select}, series.metric)
        joined = cond.join(base, on="replicate", how="inner", suffix="_base")
        paired = joined.height > 0 and bool((joined["seed"] == joined["seed_base"]).all())
        if paired:
            est = ratio_interval(joined["value"].to_numpy(), joined["value_base"].to_numpy(), paired=True)
        else:
            est = ratio_interval(cond["value"].to_numpy(), base["value"].to_numpy(), paired=False)
        row.update(
            simulated=_mean(cond, "value"),
            within_run_ci95_pct=_mean(cond, "ci"),
            baseline_within_run_ci95_pct=_mean(base, "ci"),
            warmup_bias_pct=_max(cond, "bias"),
            baseline_warmup_bias_pct=_max(base, "bias"),
            replicates=est.n,
        )
        if not math.isfinite(est.ratio):
            row.update(verdict=NO_DATA, reason="no ok run of this condition or of the baseline")
        else:
            row.update(
                simulated_ratio=est.ratio,
                ci_low=est.low if math.isfinite(est.low) else None,
                ci_high=est.high if math.isfinite(est.high) else None,
                simulated_improvement=improvement(est.ratio, series.higher_is_better),
                paired=est.paired,
                verdict=PASS if tol.check(est.ratio, pub_ratio, series.higher_is_better) else FAIL,
                interval_verdict=interval_verdict_of(tol, est, pub_ratio, series.higher_is_better),
            )
        rows.append(row)
    return rows


def evaluate(case: Case, runs: pl.DataFrame) -> pl.DataFrame:
    """The comparison rows of one case from its ok runs (with the selecting keys and metrics)."""
    rows = [row for series in case.compare.series for row in _series_rows(case, series, runs)]
    return pl.DataFrame(rows, schema=COLUMNS)
