"""Column roles come from the manifest's schema, new metrics flow through, and pipelines never import
the model."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from pipelines import open_dataset, write_report
from sweep import store
from tests.pipelines.conftest import REPO, effects_spec
from tests.pipelines.synthetic import write_grid_sweep


def test_pipelines_import_nothing_from_model(effects_sweep: Path, tmp_path: Path) -> None:
    code = (
        "import sys, shutil; from pathlib import Path; from pipelines import write_report; "
        f"out = Path({str(tmp_path / 'copy')!r}); shutil.copytree({str(effects_sweep)!r}, out); "
        "write_report(out); "
        "bad = sorted(m for m in sys.modules if m == 'model' or m.startswith(('model.', 'sweep')));"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-2000:]


def test_roles_units_and_directions_come_from_the_manifest(effects_sweep: Path) -> None:
    ds = open_dataset(effects_sweep)
    manifest = json.loads((effects_sweep / "manifest.json").read_text())
    roles = {c["name"]: c["role"] for c in manifest["schema"]["runs"]}
    assert set(ds.params) == {n for n in ds.runs.collect_schema() if roles.get(n) == store.ROLE_PARAM}
    assert "hardware" in ds.params and "workload" not in ds.params and "point_id" not in ds.metrics
    assert ds.info("steal_pct").better == "lower" and ds.info("steal_pct").unit == "%"
    assert ds.info("messages_per_s").direction == "higher is better"
    assert not ds.warnings


def test_a_new_metric_and_its_uncertainty_flow_through(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A metric and its ``*_ci95_pct`` companion added to model.result reach the files, the manifest and
    the report (next to the metric), with no edit in pipelines."""
    from model import result

    extended = {
        **result.METRICS,
        "messages_per_s_ci95_pct": result.Metric("batch-means 95 % of messages_per_s"),
    }
    extended["spinlock_steals"] = result.Metric("lock steals", "qspinlock stat", "lower")
    for target in (result, store):
        monkeypatch.setattr(target, "METRIC_NAMES", tuple(extended))
    monkeypatch.setattr(result, "METRICS", extended)
    for cached in (store.runs_columns, store.exits_columns, store.runs_schema, store.runs_file_schema):
        cached.cache_clear()
    try:
        out = write_grid_sweep(
            tmp_path / "new", effects_spec(report_metrics=["messages_per_s", "spinlock_steals"])
        )
    finally:
        for cached in (store.runs_columns, store.exits_columns, store.runs_schema, store.runs_file_schema):
            cached.cache_clear()
    ds = open_dataset(out)
    assert "spinlock_steals" in ds.metrics and ds.uncertainty["messages_per_s"] == "messages_per_s_ci95_pct"
    assert set(ds.uncertainty.values()) <= {m for m in result.METRICS if m.endswith("_ci95_pct")} | {
        "messages_per_s_ci95_pct"}  # the model's own within-run intervals (model.metrics) flow through too
    assert "messages_per_s_ci95_pct" not in ds.metrics  # shown with its metric, not as one
    report = write_report(out)
    metrics = pl.read_parquet(report / "tables" / "metrics.parquet")
    within = dict(zip(metrics["metric"], metrics["within-run ±95%"], strict=True))
    assert within["messages_per_s"] == pytest.approx(2.1, abs=0.1) and within["spinlock_steals"] is None
    better = dict(zip(metrics["metric"], metrics["better"], strict=True))
    assert better["spinlock_steals"] == "lower"
    assert "within-run ±95%" in (report / "index.html").read_text()


def test_a_real_launch_records_its_elapsed_time(smoke_sweep: Path) -> None:
    manifest = json.loads((smoke_sweep / "manifest.json").read_text())
    (launch,) = manifest["launches"]
    assert launch["finished"] and launch["runs_written"] == manifest["counts"]["total"] == 36
    assert 0 < manifest["elapsed_s"] == launch["elapsed_s"]
    page = (smoke_sweep / "report" / "index.md").read_text()
    assert "elapsed (real wall time)" in page and "(1 launch)" in page
    runs = pl.read_parquet(smoke_sweep / "runs" / "**" / "*.parquet", hive_partitioning=True)
    cpu = runs.filter(pl.col("workload") == "cpu-bound")
    assert cpu["timer_latency_p99_us"].null_count() == cpu.height  # does not apply: null, not NaN
    assert not runs.select(pl.selectors.float().is_nan().any()).row(0).count(True)
