"""Main effects and two-way tables for grid and factorial designs, guarded against confounding.

Every mean here is a roll-up of one aggregation, :func:`cells`: per
combination of the key columns, the runs and each metric's sum, sum of squares
and count over the runs where it applies.  Means (and their between-run 95 %
intervals) of any coarser grouping follow exactly from those, so the runs are
read once however many tables and plots need means.

Two guards keep a mean from passing for an effect:

- **Main effects** (mean per level of one parameter) are marginal means over
  every other parameter.  They compare like with like only when each level of
  the parameter meets the same combinations of the others; a parameter whose
  levels do not (a design that sets ``ipi_fastpath=false`` only with
  ``x2apic_phys``) has its rows suppressed, naming the parameters that differ.
- **Two-way tables** (a feature off and on, per level of a factor) use matched
  cells only: combinations of every other parameter that were run with the
  feature both off and on.  Cells with only one setting are left out and
  counted, so the two sides of a row always describe the same points.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipelines import exprs

GRID_DESIGNS = ("grid", "factorial")
TWO_WAY_FACTORS = ("overcommit", "hardware")
Z95 = 1.959963984540054  # two-sided 95 % normal quantile


def applies(design: str | None) -> bool:
    """Main effects apply to grid and factorial designs (and to a sweep whose manifest is lost)."""
    return design is None or design in GRID_DESIGNS


def total(metric: str) -> str:
    return f"{metric}|sum"


def squares(metric: str) -> str:
    return f"{metric}|sq"


def count(metric: str) -> str:
    return f"{metric}|n"


def cells(runs_ok: pl.LazyFrame, keys: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Per combination of ``keys``: runs, and each metric's sum, sum of squares and count over the
    runs where it applies."""
    return runs_ok.group_by(list(dict.fromkeys(keys))).agg(
        pl.len().cast(pl.Int64).alias("runs"),
        *[exprs.valid(m).sum().alias(total(m)) for m in metrics],
        *[(exprs.valid(m) ** 2).sum().alias(squares(m)) for m in metrics],
        *[exprs.valid(m).count().cast(pl.Int64).alias(count(m)) for m in metrics],
    )


def pooled_mean(metric: str, where: pl.Expr | None = None) -> pl.Expr:
    """Mean of a metric over the cells (optionally those where ``where`` holds), from sums and counts."""
    s, n = pl.col(total(metric)), pl.col(count(metric))
    if where is not None:
        s, n = s.filter(where), n.filter(where)
    return pl.when(n.sum() > 0).then(s.sum() / n.sum()).otherwise(None).alias(metric)


def pooled_stats(metric: str, where: pl.Expr | None = None, suffix: str = "") -> list[pl.Expr]:
    """Mean, 95 % half-width of the mean (normal, between runs) and n of a metric over the cells."""
    s, q, n = pl.col(total(metric)), pl.col(squares(metric)), pl.col(count(metric))
    if where is not None:
        s, q, n = s.filter(where), q.filter(where), n.filter(where)
    ns, ss = n.sum(), s.sum()
    mean = pl.when(ns > 0).then(ss / ns).otherwise(None)
    var = pl.when(ns > 1).then(((q.sum() - ss * ss / ns) / (ns - 1)).clip(lower_bound=0.0)).otherwise(None)
    return [
        mean.alias(f"{metric}{suffix}"),
        (Z95 * (var / ns).sqrt()).alias(f"{metric}{suffix}|ci"),
        ns.cast(pl.Int64).alias(f"{metric}{suffix}|count"),
    ]


def rollup(cell_frame: pl.LazyFrame, keys: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Runs, and mean, 95 % half-width (``metric|ci``) and n (``metric|count``) of each metric, per
    combination of ``keys`` (a subset of the cells' keys)."""
    return cell_frame.group_by(list(keys)).agg(
        pl.col("runs").sum(), *[e for m in metrics for e in pooled_stats(m)]
    )


COVERAGE = 0.9  # share of the other parameters' combinations every level must meet


def balance(cell_frame: pl.DataFrame, parameter: str, others: Sequence[str]) -> list[str]:
    """The other parameters that make the levels of ``parameter`` incomparable; [] when none do.

    A parameter ``q`` is named when the levels of ``parameter`` were run with different sets of
    ``q``'s values (rome's ``ipi_fastpath=false`` only with ``x2apic_phys``).  When every such set is
    the same but fewer than :data:`COVERAGE` of the combinations of the others are met by every
    level, ``["(their combinations)"]``.  Runs lost at random (failed, missing) leave the sets whole
    and the coverage near 1, so partial data keeps its main effects.
    """
    others = [o for o in others if o != parameter and o in cell_frame.columns]
    if not others:
        return []
    combos = cell_frame.select(*others, parameter).unique()
    levels = combos[parameter].n_unique()
    differing = [
        o for o in others if combos.select(parameter, o).unique().height != levels * combos[o].n_unique()
    ]
    if differing:
        return differing
    per_combo = combos.group_by(others).agg(pl.col(parameter).n_unique().alias("levels"))
    covered = float((per_combo["levels"] == levels).mean() or 0.0)
    return [] if covered >= COVERAGE else ["(their combinations)"]


MAIN_SCHEMA = {"parameter": pl.String, "level": pl.String, "runs": pl.Int64}


def main_effects(
    cell_frame: pl.DataFrame, parameters: Sequence[str], metrics: Sequence[str]
) -> tuple[pl.DataFrame, dict[str, list[str]]]:
    """Wide table: one row per (parameter, level), per metric its marginal mean, 95 % half-width and
    n; and the parameters left out because their levels differ in the others (name -> differing)."""
    suppressed: dict[str, list[str]] = {}
    frames = []
    for p in parameters:
        differing = balance(cell_frame, p, parameters)
        if differing:
            suppressed[p] = differing
            continue
        frames.append(
            rollup(cell_frame.lazy(), [p], metrics)
            .sort(p, nulls_last=True)
            .select(
                pl.lit(p).alias("parameter"),
                exprs.as_level(p).alias("level"),
                pl.col("runs").cast(pl.Int64),
                *[c for m in metrics for c in (m, f"{m}|ci", f"{m}|count")],
            )
        )
    if not frames:
        return pl.DataFrame(schema=MAIN_SCHEMA), suppressed
    return pl.concat(pl.collect_all(frames), how="vertical"), suppressed


def matched(cell_frame: pl.LazyFrame, feature: str, keys: Sequence[str]) -> pl.LazyFrame:
    """The cells whose combination of ``keys`` (every key but the feature) was run with the
    feature both off and on."""
    others = [k for k in keys if k != feature]
    both = pl.col(feature).n_unique().over(others) == 2 if others else pl.col(feature).n_unique() == 2
    return cell_frame.filter(both)


INTERACTION_SCHEMA = {
    "feature": pl.String,
    "factor": pl.String,
    "level": pl.String,
    "metric": pl.String,
    "matched_cells": pl.Int64,
    "unmatched_cells": pl.Int64,
    "runs_off": pl.Int64,
    "runs_on": pl.Int64,
    "mean_off": pl.Float64,
    "ci_off": pl.Float64,
    "mean_on": pl.Float64,
    "ci_on": pl.Float64,
    "ratio_of_matched_means": pl.Float64,
}


def two_way(
    cell_frame: pl.LazyFrame, feature: str, factor: str, keys: Sequence[str], metrics: Sequence[str]
) -> pl.LazyFrame:
    """Mean of each metric with the feature off and on, per level of ``factor``, over matched cells
    only (see :func:`matched`), with the cells left out for lack of a partner counted."""
    others = [k for k in keys if k != feature]
    flagged = cell_frame.with_columns(
        (pl.col(feature).n_unique().over(others) == 2).alias("__matched")
        if others
        else pl.lit(True).alias("__matched")
    )
    on, off = pl.col(feature) & pl.col("__matched"), ~pl.col(feature) & pl.col("__matched")
    aggs = [
        pl.col("__matched").sum().cast(pl.Int64).alias("matched_cells"),
        (~pl.col("__matched")).sum().cast(pl.Int64).alias("unmatched_cells"),
        pl.col("runs").filter(off).sum().cast(pl.Int64).alias("runs_off"),
        pl.col("runs").filter(on).sum().cast(pl.Int64).alias("runs_on"),
    ]
    for m in metrics:
        aggs += pooled_stats(m, off, "|off")[:2] + pooled_stats(m, on, "|on")[:2]
    wide = flagged.group_by(factor).agg(aggs).sort(factor, nulls_last=True)
    per_metric = [
        wide.select(
            pl.lit(feature).alias("feature"),
            pl.lit(factor).alias("factor"),
            exprs.as_level(factor).alias("level"),
            pl.lit(m).alias("metric"),
            "matched_cells",
            "unmatched_cells",
            "runs_off",
            "runs_on",
            pl.col(f"{m}|off").alias("mean_off"),
            pl.col(f"{m}|off|ci").alias("ci_off"),
            pl.col(f"{m}|on").alias("mean_on"),
            pl.col(f"{m}|on|ci").alias("ci_on"),
            exprs.ratio(f"{m}|on", f"{m}|off").alias("ratio_of_matched_means"),
        )
        for m in metrics
    ]
    return pl.concat(per_metric, how="vertical")


def interactions(
    cell_frame: pl.LazyFrame,
    features: Sequence[str],
    factors: Sequence[str],
    keys: Sequence[str],
    metrics: Sequence[str],
) -> pl.LazyFrame:
    """Every feature x factor two-way table stacked (long: one row per feature, factor, level, metric)."""
    frames = (
        [two_way(cell_frame, f, x, keys, metrics) for f in features for x in factors if x != f]
        if metrics
        else []
    )
    if not frames:
        return pl.LazyFrame(schema=INTERACTION_SCHEMA)
    return pl.concat(frames, how="vertical").select(list(INTERACTION_SCHEMA))
