"""Overview of a sweep: points done, failed and missing, time spent, what varies.

Failed runs (``status == "error"``) and missing runs (planned in the manifest
but absent from the dataset) are counted and listed here so that no later
section can drop them silently: every other section analyses the ``ok`` runs
only and says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from pipelines import exprs

VALUES_SHOWN = 12  # levels listed per varying parameter


@dataclass(frozen=True)
class Counts:
    """Runs planned, present, done (ok), failed (error) and missing; time spent."""

    planned: int | None
    ok: int
    error: int
    other: int  # rows whose status is neither ok nor error
    sim_s: float
    wall_s: float
    replicates: int

    @property
    def present(self) -> int:
        return self.ok + self.error + self.other

    @property
    def missing(self) -> int | None:
        return None if self.planned is None else max(self.planned - self.present, 0)


def count_expressions(has_sim_s: bool) -> list[pl.Expr]:
    """One-row aggregation of status counts and time totals over all runs."""
    sim_s = pl.col("sim_s").filter(exprs.is_ok()).fill_nan(None).sum() if has_sim_s else pl.lit(0.0)
    return [
        exprs.is_ok().sum().cast(pl.Int64).alias("ok"),
        exprs.is_error().sum().cast(pl.Int64).alias("error"),
        pl.len().cast(pl.Int64).alias("rows"),
        sim_s.alias("sim_s"),
        pl.col("wall_s").fill_nan(None).sum().alias("wall_s"),
        pl.col("replicate").n_unique().cast(pl.Int64).alias("replicates"),
    ]


def counts_from(row: dict, planned: int | None) -> Counts:
    """:class:`Counts` from the one-row result of :func:`count_expressions`."""
    return Counts(
        planned=planned,
        ok=int(row["ok"] or 0),
        error=int(row["error"] or 0),
        other=int(row["rows"] or 0) - int(row["ok"] or 0) - int(row["error"] or 0),
        sim_s=float(row["sim_s"] or 0.0),
        wall_s=float(row["wall_s"] or 0.0),
        replicates=int(row["replicates"] or 0),
    )


def level_counts(parameters: Sequence[str]) -> list[pl.Expr]:
    """Number of distinct values (null counts as one) of each parameter."""
    return [pl.col(p).n_unique().cast(pl.Int64).alias(p) for p in parameters]


def parameter_ranges(runs: pl.LazyFrame, varying: Sequence[str]) -> pl.LazyFrame:
    """Per varying parameter: levels, min, max and the first :data:`VALUES_SHOWN` values (as text)."""
    if not varying:
        return pl.LazyFrame(
            schema={
                "parameter": pl.String,
                "levels": pl.Int64,
                "min": pl.String,
                "max": pl.String,
                "values": pl.String,
            }
        )
    frames = [
        runs.select(
            pl.lit(p).alias("parameter"),
            pl.col(p).n_unique().cast(pl.Int64).alias("levels"),
            pl.col(p).min().cast(pl.String).alias("min"),
            pl.col(p).max().cast(pl.String).alias("max"),
            pl.col(p)
            .unique()
            .sort(nulls_last=True)
            .head(VALUES_SHOWN)
            .cast(pl.String)
            .fill_null("none")
            .str.join(", ")
            .alias("values"),
        )
        for p in varying
    ]
    return pl.concat(frames, how="vertical")


def failed_runs(runs: pl.LazyFrame, varying: Sequence[str]) -> pl.LazyFrame:
    """Every run that did not finish, with where it sits in the design and what it raised."""
    cols = ["point_id", "design_index", "replicate", "hardware", "workload"]
    extra = [c for c in varying if c not in cols]
    return (
        runs.filter(~exprs.is_ok())
        .select(*cols, *extra, "status", "error_type", "error")
        .sort("design_index", "replicate")
    )


def error_summary(runs: pl.LazyFrame) -> pl.LazyFrame:
    """Failed runs per error type, with one example message."""
    return (
        runs.filter(~exprs.is_ok())
        .group_by(pl.col("error_type").fill_null("unknown"))
        .agg(pl.len().cast(pl.Int64).alias("runs"), pl.col("error").drop_nulls().first().alias("example"))
        .sort("runs", "error_type", descending=[True, False])
    )


def missing_points(runs: pl.LazyFrame, planned: int | None, replicates: int) -> pl.LazyFrame | None:
    """The (design_index, replicate) pairs planned but absent, or None when they cannot be named.

    The design's rows are ``0 .. planned / replicates - 1``, each run once per
    replicate ``0 .. replicates - 1``.  A design with excluded rows breaks that
    numbering; the caller checks the listing against the missing count and
    drops it when they disagree (the count is reported either way).
    """
    if planned is None or replicates < 1 or planned % replicates:
        return None
    points = planned // replicates
    expected = pl.LazyFrame({"design_index": pl.int_range(0, points, eager=True, dtype=pl.Int64)}).join(
        pl.LazyFrame({"replicate": pl.int_range(0, replicates, eager=True, dtype=pl.Int32)}), how="cross"
    )
    present = runs.select("design_index", "replicate").unique()
    return expected.join(present, on=["design_index", "replicate"], how="anti").sort(
        "design_index", "replicate"
    )


def counts_table(counts: Counts, name: str, design: str | None) -> pl.DataFrame:
    """The overview's headline figures as (item, value) text rows."""
    missing = "unknown (no manifest)" if counts.missing is None else str(counts.missing)
    rows = [
        ("sweep", name),
        ("design", design or "unknown"),
        ("runs planned", "unknown" if counts.planned is None else str(counts.planned)),
        ("runs done (ok)", str(counts.ok)),
        ("runs failed (error)", str(counts.error)),
        ("runs missing", missing),
        ("replicates", str(counts.replicates)),
        ("simulated time", f"{counts.sim_s:,.3f} s"),
        ("simulation time, summed over runs", f"{counts.wall_s:,.1f} s"),
    ]
    if counts.other:
        rows.insert(5, ("runs with another status", str(counts.other)))
    return pl.DataFrame(rows, schema={"item": pl.String, "value": pl.String}, orient="row")
