"""Running the cases: launch (or resume) each case's sweep, then compare it.

The sweeps run through the ordinary machinery (:func:`sweep.launch.launch`),
so they resume: finished points are reused unless ``rerun``.  A case whose
conditions or series are all not modelled is not launched; its rows still
appear (as ``not modelled``, with the reason).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from sweep.progress import NullProgress, ProgressReporter
from sweep.validation import compare as compare_mod
from sweep.validation.cases import PUBLISHED_FILE, Case, ValidationError, load_cases

DEFAULT_OUTPUT = Path("results") / "validation"
QUICK_OUTPUT = Path("results") / "validation-quick"


@dataclass
class CaseRun:
    case: Case
    total: int = 0  # points of the case's sweep (0: nothing modelled, not launched)
    ran: int = 0  # points simulated by this call
    missing: int = 0
    errors: int = 0
    code_versions: tuple[str, ...] = ()  # that produced the results (sweep.store.code_versions)
    stopped: str | None = None  # "interrupted" | "fail-fast" when the launch stopped early
    table: pl.DataFrame = field(default_factory=compare_mod.empty_table)

    @property
    def output(self) -> Path:
        return self.case.output


def prepare(cases: Sequence[Case], *, rerun: bool = False) -> list[CaseRun]:
    """Count every case's points and check its output before anything runs.

    Raises :class:`ValidationError` listing every case whose design is
    impossible or whose output holds another config (``rerun`` starts those over).
    """
    from sweep import launch as launch_mod
    from sweep import points
    from sweep.config import ConfigError

    problems: list[str] = []
    runs: list[CaseRun] = []
    for case in cases:
        if not case.compare.modelled:
            runs.append(CaseRun(case))
            continue
        try:
            total = points.check(case.config)
        except ConfigError as err:
            problems += [f"{case.id}: {p}" for p in err.problems]
            continue
        if not rerun:
            try:
                launch_mod.check_output(case.config, case.output)
            except launch_mod.OutputConflict as err:
                problems += [f"{case.id}: {case.output}: {line}" for line in err.lines]
                problems.append(f"{case.id}: use --rerun to start it over (or another --output)")
                continue
        runs.append(CaseRun(case, total=total))
    if problems:
        raise ValidationError(problems)
    return runs


def run_case(run: CaseRun, *, rerun: bool = False, progress: ProgressReporter | None = None) -> CaseRun:
    """Launch (or resume) the case's sweep; record what ran and what is missing."""
    from sweep import launch as launch_mod
    from sweep import manifest, store

    if not run.total:
        return run
    result = launch_mod.launch(
        run.case.config, restart=rerun, progress=progress or NullProgress(), total=run.total
    )
    run.ran = result.summary.done if result.summary else 0
    run.stopped = result.summary.stopped if result.summary else None
    run.missing = result.missing
    run.errors = result.counts.error
    versions = store.code_versions(run.output)
    if not versions:  # rows written before they carried their code version: the manifest's latest
        latest = (manifest.read(run.output) or {}).get("code_version")
        versions = [latest] if latest else []
    run.code_versions = tuple(versions)
    return run


def compare(run: CaseRun) -> CaseRun:
    runs = compare_mod.read_runs(run.output, run.case.columns()) if run.total else pl.DataFrame()
    run.table = compare_mod.evaluate(run.case, runs)
    return run


def local_runs(case: Case, simulate: Callable[..., Any] | None = None) -> pl.DataFrame:
    """The case's runs simulated here, one after the other, without Ray or files (for tests and
    small checks): the columns :func:`~sweep.validation.compare.evaluate` reads."""
    from sweep import points

    if simulate is None:
        from model import simulate
    rows = []
    for point in points.iter_points(case.config):
        result = simulate(point.scenario, point.seed)
        rows.append(
            {
                **{k: point.flat.get(k) for k in case.columns() if k in point.flat},
                **{k: v for k, v in result.metrics.items() if k in case.columns()},
                "status": "ok" if result.ok else "error",
                "replicate": point.replicate,
                "seed": point.seed,
            }
        )
    return pl.DataFrame(rows).filter(pl.col("status") == "ok") if rows else pl.DataFrame()


def validate(
    case_ids: Sequence[str] | None = None,
    output_root: Path = DEFAULT_OUTPUT,
    *,
    rerun: bool = False,
    quick: bool = False,
    overrides: Mapping[str, Sequence[str]] | None = None,
    progress: ProgressReporter | None = None,
    published_file: Path = PUBLISHED_FILE,
    on_case: Callable[[CaseRun], None] | None = None,
) -> list[CaseRun]:
    """Run (or resume) the cases' sweeps and compare them with the published results.

    ``quick``: each case's ``compare.quick`` reductions (plus ``overrides``, per
    case id).  ``on_case(run)`` is called before each case runs (the CLI prints
    a line).  Stops after the case during which the user interrupted.
    """
    cases = load_cases(
        case_ids, Path(output_root), quick=quick, overrides=overrides, published_file=published_file
    )
    prepared = prepare(cases, rerun=rerun)
    for run in prepared:
        if on_case is not None:
            on_case(run)
        run_case(run, rerun=rerun, progress=progress)
        compare(run)
        if run.stopped == "interrupted":
            return [r for r in prepared if r.table.height]
    return prepared


def combined(runs: Sequence[CaseRun]) -> pl.DataFrame:
    tables = [r.table for r in runs if r.table.height]
    return pl.concat(tables) if tables else compare_mod.empty_table()
