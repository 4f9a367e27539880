"""``sweep validate`` and ``sweep readme``: the model against published results, and the README's
results section.

Thin typer shells over :mod:`sweep.validation` and :mod:`sweep.readme`.  A
problem the user can fix (an unknown case id, an output that holds another
config) is one paragraph on stderr and exit status 2 (:func:`sweep.errors.reported`);
failing cases are not an error (the command is a report): exit 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from sweep.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, EXIT_OK, reported, say

OUTPUT_WIDTH = 160


def validate(
    case: Annotated[
        list[str] | None,
        typer.Option("--case", "-c", metavar="ID", help="Only this case (repeatable). Default: every case."),
    ] = None,
    reuse: Annotated[
        bool,
        typer.Option(
            "--reuse/--rerun",
            help="Reuse finished points (the sweeps resume; default) or delete the cases' results and run "
            "them again (after a model change).",
        ),
    ] = True,
    output: Annotated[
        Path | None,
        typer.Option(
            "--output",
            "-o",
            help="Where the cases' sweeps and the table go (OUTPUT/<case id>/, OUTPUT/validation.{md,csv,parquet}). "
            "Default: results/validation, or results/validation-quick with --quick.",
        ),
    ] = None,
    quick: Annotated[
        bool,
        typer.Option(
            "--quick",
            help="Reduced runs (shorter, fewer replicates, smaller hosts where the case allows), as the test "
            "suite runs them: the signs must hold, the verdicts are indicative only.",
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Run the published cases' sweeps (conf/validation/<id>.yaml) and compare with the published results.

    For each case of conf/validation/published.yaml: launch (or resume) its
    sweep, compute the ratio of each condition to the baseline (ratio of the
    means over replicates, 95 % bootstrap interval) and judge it by the case's
    compare: block (docs/validate.md): within a factor of the published
    improvement with its sign, or within a tolerance on the ratio.  Prints the
    table and writes OUTPUT/validation.{md,csv,parquet}.

    Exit codes: 0 the report was written (whether cases pass or fail); 1 a
    sweep left points missing; 2 bad input (unknown case, inconsistent case
    file, output holding another config: use --rerun); 130 interrupted.
    """
    from sweep.progress import make_progress
    from sweep.validation import run as run_mod

    root = output or (run_mod.QUICK_OUTPUT if quick else run_mod.DEFAULT_OUTPUT)
    runs = run_mod.validate(
        case, root, rerun=not reuse, quick=quick, progress=make_progress(quiet), on_case=_announce
    )
    _write_report(runs, root)
    raise typer.Exit(exit_code(runs))


def _announce(run: Any) -> None:
    say(
        f"{run.case.id}: {run.total} points -> {run.output}"
        if run.total
        else f"{run.case.id}: not modelled, nothing to run"
    )


def _write_report(runs: list[Any], root: Path) -> None:
    """Write the table's files and print it with a summary."""
    from sweep.validation import cases
    from sweep.validation import run as run_mod
    from sweep.validation import table as table_mod

    combined = run_mod.combined(runs)
    versions = [v for r in runs for v in r.code_versions]
    paths = table_mod.write_outputs(combined, root, order=cases.case_ids(), code_versions=versions)
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console = Console(width=OUTPUT_WIDTH)  # files and pipes: one line per row
    console.print(table_mod.rich_table(combined))
    say(table_mod.summary_line(combined))
    for run in runs:
        if run.code_versions:
            code = ", ".join(run.code_versions)
            note = f"{run.case.id}: {run.total - run.missing} of {run.total} points (code {code})"
            note += f", {run.ran} run now" if run.ran else ", all reused"
            say(note + (f", {run.errors} failed" if run.errors else ""))
    if any(r.case.quick for r in runs):
        say("reduced runs (--quick): the verdicts are indicative only")
    say(f"wrote {paths['md']} and {paths['csv']}")


def exit_code(runs: list[Any]) -> int:
    """130 if interrupted, 1 if points are missing, else 0 (the verdicts do not matter)."""
    if any(r.stopped == "interrupted" for r in runs):
        say("sweep validate: interrupted; finished batches are kept, run again to resume")
        return EXIT_INTERRUPTED
    missing = [r for r in runs if r.missing]
    if missing:
        say("sweep validate: points missing in " + ", ".join(f"{r.case.id} ({r.missing})" for r in missing))
        return EXIT_INCOMPLETE
    return EXIT_OK


def readme(
    readme_file: Annotated[
        Path, typer.Option("--readme", help="The file to rewrite between the markers.")
    ] = Path("README.md"),
    validation: Annotated[
        Path, typer.Option("--validation", help="The output of `sweep validate` (holds validation.parquet).")
    ] = Path("results/validation"),
    sweep_outputs: Annotated[
        list[Path] | None,
        typer.Option(
            "--sweep",
            help="A flagship sweep's output (with its report); repeatable. Default: results/rome, results/cascadelake.",
        ),
    ] = None,
    check: Annotated[
        bool, typer.Option("--check", help="Write nothing; exit 1 if the section is not up to date.")
    ] = False,
    keep: Annotated[
        bool,
        typer.Option(
            "--keep",
            help="Where an input is missing, keep the README's current subsection for it (with the code "
            "version it states) instead of saying 'Not available'.",
        ),
    ] = False,
) -> None:
    """Rewrite README.md's "What the model says" section from the validation table and the flagship reports.

    The text between <!-- results:begin --> and <!-- results:end --> is
    replaced (the markers are appended at the end of the file if absent);
    nothing else in the file changes.  Missing inputs are said in the section,
    or with --keep left as the README has them (e.g. rerun one flagship sweep
    and regenerate its part without rerunning the validation).
    """
    from sweep import readme as readme_mod

    text = readme_mod.read_text(readme_file)
    section, notes = readme_mod.section(
        validation, sweep_outputs or list(readme_mod.DEFAULT_SWEEPS), keep=text if keep else None
    )
    new = readme_mod.splice(text, section)
    for note in notes:
        say(f"note: {note}")
    if check:
        say(
            f"{readme_file}: "
            + ("up to date" if new == text else "the results section is out of date; run `sweep readme`")
        )
        raise typer.Exit(EXIT_OK if new == text else EXIT_INCOMPLETE)
    if new != text:
        readme_file.write_text(new)
    say(f"{readme_file}: " + ("results section rewritten" if new != text else "unchanged"))


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``readme`` to the ``sweep`` application."""
    app.command("validate")(reported(validate))
    app.command("readme")(reported(readme))
