"""The sensitivity report of a sweep: ``write_report(OUTPUT)`` writes ``OUTPUT/report/``.

Steps, each a function of LazyFrames collected at the edge:

1. one pass over all runs: status counts, time totals, levels of every parameter,
   how many ok runs have each candidate metric;
2. one pass that loads the working set (ok runs, the varying parameters, the
   metrics of interest) into memory, together with the failed and missing runs;
3. the analyses on that in-memory frame: feature effects, main effects and
   interactions, plot data; Sobol or Morris from the runs; exit tables from exits;
4. the documents: tables (Parquet + CSV), plots (PNG), index.md, index.html.

Usable from a notebook: ``build_report`` returns the document without writing,
and each step is a public function of ``pipelines``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
from rich.console import Console
from rich.table import Table as RichTable
from rich.text import Text

from pipelines import effects as fx
from pipelines import exits as ex
from pipelines import exprs, overview, plots, sections, sensitivity
from pipelines import main_effects as me
from pipelines.dataset import (
    DEFAULT_METRICS,
    Dataset,
    ReportError,
    check_allowed,
    is_feature,
    open_dataset,
)
from pipelines.render import Document, Image, Section, Table, to_html, to_markdown, write_tables

REPORT_DIR = "report"


@dataclass
class Plan:
    """What the report analyses, settled from the dataset, the manifest and the caller."""

    metrics: list[str]
    by: list[str]
    varying: list[str]
    features: list[str]
    counts: overview.Counts
    warnings: list[str]


def resolve_metrics(
    ds: Dataset, requested: Sequence[str] | None, valid_counts: dict[str, int]
) -> tuple[list[str], list[str]]:
    """The metrics of interest and warnings: the caller's (checked), else the manifest's, else the
    default set less the metrics no ok run has."""
    warnings: list[str] = []
    if requested:
        chosen = check_allowed("metric", requested, ds.metrics)
        warnings += [f"metric {m} has no value in any ok run" for m in chosen if not valid_counts.get(m)]
        return chosen, warnings
    if ds.manifest_metrics:
        chosen = [m for m in ds.manifest_metrics if m in ds.metrics]
        unknown = [m for m in ds.manifest_metrics if m not in ds.metrics]
        if unknown:
            warnings.append(
                f"manifest config.report.metrics names unknown metrics {', '.join(unknown)}; ignored"
            )
        if chosen:
            return chosen, warnings
    chosen = [m for m in DEFAULT_METRICS if valid_counts.get(m)]
    if not chosen:  # no default applies: any metric with a value, bookkeeping last
        chosen = [m for m in ds.metrics if valid_counts.get(m) and m not in ds.bookkeeping][:8]
    return chosen, warnings


def resolve_by(ds: Dataset, requested: Sequence[str] | None, varying: Sequence[str]) -> list[str]:
    """Breakdown columns: the caller's (checked against the dataset's columns), else the defaults that vary."""
    if requested:
        return check_allowed("--by column", requested, ds.group_columns)
    if ds.manifest_by and all(c in ds.group_columns for c in ds.manifest_by):
        return list(ds.manifest_by)
    return [c for c in fx.DEFAULT_BY if c in varying]


def first_pass(ds: Dataset) -> tuple[dict, dict[str, bool], dict[str, int]]:
    """Counts and totals, whether each parameter varies (all runs), ok runs per metric: one scan."""
    varies = [exprs.varies(p).alias(f"varies|{p}") for p in ds.group_columns]
    valid = [
        pl.col(m).is_not_nan().filter(exprs.is_ok()).sum().cast(pl.Int64).alias(f"valid|{m}")
        for m in ds.metrics
    ]
    row = (
        ds.runs.select(*overview.count_expressions("sim_s" in ds.metrics), *varies, *valid)
        .collect()
        .row(0, named=True)
    )
    varying = {k.split("|", 1)[1]: bool(v) for k, v in row.items() if k.startswith("varies|")}
    valid_counts = {k.split("|", 1)[1]: int(v or 0) for k, v in row.items() if k.startswith("valid|")}
    return row, varying, valid_counts


def plan(ds: Dataset, metrics: Sequence[str] | None, by: Sequence[str] | None) -> Plan:
    """Settle metrics, breakdowns, varying parameters and features; check the caller's choices
    (before reading any data, so that a typo fails at once)."""
    if metrics:
        check_allowed("metric", metrics, ds.metrics)
    if by:
        check_allowed("--by column", by, ds.group_columns)
    row, varies, valid_counts = first_pass(ds)
    varying = [c for c in ds.group_columns if varies.get(c)]
    chosen, warnings = resolve_metrics(ds, metrics, valid_counts)
    breakdown = resolve_by(ds, by, varying)
    schema = ds.runs.collect_schema()
    features = [c for c in varying if is_feature(c) and schema[c] == pl.Boolean]
    counts = overview.counts_from(row, ds.expected_total)
    return Plan(chosen, breakdown, varying, features, counts, [*ds.warnings, *warnings])


def working_columns(ds: Dataset, p: Plan) -> list[str]:
    """Columns the in-memory analyses need (with the metrics' within-run uncertainty columns)."""
    extra = ["hardware", "overcommit", *plots.LATENCY_COLUMNS.values()]
    within = [ds.uncertainty[m] for m in p.metrics if m in ds.uncertainty]
    wanted = ["replicate", "seed", "design_index", *p.varying, *p.by, *p.metrics, *within, *extra]
    present = (
        set(ds.params) | set(ds.metrics) | set(within) | {"replicate", "seed", "design_index", "workload"}
    )
    return [c for c in dict.fromkeys(wanted) if c in present]


def within_run(work: pl.DataFrame, ds: Dataset, metrics: Sequence[str]) -> dict[str, float]:
    """Median over the ok runs of each metric's within-run 95 % half-width (%), where the model gives one."""
    columns = {m: ds.uncertainty[m] for m in metrics if ds.uncertainty.get(m) in work.columns}
    if not columns:
        return {}
    row = work.select(exprs.valid(c).median().alias(m) for m, c in columns.items()).row(0, named=True)
    return {m: float(v) for m, v in row.items() if v is not None}


def metric_summary(
    work: pl.DataFrame, ds: Dataset, metrics: Sequence[str], within: dict[str, float]
) -> pl.DataFrame:
    """The metrics of interest: unit, direction, runs with a value, mean and spread over the runs,
    within-run interval, meaning (from the manifest's schema)."""
    rows = []
    for m in metrics:
        values = work.select(exprs.valid(m).drop_nulls()).to_series() if m in work.columns else pl.Series([])
        info = ds.info(m)
        rows.append(
            {
                "metric": m,
                "unit": info.unit,
                "better": info.better,
                "runs": values.len(),
                "mean": values.mean() if values.len() else None,
                "min": values.min() if values.len() else None,
                "max": values.max() if values.len() else None,
                "within-run ±95%": within.get(m),
                "meaning": info.meaning,
            }
        )
    schema = {
        "metric": pl.String, "unit": pl.String, "better": pl.String, "runs": pl.Int64, "mean": pl.Float64,
        "min": pl.Float64, "max": pl.Float64, "within-run ±95%": pl.Float64, "meaning": pl.String,
    }  # fmt: skip
    return pl.DataFrame(rows, schema=schema, orient="row")


def level_order(work: pl.DataFrame, columns: Sequence[str]) -> dict[str, list[str]]:
    """Each column's levels as text, in value order (numbers numerically)."""
    out = {}
    for c in columns:
        if c in work.columns:
            values = work.select(pl.col(c).unique().sort(nulls_last=True))
            out[c] = values.select(exprs.as_level(c))[c].to_list()
    return out


def build_report(
    output_dir: Path | str, metrics: Sequence[str] | None = None, by: Sequence[str] | None = None
) -> Document:
    """Every section of the report, computed but not written (plots are drawn by ``write_report``)."""
    ds = open_dataset(output_dir)
    return _build(ds, plan(ds, metrics, by), plot_dir=None)


def _build(ds: Dataset, p: Plan, plot_dir: Path | None) -> Document:
    """Run every analysis of the plan; draw the plots when given a directory for them."""
    cols = working_columns(ds, p)
    replicates = ds.replicates or p.counts.replicates
    missing_lf = overview.missing_points(ds.runs, p.counts.planned, replicates)
    lazies = [
        ds.runs.filter(exprs.is_ok()).select(cols),
        overview.parameter_ranges(ds.runs, [c for c in p.varying if c in ds.params]),
        overview.failed_runs(ds.runs, [c for c in p.varying if c not in ("hardware", "workload")]),
        overview.error_summary(ds.runs),
    ]
    if missing_lf is not None:
        lazies.append(missing_lf)
    work, ranges, failed, errors, *rest = pl.collect_all(lazies)
    missing = rest[0] if rest else None
    levels = level_order(work, [*p.by, "overcommit"])
    runs_ok = work.lazy()

    within = within_run(work, ds, p.metrics)
    overview_section = _overview_section(ds, p, ranges, failed, errors, missing)
    overview_section.tables.insert(
        1, Table("metrics", "Metrics of interest", metric_summary(work, ds, p.metrics, within))
    )
    effects, pairing = fx.feature_effects(runs_ok, p.features, p.varying, p.metrics, p.by)
    left_out = p.counts.error + p.counts.other + (p.counts.missing or 0)
    better = {m: ds.info(m).better for m in p.metrics}
    effects_section = sections.effects_section(
        effects, pairing, p.by, levels, p.features, left_out, better, within
    )
    doc_sections = [overview_section, effects_section]
    schema = runs_ok.collect_schema()
    keys = cell_keys(ds, p, schema)
    cell_frame = me.cells(runs_ok, keys, cell_metrics(p, schema)).collect()
    doc_sections += _main_effects_sections(ds, p, cell_frame, keys)
    doc_sections.append(_sensitivity_section(ds, p, replicates))
    doc_sections.append(_exits_section(ds))
    if plot_dir is not None:
        _add_plots(
            plot_dir, p, cell_frame.lazy(), keys, effects, better, levels.get("overcommit", []),
            effects_section, doc_sections,
        )  # fmt: skip
    doc_sections.append(_warnings_section(doc_sections, p))
    intro = [ds.description] if ds.description else []
    return Document(f"Sweep report: {ds.name}", doc_sections, intro, header_facts(ds, p))


def header_facts(ds: Dataset, p: Plan) -> list[tuple[str, str]]:
    """What the top of the report says: the sweep, its code version, point counts, real elapsed time."""
    c = p.counts
    planned = "unknown (no manifest)" if c.planned is None else f"{c.planned:,}"
    missing = "unknown" if c.missing is None else f"{c.missing:,}"
    if ds.elapsed_s is not None:
        launches = len(ds.launches)
        elapsed = f"{format_duration(ds.elapsed_s)} ({launches} launch{'es' if launches != 1 else ''})"
    else:
        elapsed = "not recorded (the manifest has no launch times)"
    return [
        ("sweep", ds.name),
        ("design", ds.design or "unknown"),
        ("code version", ds.code_version or "unknown"),
        ("runs", f"{planned} planned: {c.ok:,} ok, {c.error:,} failed, {missing} missing"),
        ("elapsed (real wall time)", elapsed),
        ("simulation time, summed over runs", f"{format_duration(c.wall_s)} on the workers"),
        ("simulated time", f"{format_duration(c.sim_s)} simulated"),
    ]


def format_duration(seconds: float) -> str:
    """``12.3 s``, ``4 min 12 s``, ``2 h 05 min``."""
    if seconds < 60:
        return f"{seconds:.3g} s" if seconds < 10 else f"{seconds:.1f} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


def _overview_section(
    ds: Dataset,
    p: Plan,
    ranges: pl.DataFrame,
    failed: pl.DataFrame,
    errors: pl.DataFrame,
    missing: pl.DataFrame | None,
) -> Section:
    section = Section("Overview")
    section.text += sections.overview_text(p.counts, p.metrics)
    section.warnings += [*p.warnings, *sections.overview_warnings(p.counts)]
    section.tables.append(  # the header shows these: written under tables/ only
        Table("overview", "Runs and time", overview.counts_table(p.counts, ds.name, ds.design), show=False)
    )
    section.tables.append(Table("parameters", "Parameters that vary", ranges))
    if failed.height:
        section.tables.append(Table("errors", "Failed runs by error type", errors))
        section.tables.append(Table("failed_runs", "Failed runs", failed))
    if p.counts.missing and missing is not None and missing.height == p.counts.missing:
        section.tables.append(
            Table("missing_points", "Missing runs (planned, absent from the dataset)", missing)
        )
    elif p.counts.missing:
        section.text.append(
            "The missing runs cannot be named by design_index: the design's numbering has gaps "
            "(excluded rows) or the plan does not divide evenly by the replicates."
        )
    return section


def cell_keys(ds: Dataset, p: Plan, schema: pl.Schema) -> list[str]:
    """Keys of the one aggregation behind every mean: the features, hardware and overcommit for the
    plots, and for grid designs every varying column (main effects, two-way tables)."""
    keys = [*p.features, "hardware", "overcommit"]
    if me.applies(ds.design):
        keys += p.varying
    return [c for c in dict.fromkeys(keys) if c in schema]


def cell_metrics(p: Plan, schema: pl.Schema) -> list[str]:
    """The metrics of interest and the timer-latency columns (for the latency plot)."""
    return [c for c in dict.fromkeys([*p.metrics, *plots.LATENCY_COLUMNS.values()]) if c in schema]


def _main_effects_sections(ds: Dataset, p: Plan, cell_frame: pl.DataFrame, keys: list[str]) -> list[Section]:
    """Main effects (balanced parameters only) and the matched feature x overcommit / hardware tables,
    for grid and factorial designs."""
    section = Section("Main effects and interactions")
    if not me.applies(ds.design):
        section.text.append(
            f"Not computed for a {ds.design} design: means per level mix the other parameters."
        )
        return [section]
    factors = [f for f in me.TWO_WAY_FACTORS if f in p.varying]
    params = [c for c in p.varying if c != "workload" or "workload.kind" not in p.varying]
    mains, suppressed = me.main_effects(cell_frame, params, p.metrics)
    inter = me.interactions(cell_frame.lazy(), p.features, factors, keys, p.metrics).collect()
    section.text.append(
        "Main effects: the mean of each metric (± 95 % half-width over runs, n runs) per level of each "
        "varying parameter, averaged over every other parameter and over the runs where the metric applies. "
        "They are marginals, shown only for parameters whose levels each meet the same combinations of "
        "the other parameters; for a feature, the paired effects above are the measure of its effect."
    )
    for name, differing in suppressed.items():
        section.warnings.append(
            f"main effect of {name} not shown: its levels were run with different values of "
            f"{', '.join(differing)}, so their means would compare different points"
        )
    section.tables.append(
        Table(
            "main_effects",
            "Main effects: marginal mean per level",
            mains,
            shown=sections.main_effects_display(mains, p.metrics),
        )
    )
    if inter.height:
        section.text.append(
            "Two-way tables: the mean of each metric with the feature off and on, per level of the factor, "
            "over matched cells only (combinations of every other parameter run with the feature both off "
            "and on; cells without a partner are counted and left out). The paired effect per level is in "
            "the feature-effects tables."
        )
        section.tables.append(
            Table(
                "interactions",
                "Feature x overcommit and feature x hardware, matched cells",
                inter,
                shown=sections.interactions_display(inter),
            )
        )
    return [section]


def _sensitivity_section(ds: Dataset, p: Plan, replicates: int) -> Section:
    """Sobol indices or Morris screening from the manifest's problem; a refusal becomes a warning."""
    section = Section("Variance-based sensitivity")
    if ds.design not in ("sobol", "morris"):
        section.text.append(f"Not applicable: the design is {ds.design or 'unknown'}, not sobol or morris.")
        return section
    if ds.problem is None:
        section.warnings.append(f"{ds.design} design without a problem in the manifest: no indices")
        return section
    n_rep = max(replicates, 1)
    try:
        if ds.design == "sobol":
            rows = sensitivity.sobol_rows(ds.problem)
            if p.counts.planned and p.counts.planned % rows == 0:
                n_rep = p.counts.planned // rows
            first, second, warnings = sensitivity.sobol_indices(ds.runs, ds.problem, p.metrics, n_rep)
            section.text.append(
                "Sobol first-order (S1) and total (ST) indices with 95 % bootstrap intervals (SALib, "
                f"{sensitivity.RESAMPLES} resamples, fixed seed), each metric averaged over replicates."
            )
            section.tables.append(Table("sobol", "Sobol indices", first))
            if second.height:
                section.tables.append(Table("sobol_second_order", "Sobol second-order indices", second))
            flagged = first
        else:
            rows = sensitivity.morris_rows(ds.problem, p.counts.planned, n_rep)
            morris, warnings = sensitivity.morris_indices(
                ds.runs, ds.problem, p.metrics, n_rep, ds.params, rows, ds.design_file
            )
            section.text.append(
                "Morris screening: mu* (mean absolute elementary effect, 95 % interval) and sigma."
            )
            section.tables.append(Table("morris", "Morris indices", morris))
            flagged = morris
    except sensitivity.SensitivityRefused as err:
        section.warnings.append(str(err))
        return section
    section.warnings += warnings
    bad = flagged.filter(pl.col("warning") != "")
    if bad.height:
        section.warnings.append(
            f"{bad.height} parameter-metric rows have an interval wider than 10 % of the index or a negative "
            "index; see the warning column (a larger sample narrows the intervals)"
        )
    return section


def _exits_section(ds: Dataset) -> Section:
    """One perf-kvm-stat table per (hardware, workload)."""
    section = Section("Exit tables")
    if ds.exits is None:
        section.warnings.append(f"no exits dataset under {ds.output_dir / 'exits'}: no exit tables")
        return section
    table = ex.exit_tables(ds.exits).collect()
    section.text.append(
        "perf kvm stat form, per hardware and workload, summed over every run of the group; MSR writes "
        "are split by MSR under their reason. Full table: tables/exits.parquet"
    )
    section.tables.append(Table("exits", "Exits, all groups", table, show=False))
    for (hw, wl), group in table.group_by(ex.GROUP_COLUMNS, maintain_order=True):
        view = group.drop(*ex.GROUP_COLUMNS)
        section.tables.append(Table("exits", f"Exits: hardware={hw}, workload={wl}", view, write=False))
    return section


def _add_plots(
    plot_dir: Path,
    p: Plan,
    cell_frame: pl.LazyFrame,
    keys: list[str],
    effects: pl.DataFrame,
    better: dict[str, str],
    overcommit_levels: list[str],
    effects_section: Section,
    doc_sections: list[Section],
) -> None:
    """Draw the plots into ``plot_dir`` and attach them to their sections."""
    plot_dir.mkdir(parents=True, exist_ok=True)
    rel = plot_dir.name

    def attach(section: Section, path: Path | None, caption: str) -> None:
        if path is not None:
            section.images.append(Image(f"{rel}/{path.name}", caption))

    attach(effects_section, plots.draw_tornado(effects, better, plot_dir / "tornado.png"), "Feature effects")
    attach(
        effects_section,
        plots.draw_heatmap(
            effects, p.metrics, better, overcommit_levels, plot_dir / "heatmap_overcommit.png"
        ),
        "Feature x overcommit: median paired ratio per cell",
    )
    attach(
        effects_section,
        plots.draw_effects_vs_overcommit(
            effects, p.metrics, better, overcommit_levels, plot_dir / "effects_overcommit.png"
        ),
        "Paired feature effects against overcommit",
    )
    over, latency = _plot_data(cell_frame, keys, p)
    section = Section("Metrics against overcommit")
    section.text.append(
        "Means over all runs per hardware and overcommit level (95 % interval over runs, n runs): "
        "marginals over every other parameter, features included. They show how a metric scales with "
        "overcommit, not what a feature does; the feature effects above compare matched pairs."
    )
    if over is not None:
        path = plots.draw_metrics_vs_overcommit(over, p.metrics, better, plot_dir / "overcommit.png")
        attach(section, path, "Metrics against overcommit ratio (marginal means)")
    if not section.images:
        section.text.append("Nothing to plot: overcommit does not vary or no metric applies.")
    doc_sections.append(section)
    latency_section = Section("Timer latency (cyclictest)")
    path = plots.draw_latency(latency, plot_dir / "latency.png") if latency is not None else None
    if path is not None:
        latency_section.text.append(
            "All runs, and each feature off and on over matched cells only (the same points both sides)."
        )
        attach(latency_section, path, "cyclictest timer latency distribution")
    else:
        latency_section.text.append("No run measured timer latency (no cyclictest workload).")
    doc_sections.append(latency_section)


def _plot_data(
    cell_frame: pl.LazyFrame, keys: list[str], p: Plan
) -> tuple[pl.DataFrame | None, pl.DataFrame | None]:
    """The aggregated frames behind the overcommit and latency plots (None where a column lacks)."""
    schema = cell_frame.collect_schema()
    lazies: dict[str, pl.LazyFrame] = {}
    if {"hardware", "overcommit"} <= set(schema) and p.metrics:
        lazies["over"] = plots.metric_data(cell_frame, p.metrics)
    if "hardware" in schema and all(me.count(c) in schema for c in plots.LATENCY_COLUMNS.values()):
        # feature lines need matched cells, i.e. cells keyed by every varying column (grid designs)
        features = p.features if set(p.varying) <= set(keys) else []
        lazies["latency"] = plots.latency_data(cell_frame, features, keys)
    frames = dict(zip(lazies, pl.collect_all(list(lazies.values())), strict=True)) if lazies else {}
    return frames.get("over"), frames.get("latency")


def _warnings_section(doc_sections: list[Section], p: Plan) -> Section:
    """Every warning of every section in one table (also tables/warnings.*)."""
    rows = [(s.title, w) for s in doc_sections for w in s.warnings]
    frame = pl.DataFrame(rows, schema={"section": pl.String, "warning": pl.String}, orient="row")
    return Section("Warnings", tables=[Table("warnings", "All warnings", frame)])


def _clean(report_dir: Path) -> None:
    """Remove the files an earlier report wrote, so that no stale plot or table survives."""
    for sub, pattern in (("plots", "*.png"), ("tables", "*.parquet"), ("tables", "*.csv")):
        for old in (report_dir / sub).glob(pattern):
            old.unlink()


def write_report(output_dir: Path, metrics: list[str] | None = None, by: list[str] | None = None) -> Path:
    """Write ``output_dir/report/`` (index.md, index.html, tables/, plots/) and return its path.

    ``metrics``: metrics of interest (default: the manifest's, else a default set);
    ``by``: breakdown columns for the feature effects (default: overcommit,
    hardware, vm.vcpus, vm.apic where they vary).  Raises :class:`ReportError`
    for a missing directory or an unknown metric or column.
    """
    ds = open_dataset(output_dir)
    settled = plan(ds, metrics, by)  # checks the caller's choices before touching an earlier report
    report_dir = Path(output_dir) / REPORT_DIR
    report_dir.mkdir(exist_ok=True)
    _clean(report_dir)
    doc = _build(ds, settled, plot_dir=report_dir / "plots")
    write_tables(doc, report_dir / "tables")
    (report_dir / "index.md").write_text(to_markdown(doc))
    (report_dir / "index.html").write_text(to_html(doc, report_dir))
    return report_dir


def summary_table(report_dir: Path, rows: int = 20) -> RichTable:
    """A short terminal summary read back from the written tables: the overall feature effects."""
    tables = Path(report_dir) / "tables"
    table = RichTable(title="Feature effects (median ratio on/off, 95 % interval)")
    for column in ("feature", "metric", "ratio", "interval", "pairs", "verdict"):
        table.add_column(
            column,
            justify="right" if column in ("ratio", "pairs") else "left",
            no_wrap=column in ("ratio", "interval", "verdict"),
        )
    path = tables / "feature_effects.parquet"
    if not path.exists():
        return table
    overall = pl.read_parquet(path).filter(pl.col("by") == fx.ALL)
    ranked = overall.sort(
        pl.col("shown").not_(), (pl.col("median_ratio") - 1).abs(), descending=[False, True]
    )
    for r in ranked.head(rows).iter_rows(named=True):
        table.add_row(
            Text(r["feature"].removeprefix("features.")),
            Text(r["metric"]),
            f"{r['median_ratio']:.4g}",
            f"[{r['ci_low']:.4g}, {r['ci_high']:.4g}]",
            str(r["pairs"]),
            "[green]shown[/]" if r["shown"] else "[dim]not shown[/]",
        )
    if overall.height > rows:
        table.caption = f"{overall.height - rows} more in tables/feature_effects.csv"
    return table


def print_summary(report_dir: Path, console: Console | None = None) -> None:
    """Print the run counts, the feature-effects summary and the warnings of a written report."""
    console = console or Console()
    tables = Path(report_dir) / "tables"
    counts = pl.read_parquet(tables / "overview.parquet")
    line = Text()
    for item, value in counts.iter_rows():
        line.append(f"{item}: ", style="bold").append(f"{value}  ")
    console.print(line)
    effects = summary_table(report_dir)
    if effects.row_count:
        console.print(effects)
    for section, warning in pl.read_parquet(tables / "warnings.parquet").iter_rows():
        console.print(Text.assemble(("warning", "yellow"), f" ({section}): {warning}"))
    console.print(Text(f"report: {Path(report_dir) / 'index.html'}"))


__all__ = ["ReportError", "build_report", "print_summary", "summary_table", "write_report"]
