"""README.md's "What the model says" section, generated from results (never typed).

:func:`section` builds the Markdown from

* the validation table written by ``sweep validate`` (``validation.parquet``),
* each flagship sweep's output: its manifest (run counts, code version), its
  report's feature-effects table (``report/tables/feature_effects.parquet``:
  the median paired ratio on/off with its bootstrap interval, overall and per
  level of each breakdown) and, for sweeps that compare configurations rather
  than toggle features (the ROME APIC modes), the runs themselves;

and :func:`splice` puts it between ``<!-- results:begin -->`` and
``<!-- results:end -->``, appending the markers at the end of the file when it
has none.  A missing input is said in the section, not an error; with
``keep`` (``sweep readme --keep``) the README's current subsection for that
input stays instead, so one flagship can be rerun without rerunning hours of
validation.  Each kept subsection keeps the code version it states.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from sweep import store
from sweep.errors import UserError, os_problem
from sweep.validation import compare as compare_mod
from sweep.validation import table as table_mod

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"
DEFAULT_SWEEPS = (Path("results/rome"), Path("results/cascadelake"))
TOP_EFFECTS = 10
HEADING = "## What the model says"


class ReadmeError(UserError):
    """A README whose markers are broken, or that cannot be read (one line)."""

    def __init__(self, problem: str):
        super().__init__(problem, "sweep readme")


def read_text(path: Path) -> str:
    """The README's text ('' when it does not exist yet)."""
    try:
        return path.read_text(encoding="utf-8") if path.exists() else ""
    except (OSError, UnicodeDecodeError) as err:
        reason = os_problem(path, err) if isinstance(err, OSError) else f"{path}: not UTF-8 text"
        raise ReadmeError(f"cannot read {reason}") from None


def splice(text: str, section: str) -> str:
    """``text`` with the part between the markers replaced by ``section`` (markers appended if absent)."""
    begins, ends = text.count(BEGIN), text.count(END)
    body = f"{BEGIN}\n{section.strip()}\n{END}"
    if begins == 0 and ends == 0:
        sep = "" if not text else ("\n" if text.endswith("\n") else "\n\n")
        if text and not text.endswith("\n\n"):
            sep = "\n" if text.endswith("\n") else "\n\n"
        return f"{text}{sep}{body}\n"
    if begins != 1 or ends != 1:
        raise ReadmeError(f"expected one {BEGIN} and one {END} marker, found {begins} and {ends}")
    start, stop = text.index(BEGIN), text.index(END)
    if stop < start:
        raise ReadmeError(f"{END} comes before {BEGIN}")
    return text[:start] + body + text[stop + len(END) :]


# -- formatting --------------------------------------------------------------------------------


def ratio_cell(ratio: float | None, low: float | None, high: float | None, bold: bool = False) -> str:
    if ratio is None or not math.isfinite(ratio):
        return ""
    core = f"{ratio:.3g}"
    if bold:
        core = f"**{core}**"
    if low is not None and high is not None and math.isfinite(low) and math.isfinite(high):
        return f"{core} [{low:.3g}, {high:.3g}]"
    return core


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c).replace("|", "\\|") for c in row) + " |" for row in rows]
    return lines


def _short_feature(name: str) -> str:
    return name.removeprefix("features.")


# -- validation ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Part:
    """One ``###`` subsection: its lines, notes on missing inputs, and whether its main input exists."""

    lines: list[str]
    notes: list[str]
    available: bool = True

    @property
    def heading(self) -> str:
        return self.lines[0]


def _missing(heading: str, note: str) -> Part:
    return Part([heading, "", f"*Not available: {note}.*", ""], [note], available=False)


def validation_part(validation_dir: Path) -> Part:
    heading = "### Against published results"
    lines = [heading, ""]
    path = Path(validation_dir) / f"{table_mod.TABLE_STEM}.parquet"
    if not path.exists():
        return _missing(heading, f"no validation table at {path}: run `sweep validate`")
    table = pl.read_parquet(path)
    versions = sorted(
        {
            v
            for case in sorted(Path(validation_dir).iterdir())
            if (case / "manifest.json").exists()
            for v in store.code_versions(case)
        }
    )
    lines += [
        (
            "`sweep validate` runs each case of `conf/validation/published.yaml` with its published setup "
            "(`conf/validation/<case>.yaml`) and compares the ratio of each condition to the case's "
            "baseline by the case's `compare:` rules ([docs/validate.md](docs/validate.md)). "
            + table_mod.INTRO
        ),
        "",
        f"**{table_mod.summary_line(table)}.**",
        "",
    ]
    rows = []
    for r in table_mod.compared_rows(table):
        cells = table_mod.cells(r)
        if r["verdict"] == compare_mod.FAIL:
            cells["verdict"] = f"**{cells['verdict']}**"
        rows.append(list(cells.values()))
    lines += md_table(table_mod.HEADER, rows)
    if versions:
        lines += ["", f"Results produced by code version {', '.join(versions)}."]
    return Part([*lines, ""], [])


# -- flagship sweeps -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Configurations:
    """A comparison of configurations (not a feature toggle) read from the runs.

    ``keys``: the columns that make a configuration, ``names``: its label per
    key tuple (the first is the baseline), ``where``: the point of the sweep
    compared at, ``across``: a column whose levels become table columns.
    ``metrics`` are shown as the baseline's mean and each configuration's ratio
    to it, with the runs' own within-run 95 % interval (``<metric>_ci95_pct``)
    where the model gives one; ``absolute`` ones (the counters that say which
    mechanism acted) as each configuration's mean.
    """

    title: str
    keys: tuple[str, ...]
    names: dict[tuple[Any, ...], str]
    where: dict[str, Any]
    metrics: tuple[str, ...]
    across: str
    absolute: tuple[str, ...] = ()  # mechanism counters: every configuration's own mean, no ratio


ROME_CONFIGS = {
    ("xapic", False, True): "xAPIC, AVIC off",
    ("xapic", True, True): "xAPIC, AVIC on",
    ("x2apic_cluster", False, True): "x2APIC cluster",
    ("x2apic_phys", False, False): "x2APIC physical, IPI fastpath off",
    ("x2apic_phys", False, True): "x2APIC physical, IPI fastpath on",
}
ROME_KEYS = ("vm.apic", "vm.avic", "features.ipi_fastpath")


def _rome_table(title: str, where: dict[str, Any], across: str) -> Configurations:
    """A table of the ROME APIC configurations (ebizzy and hackbench) at ``where``, by ``across``."""
    return Configurations(
        title, ROME_KEYS, ROME_CONFIGS, where, ("records_per_s", "hackbench_time_s"), across
    )


CASCADELAKE_KEYS = (
    "features.boost_ready",
    "features.boost_queue_head",
    "features.pv_sched_yield",
    "features.pv_tlb_flush",
)
CASCADELAKE_CONFIGS = {
    (True, False, True, True): "stock 5.13 (queue-head boost off)",
    (False, False, True, True): "boost_ready off",
    (True, True, True, True): "boost_queue_head on",
    (True, False, False, True): "pv_sched_yield off",
    (True, False, True, False): "pv_tlb_flush off",
}

FLAGSHIP_CONFIGS: dict[str, tuple[Configurations, ...]] = {
    "rome": (
        _rome_table(
            "APIC configurations of one VM on the 2x48x2 ROME host at overcommit 1, by VM size "
            "(means over replicates)",
            {"overcommit": 1.0, "topology.sockets": 2, "topology.threads_per_core": 2},
            "vm.vcpus",
        ),
        _rome_table(
            "The same for the published 180-vCPU VM when cpu-bound co-runner VMs double the load "
            "(overcommit 2; HLT still not exiting)",
            {"vm.vcpus": 180, "topology.sockets": 2, "topology.threads_per_core": 2},
            "overcommit",
        ),
    ),
    "cascadelake": (
        Configurations(
            "The 96-vCPU ebizzy VM beside cpu-bound co-runners, each mechanism flipped alone from the "
            "stock configuration (same seed per overcommit; means over replicates)",
            CASCADELAKE_KEYS,
            CASCADELAKE_CONFIGS,
            {},
            ("records_per_s",),
            "overcommit",
            absolute=(
                "steal_pct",
                "halted_pct",
                "kicks",
                "directed_yield_successes",
                "pv_sched_yields",
                "tlb_flushes_deferred",
            ),
        ),
    ),
}


def _read_manifest(output: Path) -> dict[str, Any]:
    from sweep import manifest

    return manifest.read(output) or {}


def flagship_part(output: Path) -> Part:
    output = Path(output)
    info = _read_manifest(output)
    name = str(info.get("name") or output.name)
    conf = {"rome": "conf/rome.yaml", "cascadelake": "conf/cascadelake.yaml"}.get(name)
    title = f"### {name}" + (f" (`{conf}`)" if conf else "")
    lines = [title, ""]
    if not info:
        return _missing(title, f"no sweep output at {output}: run `sweep launch` for it")
    description = str(info.get("config", {}).get("description") or "").strip()
    counts = info.get("counts", {})
    if description:
        lines += [description, ""]
    lines += [
        f"{counts.get('ok', 0)} of {counts.get('total', 0)} runs ok"
        + (f", {counts.get('error')} failed" if counts.get("error") else "")
        + (f", {counts.get('missing')} missing" if counts.get("missing") else "")
        + f" (code {', '.join(store.code_versions(output)) or info.get('code_version', 'unknown')});"
        + f" full report: `{output}/report/index.md`.",
        "",
    ]
    notes: list[str] = []
    for configs in FLAGSHIP_CONFIGS.get(name, ()):
        lines += configurations_table(output, configs)
    effects, more = effects_table(output, info)
    lines += effects
    notes += more
    return Part(lines, notes)


def configurations_table(output: Path, spec: Configurations) -> list[str]:
    shown = (*spec.metrics, *spec.absolute)
    cis = [m + compare_mod.CI_SUFFIX for m in spec.metrics]
    runs = compare_mod.read_runs(output, [*spec.keys, *spec.where, spec.across, *shown, *cis])
    needed = [*spec.keys, *spec.where, spec.across]
    if runs.is_empty() or any(c not in runs.columns for c in needed):
        return []
    where = [pl.col(k) == v for k, v in spec.where.items()]
    frame = runs.filter(pl.all_horizontal(where)) if where else runs
    levels = sorted(frame[spec.across].unique().to_list())
    if not levels:
        return []
    means = frame.group_by([*spec.keys, spec.across]).agg(
        *[
            pl.col(m).filter(pl.col(m).is_finite()).mean().alias(m)
            for m in (*shown, *cis)
            if m in frame.columns
        ],
        pl.len().alias("n"),
    )
    lookup = {(*[r[k] for k in spec.keys], r[spec.across]): r for r in means.iter_rows(named=True)}
    base_key = next(iter(spec.names))
    lines = [f"{spec.title}:", ""]
    header = ["configuration", *[f"{spec.across}={lv}" for lv in levels]]
    for m in spec.metrics:
        rows = []
        for key, label in spec.names.items():
            row = [label]
            for lv in levels:
                cell, base = lookup.get((*key, lv)), lookup.get((*base_key, lv))
                row.append(_config_cell(m, cell, base, key == base_key))
            if any(row[1:]):
                rows.append(row)
        if rows:
            ci = (
                " (± the runs' own within-run 95 % interval)"
                if m + compare_mod.CI_SUFFIX in means.columns
                else ""
            )
            lines += [f"`{m}`: the baseline's mean, then each configuration's ratio to it{ci}:", ""]
            lines += [*md_table(header, rows), ""]
    counters = [m for m in spec.absolute if m in means.columns]
    if counters:
        across = " / ".join(str(lv) for lv in levels)
        rows = [
            [
                label,
                *[
                    " / ".join(_config_cell(m, lookup.get((*key, lv)), None, True) or "-" for lv in levels)
                    for m in counters
                ],
            ]
            for key, label in spec.names.items()
            if any((*key, lv) in lookup for lv in levels)
        ]
        lines += [f"What acted: each configuration's mean, at {spec.across} {across}:", ""]
        lines += [*md_table(["configuration", *[f"`{m}`" for m in counters]], rows), ""]
    return lines


def _config_cell(metric: str, cell: dict[str, Any] | None, base: dict[str, Any] | None, own: bool) -> str:
    """One configuration's cell: its mean (``own``) or its ratio to the baseline, then ± its within-run CI."""
    value = cell.get(metric) if cell else None
    ref = base.get(metric) if base else None
    if value is None or not math.isfinite(value):
        return ""
    if own:
        text = _abs(value)
    elif ref is None or not ref:
        return ""
    else:
        text = f"{value / ref:.2f}x"
    ci = cell.get(metric + compare_mod.CI_SUFFIX) if cell else None
    if ci is not None and math.isfinite(ci):
        text += f" ±{ci:.2g} %"
    return text


def _abs(value: float) -> str:
    return f"{value:,.0f}" if abs(value) >= 100 or value == int(value) else f"{value:.3g}"


def effects_table(output: Path, info: dict[str, Any]) -> tuple[list[str], list[str]]:
    path = Path(output) / "report" / "tables" / "feature_effects.parquet"
    if not path.exists():
        note = f"no report at {path.parent.parent}: run `sweep report {output}`"
        return [f"*Feature effects not available: {note}.*", ""], [note]
    effects = pl.read_parquet(path)
    overall = effects.filter(pl.col("by") == "all")
    if overall.is_empty():
        return ["No feature toggles with paired runs in this sweep.", ""], []
    breakdown = _breakdown(effects, info)
    # the sweep's metrics of interest in their order (figures of merit first), then the clearest effects
    order = {m: i for i, m in enumerate(info.get("config", {}).get("report", {}).get("metrics") or [])}
    ranked = overall.with_columns(
        (pl.col("median_ratio") - 1).abs().alias("_size"),
        pl.col("metric").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_rank"),
    ).sort(["_rank", "shown", "_size"], descending=[False, True, True])
    levels: list[str] = []
    if breakdown:
        levels = effects.filter(pl.col("by") == breakdown)["level"].unique().to_list()
        levels.sort(key=_level_key)
    header = ["feature", "metric", "all runs", *[f"{breakdown}={lv}" for lv in levels]]
    rows = []
    for r in ranked.head(TOP_EFFECTS).iter_rows(named=True):
        row = [
            _short_feature(r["feature"]),
            r["metric"],
            ratio_cell(r["median_ratio"], r["ci_low"], r["ci_high"], r["shown"]),
        ]
        per = effects.filter(
            (pl.col("feature") == r["feature"])
            & (pl.col("metric") == r["metric"])
            & (pl.col("by") == breakdown)
        )
        cells = {
            p["level"]: ratio_cell(p["median_ratio"], None, None, p["shown"])
            for p in per.iter_rows(named=True)
        }
        row += [cells.get(lv, "") for lv in levels]
        rows.append(row)
    lines = [
        f"Feature effects ({min(TOP_EFFECTS, overall.height)} of {overall.height}, the sweep's main metrics "
        "first): median of the paired "
        "ratios on/off (runs identical but for the feature, same seed) with its 95 % bootstrap interval; "
        "**bold**: the interval excludes 1 (at least 5 pairs)"
        + (f"; per {breakdown} level the median alone" if breakdown else "")
        + ".",
        "",
        *md_table(header, rows),
        "",
    ]
    return lines, []


def _breakdown(effects: pl.DataFrame, info: dict[str, Any]) -> str | None:
    present = set(effects["by"].unique().to_list()) - {"all"}
    for column in ("overcommit", *(info.get("config", {}).get("report", {}).get("by") or [])):
        if column in present:
            return column
    return None


def _level_key(level: str) -> tuple[int, float, str]:
    try:
        return (0, float(level), level)
    except ValueError:
        return (1, 0.0, level)


# -- the section ------------------------------------------------------------------------------------


def current_parts(text: str) -> dict[str, str]:
    """The README's generated subsections now, by their ``###`` heading line (each up to the next)."""
    if text.count(BEGIN) != 1 or text.count(END) != 1:
        return {}
    block = text[text.index(BEGIN) + len(BEGIN) : text.index(END)]
    pieces = re.split(r"^(?=### )", block, flags=re.MULTILINE)[1:]
    return {piece.split("\n", 1)[0]: piece.rstrip() + "\n" for piece in pieces}


def section(
    validation_dir: Path, sweeps: Sequence[Path] = DEFAULT_SWEEPS, keep: str | None = None
) -> tuple[str, list[str]]:
    """The Markdown of the section and notes on missing inputs.

    ``keep``: the README's current text; a subsection whose input is missing is
    then taken from it unchanged (when it has one with the same heading).
    """
    sources = ", ".join(f"`{p}`" for p in [Path(validation_dir), *map(Path, sweeps)])
    lines = [
        HEADING,
        "",
        f"*Generated by `sweep readme` from {sources}; edit the generator, not this text.*",
        "",
    ]
    notes: list[str] = []
    previous = current_parts(keep) if keep is not None else {}
    for part in [validation_part(Path(validation_dir)), *(flagship_part(Path(o)) for o in sweeps)]:
        kept = None if part.available else previous.get(part.heading)
        if kept is not None and "*Not available:" not in kept:
            lines += [kept.rstrip(), ""]
            notes += [
                f"{note}; kept the README's current {part.heading.removeprefix('### ')!r}"
                for note in part.notes
            ]
        else:
            lines += part.lines
            notes += part.notes
    return "\n".join(lines).rstrip() + "\n", notes
