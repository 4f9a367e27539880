"""Plots of the report, as PNG files, drawn with matplotlib's Agg canvas.

Every plot is drawn from a small, already aggregated DataFrame (a few hundred
rows at most, whatever the size of the sweep).  Rules every plot keeps:

- no confounded comparison: a feature's on/off comparison is drawn from the
  paired effects (median ratio of matched runs) or from matched cells only;
  plain means are labelled as marginals over the other parameters;
- uncertainty: every plotted mean or ratio has its 95 % interval as an error
  bar, and its n printed;
- direction: each metric's axis says whether higher or lower is better;
- colour means significance: an effect is coloured (green better, red worse,
  blue where the metric has no direction) only where its interval excludes 1
  and it rests on enough pairs; otherwise it is grey;
- legible at the page width (about 12 inches at 100 dpi): 10-12 pt text.

The object-oriented ``Figure`` API is used instead of ``pyplot`` so that
drawing never touches global state or needs a display.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
from matplotlib.axes import Axes
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter

from pipelines import main_effects as me

LATENCY_COLUMNS = {
    "min": "timer_latency_min_us",
    "p50": "timer_latency_p50_us",
    "avg": "timer_latency_avg_us",
    "p99": "timer_latency_p99_us",
    "max": "timer_latency_max_us",
}
MAX_FEATURES = 8  # features drawn per figure, at most
MAX_COLS = 6  # hardware facets drawn per figure, at most
WRAP = 3  # facets per row
MAX_BARS = 40  # tornado bars, the largest effects first
DPI = 100
PAGE_IN = 11.5  # the report's content width in inches at DPI (max-width 1200 px)
FONT, SMALL, TITLE = 11, 10, 12
BETTER, WORSE, NEUTRAL, NOT_SHOWN = "#1a9850", "#d73027", "#4575b4", "#b0b0b0"
# Line colours: no green or red, which mean better and worse.
PALETTE = (
    "tab:blue",
    "tab:orange",
    "tab:purple",
    "tab:brown",
    "tab:pink",
    "tab:olive",
    "tab:cyan",
    "tab:gray",
)


def direction_text(better: str) -> str:
    return f"{better} is better" if better else "no better direction"


def ratio_direction(better: str) -> str:
    """What a ratio on/off above 1 means for a metric."""
    return {"higher": "above 1 is better", "lower": "below 1 is better"}.get(better, "")


def effect_colour(ratio: float, shown: bool, better: str) -> str:
    """Colour of an effect: grey unless shown; then green (better), red (worse) or blue (no direction)."""
    if not shown or not math.isfinite(ratio):
        return NOT_SHOWN
    if not better:
        return NEUTRAL
    return BETTER if (ratio > 1) == (better == "higher") else WORSE


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG with light compression: zlib's default level costs more time than it saves bytes."""
    fig.savefig(path, pil_kwargs={"compress_level": 1})
    return path


def _grid(panels: int, height: float = 3.6) -> tuple[Figure, list[Axes]]:
    """Panels in rows of :data:`WRAP`, filling the page width, with room for a legend below."""
    cols = min(panels, WRAP)
    rows = math.ceil(panels / cols)
    fig_w = PAGE_IN if cols > 1 else 7.5
    fig_h = 1.3 + rows * height + 1.15
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False).flatten()
    fig.subplots_adjust(
        left=0.9 / fig_w,
        right=1 - 0.25 / fig_w,
        top=1 - 1.3 / fig_h,
        bottom=1.15 / fig_h,
        wspace=0.28,
        hspace=0.55,
    )
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, list(axes[:panels])


def _legend_below(fig: Figure, axes: Sequence[Axes]) -> None:
    handles, labels, seen = [], [], set()
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in seen:
                seen.add(lab)
                handles.append(h)
                labels.append(lab)
    if handles:
        fig.legend(
            handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=SMALL, frameon=False
        )


def _plain(value: float, _position: object = None) -> str:
    """A tick label as the tables print numbers: grouped, no offset or exponent."""
    return f"{value:,.6g}" if abs(value) < 1e6 else f"{value:,.0f}"


def _style(ax: Axes, plain_y: bool = True) -> None:
    ax.tick_params(labelsize=SMALL)
    ax.grid(alpha=0.3)
    if plain_y:
        ax.yaxis.set_major_formatter(FuncFormatter(_plain))


def metric_data(cell_frame: pl.LazyFrame, metrics: Sequence[str]) -> pl.LazyFrame:
    """Mean, 95 % half-width and n of each metric per (hardware, overcommit), over all runs."""
    return me.rollup(cell_frame, ("hardware", "overcommit"), metrics)


def _n_label(counts: Sequence[int]) -> str:
    """``n=96`` or ``n=90-96``: the runs or pairs behind each point of a line."""
    counts = [int(c) for c in counts if c is not None]
    if not counts:
        return "n=0"
    lo, hi = min(counts), max(counts)
    return f"n={lo:,}" if lo == hi else f"n={lo:,}-{hi:,}"


def draw_metrics_vs_overcommit(
    data: pl.DataFrame, metrics: Sequence[str], better: Mapping[str, str], path: Path
) -> Path | None:
    """Mean of each metric against overcommit: one panel per metric, one line per hardware, 95 %
    interval bars, n (runs per point) in the panel's title.

    A marginal over every other parameter (features included), said in the title: this plot does not
    compare feature settings (the effect plots do, from matched pairs)."""
    metrics = [m for m in metrics if m in data.columns and data[m].drop_nulls().len()]
    if data.is_empty() or data["overcommit"].n_unique() < 2 or not metrics:
        return None
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    fig, axes = _grid(len(metrics))
    for ax, metric in zip(axes, metrics, strict=True):
        counts: list[int] = []
        for k, hw in enumerate(hardware):
            line = data.filter((pl.col("hardware") == hw) & pl.col(metric).is_not_null()).sort("overcommit")
            if line.is_empty():
                continue
            counts += line[f"{metric}|count"].to_list()
            ax.errorbar(
                line["overcommit"].to_numpy(), line[metric].to_numpy(), yerr=line[f"{metric}|ci"].fill_null(0.0).to_numpy(),
                fmt="-o", color=PALETTE[k % len(PALETTE)], capsize=4, lw=1.6, ms=5, label=hw,
            )  # fmt: skip
        ax.set_title(
            f"{metric} ({direction_text(better.get(metric, ''))})\n{_n_label(counts)} runs per point",
            fontsize=FONT,
        )
        ax.set_xlabel("overcommit (vCPUs / pCPUs)", fontsize=FONT)
        _style(ax)
    _legend_below(fig, axes)
    fig.suptitle(
        "Mean over all runs per hardware and overcommit level, 95 % CI\n"
        "marginal over every other parameter, features included: not a feature comparison",
        fontsize=TITLE,
    )
    return _save(fig, path)


def draw_effects_vs_overcommit(
    effects: pl.DataFrame,
    metrics: Sequence[str],
    better: Mapping[str, str],
    levels: Sequence[str],
    path: Path,
) -> Path | None:
    """Paired effect (median ratio on/off, 95 % interval) of each feature against overcommit, one
    panel per metric, one line per feature, n (pairs) in the tick labels.

    Markers are filled green (better) or red (worse) where the interval excludes 1, hollow where
    it does not."""
    data = effects.filter(pl.col("by") == "overcommit")
    metrics = [m for m in metrics if m in set(data["metric"].to_list())]
    if not metrics or not levels:
        return None
    order = {lv: i for i, lv in enumerate(levels)}
    features = data["feature"].unique(maintain_order=True).to_list()[:MAX_FEATURES]
    fig, axes = _grid(len(metrics))
    width = 0.5 / max(len(features), 1)
    for ax, metric in zip(axes, metrics, strict=True):
        panel = data.filter(pl.col("metric") == metric).with_columns(
            pl.col("level").replace_strict(order, default=None).alias("_x")
        )
        panel = panel.drop_nulls("_x")
        for k, feature in enumerate(features):
            part = panel.filter(pl.col("feature") == feature).sort("_x")
            if part.is_empty():
                continue
            x = part["_x"].to_numpy() + (k - (len(features) - 1) / 2) * width
            r, lo, hi = (part[c].to_numpy() for c in ("median_ratio", "ci_low", "ci_high"))
            colour = PALETTE[k % len(PALETTE)]
            ax.errorbar(
                x, r, yerr=[r - lo, hi - r], fmt="-", color=colour, capsize=3, lw=1.2,
                label=feature.removeprefix("features."),
            )  # fmt: skip
            faces = [
                effect_colour(v, s, better.get(metric, "")) if s else "white"
                for v, s in zip(r, part["shown"], strict=True)
            ]
            ax.scatter(x, r, s=45, c=faces, edgecolors=colour, linewidths=1.5, zorder=3)
        n_per_level = panel.group_by("_x").agg(
            pl.col("pairs").min().alias("lo"), pl.col("pairs").max().alias("hi")
        )
        n_text = {int(x): (lo, hi) for x, lo, hi in n_per_level.iter_rows()}
        ticks = [f"{lv}\n{_n_label(n_text.get(i, (0, 0)))}" for i, lv in enumerate(levels)]
        ax.axhline(1.0, color="black", lw=0.9)
        ax.set_xticks(range(len(levels)), ticks, fontsize=SMALL)
        hint = ratio_direction(better.get(metric, ""))
        ax.set_title(f"{metric}{' (' + hint + ')' if hint else ''}", fontsize=FONT)
        ax.set_ylabel("median ratio on/off", fontsize=FONT)
        _style(ax)
    _legend_below(fig, axes)
    fig.suptitle(
        "Paired effect of each feature per overcommit level (median ratio on/off, 95 % bootstrap CI, n pairs)\n"
        "markers filled green (better) or red (worse) where the interval excludes 1; hollow: not shown",
        fontsize=TITLE,
    )
    return _save(fig, path)


def draw_tornado(effects: pl.DataFrame, better: Mapping[str, str], path: Path) -> Path | None:
    """Tornado chart of the overall feature effects: % change of the median paired ratio, largest
    first, 95 % interval as whiskers, n in the label; coloured only where shown."""
    data = effects.filter(pl.col("by") == "all").drop_nulls("median_ratio")
    if data.is_empty():
        return None
    data = (
        data.with_columns(pl.col("change_pct").abs().alias("_size"))
        .sort("_size", descending=True)
        .head(MAX_BARS)
        .reverse()  # barh draws bottom-up: largest on top
    )
    change = data["change_pct"].to_numpy()
    low = (data["ci_low"].to_numpy() - 1.0) * 100.0
    high = (data["ci_high"].to_numpy() - 1.0) * 100.0
    labels = []
    for f, m, n in zip(data["feature"], data["metric"], data["pairs"], strict=True):
        arrow = {"higher": " ↑", "lower": " ↓"}.get(better.get(m, ""), "")
        labels.append(f"{f.removeprefix('features.')} · {m}{arrow} (n={n})")
    colours = [
        effect_colour(r, s, better.get(m, ""))
        for r, s, m in zip(data["median_ratio"], data["shown"], data["metric"], strict=True)
    ]
    left = 0.4 + 0.085 * max(len(label) for label in labels)
    fig_w = max(PAGE_IN, left + 5.0)
    fig_h = 1.6 + 0.34 * len(labels)
    fig = Figure(figsize=(fig_w, fig_h), dpi=DPI)
    ax = fig.subplots()
    fig.subplots_adjust(left=left / fig_w, right=1 - 0.3 / fig_w, top=1 - 0.75 / fig_h, bottom=0.75 / fig_h)
    y = np.arange(len(labels))
    ax.barh(y, change, color=colours)
    ax.errorbar(change, y, xerr=[change - low, high - change], fmt="none", ecolor="black", lw=0.9, capsize=3)
    ax.axvline(0.0, color="black", lw=0.9)
    ax.set_yticks(y, labels, fontsize=SMALL)
    ax.set_xlabel("median paired change, feature on vs off (%), 95 % bootstrap interval", fontsize=FONT)
    fig.suptitle(
        "Feature effects over all pairs (↑ higher is better, ↓ lower is better)\n"
        "green: better, red: worse, blue: no direction; grey: not shown",
        fontsize=TITLE,
    )
    ax.tick_params(axis="x", labelsize=SMALL)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def draw_heatmap(
    effects: pl.DataFrame,
    metrics: Sequence[str],
    better: Mapping[str, str],
    levels: Sequence[str],
    path: Path,
) -> Path | None:
    """Feature x overcommit grid per metric: median paired ratio, its interval and n in each cell;
    a cell is coloured (better / worse) only where its interval excludes 1."""
    data = effects.filter(pl.col("by") == "overcommit")
    metrics = [m for m in metrics if m in set(data["metric"].to_list())]
    if not metrics:
        return None
    features = data["feature"].unique(maintain_order=True).to_list()
    levels = [lv for lv in levels if lv in set(data["level"].to_list())]
    cols = min(len(metrics), 2)
    rows = math.ceil(len(metrics) / cols)
    label_in = 0.3 + 0.09 * max(len(f.removeprefix("features.")) for f in features)
    panel_w = (PAGE_IN - 0.4) / cols
    panel_h = 1.3 + 0.75 * len(features)
    fig_h = panel_h * rows + 1.2
    fig = Figure(figsize=(PAGE_IN, fig_h), dpi=DPI)
    axes = fig.subplots(rows, cols, squeeze=False)
    fig.subplots_adjust(
        left=label_in / PAGE_IN,
        right=1 - 0.2 / PAGE_IN,
        top=1 - 0.95 / fig_h,
        bottom=0.6 / fig_h,
        wspace=(label_in + 0.2) / max(panel_w - label_in, 1.0),
        hspace=1.1 / panel_h,
    )
    for ax, metric in zip(axes.flat, metrics, strict=False):
        _heatmap_panel(ax, data.filter(pl.col("metric") == metric), features, levels, better.get(metric, ""))
        hint = ratio_direction(better.get(metric, ""))
        ax.set_title(f"{metric}{' (' + hint + ')' if hint else ''}", fontsize=FONT)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.set_visible(False)
    fig.suptitle(
        "Feature x overcommit: median paired ratio on/off [95 % CI] (n pairs)\n"
        "green: better, red: worse, blue: no direction, only where the interval excludes 1; grey: not shown",
        fontsize=TITLE,
    )
    return _save(fig, path)


def _heatmap_panel(
    ax: Axes, data: pl.DataFrame, features: Sequence[str], levels: Sequence[str], better: str
) -> None:
    """One metric's feature x overcommit grid: colour codes 0 empty, 1 not shown, 2 better, 3 worse,
    4 significant without direction."""
    codes = np.zeros((len(features), len(levels)))
    text = {}
    row = {f: i for i, f in enumerate(features)}
    col = {lv: j for j, lv in enumerate(levels)}
    for rec in data.iter_rows(named=True):
        i, j = row.get(rec["feature"]), col.get(rec["level"])
        if i is None or j is None:
            continue
        colour = effect_colour(rec["median_ratio"], bool(rec["shown"]), better)
        codes[i, j] = {NOT_SHOWN: 1, BETTER: 2, WORSE: 3, NEUTRAL: 4}[colour]
        text[i, j] = (
            f"{rec['median_ratio']:.3f}\n[{rec['ci_low']:.3f}, {rec['ci_high']:.3f}]\nn={rec['pairs']}"
            + ("" if rec["shown"] else " n.s.")
        )
    cmap = ListedColormap(["white", "#e6e6e6", "#a6dba0", "#f4a582", "#92c5de"])
    ax.imshow(codes, cmap=cmap, vmin=0, vmax=4, aspect="auto")
    for (i, j), t in text.items():
        ax.text(
            j,
            i,
            t,
            ha="center",
            va="center",
            fontsize=SMALL - 1,
            color="black" if codes[i, j] > 1 else "#555",
        )
    ax.set_xticks(range(len(levels)), levels, fontsize=SMALL)
    ax.set_yticks(range(len(features)), [f.removeprefix("features.") for f in features], fontsize=SMALL)
    ax.set_xlabel("overcommit", fontsize=SMALL)


def latency_data(cell_frame: pl.LazyFrame, features: Sequence[str], keys: Sequence[str]) -> pl.LazyFrame:
    """Mean (95 % CI, n) of each timer-latency column per (split, setting, hardware): ``all runs``,
    then each feature off and on over its matched cells only (the same points on both sides)."""
    columns = list(LATENCY_COLUMNS.values())
    frames = [
        me.rollup(cell_frame, ["hardware"], columns).with_columns(
            pl.lit("all runs").alias("split"), pl.lit("").alias("setting")
        )
    ]
    for f in features[:MAX_FEATURES]:
        frames.append(
            me.rollup(me.matched(cell_frame, f, keys), [f, "hardware"], columns).select(
                pl.lit(f.removeprefix("features.")).alias("split"),
                pl.when(pl.col(f)).then(pl.lit("on")).otherwise(pl.lit("off")).alias("setting"),
                pl.exclude(f),
            )
        )
    return pl.concat(frames, how="diagonal_relaxed")


def draw_latency(data: pl.DataFrame, path: Path) -> Path | None:
    """Timer latency (cyclictest, lower is better): mean over runs of the min, p50, p99 and max
    columns with 95 % CIs, one panel per hardware; feature lines use matched runs only."""
    p50 = LATENCY_COLUMNS["p50"]
    data = data.drop_nulls(p50)
    if data.is_empty():
        return None
    hardware = sorted(data["hardware"].unique().to_list())[:MAX_COLS]
    points = ["min", "p50", "p99", "max"]
    fig, axes = _grid(len(hardware))
    colours: dict[str, str] = {}
    for ax, hw in zip(axes, hardware, strict=True):
        panel = data.filter(pl.col("hardware") == hw).sort("split", "setting")
        for rec in panel.iter_rows(named=True):
            split = rec["split"]
            colour = colours.setdefault(split, PALETTE[len(colours) % len(PALETTE)])
            values = np.array([rec[LATENCY_COLUMNS[p]] or np.nan for p in points], dtype=float)
            errors = np.array([rec[f"{LATENCY_COLUMNS[p]}|ci"] or 0.0 for p in points], dtype=float)
            label = split if not rec["setting"] else f"{split} {rec['setting']} (matched)"
            ax.errorbar(
                range(len(points)), values, yerr=np.minimum(errors, values * 0.999), capsize=3, marker="o",
                ms=4, lw=1.4, color=colour, ls="--" if rec["setting"] == "off" else "-", label=label,
            )  # fmt: skip
        n = panel.filter(pl.col("split") == "all runs")[f"{p50}|count"].to_list()
        ax.set_yscale("log")
        ax.set_xticks(range(len(points)), points, fontsize=SMALL)
        ax.set_xlabel("percentile", fontsize=FONT)
        ax.set_title(f"{hw} (n={n[0] if n else 0} runs)", fontsize=FONT)
        _style(ax, plain_y=False)
    axes[0].set_ylabel("timer latency (µs), lower is better", fontsize=FONT)
    _legend_below(fig, axes)
    fig.suptitle(
        "cyclictest timer latency: mean over runs of each percentile column, 95 % CI",
        fontsize=TITLE,
    )
    return _save(fig, path)
