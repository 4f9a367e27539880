"""Sweeps run in-process on a real (local) Ray: end to end, failures, retries, determinism."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest

from model import METRIC_NAMES
from sweep import store
from tests.sweep import fakes
from tests.sweep.conftest import REPO, TINY_BASE, invoke, tiny_config

pytestmark = pytest.mark.usefixtures("ray_cluster")

SMOKE = REPO / "conf" / "smoke.yaml"
NONDETERMINISTIC = ["wall_s"]  # the only column allowed to differ between two runs


def launch(cli: Any, conf: Path, output: Path, *args: str) -> Any:
    return invoke(cli, "launch", str(conf), "-o", str(output), "--no-report", "-q", *args)


def runs_frame(output: Path) -> pl.DataFrame:
    """The runs dataset via Polars (hive), sorted, without the wall-clock column."""
    frame = pl.read_parquet(str(output / "runs" / "**" / "*.parquet"), hive_partitioning=True)
    return frame.drop(NONDETERMINISTIC).sort("point_id")


def exits_frame(output: Path) -> pl.DataFrame:
    frame = pl.read_parquet(str(output / "exits" / "**" / "*.parquet"), hive_partitioning=True)
    return frame.sort(["point_id", "reason", "detail"])


def test_smoke_end_to_end(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "smoke"
    result = launch(cli, SMOKE, out, "--batch-seconds", "0.001")  # small batches: many commits, many files
    assert result.exit_code == 0, result.output
    assert "36 ok, 0 error, 0 missing of 36" in result.stderr

    # Polars and DuckDB read the fixed schema, in the contract's order.
    frame = pl.read_parquet(str(out / "runs" / "**" / "*.parquet"), hive_partitioning=True)
    assert frame.columns == store.runs_schema().names
    assert frame.height == 36 and frame["point_id"].n_unique() == 36
    assert frame["status"].unique().to_list() == ["ok"]
    assert frame.schema["replicate"] == pl.Int32 and frame.schema["seed"] == pl.Int64
    assert frame.schema["vm.vcpus"] == pl.Int64 and frame.schema["features.ple"] == pl.Boolean
    assert frame.schema["costs.exit_hlt_ns"] == pl.Float64
    assert set(frame["hardware"]) == {"cascadelake", "rome"}
    assert (frame["workload"] == frame["workload.kind"]).all()
    assert frame.filter(pl.col("workload") == "cpu-bound")["compute_s_per_s"].is_nan().sum() == 0
    con = duckdb.connect()
    glob = str(out / "runs" / "**" / "*.parquet")
    rel = con.sql(f"select * from read_parquet('{glob}', hive_partitioning=true)")
    assert rel.columns == store.runs_schema().names
    counts = con.sql(
        f"select hardware, workload, count(*) from read_parquet('{glob}', hive_partitioning=true) group by all order by all"
    ).fetchall()
    assert sum(c[2] for c in counts) == 36 and len(counts) == 6
    exits = pl.read_parquet(str(out / "exits" / "**" / "*.parquet"), hive_partitioning=True)
    assert exits.columns == store.exits_schema().names
    assert exits.height > 0 and set(exits["point_id"]) <= set(frame["point_id"])

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["counts"] == {"ok": 36, "error": 0, "missing": 0, "total": 36}
    assert {"name", "config", "config_hash", "seed", "versions", "code_version", "created", "updated"} <= set(
        manifest
    )
    assert manifest["config"]["space"]["design"] == "grid" and manifest["config"]["report"]["metrics"]
    assert set(frame["config_hash"]) == {manifest["config_hash"]}

    status = json.loads(invoke(cli, "status", str(out), "--json").stdout)
    assert (status["ok"], status["error"], status["missing"], status["duplicates"]) == (36, 0, 0, 0)
    assert "ok" in invoke(cli, "status", str(out)).stdout

    # Launching again runs nothing and writes nothing.
    files = store.data_files(out, "runs")
    again = launch(cli, SMOKE, out)
    assert again.exit_code == 0 and "nothing to run" in again.stderr
    assert store.data_files(out, "runs") == files

    # Compaction: fewer files, the same rows.
    before = runs_frame(out)
    compacted = invoke(cli, "compact", str(out))
    assert compacted.exit_code == 0, compacted.output
    assert len(store.data_files(out, "runs")) == 6 < len(files)
    assert runs_frame(out).equals(before)

    # A changed config is refused, saying what changed; --restart starts over.
    changed = launch(cli, SMOKE, out, "-s", "seed=2")
    assert changed.exit_code == 2
    assert "seed: 1 -> 2" in changed.stderr and "--restart" in changed.stderr
    restarted = launch(cli, SMOKE, out, "-s", "seed=2", "--restart")
    assert restarted.exit_code == 0, restarted.output
    assert runs_frame(out)["seed"].to_list() != before["seed"].to_list()


def _marker_config(marker: int, name: str) -> dict[str, Any]:
    return tiny_config(
        name=name,
        space={
            "design": "grid",
            "params": {"workload.kind": ["cpu-bound", "hackbench"], "vm.halt_poll_ns": [200000, marker]},
        },
    )


def test_failing_point_becomes_error_row(cli: Any, write_conf: Any, tmp_path: Path) -> None:
    conf = write_conf(_marker_config(fakes.FAIL_MARKER, "fails"))
    out = tmp_path / "out"
    result = launch(cli, conf, out, "--simulator", "tests.sweep.fakes:fail_on_marker")
    assert result.exit_code == 0, result.output
    frame = runs_frame(out)
    errors = frame.filter(pl.col("status") == "error")
    assert errors.height == 4 and frame.height == 8
    assert set(errors["vm.halt_poll_ns"]) == {fakes.FAIL_MARKER}
    assert set(errors["error_type"]) == {"InjectedFailure"}
    assert errors["error"].str.starts_with("injected failure").all()
    assert errors["exits_per_s"].null_count() == errors.height  # a failed run has null metrics
    assert frame.filter(pl.col("status") == "ok")["error"].null_count() == 4
    status = json.loads(invoke(cli, "status", str(out), "--json").stdout)
    assert (status["ok"], status["error"], status["missing"]) == (4, 4, 0)
    assert status["error_types"] == {"InjectedFailure": 4}


def test_fail_fast_stops_at_the_first_error(cli: Any, write_conf: Any, tmp_path: Path) -> None:
    conf = write_conf(_marker_config(fakes.FAIL_MARKER, "failfast"))
    out = tmp_path / "out"
    result = launch(
        cli,
        conf,
        out,
        "--simulator",
        "tests.sweep.fakes:fail_on_marker",
        "--fail-fast",
        "--batch-seconds",
        "0.0001",
    )
    assert result.exit_code == 1
    assert "--fail-fast" in result.stderr
    frame = runs_frame(out)
    assert frame.filter(pl.col("status") == "error").height >= 1


def test_dead_worker_is_retried(cli: Any, write_conf: Any, tmp_path: Path, fake_dir: Path) -> None:
    conf = write_conf(_marker_config(fakes.DIE_MARKER, "dies"))
    out = tmp_path / "out"
    result = launch(cli, conf, out, "--simulator", "tests.sweep.fakes:die_once", "--max-retries", "2")
    assert result.exit_code == 0, result.output
    frame = runs_frame(out)
    assert frame.height == 8 and frame["status"].unique().to_list() == ["ok"]
    died = {p.name for p in fake_dir.glob("died-*")}
    assert died == {f"died-{s}" for s in frame.filter(pl.col("vm.halt_poll_ns") == fakes.DIE_MARKER)["seed"]}


def test_point_that_always_kills_its_worker_becomes_error_row(
    cli: Any, write_conf: Any, tmp_path: Path
) -> None:
    conf = write_conf(_marker_config(fakes.ALWAYS_DIE_MARKER, "poison"))
    out = tmp_path / "out"
    result = launch(cli, conf, out, "--simulator", "tests.sweep.fakes:die_once", "--max-retries", "0")
    assert result.exit_code == 0, result.output
    frame = runs_frame(out)
    assert frame.height == 8
    errors = frame.filter(pl.col("status") == "error")
    assert set(errors["vm.halt_poll_ns"]) == {fakes.ALWAYS_DIE_MARKER} and errors.height == 4
    assert all("Worker" in t or "Crash" in t or "Died" in t for t in errors["error_type"])


def test_results_do_not_depend_on_batch_size(cli: Any, write_conf: Any, tmp_path: Path) -> None:
    conf = write_conf(tiny_config(replicates=3))
    small, large = tmp_path / "small", tmp_path / "large"
    assert launch(cli, conf, small, "--batch-seconds", "0.00001").exit_code == 0
    assert launch(cli, conf, large, "--batch-seconds", "1000").exit_code == 0
    assert len(store.data_files(small, "runs")) > len(store.data_files(large, "runs"))
    assert runs_frame(small).equals(runs_frame(large))
    assert exits_frame(small).equals(exits_frame(large))


def test_sobol_sweep_keeps_the_sample_order_for_salib(cli: Any, write_conf: Any, tmp_path: Path) -> None:
    from SALib.analyze import sobol

    data = tiny_config(
        name="sobol",
        base={**TINY_BASE, "workload": {"kind": "hackbench"}},
        space={
            "design": "sobol",
            "samples": 4,
            "params": {
                "vm.halt_poll_ns": {"low": 1000, "high": 400000, "log": True},
                "features.ipi_fastpath": [True, False],
            },
        },
        replicates=1,
    )
    out = tmp_path / "out"
    assert launch(cli, write_conf(data), out).exit_code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    problem = manifest["problem"]
    assert problem["names"] == ["vm.halt_poll_ns", "features.ipi_fastpath"] and problem["N"] == 4
    frame = runs_frame(out).sort("design_index")
    assert frame["design_index"].to_list() == list(range(16))
    x = pl.read_parquet(out / store.DESIGN_FILE).sort("design_index")
    assert x.height == 16
    # The stored values are the design matrix mapped through the parameter scales.
    assert np.allclose(
        np.floor(10 ** x["vm.halt_poll_ns"].to_numpy() + 1e-9), frame["vm.halt_poll_ns"].to_numpy()
    )
    y = frame["exits_per_s"].to_numpy()
    indices = sobol.analyze(
        {k: problem[k] for k in ("names", "bounds", "num_vars")}, y, calc_second_order=False
    )
    assert len(indices["S1"]) == 2


def test_metrics_are_the_simulators(cli: Any, write_conf: Any, tmp_path: Path) -> None:
    from model import Scenario, simulate

    out = tmp_path / "out"
    assert launch(cli, write_conf(tiny_config()), out).exit_code == 0
    row = runs_frame(out).row(0, named=True)
    scenario = Scenario.build(
        TINY_BASE,
        {"workload.kind": row["workload.kind"], "features.ipi_fastpath": row["features.ipi_fastpath"]},
    )
    metrics = simulate(scenario, row["seed"]).metrics
    for name in METRIC_NAMES:
        if name != "wall_s":
            stored = float("nan") if row[name] is None else row[name]  # not applicable: stored as null
            assert stored == pytest.approx(metrics[name], nan_ok=True), name


def test_launch_calls_the_report_with_the_configs_choices(
    cli: Any, write_conf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pipelines.report

    calls: list[tuple[Path, Any, Any]] = []

    def fake_report(output_dir: Path, metrics: Any = None, by: Any = None) -> Path:
        calls.append((output_dir, metrics, by))
        return output_dir / "report"

    monkeypatch.setattr(pipelines.report, "write_report", fake_report)
    data = tiny_config(report={"metrics": ["exits_per_s"], "by": ["features.ipi_fastpath"]})
    out = tmp_path / "out"
    result = invoke(cli, "launch", str(write_conf(data)), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert calls == [(out, ["exits_per_s"], ["features.ipi_fastpath"])]
    assert f"report: {out / 'report'}" in result.stderr


def test_launch_skips_a_report_that_cannot_be_imported(
    cli: Any, write_conf: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    monkeypatch.setitem(sys.modules, "pipelines.report", None)  # import raises ImportError
    out = tmp_path / "out"
    result = invoke(cli, "launch", str(write_conf(tiny_config())), "-o", str(out), "-q")
    assert result.exit_code == 0, result.output
    assert "report skipped" in result.stderr
