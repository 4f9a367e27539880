"""Main effects and two-way interaction tables for grid and factorial designs.

In a full grid every level of a parameter meets every combination of the
others equally often, so the mean of a metric per level is a fair main effect,
and the mean per (feature setting, level of another factor) shows how a
feature's effect changes with that factor.  For sampled designs (random, lhs,
sobol, morris) those means mix everything else and are not computed.
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


def level_means(runs_ok: pl.LazyFrame, parameter: str, metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean of each metric per level of one parameter, levels in value order."""
    return (
        runs_ok.group_by(parameter)
        .agg(pl.len().alias("runs"), *[exprs.mean_of(m) for m in metrics])
        .sort(parameter, nulls_last=True)
        .select(
            pl.lit(parameter).alias("parameter"),
            exprs.as_level(parameter).alias("level"),
            pl.col("runs").cast(pl.Int64),
            *metrics,
        )
    )


def main_effects(runs_ok: pl.LazyFrame, parameters: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Wide table: one row per (parameter, level), one column per metric (its mean)."""
    frames = [level_means(runs_ok, p, metrics) for p in parameters]
    if not frames:
        return pl.LazyFrame(schema={"parameter": pl.String, "level": pl.String, "runs": pl.Int64})
    return pl.concat(frames, how="vertical")


def two_way(runs_ok: pl.LazyFrame, feature: str, factor: str, metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean of each metric with the feature off and on, per level of ``factor``, and their ratio."""
    sides = [exprs.side_mean(m, feature, on) for m in metrics for on in (False, True)]
    wide = runs_ok.group_by(factor).agg(sides).sort(factor, nulls_last=True)
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


def interactions(
    runs_ok: pl.LazyFrame, features: Sequence[str], factors: Sequence[str], metrics: Sequence[str]
) -> pl.LazyFrame:
    """Every feature x factor two-way table stacked (long: one row per feature, factor, level, metric)."""
    frames = [two_way(runs_ok, f, x, metrics) for f in features for x in factors if x != f]
    if not frames or not metrics:
        return pl.LazyFrame(
            schema={
                "feature": pl.String,
                "factor": pl.String,
                "level": pl.String,
                "metric": pl.String,
                "mean_off": pl.Float64,
                "mean_on": pl.Float64,
                "ratio_of_means": pl.Float64,
            }
        )
    return pl.concat(frames, how="vertical")
