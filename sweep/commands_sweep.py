"""``sweep plan | launch | status | compact``: the typer shell over the sweep functions.

Exit codes: 0 done; 1 the sweep is incomplete (points missing, ``--fail-fast``
stop, report failed); 2 bad config, changed config or unusable output (one
paragraph on stderr, nothing written); 130 interrupted (what finished is kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from sweep import config as config_mod
from sweep import launch as launch_mod
from sweep import manifest, store
from sweep.config import ConfigError, SweepConfig

EXIT_OK = 0
EXIT_INCOMPLETE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

out = Console()
err = Console(stderr=True)

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


def _say(message: str) -> None:
    """A plain line on stderr (no wrapping, no markup: messages quote user text)."""
    err.print(message, markup=False, highlight=False, soft_wrap=True)


def _fail(message: str, code: int = EXIT_USAGE) -> typer.Exit:
    _say(message)
    return typer.Exit(code)


def _load(conf: Path, overrides: list[str] | None, extra: dict[str, Any] | None = None) -> SweepConfig:
    """Load the config with ``-s`` overrides, then the typed command-line options (as run.* keys)."""
    items = list(overrides or [])
    items += [f"run.{key}={json.dumps(value)}" for key, value in (extra or {}).items() if value is not None]
    try:
        return config_mod.load(conf, items)
    except ConfigError as error:
        raise _fail(error.paragraph()) from None


def _check(config: SweepConfig, conf: Path) -> int:
    from sweep import points

    try:
        return points.check(config)
    except ConfigError as error:
        error.source = f"sweep config {conf}"
        raise _fail(error.paragraph()) from None


def plan(
    conf: ConfArg,
    overrides: SetOption = None,
    sample: Annotated[int, typer.Option(min=0, help="How many points to show.")] = 5,
    timed: Annotated[
        int,
        typer.Option("--time", min=0, help="How many points to simulate to estimate the run time (0: none)."),
    ] = 3,
    num_cpus: Annotated[int | None, typer.Option(min=1, help="Workers assumed for the estimate.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
    simulator: Annotated[str, typer.Option(hidden=True)] = "model:simulate",
) -> None:
    """Dry run: count the points, show a sample and estimate the run time. Writes nothing.

    Shows the design's rows, those excluded, the points per (hardware,
    workload) partition, a few points spread over the design with their ids
    and seeds, the SALib problem (sobol, morris), and a run-time estimate from
    simulating --time points here.
    """
    from sweep.plan import make_plan

    config = _load(conf, overrides)
    _check(config, conf)
    try:
        result = make_plan(config, sample=sample, timed=timed, simulator=simulator, cpus=num_cpus)
    except ConfigError as error:
        raise _fail(error.paragraph()) from None
    except ValueError as error:
        raise _fail(f"sweep plan: {error}") from None
    if as_json:
        data = {
            "name": config.name,
            "design": result.design,
            "design_rows": result.design_rows,
            "kept_rows": result.kept_rows,
            "replicates": result.replicates,
            "total": result.total,
            "partitions": [
                {"hardware": h, "workload": w, "points": n} for (h, w), n in sorted(result.partitions.items())
            ],
            "sample": result.sample,
            "problem": result.problem,
            "mean_point_s": result.mean_point_s,
            "estimate_s": result.estimate_s,
            "cpus": result.cpus,
            "output": str(config.output),
        }
        typer.echo(json.dumps(data, indent=2, default=str))
        return
    out.print(f"[bold]{config.name}[/]: {config.description}".rstrip(": "))
    excluded = result.design_rows - result.kept_rows
    out.print(
        f"design {result.design}: {result.design_rows} rows"
        + (f" - {excluded} excluded" if excluded else "")
        + f" x {result.replicates} replicates = [bold]{result.total}[/] points -> {config.output}"
    )
    table = Table("hardware", "workload", "points", title="points per partition")
    for (hardware, workload), n in sorted(result.partitions.items()):
        table.add_row(hardware, workload, str(n))
    out.print(table)
    if result.sample:
        out.print(f"sample of {len(result.sample)} points (replicate 0):")
        for row in result.sample:
            values = " ".join(
                f"{k}={v}" for k, v in row.items() if k not in ("point_id", "design_index", "seed")
            )
            line = f"  #{row['design_index']:<5} {row['point_id'][:12]}  seed {row['seed']:<20} {values}"
            out.print(line, markup=False, highlight=False, soft_wrap=True)
    if result.problem:
        out.print(
            f"SALib problem: {json.dumps(result.problem)}", markup=False, highlight=False, soft_wrap=True
        )
    if result.estimate_s is not None:
        out.print(
            f"timed {len(result.timed)} points: {result.mean_point_s:.3f} s each -> about "
            f"{_duration(result.estimate_s)} on {result.cpus} workers, plus Ray's start-up"
        )


def launch(
    conf: ConfArg,
    overrides: SetOption = None,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="Output directory (run.output).")
    ] = None,
    restart: Annotated[
        bool, typer.Option(help="Delete what this output holds of a sweep and start over.")
    ] = False,
    fail_fast: Annotated[
        bool | None, typer.Option("--fail-fast/--no-fail-fast", help="Stop at the first failed point.")
    ] = None,
    max_retries: Annotated[
        int | None, typer.Option(min=0, help="Ray retries of a batch whose worker died (run.max_retries).")
    ] = None,
    batch_seconds: Annotated[
        float | None, typer.Option(min=0.0, help="Target run time of one batch (run.batch_seconds).")
    ] = None,
    address: Annotated[
        str | None,
        typer.Option(
            help="Join a Ray cluster: auto, HOST:PORT or ray://HOST:PORT (default RAY_ADDRESS, else start Ray here)."
        ),
    ] = None,
    num_cpus: Annotated[
        int | None,
        typer.Option(min=1, help="CPUs of the in-process Ray (default: all); caps workers on a cluster."),
    ] = None,
    report: Annotated[bool, typer.Option("--report/--no-report", help="Write the report at the end.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    simulator: Annotated[
        str, typer.Option(hidden=True, help="module:function to simulate (tests).")
    ] = "model:simulate",
) -> None:
    """Run a sweep into OUTPUT/runs and OUTPUT/exits (Parquet), resuming what exists.

    Only points missing from OUTPUT (run.output, default results/NAME) run. A
    config that changed since OUTPUT was written is refused with what changed;
    --restart starts over.

    Ray starts in this process on every core (--num-cpus), or joins a cluster
    with --address or RAY_ADDRESS. Ctrl-C (or SIGTERM) stops cleanly and keeps
    what finished; launch again to resume. At the end the report is written to
    OUTPUT/report (--no-report skips it).

    Exit codes: 0 done (error rows included); 1 incomplete (points missing,
    --fail-fast stop, report failed); 2 bad or changed config, output in use;
    130 interrupted.

    Example: sweep launch conf/smoke.yaml -s space.replicates=5 -s base.vm.vcpus=2
    """
    extra = {
        "output": str(output) if output else None,
        "fail_fast": fail_fast,
        "max_retries": max_retries,
        "batch_seconds": batch_seconds,
        "address": address,
        "num_cpus": num_cpus,
    }
    config = _load(conf, overrides, extra)
    total = _check(config, conf)
    from sweep.progress import NullProgress, RichProgress

    progress = NullProgress() if quiet else RichProgress(err)
    try:
        result = launch_mod.launch(
            config, restart=restart, simulator=simulator, progress=progress, total=total
        )
    except ConfigError as error:
        raise _fail(error.paragraph()) from None
    except launch_mod.OutputConflict as error:
        lines = "\n  - ".join(error.lines)
        raise _fail(
            f"sweep: refusing to resume {error.output}:\n  - {lines}\n  Use --restart to start over, or another --output."
        ) from None
    except RuntimeError as error:  # output locked by another process
        raise _fail(f"sweep: {error}") from None
    except KeyboardInterrupt:
        raise _fail(
            "sweep: aborted; finished batches are kept, launch again to resume", EXIT_INTERRUPTED
        ) from None
    summary = result.summary
    ran = (
        f"ran {summary.done} points in {summary.elapsed_s:.1f} s ({summary.rate:.1f}/s, {summary.workers} workers)"
        if summary
        else "nothing to run"
    )
    _say(
        f"{config.name}: {ran}; output {result.output}: {result.counts.ok} ok, {result.counts.error} error, "
        f"{result.missing} missing of {result.total}"
    )
    if summary and summary.stopped == "interrupted":
        raise _fail("sweep: interrupted; finished batches are kept, launch again to resume", EXIT_INTERRUPTED)
    if summary and summary.stopped == "fail-fast":
        raise _fail(
            "sweep: stopped at the first failed point (--fail-fast); see `sweep status`", EXIT_INCOMPLETE
        )
    if result.missing:
        raise _fail(
            f"sweep: {result.missing} points are missing; launch again to retry them", EXIT_INCOMPLETE
        )
    if report:
        _report(config, result.output)


def _report(config: SweepConfig, output: Path) -> None:
    try:
        from pipelines.report import write_report
    except ImportError as error:
        _say(f"report skipped: pipelines.report is not available yet ({error})")
        return
    try:
        path = write_report(output, config.report.metrics, config.report.by)
    except Exception as error:  # noqa: BLE001 - the sweep is done; say why the report is not
        raise _fail(
            f"sweep: the report failed ({type(error).__name__}: {error}); the dataset is complete",
            EXIT_INCOMPLETE,
        ) from None
    _say(f"report: {path}")


def status(
    output: OutputArg,
    as_json: Annotated[bool, typer.Option("--json", help="Print the counts as JSON.")] = False,
) -> None:
    """Show how far a sweep got: ok / error / missing points, by partition, and the errors.

    Counts come from the datasets themselves (the manifest gives the total).
    Also shows the error types, the number of data files, duplicate rows (there
    should be none) and commits left pending by a killed writer. Reads only.
    """
    info = manifest.read(output)
    if info is None:
        raise _fail(f"sweep status: {output} is not a sweep output (no manifest.json)")
    total = int(info["counts"]["total"])
    runs = store.read_runs(output, ["point_id", "status", "error_type", "hardware", "workload"])
    counts = store.counts(output)
    missing = max(total - counts.ok - counts.error, 0)
    by_part: dict[tuple[str, str], dict[str, int]] = {}
    errors: dict[str, int] = {}
    for row in runs.to_pylist():
        part = by_part.setdefault((row["hardware"], row["workload"]), {"ok": 0, "error": 0})
        part[row["status"]] = part.get(row["status"], 0) + 1
        if row["status"] == store.STATUS_ERROR:
            errors[row["error_type"] or "?"] = errors.get(row["error_type"] or "?", 0) + 1
    data = {
        "name": info["name"],
        "output": str(output),
        "config_hash": info["config_hash"],
        "ok": counts.ok,
        "error": counts.error,
        "missing": missing,
        "total": total,
        "duplicates": counts.duplicates,
        "pending_commits": store.pending_commits(output),
        "files": {
            "runs": len(store.data_files(output, store.RUNS_DIR)),
            "exits": len(store.data_files(output, store.EXITS_DIR)),
        },
        "partitions": [{"hardware": h, "workload": w, **c} for (h, w), c in sorted(by_part.items())],
        "error_types": errors,
        "created": info.get("created"),
        "updated": info.get("updated"),
        "code_version": info.get("code_version"),
    }
    if as_json:
        typer.echo(json.dumps(data, indent=2))
        return
    out.print(
        f"[bold]{data['name']}[/] in {output}  (config {data['config_hash'][:12]}, code {data['code_version']})"
    )
    table = Table("status", "points")
    for key in ("ok", "error", "missing", "total"):
        table.add_row(key, str(data[key]))
    out.print(table)
    if by_part:
        parts = Table("hardware", "workload", "ok", "error", title="by partition")
        for p in data["partitions"]:
            parts.add_row(p["hardware"], p["workload"], str(p.get("ok", 0)), str(p.get("error", 0)))
        out.print(parts)
    for name, n in sorted(errors.items(), key=lambda kv: -kv[1]):
        out.print(f"[red]{n} x {name}[/]")
    out.print(f"files: {data['files']['runs']} runs, {data['files']['exits']} exits")
    if data["duplicates"]:
        out.print(f"[red]{data['duplicates']} duplicate rows[/]")
    if data["pending_commits"]:
        out.print(
            f"{data['pending_commits']} commits pending: `sweep launch` or `sweep compact` finishes them"
        )


def compact(output: OutputArg) -> None:
    """Rewrite each partition's batch files into few large files (atomically, no duplicates).

    Every partition is swapped through a journal under OUTPUT/.staging: a
    crash leaves the old files or the new ones, never both and never half a
    file; the next launch or compact finishes the swap. Refused while a launch
    writes to OUTPUT. Rows and their values do not change.
    """
    if manifest.read(output) is None:
        raise _fail(f"sweep compact: {output} is not a sweep output (no manifest.json)")
    try:
        with store.locked(output):
            rolled = store.recover(output)
            result = store.compact(output)
    except RuntimeError as error:
        raise _fail(f"sweep compact: {error}") from None
    note = f" (finished {rolled} pending commits first)" if rolled else ""
    out.print(f"compacted {output}: {result.files_before} files -> {result.files_after}{note}")


def _duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def register(app: typer.Typer) -> None:
    """Add the sweep commands to the ``sweep`` app."""
    app.command("plan")(plan)
    app.command("launch")(launch)
    app.command("status")(status)
    app.command("compact")(compact)
