"""Reusable column logic: small functions that return ``pl.Expr``.

Kept apart so that every pipeline step says the same thing the same way:
what a successful run is, what a valid metric value is, how a level prints.
"""

from __future__ import annotations

import polars as pl


def is_ok() -> pl.Expr:
    """Runs that finished: their metrics are meaningful."""
    return pl.col("status") == "ok"


def is_error() -> pl.Expr:
    """Runs whose simulation raised: reported, never analysed."""
    return pl.col("status") == "error"


def valid(metric: str) -> pl.Expr:
    """A metric with NaN (not applicable to this run) turned into null, so that aggregations skip it."""
    return pl.col(metric).fill_nan(None)


def mean_of(metric: str) -> pl.Expr:
    """Mean over the runs where the metric applies."""
    return valid(metric).mean().alias(metric)


def side_mean(metric: str, feature: str, on: bool) -> pl.Expr:
    """Mean of a metric over the rows of a pair group with the feature on (or off)."""
    flag = pl.col(feature) if on else ~pl.col(feature)
    return valid(metric).filter(flag).mean().alias(f"{metric}|{'on' if on else 'off'}")


def ratio(numerator: str, denominator: str) -> pl.Expr:
    """``numerator / denominator``, null unless both are finite and the result is finite."""
    value = pl.col(numerator) / pl.col(denominator)
    return pl.when(value.is_finite()).then(value).otherwise(None)


def varies(column: str) -> pl.Expr:
    """Whether a column holds more than one value (null counting as one): min and max differ,
    or some but not all values are null.  Cheaper than counting distinct values."""
    col = pl.col(column)
    nulls = col.null_count()
    return (col.min() != col.max()).fill_null(False) | ((nulls > 0) & (nulls < pl.len()))


def as_level(column: str) -> pl.Expr:
    """A parameter value as the text a table shows (null as "none")."""
    return pl.col(column).cast(pl.String).fill_null("none")
