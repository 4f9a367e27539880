"""``sweep simulate``: run one scenario and print its metrics and exit table."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from model import Scenario, ScenarioError, exit_table, metric_info, simulate

OUTPUT_WIDTH = 132

Sets = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a scenario key: -s vm.vcpus=96 -s features.ipi_fastpath=false."),
]


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` strings to a dict; values are parsed as YAML scalars (true, 96, 1.5, rome)."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ScenarioError([f"{item!r}: an override must look like key=value"])
        out[key.strip()] = yaml.safe_load(raw) if raw.strip() else ""
    return out


def load_scenario(path: Path | None, sets: list[str] | None) -> Scenario:
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ScenarioError([f"{path}: cannot read the scenario file ({exc})"]) from None
        if not isinstance(data, dict):
            raise ScenarioError([f"{path}: the scenario file must hold a mapping of keys"])
    return Scenario.build(data, parse_overrides(sets))


def simulate_cli(
    scenario: Annotated[Path | None, typer.Argument(help="Scenario YAML (nested keys); defaults apply to the rest.")] = None,
    sets: Sets = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the run's random streams.")] = 1,
    as_json: Annotated[bool, typer.Option("--json", help="Print metrics and exit table as JSON.")] = False,
) -> None:
    """Run one simulation and print its metrics and its exit table (perf kvm stat form)."""
    err = Console(stderr=True)
    try:
        sc = load_scenario(scenario, sets)
    except ScenarioError as exc:
        err.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    result = simulate(sc, seed)
    if as_json:
        payload = {
            "scenario": sc.flat(),
            "seed": seed,
            "error": result.error and f"{result.error_type}: {result.error}",
            "metrics": {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in result.metrics.items()},
            "exits": [dataclasses.asdict(row) for row in result.exits],
        }
        typer.echo(json.dumps(payload, indent=2))
    else:
        console = Console()
        if not console.is_terminal:
            console = Console(width=OUTPUT_WIDTH)  # files and pipes: no wrapping of reasons
        _print(console, sc, result)
    if not result.ok:
        raise typer.Exit(1)


def _print(console: Console, sc: Scenario, result) -> None:
    if not result.ok:
        console.print(f"[red]simulation failed:[/red] {result.error_type}: {result.error}")
        return
    metrics = Table(title=f"{sc.hardware} · {sc.workload.kind} · {sc.vm.vcpus} vCPUs · overcommit {sc.overcommit}")
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
    app.command("simulate")(simulate_cli)
