"""Feature effects: the paired ratio on/off of each boolean feature, with bootstrap intervals.

Two runs pair for feature F when they agree on every other parameter that
varies in the sweep and on ``replicate`` (the sweep gives such runs the same
seed).  Each pair gives one ratio ``metric(F on) / metric(F off)`` per metric;
the effect is the median ratio with a 95 % percentile-bootstrap interval, over
all pairs and within each level of each breakdown column.  An interval that
contains 1, or fewer than :data:`MIN_PAIRS` pairs, means the effect is not shown.

How it scales: every varying column is replaced by a small integer code (its
value's rank), the codes are folded into one int64 row key, and a pair is a
join of the feature-on and feature-off runs on ``key - code(F) * radix(F)``:
one integer join per feature instead of a group-by over a dozen columns.  The
ratios stay wide (one column per metric) and go to numpy, where each metric's
ratios are sorted once and regrouped per breakdown by a stable radix sort of
the small codes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from pipelines import exprs
from pipelines.bootstrap import median_ci

MIN_PAIRS = 5  # below this, an interval of a median says nothing
ALL = "all"  # the ``by`` value of the overall rows
DEFAULT_BY = ("overcommit", "hardware", "vm.vcpus", "vm.apic")
KEY = "__key"
MAX_KEY = 2**62  # mixed-radix keys above this fall back to ranking the code tuple

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
PAIRING_SCHEMA = {
    "feature": pl.String,
    "pairs": pl.Int64,
    "unpaired_runs": pl.Int64,
    "seed_mismatch": pl.Int64,
    "duplicated_groups": pl.Int64,
}


def code_name(column: str) -> str:
    return f"#{column}"


def code(column: str) -> pl.Expr:
    """A column's value as a small integer: 0 for null, then 1, 2, ... in value order."""
    values = pl.col(column).drop_nulls().unique().sort()
    rank = values.search_sorted(pl.col(column)).cast(pl.UInt32) + 1
    return (
        pl.when(pl.col(column).is_null()).then(pl.lit(0, pl.UInt32)).otherwise(rank).alias(code_name(column))
    )


def with_codes(runs: pl.LazyFrame, columns: Sequence[str]) -> pl.LazyFrame:
    """Add the code of each column (see :func:`code`)."""
    return runs.with_columns(code(c) for c in columns)


@dataclass(frozen=True)
class Coding:
    """The codes' layout: per column its radix (codes 0..radix-1) and place value in the row key,
    and the level labels of the breakdown columns (index = code)."""

    radix: dict[str, int]
    place: dict[str, int] | None  # None: the key does not fit in int64
    labels: dict[str, list[str]]


def coding(runs: pl.LazyFrame, key_columns: Sequence[str], by: Sequence[str]) -> Coding:
    """Radices of the key columns and labels of the breakdown columns (one small collect)."""
    columns = list(dict.fromkeys([*key_columns, *by]))
    levels = (
        runs.select(pl.col(c).drop_nulls().unique().sort().cast(pl.String).implode() for c in columns)
        .collect()
        .row(0, named=True)
    )
    radix = {c: len(levels[c]) + 1 for c in columns}
    place: dict[str, int] | None = {}
    size = 1
    for c in key_columns:
        place[c] = size
        size *= radix[c]
    if size >= MAX_KEY:
        place = None
    labels = {c: ["none", *levels[c]] for c in by}
    return Coding(radix, place, labels)


def row_key(key_columns: Sequence[str], layout: Coding) -> pl.Expr:
    """One int64 per run that is equal exactly when every key column is (mixed radix, or the
    dense rank of the code tuple when the radix product overflows)."""
    if layout.place is None:
        return pl.struct(code_name(c) for c in key_columns).rank("dense").cast(pl.Int64).alias(KEY)
    terms = [pl.col(code_name(c)).cast(pl.Int64) * layout.place[c] for c in key_columns]
    return pl.sum_horizontal(terms).alias(KEY)


def pair_key(feature: str, key_columns: Sequence[str], layout: Coding) -> pl.Expr:
    """The row key with the feature's own code taken out: the same for both runs of a pair."""
    if layout.place is None:
        others = [c for c in key_columns if c != feature]
        return pl.struct(code_name(c) for c in others).rank("dense").cast(pl.Int64).alias(KEY)
    return (pl.col(KEY) - pl.col(code_name(feature)).cast(pl.Int64) * layout.place[feature]).alias(KEY)


def side(
    keyed: pl.LazyFrame, feature: str, on: bool, metrics: Sequence[str], by: Sequence[str], unique: bool
) -> pl.LazyFrame:
    """The runs with the feature on (or off), one row per pair key: metrics, codes, seed, run count.

    ``unique``: every run has its own key (no duplicated run), so no aggregation is needed;
    otherwise duplicated runs are averaged.
    """
    runs = keyed.filter(pl.col(feature) if on else ~pl.col(feature))
    codes = [pl.col(code_name(c)) for c in by if c != feature]
    if unique:
        return runs.select(KEY, *metrics, *codes, "seed", pl.lit(1, pl.UInt32).alias("runs"))
    return runs.group_by(KEY).agg(
        *[exprs.valid(m).mean().alias(m) for m in metrics],
        *[c.first() for c in codes],
        pl.col("seed").first(),
        pl.len().alias("runs"),
    )


def pair_table(
    coded: pl.LazyFrame, feature: str, key: pl.Expr, metrics: Sequence[str], by: Sequence[str], unique: bool
) -> tuple[pl.LazyFrame, pl.LazyFrame]:
    """Wide pairs (breakdown codes, one ratio column per metric; null where the metric does not
    apply or the ratio is not finite) and the feature's pairing diagnostics."""
    keyed = coded.with_columns(key)
    on = side(keyed, feature, True, metrics, by, unique)
    off = side(keyed, feature, False, metrics, [], unique)
    joined = on.join(off, on=KEY, how="inner", suffix="|off")
    pairs = joined.select(
        *[pl.col(code_name(c)) for c in by if c != feature],
        *[exprs.ratio(m, f"{m}|off").alias(m) for m in metrics],
    )
    counts = pl.concat(
        [
            joined.select(
                pl.lit(feature).alias("feature"),
                pl.len().cast(pl.Int64).alias("pairs"),
                (pl.col("seed") != pl.col("seed|off")).sum().cast(pl.Int64).alias("seed_mismatch"),
                ((pl.col("runs") > 1) | (pl.col("runs|off") > 1))
                .sum()
                .cast(pl.Int64)
                .alias("duplicated_groups"),
            ),
            on.select(pl.len().cast(pl.Int64).alias("on_keys")),
            off.select(pl.len().cast(pl.Int64).alias("off_keys")),
        ],
        how="horizontal",
    ).select(
        "feature",
        "pairs",
        (pl.col("on_keys") + pl.col("off_keys") - 2 * pl.col("pairs")).alias("unpaired_runs"),
        "seed_mismatch",
        "duplicated_groups",
    )
    return pairs, counts


@dataclass
class _Groups:
    """Sorted ratio groups of one (feature, metric), ready for the bootstrap."""

    values: list[np.ndarray]
    lengths: list[np.ndarray]
    keys: list[tuple[str, list[int]]]  # (breakdown column or ALL, the level code of each group)


def _groups(ratios: np.ndarray, codes: dict[str, np.ndarray], radix: dict[str, int]) -> _Groups:
    """Sort the ratios once, then regroup them per breakdown (stable sort of the codes keeps each
    group sorted)."""
    order = np.argsort(ratios)
    ordered = ratios[order]
    out = _Groups([ordered], [np.array([len(ordered)])], [(ALL, [0])])
    for column, raw in codes.items():
        cells = raw[order].astype(np.uint8 if radix[column] < 2**8 else np.uint32)
        regroup = np.argsort(cells, kind="stable")
        counts = np.bincount(cells, minlength=radix[column])
        present = np.flatnonzero(counts)
        out.values.append(ordered[regroup])
        out.lengths.append(counts[present])
        out.keys.append((column, present.tolist()))
    return out


def summarise_pairs(
    pairs: pl.DataFrame, feature: str, metrics: Sequence[str], by: Sequence[str], layout: Coding
) -> pl.DataFrame:
    """Median and bootstrap interval per metric, overall and per level of each breakdown."""
    rows: list[dict[str, object]] = []
    columns = [c for c in by if c != feature]
    all_codes = {c: pairs[code_name(c)].to_numpy() for c in columns}
    for metric in metrics:
        ratio = pairs[metric].to_numpy()
        valid = np.isfinite(ratio)
        if not valid.any():
            continue
        grouped = _groups(ratio[valid], {c: v[valid] for c, v in all_codes.items()}, layout.radix)
        lengths = np.concatenate(grouped.lengths)
        ci = median_ci(np.concatenate(grouped.values), lengths)
        labels = [(col, ALL if col == ALL else layout.labels[col][k]) for col, ks in grouped.keys for k in ks]
        for i, (column, level) in enumerate(labels):
            rows.append(
                {
                    "feature": feature,
                    "metric": metric,
                    "by": column,
                    "level": level,
                    "pairs": int(lengths[i]),
                    "median_ratio": float(ci.median[i]),
                    "ci_low": float(ci.low[i]),
                    "ci_high": float(ci.high[i]),
                }
            )
    schema = {k: v for k, v in EFFECT_SCHEMA.items() if k not in ("change_pct", "shown")}
    frame = pl.DataFrame(rows, schema=schema, orient="row") if rows else pl.DataFrame(schema=schema)
    return frame.with_columns(change_pct(), shown())


def change_pct() -> pl.Expr:
    """The median ratio as a percentage change."""
    return ((pl.col("median_ratio") - 1.0) * 100.0).alias("change_pct")


def shown() -> pl.Expr:
    """Whether the effect is shown: enough pairs and an interval that excludes 1."""
    excludes_one = (pl.col("ci_low") > 1.0) | (pl.col("ci_high") < 1.0)
    return (excludes_one & (pl.col("pairs") >= MIN_PAIRS)).alias("shown")


def feature_effects(
    runs_ok: pl.LazyFrame,
    features: Sequence[str],
    varying: Sequence[str],
    metrics: Sequence[str],
    by: Sequence[str],
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The feature-effects table (see the module docstring) and the per-feature pairing diagnostics.

    ``varying``: the parameter columns that vary (the pairing key, with ``replicate``);
    ``by``: the breakdown columns.  Rows come ordered by feature, metric, breakdown (in
    the order given, overall first) and level (in value order).
    """
    if not features or not metrics:
        return pl.DataFrame(schema=EFFECT_SCHEMA), pl.DataFrame(schema=PAIRING_SCHEMA)
    key_columns = list(dict.fromkeys([*varying, *by, "replicate"]))
    layout = coding(runs_ok, key_columns, by)
    keep = [*features, *metrics, "seed", *[code_name(c) for c in key_columns], KEY]
    # Materialised once: every feature's pairing reads the same codes and key.
    coded = with_codes(runs_ok, key_columns).with_columns(row_key(key_columns, layout)).select(keep).collect()
    unique = bool(coded[KEY].is_unique().all())
    tables = [
        pair_table(coded.lazy(), f, pair_key(f, key_columns, layout), metrics, by, unique) for f in features
    ]
    collected = pl.collect_all([frame for pair in tables for frame in pair])
    summaries = [summarise_pairs(collected[2 * i], f, metrics, by, layout) for i, f in enumerate(features)]
    counts = pl.concat(collected[1::2], how="vertical")
    return pl.concat(summaries, how="vertical").select(list(EFFECT_SCHEMA)), counts.select(
        list(PAIRING_SCHEMA)
    )
