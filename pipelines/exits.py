"""Exit tables in ``perf kvm stat`` form, one per group of scenarios.

``perf kvm stat report`` lists, per exit reason: samples, samples %, time %,
min, max and average time.  Here a group is a (hardware, workload) partition
and the figures add up the exits of every run in it; MSR writes keep one extra
row per MSR (``detail``, e.g. ``0x6e0``) right under their reason, as
``model.exit_table`` prints them.
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

GROUP_COLUMNS = ("hardware", "workload")

EXIT_TABLE_SCHEMA = {
    "hardware": pl.String,
    "workload": pl.String,
    "reason": pl.String,
    "detail": pl.String,
    "samples": pl.Int64,
    "samples_pct": pl.Float64,
    "time_pct": pl.Float64,
    "min_us": pl.Float64,
    "max_us": pl.Float64,
    "avg_us": pl.Float64,
}


def per_detail(exits: pl.LazyFrame, groups: Sequence[str]) -> pl.LazyFrame:
    """Totals per (group, reason, detail): samples, time, min and max over every run."""
    return exits.group_by(*groups, "reason", pl.col("detail").fill_null("")).agg(
        pl.col("samples").sum(),
        pl.col("total_ns").sum(),
        pl.col("min_ns").min(),
        pl.col("max_ns").max(),
    )


def per_reason(details: pl.LazyFrame, groups: Sequence[str]) -> pl.LazyFrame:
    """The detail rows folded into one row per (group, reason), ``detail`` empty."""
    return details.group_by(*groups, "reason").agg(
        pl.lit("").alias("detail"),
        pl.col("samples").sum(),
        pl.col("total_ns").sum(),
        pl.col("min_ns").min(),
        pl.col("max_ns").max(),
    )


def share(column: str, groups: Sequence[str]) -> pl.Expr:
    """A row's share of its group's total, in percent, counting reason rows only (details repeat them)."""
    total = pl.col(column).filter(pl.col("detail") == "").sum().over(groups)
    return 100.0 * pl.col(column) / total


def exit_tables(exits: pl.LazyFrame, groups: Sequence[str] = GROUP_COLUMNS) -> pl.LazyFrame:
    """One ``perf kvm stat`` table per group, stacked; reasons by time, each followed by its details."""
    groups = list(groups)
    details = per_detail(exits, groups)
    reasons = per_reason(details, groups)
    rows = pl.concat([reasons, details.filter(pl.col("detail") != "")], how="vertical_relaxed")
    reason_time = pl.col("total_ns").filter(pl.col("detail") == "").sum().over([*groups, "reason"])
    return (
        rows.filter(pl.col("samples") > 0)
        .with_columns(reason_time.alias("_reason_ns"), (pl.col("detail") != "").alias("_is_detail"))
        .sort(
            [*groups, "_reason_ns", "reason", "_is_detail", "total_ns"],
            descending=[False] * len(groups) + [True, False, False, True],
        )
        .select(
            *groups,
            "reason",
            "detail",
            pl.col("samples").cast(pl.Int64),
            share("samples", groups).alias("samples_pct"),
            share("total_ns", groups).alias("time_pct"),
            (pl.col("min_ns") / 1000.0).alias("min_us"),
            (pl.col("max_ns") / 1000.0).alias("max_us"),
            (pl.col("total_ns") / pl.col("samples") / 1000.0).alias("avg_us"),
        )
    )
