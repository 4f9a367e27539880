"""The written report: files, tables, plots, escaping, determinism, and the CLI's errors."""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import polars as pl
import pytest
import typer
from typer.testing import CliRunner

from pipelines import ReportError, write_report
from sweep.commands_report import register
from tests.pipelines.synthetic import GridSpec, write_grid_sweep

EVIL = '<script>alert("x")</script>'


@pytest.fixture
def sweep_copy(effects_sweep: Path, tmp_path: Path) -> Path:
    """A private copy of the planted-effects sweep, for tests that rewrite its report."""
    out = tmp_path / "sweep"
    for part in ("runs", "exits"):
        shutil.copytree(effects_sweep / part, out / part)
    shutil.copy(effects_sweep / "manifest.json", out / "manifest.json")
    return out


def test_layout(effects_sweep: Path) -> None:
    report = effects_sweep / "report"
    assert (report / "index.md").is_file() and (report / "index.html").is_file()
    tables = report / "tables"
    for name in (
        "overview",
        "parameters",
        "feature_effects",
        "pairing",
        "main_effects",
        "interactions",
        "exits",
        "warnings",
    ):
        assert (tables / f"{name}.parquet").is_file(), name
        assert (
            pl.read_csv(tables / f"{name}.csv").height == pl.read_parquet(tables / f"{name}.parquet").height
        )
    plots = {p.name for p in (report / "plots").glob("*.png")}
    assert {"tornado.png", "heatmap_overcommit.png", "effects_overcommit.png", "overcommit.png"} <= plots


def test_every_table_has_both_formats(broken_sweep: Path) -> None:
    tables = broken_sweep / "report" / "tables"
    assert {p.stem for p in tables.glob("*.parquet")} == {p.stem for p in tables.glob("*.csv")}


def test_latency_plot_for_cyclictest(broken_sweep: Path) -> None:
    assert (broken_sweep / "report" / "plots" / "latency.png").is_file()


def test_html_is_self_contained_and_escaped(broken_sweep: Path) -> None:
    page = (broken_sweep / "report" / "index.html").read_text()
    assert EVIL not in page and "<script" not in page.lower()
    assert html.escape('evil <script>alert("x")</script> & co') in page
    images = re.findall(r'<img src="([^"]{0,40})', page)
    assert images and all(src.startswith("data:image/png;base64,") for src in images)
    assert not re.search(r'(src|href)="(?!data:|#)', page)  # nothing loaded from elsewhere


def test_markdown_is_escaped(broken_sweep: Path) -> None:
    text = (broken_sweep / "report" / "index.md").read_text()
    assert "<script>" not in text
    assert "&lt;script&gt;" in text


def test_report_is_deterministic(effects_sweep: Path, sweep_copy: Path) -> None:
    first = pl.read_parquet(effects_sweep / "report" / "tables" / "feature_effects.parquet")
    again = pl.read_parquet(write_report(sweep_copy) / "tables" / "feature_effects.parquet")
    assert first.equals(again)


def test_metric_and_by_choices(tmp_path: Path) -> None:
    out = write_grid_sweep(tmp_path, GridSpec(overcommit=(1.0, 2.0), replicates=3, exits=False))
    write_report(out, metrics=["messages_per_s"], by=["overcommit"])
    effects = pl.read_parquet(out / "report" / "tables" / "feature_effects.parquet")
    assert set(effects["metric"]) == {"messages_per_s"}
    assert set(effects["by"]) == {"all", "overcommit"}
    assert not (out / "report" / "tables" / "exits.parquet").exists()


def test_manifest_report_by_is_the_default(tmp_path: Path) -> None:
    spec = GridSpec(overcommit=(1.0, 2.0), vcpus=(4, 8), replicates=3, report_by=["vm.vcpus"], exits=False)
    out = write_grid_sweep(tmp_path, spec)
    effects = pl.read_parquet(write_report(out) / "tables" / "feature_effects.parquet")
    assert set(effects["by"]) == {"all", "vm.vcpus"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"metrics": ["nope"]}, r"unknown metric 'nope'; allowed: .*messages_per_s"),
        ({"by": ["vm.nope"]}, r"unknown --by column 'vm.nope'; allowed: .*overcommit"),
    ],
)
def test_unknown_choices_name_the_allowed_values(effects_sweep: Path, kwargs: dict, message: str) -> None:
    before = sorted((effects_sweep / "report").rglob("*"))
    with pytest.raises(ReportError, match=message):
        write_report(effects_sweep, **kwargs)
    assert sorted((effects_sweep / "report").rglob("*")) == before  # an earlier report is left alone


def cli() -> typer.Typer:
    app = typer.Typer()
    register(app)

    @app.callback()
    def main() -> None:  # a group, so that "report" is a subcommand as under sweep
        """test app"""

    return app


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["report", "/nonexistent/sweep"], "no such sweep output directory"),
        (["report", "{out}", "--metric", "bogus"], "allowed:"),
        (["report", "{out}", "--by", "bogus"], "allowed:"),
    ],
)
def test_cli_errors_are_one_line_exit_2(effects_sweep: Path, args: list[str], needle: str) -> None:
    result = CliRunner().invoke(cli(), [a.format(out=effects_sweep) for a in args])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and needle in lines[0]


def test_cli_prints_summary(sweep_copy: Path) -> None:
    result = CliRunner().invoke(cli(), ["report", str(sweep_copy), "-m", "messages_per_s"])
    assert result.exit_code == 0, result.output
    assert "Feature effects" in result.output and "ipi_fastpath" in result.output
    assert "index.html" in result.output
