"""Validation against published results: run each case's sweep, compare the ratios.

``conf/validation/published.yaml`` lists published experiments: per case the
conditions that were measured and the values reported.  Each case has a sweep
file ``conf/validation/<id>.yaml`` with the published setup; :data:`CASES`
says, per case, which runs of that sweep make each published condition (the
scenario keys that select them), which metric stands for the published one,
whether higher is better, and the tolerance.  The published values themselves
are always read from ``published.yaml``, never copied here.

What is compared is a shape, not an absolute number: the ratio of a condition
to the case's baseline, ``metric(condition) / metric(baseline)``.  The
simulated ratio is the ratio of the means over replicates, with a 95 %
percentile-bootstrap interval: resampling replicates jointly where the two
conditions share their seeds (they differ only in ``features.*``, so the
sweep gives them common random numbers), each side on its own otherwise.

The *improvement* of a condition is ``ratio - 1`` for a metric where higher
is better and ``1 - ratio`` where lower is better (time, latency, cycles).
Rules (``published.yaml``'s header, tightened per case):

* ``factor`` F: the simulated improvement has the published sign and
  ``|pub| / F <= |sim| <= F * |pub|``;
* ``ratio`` T: ``|sim_ratio / pub_ratio - 1| <= T``.

The verdict uses the point estimate; ``interval_verdict`` says whether both
ends of the interval give the same verdict (``pass``/``fail``) or not
(``mixed``).

The sweeps run through the ordinary machinery (:func:`sweep.launch.launch`),
so they resume: finished points are reused unless ``rerun``.  Everything
here is usable without the CLI; ``sweep validate`` is a thin shell over
:func:`validate` and :func:`write_outputs`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import polars as pl
import yaml

from sweep import config as config_mod
from sweep import launch as launch_mod
from sweep import manifest, points, store
from sweep.config import SweepConfig
from sweep.progress import NullProgress, ProgressReporter

REPO = Path(__file__).resolve().parent.parent
VALIDATION_DIR = REPO / "conf" / "validation"
PUBLISHED_FILE = VALIDATION_DIR / "published.yaml"
DEFAULT_OUTPUT = Path("results") / "validation"
QUICK_OUTPUT = Path("results") / "validation-quick"
TABLE_STEM = "validation"
RESAMPLES = 2000
BOOT_SEED = 20_200_411  # fixed: the report is the same on every run
LEVEL = 0.95
EPS = 1e-12  # rounding slack at the tolerance bounds

PASS, FAIL, NOT_MODELLED, NO_DATA = "pass", "fail", "not modelled", "no data"


class ValidationError(ValueError):
    """A problem the user can fix (unknown case, stale output), one line each."""

    def __init__(self, lines: list[str]):
        self.lines = lines
        super().__init__("; ".join(lines))


# -- the cases --------------------------------------------------------------------------


@dataclass(frozen=True)
class Tolerance:
    """``factor``: within a factor of the published improvement, same sign;
    ``ratio``: the simulated ratio within ``value`` (relative) of the published ratio."""

    kind: Literal["factor", "ratio"]
    value: float

    def describe(self) -> str:
        if self.kind == "factor":
            return f"improvement within x{self.value:g}, same sign"
        return f"ratio within ±{self.value * 100:g} %"

    def pass_range(self, pub_ratio: float, higher_is_better: bool) -> tuple[float, float]:
        """The simulated ratios that pass, ``[low, high]`` (improvement and ratio are monotone)."""
        if self.kind == "ratio":
            return pub_ratio * (1.0 - self.value), pub_ratio * (1.0 + self.value)
        pub = improvement(pub_ratio, higher_is_better)
        bounds = [pub / self.value, pub * self.value]  # same sign as pub, so the sign rule holds
        ratios = sorted(1.0 + b if higher_is_better else 1.0 - b for b in bounds)
        return ratios[0], ratios[1]

    def check(self, sim_ratio: float, pub_ratio: float, higher_is_better: bool) -> bool:
        if not (math.isfinite(sim_ratio) and math.isfinite(pub_ratio)):
            return False
        low, high = self.pass_range(pub_ratio, higher_is_better)
        return low - EPS <= sim_ratio <= high + EPS


RATIO_10 = Tolerance("ratio", 0.10)
RATIO_15 = Tolerance("ratio", 0.15)
FACTOR_2 = Tolerance("factor", 2.0)


@dataclass(frozen=True)
class Group:
    """One published series: a metric measured under every condition of the case.

    ``path``: where its values are in the case's entry of ``published.yaml``
    (``("values",)``, ``("metrics", "ebizzy_records_per_s")``, ...); ``match``:
    scenario keys that select this series' runs (e.g. the workload).
    """

    label: str
    path: tuple[str, ...]
    metric: str
    higher_is_better: bool
    tolerance: Tolerance
    match: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A published case: its sweep, the runs of each condition, the series compared."""

    id: str
    baseline: str
    conditions: Mapping[str, Mapping[str, Any] | None]  # None: not modelled
    groups: tuple[Group, ...]
    notes: Mapping[str, str] = field(default_factory=dict)  # per condition, shown with "not modelled"

    @property
    def conf(self) -> Path:
        return VALIDATION_DIR / f"{self.id}.yaml"


CASES: tuple[Case, ...] = (
    Case(
        "ipi-fastpath-unicast",
        baseline="no_fastpath",
        conditions={
            "no_fastpath": {"features.ipi_fastpath": False},
            "fastpath": {"features.ipi_fastpath": True},
            "fastpath_in_run_loop": None,
        },
        groups=(Group("ipi", ("values",), "vmexit_op_cycles", False, RATIO_10),),
        notes={"fastpath_in_run_loop": "the fastpath in the vcpu_run loop is not a separate mechanism"},
    ),
    Case(
        "timer-fastpath-cyclictest",
        baseline="timer_fastpath_off",
        conditions={
            "timer_fastpath_off": {"features.timer_fastpath": False},
            "timer_fastpath_on": {"features.timer_fastpath": True},
        },
        groups=(Group("cyclictest", ("values",), "timer_latency_avg_us", False, RATIO_10),),
    ),
    Case(
        "timer-fastpath-tscdeadline-immed",
        baseline="timer_fastpath_off",
        conditions={
            "timer_fastpath_off": {"features.timer_fastpath": False},
            "timer_fastpath_on": {"features.timer_fastpath": True},
        },
        groups=(Group("tscdeadline_immed", ("values",), "vmexit_op_cycles", False, RATIO_10),),
    ),
    Case(
        "rome-180vcpu-apic-modes",
        baseline="avic0_xapic",
        conditions={
            "avic0_xapic": {"vm.apic": "xapic", "vm.avic": False},
            "avic1_xapic": {"vm.apic": "xapic", "vm.avic": True},
            "avic0_x2apic": {"vm.apic": "x2apic_cluster", "vm.avic": False},
        },
        groups=(
            Group(
                "ebizzy",
                ("metrics", "ebizzy_records_per_s"),
                "records_per_s",
                True,
                FACTOR_2,
                {"workload.kind": "ebizzy"},
            ),
            Group(
                "hackbench",
                ("metrics", "hackbench_l1000000_s"),
                "hackbench_time_s",
                False,
                FACTOR_2,
                {"workload.kind": "hackbench"},
            ),
        ),
    ),
    Case(
        "boost-ready-ebizzy",
        baseline="boost_ready_off",
        conditions={
            "boost_ready_off": {"features.boost_ready": False},
            "boost_ready_on": {"features.boost_ready": True},
        },
        groups=(
            Group("1vm", ("values", "1vm"), "records_per_s", True, RATIO_15, {"overcommit": 1.0}),
            Group("2vm", ("values", "2vm"), "records_per_s", True, FACTOR_2, {"overcommit": 2.0}),
            Group("3vm", ("values", "3vm"), "records_per_s", True, FACTOR_2, {"overcommit": 3.0}),
        ),
    ),
)

CASE_IDS: tuple[str, ...] = tuple(c.id for c in CASES)

# Reduced runs for ``sweep validate --quick`` and the test suite: the same code
# path, smaller durations, one or two replicates, smaller hosts where the case
# allows.  Verdicts of a reduced run are indicative only; the signs must hold.
QUICK: dict[str, list[str]] = {
    "ipi-fastpath-unicast": ["base.sim.duration_ms=5", "base.sim.warmup_ms=1", "replicates=1"],
    "timer-fastpath-cyclictest": ["base.sim.duration_ms=60", "base.sim.warmup_ms=5", "replicates=1"],
    "timer-fastpath-tscdeadline-immed": ["base.sim.duration_ms=5", "base.sim.warmup_ms=1", "replicates=1"],
    "rome-180vcpu-apic-modes": ["base.sim.duration_ms=20", "base.sim.warmup_ms=5", "replicates=2"],
    "boost-ready-ebizzy": [  # a 1x8x2 host with 16-vCPU VMs: 1, 2, 3 VMs as published
        "base.topology.sockets=1",
        "base.topology.cores_per_socket=8",
        "base.vm.vcpus=16",
        "base.sim.duration_ms=120",
        "base.sim.warmup_ms=30",
        "replicates=2",
    ],
}


def get_case(case_id: str) -> Case:
    for case in CASES:
        if case.id == case_id:
            return case
    raise ValidationError([f"unknown case {case_id!r}; allowed: {', '.join(CASE_IDS)}"])


def select(case_ids: Sequence[str] | None) -> list[Case]:
    """The cases named (all when none), in the order of :data:`CASES`; unknown ids are one error."""
    if not case_ids:
        return list(CASES)
    unknown = [c for c in dict.fromkeys(case_ids) if c not in CASE_IDS]
    if unknown:
        plural = "s" if len(unknown) > 1 else ""
        names = ", ".join(repr(u) for u in unknown)
        raise ValidationError([f"unknown case{plural} {names}; allowed: {', '.join(CASE_IDS)}"])
    return [c for c in CASES if c.id in case_ids]


def load_published(path: Path = PUBLISHED_FILE) -> dict[str, dict[str, Any]]:
    """``published.yaml`` as ``{case id: entry}``."""
    entries = yaml.safe_load(Path(path).read_text())
    return {str(e["id"]): e for e in entries}


def published_values(entry: Mapping[str, Any], group: Group) -> dict[str, float]:
    node: Any = entry
    for key in group.path:
        node = node[key]
    return {str(k): float(v) for k, v in node.items()}


# -- statistics ----------------------------------------------------------------------------


def improvement(ratio: float, higher_is_better: bool) -> float:
    """``ratio - 1`` where higher is better, ``1 - ratio`` where lower is."""
    return ratio - 1.0 if higher_is_better else 1.0 - ratio


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float
    low: float
    high: float
    n: int  # replicates (pairs when paired)
    paired: bool


def ratio_interval(
    condition: np.ndarray,
    baseline: np.ndarray,
    *,
    paired: bool,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = BOOT_SEED,
) -> RatioEstimate:
    """Ratio of the means ``mean(condition) / mean(baseline)`` and its percentile-bootstrap interval.

    ``paired``: the i-th values of both share a seed; replicates are resampled
    jointly.  Otherwise each side is resampled on its own.
    """
    cond = np.asarray(condition, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    if len(cond) == 0 or len(base) == 0:
        return RatioEstimate(math.nan, math.nan, math.nan, 0, paired)
    if paired and len(cond) != len(base):
        raise ValueError("paired samples must have the same length")
    point = float(cond.mean() / base.mean()) if base.mean() != 0 else math.nan
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(cond), size=(resamples, len(cond)))
        draws = cond[idx].mean(axis=1) / base[idx].mean(axis=1)
    else:
        ci = rng.integers(0, len(cond), size=(resamples, len(cond)))
        bi = rng.integers(0, len(base), size=(resamples, len(base)))
        draws = cond[ci].mean(axis=1) / base[bi].mean(axis=1)
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    if len(draws) == 0:
        low = high = math.nan
    else:
        low, high = (float(x) for x in np.quantile(draws, [alpha, 1.0 - alpha]))
    return RatioEstimate(point, low, high, len(cond) if paired else min(len(cond), len(base)), paired)


# -- one case's table ------------------------------------------------------------------------

COLUMNS: dict[str, pl.DataType] = {
    "case": pl.String(),
    "series": pl.String(),
    "metric": pl.String(),
    "condition": pl.String(),
    "baseline": pl.String(),
    "published": pl.Float64(),
    "published_ratio": pl.Float64(),
    "published_improvement": pl.Float64(),
    "simulated": pl.Float64(),
    "simulated_ratio": pl.Float64(),
    "ci_low": pl.Float64(),
    "ci_high": pl.Float64(),
    "simulated_improvement": pl.Float64(),
    "replicates": pl.Int64(),
    "paired": pl.Boolean(),
    "higher_is_better": pl.Boolean(),
    "tolerance": pl.String(),
    "verdict": pl.String(),
    "interval_verdict": pl.String(),
    "note": pl.String(),
}


def _matches(match: Mapping[str, Any], columns: Iterable[str]) -> pl.Expr:
    exprs = [pl.col(k) == v for k, v in match.items()]
    missing = [k for k in match if k not in columns]
    if missing:
        return pl.lit(False)
    return pl.all_horizontal(exprs) if exprs else pl.lit(True)


def read_runs(output: Path, columns: Sequence[str]) -> pl.DataFrame:
    """The ok runs of a sweep output with the given columns (those the dataset has)."""
    from pipelines.dataset import scan_partitioned

    runs_dir = Path(output) / store.RUNS_DIR
    if not runs_dir.is_dir() or not any(runs_dir.rglob("*.parquet")):
        return pl.DataFrame()
    lf = scan_partitioned(runs_dir)
    schema = lf.collect_schema()
    wanted = [c for c in dict.fromkeys(["status", "replicate", "seed", *columns]) if c in schema]
    return lf.select(wanted).filter(pl.col("status") == store.STATUS_OK).collect()


def _values(runs: pl.DataFrame, match: Mapping[str, Any], metric: str) -> pl.DataFrame:
    """``replicate, seed, value`` of the runs that match, the metric finite, one row per replicate."""
    if runs.is_empty() or metric not in runs.columns:
        return pl.DataFrame(schema={"replicate": pl.Int32, "seed": pl.Int64, "value": pl.Float64})
    frame = runs.filter(_matches(match, runs.columns)).select(
        "replicate", "seed", pl.col(metric).cast(pl.Float64).alias("value")
    )
    frame = frame.filter(pl.col("value").is_finite())
    # one value per replicate (a design with duplicated rows would average them)
    return frame.group_by("replicate").agg(pl.col("seed").first(), pl.col("value").mean()).sort("replicate")


def interval_verdict_of(tol: Tolerance, est: RatioEstimate, pub_ratio: float, higher: bool) -> str:
    """``pass`` if every ratio of the interval passes, ``fail`` if none does, else ``mixed``."""
    if not (math.isfinite(est.low) and math.isfinite(est.high)):
        return ""
    low, high = tol.pass_range(pub_ratio, higher)
    if low - EPS <= est.low and est.high <= high + EPS:
        return PASS
    if est.high < low - EPS or est.low > high + EPS:
        return FAIL
    return "mixed"


def evaluate(case: Case, runs: pl.DataFrame, published: Mapping[str, Any]) -> pl.DataFrame:
    """The comparison rows of one case from its runs (ok runs with the condition and series keys)."""
    rows: list[dict[str, Any]] = []
    for group in case.groups:
        values = published_values(published, group)
        pub_base = values[case.baseline]
        base_match = {**group.match, **(case.conditions[case.baseline] or {})}
        base = _values(runs, base_match, group.metric)
        for name, value in values.items():
            row: dict[str, Any] = {
                "case": case.id,
                "series": group.label,
                "metric": group.metric,
                "condition": name,
                "baseline": case.baseline,
                "published": value,
                "higher_is_better": group.higher_is_better,
                "tolerance": group.tolerance.describe(),
                "note": "",
            }
            match = case.conditions.get(name, "unmapped")
            if match == "unmapped":
                raise ValueError(f"{case.id}: published condition {name!r} has no entry in validate.CASES")
            if name == case.baseline:
                row.update(
                    published_ratio=1.0,
                    published_improvement=0.0,
                    simulated=float(base["value"].mean()) if base.height else math.nan,
                    simulated_ratio=1.0 if base.height else math.nan,
                    replicates=base.height,
                    verdict="baseline",
                    interval_verdict="",
                )
                rows.append(row)
                continue
            pub_ratio = value / pub_base
            row.update(
                published_ratio=pub_ratio,
                published_improvement=improvement(pub_ratio, group.higher_is_better),
            )
            if match is None:
                row.update(verdict=NOT_MODELLED, interval_verdict="", note=case.notes.get(name, ""))
                rows.append(row)
                continue
            cond = _values(runs, {**group.match, **match}, group.metric)
            joined = cond.join(base, on="replicate", how="inner", suffix="_base")
            paired = joined.height > 0 and bool((joined["seed"] == joined["seed_base"]).all())
            if paired:
                est = ratio_interval(joined["value"].to_numpy(), joined["value_base"].to_numpy(), paired=True)
            else:
                est = ratio_interval(cond["value"].to_numpy(), base["value"].to_numpy(), paired=False)
            row.update(
                simulated=float(cond["value"].mean()) if cond.height else math.nan,
                simulated_ratio=est.ratio,
                ci_low=est.low,
                ci_high=est.high,
                simulated_improvement=improvement(est.ratio, group.higher_is_better),
                replicates=est.n,
                paired=est.paired if est.n else None,
            )
            if not math.isfinite(est.ratio):
                row.update(verdict=NO_DATA, interval_verdict="", note="no ok run of this condition")
            else:
                ok = group.tolerance.check(est.ratio, pub_ratio, group.higher_is_better)
                row.update(
                    verdict=PASS if ok else FAIL,
                    interval_verdict=interval_verdict_of(
                        group.tolerance, est, pub_ratio, group.higher_is_better
                    ),
                )
            rows.append(row)
    return pl.DataFrame(rows, schema=COLUMNS)


def empty_table() -> pl.DataFrame:
    return pl.DataFrame(schema=COLUMNS)


def case_columns(case: Case) -> list[str]:
    keys = {k for g in case.groups for k in g.match}
    keys |= {k for m in case.conditions.values() if m for k in m}
    return [*sorted(keys), *dict.fromkeys(g.metric for g in case.groups)]


# -- running -------------------------------------------------------------------------------


@dataclass
class CaseRun:
    case: Case
    config: SweepConfig
    output: Path
    ran: int = 0  # points simulated by this call
    total: int = 0
    missing: int = 0
    errors: int = 0
    code_version: str | None = None  # of the results, from the manifest
    stopped: str | None = None  # "interrupted" | "fail-fast" when the launch stopped early
    reduced: bool = False  # run with --quick reductions or overrides: verdicts indicative only
    table: pl.DataFrame = field(default_factory=empty_table)


def load_config(case: Case, output_root: Path, overrides: Sequence[str] = ()) -> SweepConfig:
    """The case's sweep config, its output under ``output_root/<case id>``."""
    items = [*overrides, f"run.output={Path(output_root) / case.id}"]
    return config_mod.load(case.conf, items)


def prepare(
    cases: Sequence[Case],
    output_root: Path,
    *,
    rerun: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
) -> list[CaseRun]:
    """Load and check every case's config and output before anything runs.

    Raises :class:`ValidationError` listing every case whose config is invalid
    or whose output holds another config (``rerun`` starts those over).
    """
    problems: list[str] = []
    runs: list[CaseRun] = []
    for case in cases:
        try:
            config = load_config(case, output_root, (overrides or {}).get(case.id, ()))
            total = points.check(config)
        except config_mod.ConfigError as err:
            problems += [f"{case.id}: {p}" for p in err.problems]
            continue
        if not rerun:
            try:
                launch_mod.check_output(config, config.output)
            except launch_mod.OutputConflict as err:
                problems += [f"{case.id}: {config.output}: {line}" for line in err.lines]
                problems.append(f"{case.id}: use --rerun to start it over (or another --output)")
                continue
        runs.append(CaseRun(case, config, config.output, total=total))
    if problems:
        raise ValidationError(problems)
    return runs


def run_case(run: CaseRun, *, rerun: bool = False, progress: ProgressReporter | None = None) -> CaseRun:
    """Launch (or resume) the case's sweep; record what ran and what is missing."""
    result = launch_mod.launch(
        run.config, restart=rerun, progress=progress or NullProgress(), total=run.total
    )
    run.ran = result.summary.done if result.summary else 0
    run.stopped = result.summary.stopped if result.summary else None
    run.missing = result.missing
    run.errors = result.counts.error
    info = manifest.read(run.output) or {}
    run.code_version = info.get("code_version")
    return run


def compare(run: CaseRun, published: Mapping[str, Mapping[str, Any]]) -> CaseRun:
    runs = read_runs(run.output, case_columns(run.case))
    run.table = evaluate(run.case, runs, published[run.case.id])
    return run


def validate(
    case_ids: Sequence[str] | None = None,
    output_root: Path = DEFAULT_OUTPUT,
    *,
    rerun: bool = False,
    quick: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
    progress: ProgressReporter | None = None,
    published_file: Path = PUBLISHED_FILE,
    on_case: Any = None,
) -> list[CaseRun]:
    """Run (or resume) the cases' sweeps and compare them with the published results.

    ``quick``: apply :data:`QUICK`'s reductions (plus ``overrides``, per case id).
    ``on_case(run)`` is called before each case runs (the CLI prints a line).
    """
    cases = select(case_ids)
    published = load_published(published_file)
    missing = [c.id for c in cases if c.id not in published]
    if missing:
        raise ValidationError([f"{published_file}: no entry for case {m!r}" for m in missing])
    merged: dict[str, list[str]] = {}
    for case in cases:
        merged[case.id] = [*(QUICK.get(case.id, []) if quick else []), *(overrides or {}).get(case.id, ())]
    prepared = prepare(cases, Path(output_root), rerun=rerun, overrides=merged)
    for run in prepared:
        run.reduced = bool(merged[run.case.id])
        if on_case is not None:
            on_case(run)
        run_case(run, rerun=rerun, progress=progress)
        compare(run, published)
        if run.stopped == "interrupted":
            return [r for r in prepared if r.table.height]
    return prepared


def combined(runs: Sequence[CaseRun]) -> pl.DataFrame:
    tables = [r.table for r in runs if r.table.height]
    return pl.concat(tables) if tables else empty_table()


# -- documents ---------------------------------------------------------------------------------


def fmt_value(x: float | None) -> str:
    if x is None or not math.isfinite(x):
        return ""
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.4g}"


def fmt_ratio(x: float | None) -> str:
    return "" if x is None or not math.isfinite(x) else f"{x:.3f}"


def fmt_interval(low: float | None, high: float | None) -> str:
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return ""
    return f"[{low:.3f}, {high:.3f}]"


def display_rows(table: pl.DataFrame, *, baselines: bool = False) -> list[dict[str, str]]:
    """The table as text cells, one dict per row (baseline rows left out unless asked)."""
    out = []
    for r in table.iter_rows(named=True):
        if r["verdict"] == "baseline" and not baselines:
            continue
        out.append(
            {
                "case": r["case"],
                "series": r["series"],
                "condition": f"{r['condition']} vs {r['baseline']}",
                "metric": r["metric"]
                + (" (higher is better)" if r["higher_is_better"] else " (lower is better)"),
                "published": f"{fmt_value(r['published'])} (ratio {fmt_ratio(r['published_ratio'])})",
                "simulated ratio [95 % CI]": (
                    f"{fmt_ratio(r['simulated_ratio'])} {fmt_interval(r['ci_low'], r['ci_high'])}".strip()
                ),
                "n": "" if r["replicates"] is None or r["verdict"] == NOT_MODELLED else str(r["replicates"]),
                "tolerance": r["tolerance"],
                "verdict": r["verdict"]
                + (f" ({r['interval_verdict']} over the CI)" if r["interval_verdict"] else ""),
                "note": r["note"] or "",
            }
        )
    return out


def summary_line(table: pl.DataFrame) -> str:
    verdicts = table.filter(pl.col("verdict") != "baseline")["verdict"].to_list()
    counts = {v: verdicts.count(v) for v in (PASS, FAIL, NOT_MODELLED, NO_DATA)}
    compared = counts[PASS] + counts[FAIL]
    parts = [f"{counts[PASS]} of {compared} compared ratios pass"]
    if counts[FAIL]:
        failed_cases = sorted(set(table.filter(pl.col("verdict") == FAIL)["case"].to_list()))
        parts.append(f"{counts[FAIL]} fail ({', '.join(failed_cases)})")
    if counts[NOT_MODELLED]:
        parts.append(f"{counts[NOT_MODELLED]} not modelled")
    if counts[NO_DATA]:
        parts.append(f"{counts[NO_DATA]} without data")
    return "; ".join(parts)


def markdown(table: pl.DataFrame, runs: Sequence[CaseRun] = (), *, heading: str | None = "Validation") -> str:
    """The validation table as Markdown (with a summary line and each case's source)."""
    lines: list[str] = []
    if heading:
        lines += [f"# {heading}", ""]
    lines += [
        (
            "Simulated vs published ratio of each condition to the case's baseline "
            "(`conf/validation/published.yaml`). Simulated: ratio of the means over "
            "the replicates (n), 95 % percentile-bootstrap interval. Verdict from "
            "the point estimate; in brackets whether the whole interval agrees."
        ),
        "",
        f"**{summary_line(table)}.**",
        "",
    ]
    lines += markdown_table(display_rows(table))
    if any(r.reduced for r in runs):
        lines += ["", "Reduced runs (`--quick`): verdicts are indicative only; the signs must hold."]
    versions = sorted({r.code_version for r in runs if r.code_version})
    if versions:
        lines += ["", f"Results produced by code version {', '.join(versions)}."]
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[dict[str, str]]) -> list[str]:
    if not rows:
        return ["(no rows)"]
    head = list(rows[0])
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(str(r[h]).replace("|", "\\|") for h in head) + " |")
    return lines


def write_outputs(table: pl.DataFrame, output_root: Path, runs: Sequence[CaseRun] = ()) -> dict[str, Path]:
    """``validation.csv``, ``validation.parquet`` and ``validation.md`` under ``output_root``.

    When only some cases ran, the rows of the other cases already in the
    table on disk are kept (a one-case run does not erase the others).
    """
    output_root = Path(output_root)
    output_root.mkdir(parents=True, exist_ok=True)
    parquet = output_root / f"{TABLE_STEM}.parquet"
    if parquet.exists():
        try:
            old = pl.read_parquet(parquet)
        except (OSError, pl.exceptions.PolarsError):
            old = empty_table()
        if set(old.columns) == set(COLUMNS):
            ran = set(table["case"].to_list())
            kept = old.filter(~pl.col("case").is_in(list(ran))).select(list(COLUMNS))
            order = {cid: i for i, cid in enumerate(CASE_IDS)}
            table = pl.concat([kept, table]).with_columns(
                pl.col("case").replace_strict(order, default=len(order), return_dtype=pl.Int64).alias("_o")
            )
            table = table.sort("_o", maintain_order=True).drop("_o")
    paths = {
        "csv": output_root / f"{TABLE_STEM}.csv",
        "parquet": parquet,
        "md": output_root / f"{TABLE_STEM}.md",
    }
    tmp = parquet.with_suffix(".parquet.tmp")
    table.write_parquet(tmp)
    tmp.replace(parquet)
    table.write_csv(paths["csv"])
    paths["md"].write_text(markdown(table, runs))
    return paths


def read_table(output_root: Path) -> pl.DataFrame:
    """The validation table written by :func:`write_outputs`."""
    return pl.read_parquet(Path(output_root) / f"{TABLE_STEM}.parquet")
