"""Plots of the report, as PNG files, drawn with matplotlib's Agg canvas.

Every plot is drawn from a small, already aggregated DataFrame (a few hundred
rows at most, whatever the size of the sweep): the ``*_data`` functions are
the LazyFrame steps that aggregate, the ``draw_*`` functions only draw.  The
object-oriented ``Figure`` API is used instead of ``pyplot`` so that drawing
never touches global state or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage

from pipelines import exprs

LATENCY_COLUMNS = {
    "min": "timer_latency_min_us",
    "p50": "timer_latency_p50_us",
    "avg": "timer_latency_avg_us",
    "p99": "timer_latency_p99_us",
    "max": "timer_latency_max_us",
}
MAX_ROWS = 8  # facets drawn per figure, at most (one per feature)
MAX_COLS = 6  # hardware facets drawn per figure, at most
MAX_BARS = 40  # tornado bars, the largest effects first
DPI = 90
SETTING_STYLE = {"on": ("tab:blue", "-"), "off": ("tab:orange", "--"), "all": ("tab:gray", "-")}


def _split_frames(
    runs_ok: pl.LazyFrame, features: Sequence[str], keys: Sequence[str], aggs: list[pl.Expr]
) -> pl.LazyFrame:
    """Aggregate per (feature setting, keys) for each feature, stacked with a ``split`` column
    naming the feature; a single "all" split when no feature varies."""
    if not features:
        return runs_ok.group_by(keys).agg(aggs).with_columns(pl.lit("all").alias("split"), pl.lit("all").alias("setting"))
    frames = [
        runs_ok.group_by(f, *keys)
        .agg(aggs)
        .select(
            pl.lit(f).alias("split"),
            pl.when(pl.col(f)).then(pl.lit("on")).otherwise(pl.lit("off")).alias("setting"),
            pl.exclude(f),
        )
        for f in features
    ]
    return pl.concat(frames, how="vertical")


def overcommit_data(runs_ok: pl.LazyFrame, features: Sequence[str], metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean of each metric per (feature, setting, hardware, overcommit)."""
    aggs = [exprs.mean_of(m) for m in metrics]
    return _split_frames(runs_ok, features[:MAX_ROWS], ("hardware", "overcommit"), aggs)


def latency_data(runs_ok: pl.LazyFrame, features: Sequence[str]) -> pl.LazyFrame:
    """Median over runs of each timer-latency percentile column, per (feature, setting, hardware),
    over the runs that measured timer latency (cyclictest)."""
    aggs = [exprs.valid(c).median().alias(label) for label, c in LATENCY_COLUMNS.items()]
    measured = runs_ok.filter(exprs.valid(LATENCY_COLUMNS["p50"]).is_not_null())
    return _split_frames(measured, features[:MAX_ROWS], ("hardware",), aggs)


def _grid(rows: int, cols: int, width: float = 3.2, height: float = 2.4) -> tuple[Figure, np.ndarray]:
    fig = Figure(figsize=(0.6 + width * cols, 0.5 + height * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True)
    return fig, axes


def draw_metric_vs_overcommit(data: pl.DataFrame, metric: str, path: Path) -> Path | None:
    """``metric`` against overcommit: one row of facets per feature, one column per hardware,
    one line per feature setting.  None when there is nothing to draw."""
    data = data.filter(pl.col(metric).is_not_null())
    if data.is_empty() or data["overcommit"].n_unique() < 2:
        return None
    splits = data["split"].unique(maintain_order=True).to_list()
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    fig, axes = _grid(len(splits), len(hardware))
    for r, split in enumerate(splits):
        for c, hw in enumerate(hardware):
            ax = axes[r, c]
            panel = data.filter((pl.col("split") == split) & (pl.col("hardware") == hw))
            for (value,), line in panel.sort("overcommit").group_by("setting", maintain_order=True):
                color, style = SETTING_STYLE.get(str(value), ("black", "-"))
                label = "all runs" if value == "all" else f"{value}"
                ax.plot(line["overcommit"], line[metric], style, color=color, marker="o", ms=3, label=label)
            ax.set_title(hw if split == "all" else f"{hw} · {split.removeprefix('features.')}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            if c == 0:
                ax.set_ylabel(metric, fontsize=7)
            if r == len(splits) - 1:
                ax.set_xlabel("overcommit", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle(f"{metric}: mean against overcommit ratio", fontsize=9)
    fig.savefig(path)
    return path


def draw_tornado(effects: pl.DataFrame, path: Path) -> Path | None:
    """Tornado chart of the overall feature effects: % change of the median ratio, widest first,
    with the bootstrap interval as whiskers; effects not shown are grey."""
    data = effects.filter(pl.col("by") == "all").drop_nulls("median_ratio")
    if data.is_empty():
        return None
    data = data.with_columns(pl.col("change_pct").abs().alias("_size")).sort("_size", descending=True).head(MAX_BARS)
    data = data.reverse()  # barh draws bottom-up: widest on top
    change = data["change_pct"].to_numpy()
    low = (data["ci_low"].to_numpy() - 1.0) * 100.0
    high = (data["ci_high"].to_numpy() - 1.0) * 100.0
    labels = [f"{f.removeprefix('features.')} · {m}" for f, m in zip(data["feature"], data["metric"], strict=True)]
    colors = [
        ("tab:green" if c > 0 else "tab:red") if s else "lightgray"
        for c, s in zip(change, data["shown"], strict=True)
    ]
    fig = Figure(figsize=(7.5, 0.8 + 0.28 * len(labels)), dpi=DPI, layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(labels))
    ax.barh(y, change, color=colors)
    ax.errorbar(change, y, xerr=[change - low, high - change], fmt="none", ecolor="black", lw=0.8, capsize=2)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("median paired change, feature on vs off (%), 95 % bootstrap interval", fontsize=8)
    ax.set_title("Feature effects (grey: not shown, the interval crosses 0 %)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    fig.savefig(path)
    return path


def draw_heatmap(effects: pl.DataFrame, metrics: Sequence[str], levels: Sequence[str], path: Path) -> Path | None:
    """Feature x overcommit heatmap per metric: median paired ratio, colour on a log2 scale;
    ratios of effects not shown are printed in grey."""
    data = effects.filter(pl.col("by") == "overcommit")
    metrics = [m for m in metrics if m in set(data["metric"].to_list())]
    if not metrics:
        return None
    features = data["feature"].unique(maintain_order=True).to_list()
    levels = [lv for lv in levels if lv in set(data["level"].to_list())]
    spread = np.log2(data["median_ratio"].to_numpy())
    vmax = max(float(np.nanmax(np.abs(spread))) if spread.size else 0.0, 0.05)
    fig = Figure(
        figsize=(1.5 + 0.75 * len(levels) * min(len(metrics), 3), 0.8 + (0.45 * len(features) + 0.6) * math.ceil(len(metrics) / 3)),
        dpi=DPI,
        layout="constrained",
    )
    cols = min(len(metrics), 3)
    axes = fig.subplots(math.ceil(len(metrics) / cols), cols, squeeze=False)
    image = None
    for ax, metric in zip(axes.flat, metrics, strict=False):
        image = _heatmap_panel(ax, data.filter(pl.col("metric") == metric), features, levels, vmax)
        ax.set_title(metric, fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="log2 median ratio on/off")
    fig.suptitle("Feature x overcommit: median paired ratio on/off", fontsize=9)
    fig.savefig(path)
    return path


def _heatmap_panel(
    ax: Axes, data: pl.DataFrame, features: Sequence[str], levels: Sequence[str], vmax: float
) -> AxesImage:
    """One metric's feature x overcommit grid of ratios."""
    grid = np.full((len(features), len(levels)), np.nan)
    shown = np.zeros_like(grid, dtype=bool)
    row = {f: i for i, f in enumerate(features)}
    col = {lv: j for j, lv in enumerate(levels)}
    for f, lv, ratio, is_shown in data.select("feature", "level", "median_ratio", "shown").iter_rows():
        if f in row and lv in col:
            grid[row[f], col[lv]] = ratio
            shown[row[f], col[lv]] = bool(is_shown)
    image = ax.imshow(np.log2(grid), cmap="PuOr_r", vmin=-vmax, vmax=vmax, aspect="auto")
    for i in range(len(features)):
        for j in range(len(levels)):
            if np.isfinite(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.3g}", ha="center", va="center", fontsize=7,
                        color="black" if shown[i, j] else "gray", fontweight="bold" if shown[i, j] else "normal")
    ax.set_xticks(range(len(levels)), levels, fontsize=7)
    ax.set_yticks(range(len(features)), [f.removeprefix("features.") for f in features], fontsize=7)
    ax.set_xlabel("overcommit", fontsize=7)
    return image


def draw_latency(data: pl.DataFrame, path: Path) -> Path | None:
    """Timer latency distribution (cyclictest): median over runs of min, p50, p99 and max,
    one line per feature setting, facets per feature (rows) and hardware (columns); the mean dotted."""
    data = data.drop_nulls("p50")
    if data.is_empty():
        return None
    splits = data["split"].unique(maintain_order=True).to_list()
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    points = ["min", "p50", "p99", "max"]
    fig, axes = _grid(len(splits), len(hardware), width=2.8, height=2.2)
    for r, split in enumerate(splits):
        for c, hw in enumerate(hardware):
            ax = axes[r, c]
            panel = data.filter((pl.col("split") == split) & (pl.col("hardware") == hw))
            for rec in panel.sort("setting").iter_rows(named=True):
                color, style = SETTING_STYLE.get(rec["setting"], ("black", "-"))
                ax.plot(range(len(points)), [rec[p] for p in points], style, color=color, marker="o", ms=3,
                        label=rec["setting"])
                if rec["avg"] is not None:
                    ax.axhline(rec["avg"], color=color, lw=0.7, ls=":")
            ax.set_yscale("log")
            ax.set_xticks(range(len(points)), points, fontsize=7)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
            ax.set_title(hw if split == "all" else f"{hw} · {split.removeprefix('features.')}", fontsize=8)
            if c == 0:
                ax.set_ylabel("timer latency (µs)", fontsize=7)
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("cyclictest timer latency: median over runs of each percentile (dotted: mean)", fontsize=9)
    fig.savefig(path)
    return path
