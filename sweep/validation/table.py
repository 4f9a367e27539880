"""The validation table shown and written: text cells from the structured columns.

:func:`cells` is the one formatter of a row; the terminal table, ``validation.md``
and the README section (:mod:`sweep.readme`) all use it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import polars as pl

from sweep.validation.compare import BASELINE, COLUMNS, FAIL, NO_DATA, NOT_MODELLED, PASS, empty_table

TABLE_STEM = "validation"
HEADER = (
    "case",
    "series",
    "condition",
    "metric",
    "published",
    "simulated ratio [95 % CI]",
    "within-run ±95 %",
    "warm-up bias",
    "n",
    "tolerance",
    "verdict",
)
INTRO = (
    "Simulated vs published ratio of each condition to the case's baseline "
    "(`conf/validation/published.yaml`). Simulated: ratio of the means over "
    "the replicates (n), 95 % percentile-bootstrap interval. Within-run: the "
    "run's own 95 % interval of the metric, in % of it (condition / baseline; "
    "mean over replicates), where the model gives one. Warm-up bias: the start "
    "transient left in the measured window (`warmup_bias_pct`, MSER truncation; "
    "condition / baseline, largest over the replicates); comparable to the "
    "effect, the window is too short. Verdict from the point "
    "estimate; in brackets whether the whole interval agrees."
)


def _finite(x: Any) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def fmt_value(x: float | None) -> str:
    if not _finite(x):
        return ""
    assert x is not None
    return f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.4g}"


def fmt_ratio(x: float | None) -> str:
    return f"{x:.3f}" if _finite(x) else ""


def fmt_interval(low: float | None, high: float | None) -> str:
    return f"[{low:.3f}, {high:.3f}]" if _finite(low) and _finite(high) else ""


def fmt_pct(x: float | None) -> str:
    return f"±{x:.2g} %" if _finite(x) else ""


def fmt_bias(x: float | None) -> str:
    return f"{x:.2g} %" if _finite(x) else ""


def tolerance_text(kind: str, value: float, *, short: bool = False) -> str:
    if kind == "factor":
        return f"x{value:g} impr." if short else f"improvement within x{value:g}, same sign"
    return f"±{value * 100:g} %" if short else f"ratio within ±{value * 100:g} %"


def verdict_text(row: dict[str, Any], *, reason: bool = True) -> str:
    text = str(row["verdict"])
    if row.get("interval_verdict"):
        text += f" ({row['interval_verdict']} over the CI)"
    if reason and row.get("reason"):
        text += f": {row['reason']}"
    return text


def cells(row: dict[str, Any], *, short: bool = False) -> dict[str, str]:
    """One table row as text cells (keys: :data:`HEADER`)."""
    shown = row["verdict"] not in (NOT_MODELLED, NO_DATA)
    simulated = f"{fmt_ratio(row['simulated_ratio'])} {fmt_interval(row['ci_low'], row['ci_high'])}".strip()
    within = ""
    if shown and (_finite(row["within_run_ci95_pct"]) or _finite(row["baseline_within_run_ci95_pct"])):
        within = f"{fmt_pct(row['within_run_ci95_pct']) or '-'} / {fmt_pct(row['baseline_within_run_ci95_pct']) or '-'}"
    bias = ""
    if shown and (_finite(row.get("warmup_bias_pct")) or _finite(row.get("baseline_warmup_bias_pct"))):
        bias = f"{fmt_bias(row.get('warmup_bias_pct')) or '-'} / {fmt_bias(row.get('baseline_warmup_bias_pct')) or '-'}"
    published = fmt_value(row["published"])
    ratio = fmt_ratio(row["published_ratio"])
    if short:
        published = ratio
    else:
        published = f"{published} (ratio {ratio})" if published else f"ratio {ratio} (stated)"
    direction = "higher" if row["higher_is_better"] else "lower"
    return {
        "case": row["case"],
        "series": row["series"],
        "condition": row["condition"] if short else f"{row['condition']} vs {row['baseline']}",
        "metric": row["metric"] if short else f"{row['metric']} ({direction} is better)",
        "published": published,
        "simulated ratio [95 % CI]": simulated if shown else "",
        "within-run ±95 %": within,
        "warm-up bias": bias,
        "n": str(row["replicates"]) if shown and row["replicates"] is not None else "",
        "tolerance": tolerance_text(row["tolerance_kind"], row["tolerance_value"], short=short),
        "verdict": verdict_text(row, reason=not short),
    }


def compared_rows(table: pl.DataFrame) -> list[dict[str, Any]]:
    """The rows other than the baselines."""
    return [r for r in table.iter_rows(named=True) if r["verdict"] != BASELINE]


def summary_line(table: pl.DataFrame) -> str:
    verdicts = [r["verdict"] for r in compared_rows(table)]
    counts = {v: verdicts.count(v) for v in (PASS, FAIL, NOT_MODELLED, NO_DATA)}
    parts = [f"{counts[PASS]} of {counts[PASS] + counts[FAIL]} compared ratios pass"]
    if counts[FAIL]:
        failed = sorted(set(table.filter(pl.col("verdict") == FAIL)["case"].to_list()))
        parts.append(f"{counts[FAIL]} fail ({', '.join(failed)})")
    if counts[NOT_MODELLED]:
        parts.append(f"{counts[NOT_MODELLED]} not modelled")
    if counts[NO_DATA]:
        parts.append(f"{counts[NO_DATA]} without data")
    return "; ".join(parts)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def markdown(
    table: pl.DataFrame, code_versions: Sequence[str] = (), *, heading: str | None = "Validation"
) -> str:
    """The validation table as Markdown (with a summary line)."""
    lines: list[str] = [f"# {heading}", ""] if heading else []
    lines += [INTRO, "", f"**{summary_line(table)}.**", ""]
    rows = [list(cells(r).values()) for r in compared_rows(table)]
    lines += markdown_table(HEADER, rows)
    if table.height and table["reduced"].fill_null(False).any():
        lines += ["", "Reduced runs (`--quick`): verdicts are indicative only; the signs must hold."]
    versions = sorted(set(code_versions))
    if versions:
        lines += ["", f"Results produced by code version {', '.join(versions)}."]
    return "\n".join(lines) + "\n"


def merge(old: pl.DataFrame, new: pl.DataFrame, order: Sequence[str]) -> pl.DataFrame:
    """``new`` plus the rows of the cases ``new`` lacks from ``old``, in ``order`` of case ids."""
    if set(old.columns) != set(COLUMNS):
        return new
    ran = set(new["case"].to_list())
    kept = old.filter(~pl.col("case").is_in(list(ran))).select(list(COLUMNS))
    rank = {cid: i for i, cid in enumerate(order)}
    both = pl.concat([kept, new]).with_columns(
        pl.col("case").replace_strict(rank, default=len(rank), return_dtype=pl.Int64).alias("_o")
    )
    return both.sort("_o", maintain_order=True).drop("_o")


def write_outputs(
    table: pl.DataFrame, output_root: Path, *, order: Sequence[str] = (), code_versions: Sequence[str] = ()
) -> dict[str, Path]:
    """``validation.parquet``, ``.csv`` and ``.md`` under ``output_root`` (each written atomically).

    When only some cases ran, the other cases' rows already on disk are kept.
    """
    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    paths = {ext: output_root / f"{TABLE_STEM}.{ext}" for ext in ("parquet", "csv", "md")}
    if paths["parquet"].exists():
        try:
            old = pl.read_parquet(paths["parquet"])
        except (OSError, pl.exceptions.PolarsError):
            old = empty_table()
        table = merge(old, table, order)
    tmp = {ext: p.with_name(p.name + ".tmp") for ext, p in paths.items()}
    table.write_parquet(tmp["parquet"])
    table.write_csv(tmp["csv"])
    tmp["md"].write_text(markdown(table, code_versions))
    for ext, path in paths.items():
        tmp[ext].replace(path)
    return paths


def read_table(output_root: Path) -> pl.DataFrame:
    """The validation table written by :func:`write_outputs`."""
    return pl.read_parquet(Path(output_root) / f"{TABLE_STEM}.parquet")


VERDICT_STYLE = {PASS: "green", FAIL: "red", NOT_MODELLED: "dim", NO_DATA: "yellow"}


def rich_table(table: pl.DataFrame) -> Any:
    """The table for the terminal, compact (the full text is in validation.md)."""
    from rich.table import Table
    from rich.text import Text

    out = Table(title="Validation against published results: ratio of each condition to the baseline")
    columns = tuple(c for c in HEADER if c != "metric")
    for column in columns:
        right = column in ("published", "simulated ratio [95 % CI]", "within-run ±95 %", "warm-up bias", "n")
        out.add_column(
            "published ratio" if column == "published" else column,
            justify="right" if right else "left",
            no_wrap=column not in ("case", "verdict"),
        )
    for row in compared_rows(table):
        text = cells(row, short=True)
        out.add_row(
            *(
                Text(text[c], style=VERDICT_STYLE.get(row["verdict"], "") if c == "verdict" else "")
                for c in columns
            )
        )
    return out
