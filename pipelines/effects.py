"""Feature effects: the paired ratio on/off of each boolean feature, with bootstrap intervals.

Two runs pair for feature F when they agree on every other parameter that
varies in the sweep and on ``replicate`` (the sweep gives such runs the same
seed).  Each pair gives one ratio ``metric(F on) / metric(F off)`` per metric;
the effect is the median ratio with a 95 % percentile-bootstrap interval, over
all pairs and within each level of each breakdown column.  An interval that
contains 1, or fewer than :data:`MIN_PAIRS` pairs, means the effect is not shown.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl

from pipelines import exprs
from pipelines.bootstrap import median_ci

MIN_PAIRS = 5  # below this, an interval of a median says nothing
ALL = "all"  # the ``by`` value of the overall rows
DEFAULT_BY = ("overcommit", "hardware", "vm.vcpus", "vm.apic")

EFFECT_SCHEMA = {
    "feature": pl.String,
    "metric": pl.String,
    "by": pl.String,
    "level": pl.String,
    "pairs": pl.Int64,
    "median_ratio": pl.Float64,
    "ci_low": pl.Float64,
    "ci_high": pl.Float64,
    "change_pct": pl.Float64,
    "shown": pl.Boolean,
}


def pair_keys(feature: str, varying: Sequence[str], by: Sequence[str]) -> list[str]:
    """The columns on which the two runs of a pair agree: every other varying column, the breakdown
    columns (constant ones change nothing) and the replicate."""
    keys = [c for c in dict.fromkeys([*varying, *by]) if c != feature]
    return [*keys, "replicate"]


def pair_groups(runs_ok: pl.LazyFrame, feature: str, keys: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """One row per group of ``keys``: each metric's mean with the feature on and off, and flags
    saying whether both settings are there, whether their seeds differ, whether a run is duplicated."""
    sides = [exprs.side_mean(m, feature, on) for m in metrics for on in (True, False)]
    return runs_ok.group_by(keys).agg(
        *sides,
        pl.col(feature).any().alias("has_on"),
        (~pl.col(feature)).any().alias("has_off"),
        (pl.col("seed").n_unique() > 1).alias("seed_differs"),
        (pl.len() > 2).alias("duplicated"),
    )


def paired_ratios(groups: pl.LazyFrame, feature: str, metrics: Sequence[str], by: Sequence[str]) -> pl.LazyFrame:
    """One row per (pair, metric): ``feature``, ``metric``, ``ratio`` and the breakdown columns as text.

    Pairs where either side lacks the metric (NaN: not applicable) or where the
    ratio is not finite (off side 0) are dropped.  A breakdown by the feature
    itself is meaningless and comes back null.
    """
    levels = [exprs.as_level(c) if c != feature else pl.lit(None, pl.String).alias(c) for c in by]
    ratios = groups.select(*levels, *[exprs.ratio(f"{m}|on", f"{m}|off").alias(m) for m in metrics])
    return (
        ratios.unpivot(on=list(metrics), index=list(by), variable_name="metric", value_name="ratio")
        .drop_nulls("ratio")
        .select(pl.lit(feature).alias("feature"), "metric", "ratio", *by)
    )


def pair_counts(groups: pl.LazyFrame, feature: str) -> pl.LazyFrame:
    """Pairs found, runs left without a partner, pairs whose seeds differ, duplicated groups."""
    both = pl.col("has_on") & pl.col("has_off")
    return groups.select(
        pl.lit(feature).alias("feature"),
        both.sum().cast(pl.Int64).alias("pairs"),
        (pl.col("has_on") ^ pl.col("has_off")).sum().cast(pl.Int64).alias("unpaired_runs"),
        (pl.col("seed_differs") & both).sum().cast(pl.Int64).alias("seed_mismatch"),
        pl.col("duplicated").sum().cast(pl.Int64).alias("duplicated_groups"),
    )


PAIRING_SCHEMA = {
    "feature": pl.String,
    "pairs": pl.Int64,
    "unpaired_runs": pl.Int64,
    "seed_mismatch": pl.Int64,
    "duplicated_groups": pl.Int64,
}


def all_ratios(
    runs_ok: pl.LazyFrame, features: Sequence[str], varying: Sequence[str], metrics: Sequence[str], by: Sequence[str]
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every feature's paired ratios stacked and sorted by (feature, metric, ratio), and the
    pairing diagnostics; both collected together so that each feature is grouped once.

    Sorting once here lets every breakdown read already-sorted groups.
    """
    grouped = {f: pair_groups(runs_ok, f, pair_keys(f, varying, by), metrics) for f in features}
    ratios = pl.concat([paired_ratios(g, f, metrics, by) for f, g in grouped.items()], how="vertical")
    counts = pl.concat([pair_counts(g, f) for f, g in grouped.items()], how="vertical")
    ratios_df, counts_df = pl.collect_all([ratios.sort("feature", "metric", "ratio"), counts])
    return ratios_df, counts_df


def summarise(ratios: pl.DataFrame, by: Sequence[str], level_order: dict[str, list[str]]) -> pl.DataFrame:
    """Median ratio and bootstrap interval per (feature, metric), overall and per level of each ``by``."""
    parts = [_summarise_groups(ratios, None)] + [_summarise_groups(ratios, c) for c in by]
    table = pl.concat(parts, how="vertical")
    return order_levels(table, level_order)


def _summarise_groups(ratios: pl.DataFrame, column: str | None) -> pl.DataFrame:
    """One grouping: group sorted ratios (group_by keeps row order within a group), bootstrap them."""
    keys = ["feature", "metric"] + ([column] if column else [])
    sub = ratios if column is None else ratios.drop_nulls(column)
    groups = sub.group_by(keys, maintain_order=True).agg(pl.col("ratio"))
    if groups.height == 0:
        return pl.DataFrame(schema=EFFECT_SCHEMA)
    lengths = groups["ratio"].list.len().to_numpy().astype(np.int64)
    values = groups["ratio"].explode().to_numpy()
    values = _ensure_sorted(values, lengths)
    ci = median_ci(values, lengths)
    level = pl.col(column) if column else pl.lit(ALL)
    return groups.select(
        "feature",
        "metric",
        pl.lit(column or ALL).alias("by"),
        level.alias("level"),
        pl.Series("pairs", lengths, dtype=pl.Int64),
        pl.Series("median_ratio", ci.median),
        pl.Series("ci_low", ci.low),
        pl.Series("ci_high", ci.high),
    ).with_columns(change_pct(), shown())


def _ensure_sorted(values: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """The groups' values sorted within each group (a no-op check when they already are)."""
    group = np.repeat(np.arange(len(lengths)), lengths)
    step = np.diff(values)
    if np.all((step >= 0) | (np.diff(group) != 0)):
        return values
    return values[np.lexsort((values, group))]


def change_pct() -> pl.Expr:
    """The median ratio as a percentage change."""
    return ((pl.col("median_ratio") - 1.0) * 100.0).alias("change_pct")


def shown() -> pl.Expr:
    """Whether the effect is shown: enough pairs and an interval that excludes 1."""
    excludes_one = (pl.col("ci_low") > 1.0) | (pl.col("ci_high") < 1.0)
    return (excludes_one & (pl.col("pairs") >= MIN_PAIRS)).alias("shown")


def order_levels(table: pl.DataFrame, level_order: dict[str, list[str]]) -> pl.DataFrame:
    """Sort: feature, metric, overall first, then breakdowns in their given order, levels in value order."""
    by_rank = {b: i for i, b in enumerate([ALL, *level_order])}
    rank = {(b, lv): i for b, levels in level_order.items() for i, lv in enumerate(levels)}
    keys = table.select("by", "level").unique()
    ranks = keys.with_columns(
        pl.Series("by_rank", [by_rank.get(b, len(by_rank)) for b in keys["by"]], dtype=pl.Int64),
        pl.Series("level_rank", [rank.get((b, lv), 0) for b, lv in keys.iter_rows()], dtype=pl.Int64),
    )
    return (
        table.join(ranks, on=["by", "level"], how="left")
        .sort("feature", "metric", "by_rank", "level_rank")
        .drop("by_rank", "level_rank")
    )


def feature_effects(
    runs_ok: pl.LazyFrame,
    features: Sequence[str],
    varying: Sequence[str],
    metrics: Sequence[str],
    by: Sequence[str],
    level_order: dict[str, list[str]],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The feature-effects table (see the module docstring) and the pairing diagnostics."""
    if not features or not metrics:
        return pl.DataFrame(schema=EFFECT_SCHEMA), pl.DataFrame(schema=PAIRING_SCHEMA)
    ratios, counts = all_ratios(runs_ok, features, varying, metrics, by)
    return summarise(ratios, by, level_order).select(list(EFFECT_SCHEMA)), counts
