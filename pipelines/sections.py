"""Turn the pipelines' DataFrames into the report's sections: display tables, text, warnings.

No computation on runs happens here; only presentation of results already
collected (pivoting a handful of rows for reading, wording the warnings).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from pipelines.effects import ALL, MIN_PAIRS
from pipelines.overview import Counts
from pipelines.render import Section, Table, format_cell, format_number

PIVOT_LEVELS = 12  # a breakdown with more levels than this is printed long, not as columns


HALF_WIDTH_DIGITS = 2  # significant digits of an interval's half-width


def num(column: str, significant: int | None = None) -> pl.Expr:
    """A number as the documents print it (4 significant digits, or ``significant``); for small
    display tables only.  Null prints as empty."""
    if significant is None:
        return pl.col(column).map_elements(format_cell, return_dtype=pl.String).fill_null("")
    return (
        pl.col(column)
        .map_elements(lambda v: format_number(v, significant), return_dtype=pl.String)
        .fill_null("")
    )


def effect_cell() -> pl.Expr:
    """``median [low, high]``, with ``n.s.`` when the effect is not shown."""
    text = pl.format("{} [{}, {}]", num("median_ratio"), num("ci_low"), num("ci_high"))
    return pl.when(pl.col("shown")).then(text).otherwise(pl.concat_str(text, pl.lit(" n.s."))).alias("cell")


def verdict() -> pl.Expr:
    """``shown`` / ``not shown`` with the reason the reader needs."""
    few = pl.col("pairs") < MIN_PAIRS
    return (
        pl.when(pl.col("shown"))
        .then(pl.lit("shown"))
        .when(few)
        .then(pl.lit(f"not shown (< {MIN_PAIRS} pairs)"))
        .otherwise(pl.lit("not shown (interval crosses 1)"))
        .alias("verdict")
    )


def effects_overall_display(
    effects: pl.DataFrame, better: dict[str, str], within: dict[str, float] | None = None
) -> pl.DataFrame:
    """The overall effects, one row per (feature, metric), as the reader wants them: the direction of
    the metric and, where the model measured it, the typical within-run 95 % half-width."""
    within = within or {}
    return effects.filter(pl.col("by") == ALL).select(
        "feature",
        "metric",
        pl.col("metric").replace_strict(better, default="").alias("better"),
        pl.col("median_ratio").alias("median ratio on/off"),
        pl.format("[{}, {}]", num("ci_low"), num("ci_high")).alias("95% interval"),
        pl.col("change_pct")
        .map_elements(lambda v: f"{v:+.2f}%", return_dtype=pl.String)
        .fill_null("")
        .alias("change"),
        "pairs",
        pl.col("metric")
        .replace_strict({m: format_cell(v) + "%" for m, v in within.items()}, default="")
        .alias("within-run ±95%"),
        verdict(),
    )


def effects_breakdown_display(effects: pl.DataFrame, column: str, levels: Sequence[str]) -> pl.DataFrame:
    """One breakdown: rows (feature, metric), one column per level of ``column`` (when few).  Empty when
    the pairs have a single level of the column: the table would repeat the overall one."""
    part = effects.filter(pl.col("by") == column)
    if part.is_empty() or part["level"].n_unique() < 2:
        return part.clear()
    if len(levels) > PIVOT_LEVELS:
        return part.select("feature", "metric", pl.col("level").alias(column), effect_cell(), "pairs")
    wide = part.with_columns(pl.format("{} (n={})", effect_cell(), pl.col("pairs")).alias("cell")).pivot(
        on="level", index=["feature", "metric"], values="cell"
    )
    present = [lv for lv in levels if lv in wide.columns]
    return wide.select("feature", "metric", *present).rename({lv: f"{column}={lv}" for lv in present})


def effects_section(
    effects: pl.DataFrame,
    pairing: pl.DataFrame,
    by: Sequence[str],
    level_order: dict[str, list[str]],
    features: Sequence[str],
    failed_or_missing: int,
    better: dict[str, str] | None = None,
    within: dict[str, float] | None = None,
) -> Section:
    """Feature effects: overall table, a table per breakdown column, pairing diagnostics, warnings."""
    section = Section("Feature effects")
    if not features:
        section.text.append(
            "No boolean feature (features.*) varies in this sweep: there are no feature effects."
        )
        return section
    section.text.append(
        "Each pair is two ok runs identical in every other parameter and in replicate (hence seed), one "
        "with the feature on and one with it off; the effect is the median of the paired ratios on/off "
        "with a 95 % percentile-bootstrap interval (2000 resamples, fixed seed). An effect is shown when "
        f"its interval excludes 1 and it rests on at least {MIN_PAIRS} pairs; otherwise it is marked not shown."
    )
    section.tables.append(
        Table(
            "feature_effects",
            "Feature effects, all pairs",
            effects,
            effects_overall_display(effects, better or {}, within),
            note="One row per feature and metric over all pairs; the file also holds every breakdown. "
            "within-run ±95%: median over the runs of the model's own batch-means interval of the metric.",
        )
    )
    for column in by:
        shown = effects_breakdown_display(effects, column, level_order.get(column, []))
        if shown.is_empty():
            section.text.append(
                f"No breakdown by {column}: the pairs have a single level of it (the overall table applies)."
            )
            continue
        section.tables.append(
            Table(
                f"feature_effects_by_{safe_name(column)}",
                f"Feature effects by {column}",
                shown,
                note="median ratio on/off [95 % interval] (n pairs); n.s. = not shown",
            )
        )
    section.tables.append(Table("pairing", "Pairing diagnostics per feature", pairing))
    section.warnings += pairing_warnings(pairing, failed_or_missing)
    return section


def plus_minus(mean: str, half: str) -> pl.Expr:
    """``mean ± half-width`` as text, the half-width to 2 significant digits."""
    return pl.format("{} ± {}", num(mean), num(half, HALF_WIDTH_DIGITS))


def interactions_display(inter: pl.DataFrame) -> pl.DataFrame:
    """Two-way tables for reading, long: one row per (feature, factor, level, metric) with the matched
    means off and on (± 95 % half-width) and their ratio; rows without matched cells are suppressed."""
    return inter.filter(pl.col("matched_cells") > 0).select(
        "feature",
        "factor",
        "level",
        "metric",
        pl.col("matched_cells").alias("matched cells"),
        pl.col("unmatched_cells").alias("left out (no partner)"),
        plus_minus("mean_off", "ci_off").alias("off: mean ± 95%"),
        plus_minus("mean_on", "ci_on").alias("on: mean ± 95%"),
        pl.col("ratio_of_matched_means").alias("ratio on/off of matched means"),
    )


def main_effects_display(mains: pl.DataFrame, metrics: Sequence[str]) -> pl.DataFrame:
    """Main effects for reading: per metric ``mean ± 95 % half-width (n)``."""
    cells = [
        pl.when(pl.col(f"{m}|count") > 0)
        .then(pl.format("{} ± {} (n={})", num(m), num(f"{m}|ci", HALF_WIDTH_DIGITS), pl.col(f"{m}|count")))
        .otherwise(pl.lit(""))
        .alias(m)
        for m in metrics
        if m in mains.columns
    ]
    return mains.select("parameter", "level", "runs", *cells)


def pairing_warnings(pairing: pl.DataFrame, failed_or_missing: int) -> list[str]:
    """Warnings about runs without a partner, seed mismatches and duplicated runs."""
    out = []
    for row in pairing.iter_rows(named=True):
        if row["unpaired_runs"]:
            cause = f" ({failed_or_missing} runs failed or are missing)" if failed_or_missing else ""
            out.append(
                f"{row['feature']}: {row['unpaired_runs']} runs have no partner and are left out{cause}"
            )
        if row["seed_mismatch"]:
            out.append(f"{row['feature']}: {row['seed_mismatch']} pairs have different seeds")
        if row["duplicated_groups"]:
            out.append(
                f"{row['feature']}: {row['duplicated_groups']} pair groups hold more than two runs; "
                "their sides are averaged"
            )
        if not row["pairs"] and failed_or_missing:
            out.append(
                f"{row['feature']}: no pairs among the ok runs; {failed_or_missing} planned runs failed or "
                "are missing, and the partners may be among them"
            )
        elif not row["pairs"]:
            out.append(f"{row['feature']}: no pairs: no two ok runs differ in this feature alone")
    return out


def overview_text(counts: Counts, metrics: Sequence[str]) -> list[str]:
    """The overview's prose: what is analysed and what is left out."""
    text = [f"Metrics of interest: {', '.join(metrics) if metrics else 'none'}."]
    left_out = counts.error + counts.other + (counts.missing or 0)
    if left_out:
        text.append(
            f"Every analysis below uses the {counts.ok} ok runs only; {left_out} planned runs failed or are "
            "missing and are listed in the tables below."
        )
    return text


def overview_warnings(counts: Counts) -> list[str]:
    """Failed and missing runs, and a manifest that disagrees with the data."""
    out = []
    if counts.ok == 0:
        out.append("no run finished ok: there is nothing to analyse")
    if counts.error:
        out.append(f"{counts.error} runs failed (status error); see tables/failed_runs.csv")
    if counts.missing:
        out.append(
            f"{counts.missing} planned runs are missing from the dataset; see tables/missing_points.csv"
        )
    if counts.planned is not None and counts.present > counts.planned:
        out.append(
            f"the dataset holds {counts.present} runs, more than the {counts.planned} the manifest plans"
        )
    return out


def safe_name(text: str) -> str:
    """A column or metric name as a file-name stem."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)
