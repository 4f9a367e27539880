"""``sweep validate`` and ``sweep readme``: the model against published results, and the README's
results section.

Thin typer shells over :mod:`sweep.validate` and :mod:`sweep.readme`.  A
problem the user can fix (an unknown case id, an output that holds another
config) is one paragraph on stderr and exit status 2; failing cases are not an
error (the command is a report): exit 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
OUTPUT_WIDTH = 160

VERDICT_STYLE = {"pass": "green", "fail": "red", "not modelled": "dim", "no data": "yellow"}


def _say(message: str) -> None:
    Console(stderr=True).print(message, markup=False, highlight=False, soft_wrap=True)


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
    means over replicates, 95 % bootstrap interval) and judge it against the
    published ratio: within a factor of 2 of the published improvement with
    its sign, or within the case's tighter tolerance on the ratio.  Prints the
    table and writes OUTPUT/validation.{md,csv,parquet}.

    Exit codes: 0 the report was written (whether cases pass or fail); 1 a
    sweep left points missing; 2 bad input (unknown case, output holding
    another config: use --rerun); 130 interrupted.
    """
    from sweep import validate as val
    from sweep.config import ConfigError
    from sweep.launch import OutputConflict
    from sweep.progress import NullProgress, RichProgress

    root = output or (val.QUICK_OUTPUT if quick else val.DEFAULT_OUTPUT)
    err = Console(stderr=True)

    def announce(run: val.CaseRun) -> None:
        _say(f"{run.case.id}: {run.total} points -> {run.output}")

    try:
        runs = val.validate(
            case,
            root,
            rerun=not reuse,
            quick=quick,
            progress=NullProgress() if quiet else RichProgress(err),
            on_case=announce,
        )
    except val.ValidationError as error:
        lines = "\n  - ".join(error.lines)
        _say(
            f"sweep validate: nothing was run:\n  - {lines}"
            if len(error.lines) > 1
            else f"sweep validate: {lines}"
        )
        raise typer.Exit(EXIT_USAGE) from None
    except (ConfigError, OutputConflict, RuntimeError) as error:
        _say(f"sweep validate: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    except KeyboardInterrupt:
        _say("sweep validate: aborted; finished batches are kept, run again to resume")
        raise typer.Exit(EXIT_INTERRUPTED) from None
    table = val.combined(runs)
    paths = val.write_outputs(table, root, runs)
    console = Console()
    if not console.is_terminal:
        console = Console(width=OUTPUT_WIDTH)  # files and pipes: one line per row
    console.print(rich_table(table))
    _say(val.summary_line(table))
    for run in runs:
        if run.code_version:
            note = f"{run.case.id}: {run.total - run.missing} of {run.total} points (code {run.code_version})"
            note += f", {run.ran} run now" if run.ran else ", all reused"
            _say(note + (f", {run.errors} failed" if run.errors else ""))
    if any(r.reduced for r in runs):
        _say("reduced runs (--quick): the verdicts are indicative only")
    _say(f"wrote {paths['md']} and {paths['csv']}")
    if any(r.stopped == "interrupted" for r in runs):
        _say("sweep validate: interrupted; finished batches are kept, run again to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    missing = [r for r in runs if r.missing]
    if missing:
        _say("sweep validate: points missing in " + ", ".join(f"{r.case.id} ({r.missing})" for r in missing))
        raise typer.Exit(EXIT_INCOMPLETE)


def rich_table(table: Any) -> Table:
    """The validation table (a polars DataFrame) for the terminal, compact: the full text is in
    validation.md."""
    from sweep import validate as val

    out = Table(title="Validation against published results: ratio of each condition to the baseline")
    for column, justify in (
        ("case", "left"),
        ("series", "left"),
        ("condition", "left"),
        ("published ratio", "right"),
        ("simulated ratio [95 % CI]", "right"),
        ("n", "right"),
        ("tolerance", "left"),
        ("verdict", "left"),
    ):
        out.add_column(column, justify=justify, no_wrap=column not in ("case", "verdict"))  # type: ignore[arg-type]
    for r in table.iter_rows(named=True):
        if r["verdict"] == "baseline":
            continue
        tol = "±" + r["tolerance"].split("±")[1].split()[0] + " %" if "±" in r["tolerance"] else "x2 impr."
        verdict = r["verdict"] + (f" ({r['interval_verdict']} over CI)" if r["interval_verdict"] else "")
        if r["note"]:
            verdict += f": {r['note']}"
        sim = ""
        if r["verdict"] not in (val.NOT_MODELLED, val.NO_DATA):
            sim = f"{val.fmt_ratio(r['simulated_ratio'])} {val.fmt_interval(r['ci_low'], r['ci_high'])}"
        out.add_row(
            Text(r["case"]),
            Text(r["series"]),
            Text(r["condition"]),
            Text(val.fmt_ratio(r["published_ratio"])),
            Text(sim),
            Text("" if r["verdict"] in (val.NOT_MODELLED, val.NO_DATA) else str(r["replicates"])),
            Text(tol),
            Text(verdict, style=VERDICT_STYLE.get(r["verdict"], "")),
        )
    return out


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
) -> None:
    """Rewrite README.md's "What the model says" section from the validation table and the flagship reports.

    The text between <!-- results:begin --> and <!-- results:end --> is
    replaced (the markers are appended at the end of the file if absent);
    nothing else in the file changes.  Missing inputs are said in the section.
    """
    from sweep import readme as readme_mod

    outputs = sweep_outputs or list(readme_mod.DEFAULT_SWEEPS)
    try:
        text = readme_file.read_text() if readme_file.exists() else ""
    except OSError as error:
        _say(f"sweep readme: cannot read {readme_file}: {error.strerror or error}")
        raise typer.Exit(EXIT_USAGE) from None
    try:
        section, notes = readme_mod.section(validation, outputs)
        new = readme_mod.splice(text, section)
    except readme_mod.ReadmeError as error:
        _say(f"sweep readme: {error}")
        raise typer.Exit(EXIT_USAGE) from None
    for note in notes:
        _say(f"note: {note}")
    if check:
        if new != text:
            _say(f"{readme_file}: the results section is out of date; run `sweep readme`")
            raise typer.Exit(EXIT_INCOMPLETE)
        _say(f"{readme_file}: up to date")
        return
    if new == text:
        _say(f"{readme_file}: unchanged")
        return
    readme_file.write_text(new)
    _say(f"{readme_file}: results section rewritten")


def register(app: typer.Typer) -> None:
    """Add ``validate`` and ``readme`` to the ``sweep`` application."""
    app.command("validate")(validate)
    app.command("readme")(readme)
