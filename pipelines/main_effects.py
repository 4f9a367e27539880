"""Main effects and two-way interaction tables for grid and factorial designs.

In a full grid every level of a parameter meets every combination of the
others equally often, so the mean of a metric per level is a fair main effect,
and the mean per (feature setting, level of another factor) shows how a
feature's effect changes with that factor.  For sampled designs (random, lhs,
sobol, morris) those means mix everything else and are not computed.

Every mean here is a roll-up of one aggregation, :func:`cells`: per
combination of the key columns, the sum and the count of each metric's valid
values.  Means of any coarser grouping follow exactly from those sums, so the
runs are read once however many tables and plots need means.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipelines import exprs

GRID_DESIGNS = ("grid", "factorial")
TWO_WAY_FACTORS = ("overcommit", "hardware")


def applies(design: str | None) -> bool:
    """Main effects apply to grid and factorial designs (and to a sweep whose manifest is lost)."""
    return design is None or design in GRID_DESIGNS


def total(metric: str) -> str:
    return f"{metric}|sum"


def count(metric: str) -> str:
    return f"{metric}|n"


def cells(runs_ok: pl.LazyFrame, keys: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Per combination of ``keys``: runs, and each metric's sum and count over the runs where it applies."""
    return runs_ok.group_by(list(dict.fromkeys(keys))).agg(
        pl.len().cast(pl.Int64).alias("runs"),
        *[exprs.valid(m).sum().alias(total(m)) for m in metrics],
        *[exprs.valid(m).count().cast(pl.Int64).alias(count(m)) for m in metrics],
    )


def pooled_mean(metric: str, where: pl.Expr | None = None) -> pl.Expr:
    """Mean of a metric over the cells (optionally those where ``where`` holds), from sums and counts."""
    s, n = pl.col(total(metric)), pl.col(count(metric))
    if where is not None:
        s, n = s.filter(where), n.filter(where)
    return pl.when(n.sum() > 0).then(s.sum() / n.sum()).otherwise(None).alias(metric)


def rollup(cell_frame: pl.LazyFrame, keys: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Runs and mean of each metric per combination of ``keys`` (a subset of the cells' keys)."""
    return cell_frame.group_by(list(keys)).agg(pl.col("runs").sum(), *[pooled_mean(m) for m in metrics])


def level_means(cell_frame: pl.LazyFrame, parameter: str, metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean of each metric per level of one parameter, levels in value order."""
    return (
        rollup(cell_frame, [parameter], metrics)
        .sort(parameter, nulls_last=True)
        .select(
            pl.lit(parameter).alias("parameter"),
            exprs.as_level(parameter).alias("level"),
            pl.col("runs").cast(pl.Int64),
            *metrics,
        )
    )


def main_effects(cell_frame: pl.LazyFrame, parameters: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Wide table: one row per (parameter, level), one column per metric (its mean)."""
    frames = [level_means(cell_frame, p, metrics) for p in parameters]
    if not frames:
        return pl.LazyFrame(schema={"parameter": pl.String, "level": pl.String, "runs": pl.Int64})
    return pl.concat(frames, how="vertical")


def two_way(cell_frame: pl.LazyFrame, feature: str, factor: str, metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean of each metric with the feature off and on, per level of ``factor``, and their ratio."""
    sides = [
        pooled_mean(m, pl.col(feature) if on else ~pl.col(feature)).alias(f"{m}|{'on' if on else 'off'}")
        for m in metrics
        for on in (False, True)
    ]
    wide = cell_frame.group_by(factor).agg(sides).sort(factor, nulls_last=True)
    per_metric = [
        wide.select(
            pl.lit(feature).alias("feature"),
            pl.lit(factor).alias("factor"),
            exprs.as_level(factor).alias("level"),
            pl.lit(m).alias("metric"),
            pl.col(f"{m}|off").alias("mean_off"),
            pl.col(f"{m}|on").alias("mean_on"),
            exprs.ratio(f"{m}|on", f"{m}|off").alias("ratio_of_means"),
        )
        for m in metrics
    ]
    return pl.concat(per_metric, how="vertical")


INTERACTION_SCHEMA = {
    "feature": pl.String,
    "factor": pl.String,
    "level": pl.String,
    "metric": pl.String,
    "mean_off": pl.Float64,
    "mean_on": pl.Float64,
    "ratio_of_means": pl.Float64,
}


def interactions(
    cell_frame: pl.LazyFrame, features: Sequence[str], factors: Sequence[str], metrics: Sequence[str]
) -> pl.LazyFrame:
    """Every feature x factor two-way table stacked (long: one row per feature, factor, level, metric)."""
    frames = (
        [two_way(cell_frame, f, x, metrics) for f in features for x in factors if x != f] if metrics else []
    )
    if not frames:
        return pl.LazyFrame(schema=INTERACTION_SCHEMA)
    return pl.concat(frames, how="vertical")
