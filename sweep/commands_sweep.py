"""``sweep plan | launch | status | compact``: the typer shell over the sweep functions.

Each command parses its options, calls one plain function that returns data
(:func:`sweep.plan.plan`, :func:`sweep.launch.launch`, :func:`sweep.status.status`,
:func:`sweep.store.compact`) and prints it.  Exit codes (:mod:`sweep.errors`):
0 done; 1 the sweep is incomplete (points missing, ``--fail-fast`` stop, report
failed); 2 bad config, changed config or unusable output contents (one paragraph
on stderr, nothing written); 3 the file system refused (not a directory,
read-only, full); 4 the Ray cluster cannot be reached; 130 interrupted (what
finished is kept).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sweep.errors import EXIT_INCOMPLETE, EXIT_INTERRUPTED, UserError, reported, say

if TYPE_CHECKING:
    from sweep.config import SweepConfig
    from sweep.launch import LaunchResult
    from sweep.plan import Plan
    from sweep.status import Status

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a config key (VALUE is YAML), e.g. -s space.replicates=5 -s base.vm.vcpus=96 "
        "-s 'space.params.vm.vcpus=[2, 4]'. Repeatable.",
    ),
]
ConfArg = Annotated[Path, typer.Argument(metavar="CONF", help="Sweep file (YAML), e.g. conf/smoke.yaml.")]
OutputArg = Annotated[Path, typer.Argument(metavar="OUTPUT", help="A sweep's output directory.")]


@contextlib.contextmanager
def _about(conf: Path) -> Iterator[None]:
    """Name the sweep file in the config errors raised inside."""
    from sweep.config import ConfigError

    try:
        yield
    except ConfigError as error:
        error.source = f"sweep config {conf}"
        raise


def _out() -> Any:
    from rich.console import Console

    return Console()


def plan(
    conf: ConfArg,
    overrides: SetOption = None,
    sample: Annotated[int, typer.Option(min=0, max=1000, help="How many points to show.")] = 5,
    timed: Annotated[
        int,
        typer.Option(
            "--time",
            min=0,
            max=100,
            help="How many points to simulate to estimate the run time, one per cost stratum (0: none).",
        ),
    ] = 8,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="Workers assumed for the estimate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    simulator: Annotated[str, typer.Option(hidden=True)] = "model:simulate",
) -> None:
    """Dry run: count the points, show a sample and estimate the run time. Writes nothing.

    Shows the design's rows, those excluded, the points per (hardware,
    workload) partition, a few points spread over the design with their ids
    and seeds, the SALib problem (sobol, morris), and a run-time estimate from
    the CPU time of --time points simulated here, one per cost stratum (rows
    cut by vm.vcpus x sim.duration_ms / overcommit within each hardware,
    workload and overcommit), with its spread.  One pass over the design: a 10^6-row grid
    takes seconds (designs above 20,000 rows have a sample of rows checked).
    """
    from sweep import config as config_mod
    from sweep import plan as plan_mod

    with _about(conf):
        config = config_mod.load(conf, overrides)
        result = plan_mod.plan(config, sample=sample, timed=timed, simulator=simulator, cpus=num_cpus)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2, default=str))
    else:
        print_plan(result)


def print_plan(result: Plan) -> None:
    from rich.table import Table

    out = _out()
    out.print(f"[bold]{result.name}[/]: {result.description}".rstrip(": "))
    excluded = result.design_rows - result.kept_rows
    checked = "" if result.checked_rows >= result.kept_rows else f" ({result.checked_rows} rows checked)"
    out.print(
        f"design {result.design}: {result.design_rows} rows"
        + (f" - {excluded} excluded" if excluded else "")
        + f" x {result.replicates} replicates = [bold]{result.total}[/] points -> {result.output}{checked}"
    )
    table = Table("hardware", "workload", "points", title="points per partition")
    for (hardware, workload), n in sorted(result.partitions.items()):
        table.add_row(hardware, workload, str(n))
    out.print(table)
    if result.sample:
        out.print(f"sample of {len(result.sample)} points (replicate 0):")
    for row in result.sample:
        values = " ".join(f"{k}={v}" for k, v in row.items() if k not in ("point_id", "design_index", "seed"))
        line = f"  #{row['design_index']:<5} {row['point_id'][:12]}  seed {row['seed']:<20} {values}"
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.problem:
        out.print(
            f"SALib problem: {json.dumps(result.problem)}", markup=False, highlight=False, soft_wrap=True
        )
    if result.estimate_s is not None:
        print_estimate(out, result)


def print_estimate(out: Any, result: Plan) -> None:
    """The timed points (one per cost stratum) and the estimate with its spread and basis."""
    from sweep.plan import CLASS_KEYS

    out.print(
        f"timed {len(result.timed)} points, one per cost stratum of each hardware/workload/overcommit "
        "(vCPU-ms run, CPU s here):"
    )
    for t in result.timed:
        values = " ".join(f"{k}={v}" for k, v in t.values.items() if k not in CLASS_KEYS)
        line = (
            f"  {'/'.join(t.cost_class)} #{t.design_index:<5} {t.work_ms:>9,.0f} vCPU-ms "
            f"{t.cpu_s:7.2f} s  {values}"
        )
        out.print(line, markup=False, highlight=False, soft_wrap=True)
    assert result.estimate_s is not None and result.estimate_range_s is not None and result.cpu_s is not None
    low, high = result.estimate_range_s
    spread = (
        f" (spread {duration(low)}-{duration(high)})"
        if result.has_spread
        else " (no spread: one timed point per hardware/workload/overcommit; use --time to time more)"
    )
    out.print(
        f"estimate: about [bold]{duration(result.estimate_s)}[/] on {result.cpus} workers{spread}, "
        f"{duration(result.cpu_s)} of CPU in all; from {len(result.timed)} points timed here in "
        f"{duration(result.timing_s)} (CPU time of one point per stratum, scaled by vm.vcpus x "
        f"sim.duration_ms / overcommit); assumes a free core per worker, plus Ray's start-up and the report",
        soft_wrap=True,
    )


def launch(
    conf: ConfArg,
    overrides: SetOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output directory (run.output).")
    ] = None,
    restart: Annotated[
        bool,
        typer.Option(
            help="Delete what this sweep wrote to OUTPUT (its manifest and data files only) and start over."
        ),
    ] = False,
    fail_fast: Annotated[
        bool | None, typer.Option("--fail-fast/--no-fail-fast", help="Stop at the first failed point.")
    ] = None,
    max_retries: Annotated[
        int | None,
        typer.Option(min=0, max=100, help="Ray retries of a batch whose worker died (run.max_retries)."),
    ] = None,
    batch_seconds: Annotated[
        float | None,
        typer.Option(help="Target run time of one batch (run.batch_seconds), 0 < s <= 3600."),
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default RAY_ADDRESS, else start Ray here)."
        ),
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option(
            min=1, max=100_000, help="CPUs of the in-process Ray (default: all); caps workers on a cluster."
        ),
    ] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report at the end.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress.")] = False,
    simulator: Annotated[
        str, typer.Option(hidden=True, help="module:function to simulate (tests).")
    ] = "model:simulate",
) -> None:
    """Run a sweep into OUTPUT/runs and OUTPUT/exits (Parquet), resuming what exists.

    Only points missing from OUTPUT (run.output, default results/NAME) run. A
    config that changed since OUTPUT was written is refused with what changed;
    --restart starts over (deleting only this sweep's own files; a directory
    that is not a sweep output, or foreign files in runs/, are refused).

    Ray starts in this process on every core (--num-cpus), or joins a cluster
    with --address or RAY_ADDRESS. Ctrl-C (or SIGTERM) stops cleanly and keeps
    what finished; launch again to resume. Progress: a bar on a terminal, else
    one line every 30 s (KVMSWEEP_PROGRESS_S). At the end the report is
    written to OUTPUT/report (--no-report skips it).

    Exit codes: 0 done (error rows included); 1 incomplete (points missing,
    --fail-fast stop, report failed); 2 bad or changed config, output holding
    something else, output in use; 3 output not a directory, read-only or full;
    4 Ray cluster unreachable; 130 interrupted.

    Example: sweep launch conf/smoke.yaml -s space.replicates=5 -s base.vm.vcpus=2
    """
    from sweep import config as config_mod
    from sweep import launch as launch_mod
    from sweep.progress import make_progress

    settings = {
        "run.output": str(output) if output else None,
        "run.fail_fast": fail_fast,
        "run.max_retries": max_retries,
        "run.batch_seconds": batch_seconds,
        "run.address": address,
        "run.num_cpus": num_cpus,
    }
    with _about(conf):
        config = config_mod.load(conf, overrides, {k: v for k, v in settings.items() if v is not None})
        result = launch_mod.launch(
            config, restart=restart, simulator=simulator, progress=make_progress(quiet)
        )
    say(launch_summary(config, result))
    finish_launch(config, result, report)


def launch_summary(config: SweepConfig, result: LaunchResult) -> str:
    summary = result.summary
    ran = (
        f"ran {summary.done} points in {summary.elapsed_s:.1f} s ({summary.rate:.1f}/s, {summary.workers} workers)"
        if summary
        else "nothing to run"
    )
    return (
        f"{config.name}: {ran}; output {result.output}: {result.counts.ok} ok, {result.counts.error} error, "
        f"{result.missing} missing of {result.total}"
    )


def finish_launch(config: SweepConfig, result: LaunchResult, report: bool) -> None:
    """The exit status of a launch (and its report when complete)."""
    stopped = result.summary.stopped if result.summary else None
    if stopped == "interrupted":
        say("sweep: interrupted; finished batches are kept, launch again to resume")
        raise typer.Exit(EXIT_INTERRUPTED)
    if stopped == "fail-fast":
        say("sweep: stopped at the first failed point (--fail-fast); see `sweep status`")
        raise typer.Exit(EXIT_INCOMPLETE)
    if result.invalid.count:
        say(
            f"sweep: {result.invalid.count} design rows make an impossible scenario and were not run, e.g. "
            f"{result.invalid.example}; change the values or add a space.exclude rule"
        )
    if result.missing:
        say(f"sweep: {result.missing} points are missing; launch again to retry them")
        raise typer.Exit(EXIT_INCOMPLETE)
    if report:
        write_report(config, result.output)


def write_report(config: SweepConfig, output: Path) -> None:
    try:
        from pipelines.report import write_report as write
    except ImportError as error:
        say(f"report skipped: pipelines.report is not available yet ({error})")
        return
    try:
        path = write(output, config.report.metrics, config.report.by)
    except Exception as error:  # noqa: BLE001 - the sweep is done; say why the report is not
        say(f"sweep: the report failed ({type(error).__name__}: {error}); the dataset is complete")
        raise typer.Exit(EXIT_INCOMPLETE) from None
    say(f"report: {path}")


def status(
    output: OutputArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Show how far a sweep got: ok / error / missing points, by partition, and the errors.

    Counts come from the datasets themselves (the manifest gives the total).
    Also shows the error types, the number of data files, duplicate rows (there
    should be none), files in runs/ that are not the sweep's, and commits left
    pending by a killed writer. Reads only.
    """
    from sweep.status import status as get_status

    result = get_status(output)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    else:
        print_status(result)


def print_status(s: Status) -> None:
    from rich.table import Table

    out = _out()
    out.print(f"[bold]{s.name}[/] in {s.output}  (config {s.config_hash[:12]}, code {s.code_version})")
    table = Table("status", "points")
    for key in ("ok", "error", "missing", "total"):
        table.add_row(key, str(getattr(s, key)))
    out.print(table)
    if s.partitions:
        parts = Table("hardware", "workload", "ok", "error", title="by partition")
        for p in s.partitions:
            parts.add_row(p["hardware"], p["workload"], str(p["ok"]), str(p["error"]))
        out.print(parts)
    for name, n in s.error_types.items():
        out.print(f"[red]{n} x {name}[/]")
    out.print(f"files: {s.files['runs']} runs, {s.files['exits']} exits")
    if s.duplicates:
        out.print(f"[red]{s.duplicates} duplicate rows[/]")
    if s.foreign_files:
        out.print(
            f"[red]{len(s.foreign_files)} files in runs/ or exits/ that are not the sweep's[/]: "
            + ", ".join(s.foreign_files[:5])
        )
    if s.pending_commits:
        out.print(f"{s.pending_commits} commits pending: `sweep launch` or `sweep compact` finishes them")


def compact(output: OutputArg) -> None:
    """Rewrite each partition's batch files into few large files (atomically, no duplicates).

    Every partition is swapped through a journal under OUTPUT/.staging: a
    crash leaves the old files or the new ones, never both and never half a
    file; the next launch or compact finishes the swap. Refused while a launch
    writes to OUTPUT. Rows and their values do not change.
    """
    from sweep import store
    from sweep.launch import read_manifest

    if not output.is_dir() or read_manifest(output) is None:
        raise UserError(f"{output} is not a sweep output (no manifest.json)", "sweep compact")
    try:
        with store.locked(output):
            rolled = store.recover(output)
            result = store.compact(output)
    except RuntimeError as error:
        raise UserError(str(error), "sweep compact") from None
    note = f" (finished {rolled} pending commits first)" if rolled else ""
    _out().print(f"compacted {output}: {result.files_before} files -> {result.files_after}{note}")


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def register(app: typer.Typer) -> None:
    """Add the sweep commands to the ``sweep`` app."""
    for name, command in (("plan", plan), ("launch", launch), ("status", status), ("compact", compact)):
        app.command(name)(reported(command))
