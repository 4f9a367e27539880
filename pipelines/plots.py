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

from pipelines.main_effects import rollup

LATENCY_COLUMNS = {
    "min": "timer_latency_min_us",
    "p50": "timer_latency_p50_us",
    "avg": "timer_latency_avg_us",
    "p99": "timer_latency_p99_us",
    "max": "timer_latency_max_us",
}
MAX_ROWS = 8  # features drawn per figure, at most (two lines each)
MAX_COLS = 6  # hardware facets drawn per figure, at most
MAX_BARS = 40  # tornado bars, the largest effects first
DPI = 90
PALETTE = (
    "tab:blue",
    "tab:orange",
    "tab:green",
    "tab:red",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
)


def _split_frames(
    cell_frame: pl.LazyFrame, features: Sequence[str], keys: Sequence[str], metrics: Sequence[str]
) -> pl.LazyFrame:
    """Means per (feature setting, keys) for each feature, stacked with a ``split`` column naming
    the feature and a ``setting`` column (on/off); one "all" split when no feature varies."""
    if not features:
        return rollup(cell_frame, keys, metrics).with_columns(
            pl.lit("all").alias("split"), pl.lit("all").alias("setting")
        )
    frames = [
        rollup(cell_frame, [f, *keys], metrics).select(
            pl.lit(f).alias("split"),
            pl.when(pl.col(f)).then(pl.lit("on")).otherwise(pl.lit("off")).alias("setting"),
            pl.exclude(f),
        )
        for f in features
    ]
    return pl.concat(frames, how="vertical")


def overcommit_data(
    cell_frame: pl.LazyFrame, features: Sequence[str], metrics: Sequence[str]
) -> pl.LazyFrame:
    """Mean of each metric per (feature, setting, hardware, overcommit), from the cells."""
    return _split_frames(cell_frame, features[:MAX_ROWS], ("hardware", "overcommit"), metrics)


def latency_data(cell_frame: pl.LazyFrame, features: Sequence[str]) -> pl.LazyFrame:
    """Mean over the runs that measured timer latency (cyclictest) of each timer-latency percentile
    column, per (feature, setting, hardware); the columns renamed min, p50, avg, p99, max."""
    frame = _split_frames(cell_frame, features[:MAX_ROWS], ("hardware",), list(LATENCY_COLUMNS.values()))
    return frame.rename({c: label for label, c in LATENCY_COLUMNS.items()})


def _facets(
    cols: int, width: float = 3.0, height: float = 2.6, legend: float = 1.9
) -> tuple[Figure, list[Axes]]:
    """One row of ``cols`` panels with fixed margins (in inches) and room for a legend on the right;
    no layout engine, which would cost more than the drawing itself."""
    left, top, bottom = 0.85, 0.45, 0.5
    fig_w, fig_h = left + legend + width * cols, top + bottom + height
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    axes = fig.subplots(1, cols, squeeze=False)[0]
    fig.subplots_adjust(
        left=left / fig_w, right=1 - legend / fig_w, top=1 - top / fig_h, bottom=bottom / fig_h, wspace=0.3
    )
    return fig, list(axes)


def _line_style(split: str, setting: str, colors: dict[str, str]) -> dict[str, object]:
    """Colour per feature, solid when on, dashed when off; the label says which."""
    color = colors.setdefault(split, PALETTE[len(colors) % len(PALETTE)])
    name = "all runs" if split == "all" else f"{split.removeprefix('features.')} {setting}"
    return {
        "color": color,
        "ls": "--" if setting == "off" else "-",
        "label": name,
        "marker": "o",
        "ms": 3,
        "lw": 1.2,
    }


def _legend(fig: Figure, ax: Axes) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center right", fontsize=7, frameon=False)


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG with light compression: zlib's default level costs more time than it saves bytes."""
    fig.savefig(path, pil_kwargs={"compress_level": 1})
    return path


def draw_metric_vs_overcommit(data: pl.DataFrame, metric: str, path: Path) -> Path | None:
    """``metric`` (mean over runs) against overcommit, one panel per hardware, one line per
    feature setting (colour: feature, solid: on, dashed: off).  None when there is nothing to draw."""
    data = data.filter(pl.col(metric).is_not_null())
    if data.is_empty() or data["overcommit"].n_unique() < 2:
        return None
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    fig, axes = _facets(len(hardware))
    colors: dict[str, str] = {}
    for ax, hw in zip(axes, hardware, strict=True):
        panel = data.filter(pl.col("hardware") == hw).sort("split", "setting", "overcommit")
        for (split, value), line in panel.group_by("split", "setting", maintain_order=True):
            ax.plot(line["overcommit"], line[metric], **_line_style(str(split), str(value), colors))
        ax.set_title(hw, fontsize=8)
        ax.set_xlabel("overcommit", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel(metric, fontsize=7)
    _legend(fig, axes[0])
    fig.suptitle(f"{metric}: mean against overcommit ratio", fontsize=9)
    return _save(fig, path)


def draw_tornado(effects: pl.DataFrame, path: Path) -> Path | None:
    """Tornado chart of the overall feature effects: % change of the median ratio, widest first,
    with the bootstrap interval as whiskers; effects not shown are grey."""
    data = effects.filter(pl.col("by") == "all").drop_nulls("median_ratio")
    if data.is_empty():
        return None
    data = (
        data.with_columns(pl.col("change_pct").abs().alias("_size"))
        .sort("_size", descending=True)
        .head(MAX_BARS)
    )
    data = data.reverse()  # barh draws bottom-up: widest on top
    change = data["change_pct"].to_numpy()
    low = (data["ci_low"].to_numpy() - 1.0) * 100.0
    high = (data["ci_high"].to_numpy() - 1.0) * 100.0
    labels = [
        f"{f.removeprefix('features.')} · {m}" for f, m in zip(data["feature"], data["metric"], strict=True)
    ]
    colors = [
        ("tab:green" if c > 0 else "tab:red") if s else "lightgray"
        for c, s in zip(change, data["shown"], strict=True)
    ]
    left = 0.3 + 0.065 * max(len(label) for label in labels)  # inches for the labels
    fig_w, fig_h = left + 5.0, 1.0 + 0.28 * len(labels)
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    ax = fig.subplots()
    fig.subplots_adjust(left=left / fig_w, right=1 - 0.2 / fig_w, top=1 - 0.35 / fig_h, bottom=0.6 / fig_h)
    y = np.arange(len(labels))
    ax.barh(y, change, color=colors)
    ax.errorbar(change, y, xerr=[change - low, high - change], fmt="none", ecolor="black", lw=0.8, capsize=2)
    ax.axvline(0.0, color="black", lw=0.8)
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel("median paired change, feature on vs off (%), 95 % bootstrap interval", fontsize=8)
    ax.set_title("Feature effects (grey: not shown, the interval crosses 0 %)", fontsize=9)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def draw_heatmap(
    effects: pl.DataFrame, metrics: Sequence[str], levels: Sequence[str], path: Path
) -> Path | None:
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
    cols = min(len(metrics), 3)
    rows = math.ceil(len(metrics) / cols)
    label = 0.15 + 0.065 * max(len(f.removeprefix("features.")) for f in features)  # inches
    panel_w, panel_h = label + 0.3 + 0.6 * len(levels), 0.9 + 0.4 * len(features)
    fig_w, fig_h = panel_w * cols + 1.2, panel_h * rows + 0.4
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(
        left=label / fig_w,
        right=1 - 1.3 / fig_w,
        top=1 - 0.5 / fig_h,
        bottom=0.5 / fig_h,
        wspace=(label + 0.3) / (0.6 * len(levels)),
        hspace=0.9 / (0.4 * len(features) + 0.01),
    )
    image = None
    for ax, metric in zip(axes.flat, metrics, strict=False):
        image = _heatmap_panel(ax, data.filter(pl.col("metric") == metric), features, levels, vmax)
        ax.set_title(metric, fontsize=8)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    if image is not None:
        bar = fig.add_axes((1 - 1.0 / fig_w, 0.5 / fig_h, 0.15 / fig_w, 1 - 1.0 / fig_h))
        fig.colorbar(image, cax=bar, label="log2 median ratio on/off")
    fig.suptitle("Feature x overcommit: median paired ratio on/off", fontsize=9)
    return _save(fig, path)


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
                dark = abs(np.log2(grid[i, j])) > 0.6 * vmax
                color = ("white" if dark else "black") if shown[i, j] else "gray"
                ax.text(
                    j,
                    i,
                    f"{grid[i, j]:.3g}",
                    ha="center",
                    va="center",
                    fontsize=7,
                    color=color,
                    fontweight="bold" if shown[i, j] else "normal",
                )
    ax.set_xticks(range(len(levels)), levels, fontsize=7)
    ax.set_yticks(range(len(features)), [f.removeprefix("features.") for f in features], fontsize=7)
    ax.set_xlabel("overcommit", fontsize=7)
    return image


def draw_latency(data: pl.DataFrame, path: Path) -> Path | None:
    """Timer latency distribution (cyclictest): median over runs of the min, p50, p99 and max
    columns, one panel per hardware, one line per feature setting, latency on a log scale."""
    data = data.drop_nulls("p50")
    if data.is_empty():
        return None
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    points = ["min", "p50", "p99", "max"]
    fig, axes = _facets(len(hardware))
    colors: dict[str, str] = {}
    for ax, hw in zip(axes, hardware, strict=True):
        panel = data.filter(pl.col("hardware") == hw).sort("split", "setting")
        for rec in panel.iter_rows(named=True):
            values = [rec[p] if rec[p] is not None and rec[p] > 0 else np.nan for p in points]
            ax.plot(range(len(points)), values, **_line_style(rec["split"], rec["setting"], colors))
        ax.set_yscale("log")
        ax.set_xticks(range(len(points)), points, fontsize=7)
        ax.set_xlabel("percentile", fontsize=7)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
        ax.set_title(hw, fontsize=8)
    axes[0].set_ylabel("timer latency (µs)", fontsize=7)
    _legend(fig, axes[0])
    fig.suptitle("cyclictest timer latency: mean over runs of each percentile column", fontsize=9)
    return _save(fig, path)
