"""``sweep simulate``: run one scenario and print its metrics and exit table."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from sweep.errors import UserError, reported

if TYPE_CHECKING:
    from rich.console import Console

    from model import Scenario

OUTPUT_WIDTH = 132
MAX_SEED = 2**63 - 1  # seeds are stored as int64

Sets = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        "-s",
        metavar="KEY=VALUE",
        help="Override a scenario key (VALUE is YAML): -s vm.vcpus=96 -s features.ipi_fastpath=false.",
    ),
]


def load_scenario(path: Path | None, sets: list[str] | None) -> Scenario:
    """The scenario file (YAML, nested keys) with ``-s`` overrides; every problem in one
    :class:`~sweep.errors.UserError`."""
    from model import Scenario, ScenarioError
    from sweep import yamlsafe
    from sweep.config import parse_assignment

    problems: list[str] = []
    data: Any = {}
    if path is not None:
        try:
            data = yamlsafe.load_file(path)
        except yamlsafe.YamlError as err:
            problems.append(str(err))
        if data is None:
            data = {}
        if not isinstance(data, dict):
            problems.append(f"{path}: the scenario file must hold a mapping of keys")
            data = {}
    overrides: dict[str, Any] = {}
    for item in sets or []:
        try:
            key, value = parse_assignment(item)
            overrides[key] = value
        except ValueError as err:
            problems.append(str(err))
    try:
        scenario = Scenario.build(data, overrides)
    except ScenarioError as err:
        problems += err.problems
    if problems:
        raise UserError(problems, "sweep simulate: invalid scenario; nothing was run")
    return scenario


def simulate_cli(
    scenario: Annotated[
        Path | None, typer.Argument(help="Scenario YAML (nested keys); defaults apply to the rest.")
    ] = None,
    sets: Sets = None,
    seed: Annotated[
        int, typer.Option("--seed", min=0, max=MAX_SEED, help="Seed of the run's random streams.")
    ] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics and exit table as JSON.")] = False,
) -> None:
    """Run one simulation and print its metrics and its exit table (perf kvm stat form).

    Exit codes: 0 done; 1 the simulation failed; 2 bad scenario or option.
    """
    from model import simulate

    sc = load_scenario(scenario, sets)
    result = simulate(sc, seed)
    if as_json:
        typer.echo(json.dumps(payload(sc, seed, result), indent=2))
    else:
        from rich.console import Console

        console = Console()
        _print(console if console.is_terminal else Console(width=OUTPUT_WIDTH), sc, result)
    if not result.ok:
        raise typer.Exit(1)


def payload(sc: Scenario, seed: int, result: Any) -> dict[str, Any]:
    import dataclasses

    return {
        "scenario": sc.flat(),
        "seed": seed,
        "error": result.error and f"{result.error_type}: {result.error}",
        "metrics": {
            k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.metrics.items()
        },
        "exits": [dataclasses.asdict(row) for row in result.exits],
    }


def _print(console: Console, sc: Scenario, result: Any) -> None:
    from rich.table import Table

    from model import exit_table, metric_info

    if not result.ok:
        console.print(f"[red]simulation failed:[/red] {result.error_type}: {result.error}")
        return
    metrics = Table(
        title=f"{sc.hardware} · {sc.workload.kind} · {sc.vm.vcpus} vCPUs · overcommit {sc.overcommit}"
    )
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    metrics.add_column("meaning", style="dim")
    for name, value in result.metrics.items():
        if isinstance(value, float) and math.isnan(value):
            continue
        metrics.add_row(name, f"{value:,.3f}" if isinstance(value, float) else str(value), metric_info(name).meaning)
    console.print(metrics)
    exits = Table(title="VM exits of the measured VM (perf kvm stat)")
    for col in ("VM-EXIT", "Samples", "Samples%", "Time%", "Min Time", "Max Time", "Avg time"):
        exits.add_column(col, justify="left" if col == "VM-EXIT" else "right", no_wrap=True)
    for line in exit_table(result.exits):
        if "samples_pct" not in line:
            exits.add_row(str(line["reason"]), f"{line['samples']:,}", "", "", "", "", "")
            continue
        exits.add_row(
            str(line["reason"]),
            f"{line['samples']:,}",
            f"{line['samples_pct']:.2f}%",
            f"{line['time_pct']:.2f}%",
            f"{line['min_us']:.2f}us",
            f"{line['max_us']:.2f}us",
            f"{line['avg_us']:.2f}us",
        )
    console.print(exits)


def register(app: typer.Typer) -> None:
    app.command("simulate")(reported(simulate_cli))
