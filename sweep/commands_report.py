"""``sweep report OUTPUT``: the sensitivity report of a sweep's output directory.

A thin shell over :func:`pipelines.report.write_report`; a problem the user can
fix (no such directory, an unknown metric or column) is one line on stderr and
exit status 2, never a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def report(
    output: Annotated[
        Path, typer.Argument(help="Sweep output directory (holds runs/, exits/, manifest.json).")
    ],
    metric: Annotated[
        list[str] | None,
        typer.Option(
            "--metric", "-m", help="Metric of interest; repeat for several. Default: the manifest's."
        ),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option(
            "--by",
            help="Break feature effects down by this column; repeat for several. Default: the "
            "manifest's report.by, else overcommit, hardware, vm.vcpus, vm.apic where they vary.",
        ),
    ] = None,
) -> None:
    """Write OUTPUT/report/ (index.md, index.html, tables/, plots/) and print a summary."""
    # Imported here: Polars, SALib and matplotlib would slow every other sweep command's start.
    from pipelines.dataset import ReportError
    from pipelines.report import print_summary, write_report

    try:
        report_dir = write_report(output, metrics=metric or None, by=by or None)
    except ReportError as err:
        typer.echo(f"sweep report: {err}", err=True)
        raise typer.Exit(2) from None
    print_summary(report_dir)


def register(app: typer.Typer) -> None:
    """Add the ``report`` command to the ``sweep`` application."""
    app.command("report")(report)
