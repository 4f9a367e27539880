"""Failed and missing runs are counted, listed and warned about, never silently dropped."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl

from pipelines import write_report

TABLES = Path("report") / "tables"


def overview(out: Path) -> dict[str, str]:
    return dict(pl.read_parquet(out / TABLES / "overview.parquet").iter_rows())


def test_counts_add_up_to_the_manifest(broken_sweep: Path) -> None:
    counts = json.loads((broken_sweep / "manifest.json").read_text())["counts"]
    seen = overview(broken_sweep)
    assert int(seen["runs planned"]) == counts["total"]
    assert int(seen["runs done (ok)"]) == counts["ok"]
    assert int(seen["runs failed (error)"]) == counts["error"] > 0
    assert int(seen["runs missing"]) == counts["missing"] > 0


def test_failed_and_missing_runs_are_listed(broken_sweep: Path) -> None:
    counts = json.loads((broken_sweep / "manifest.json").read_text())["counts"]
    failed = pl.read_parquet(broken_sweep / TABLES / "failed_runs.parquet")
    missing = pl.read_csv(broken_sweep / TABLES / "missing_points.csv")
    assert failed.height == counts["error"]
    assert set(failed["status"]) == {"error"} and failed["error"].null_count() == 0
    assert missing.height == counts["missing"]
    runs = (
        pl.scan_parquet(broken_sweep / "runs", hive_partitioning=True)
        .select("design_index", "replicate")
        .collect()
    )
    assert missing.join(runs, on=["design_index", "replicate"], how="inner").is_empty()


def test_warnings_name_failed_missing_and_unpaired_runs(broken_sweep: Path) -> None:
    warnings = pl.read_parquet(broken_sweep / TABLES / "warnings.parquet")["warning"].to_list()
    assert any("runs failed" in w for w in warnings)
    assert any("missing from the dataset" in w for w in warnings)
    assert any("have no partner" in w for w in warnings)
    index = (broken_sweep / "report" / "index.md").read_text()
    assert "runs failed (status error)" in index and "Missing runs" in index


def test_parameters_that_vary(effects_sweep: Path) -> None:
    params = pl.read_parquet(effects_sweep / TABLES / "parameters.parquet")
    assert set(params["parameter"]) == {
        "hardware",
        "overcommit",
        "vm.vcpus",
        "vm.apic",
        "features.ipi_fastpath",
        "features.boost_ready",
        "features.pv_sched_yield",
    }
    over = params.filter(pl.col("parameter") == "overcommit").row(0, named=True)
    assert (over["levels"], over["min"], over["max"]) == (3, "1.0", "4.0")


def test_without_manifest_missing_is_unknown_but_report_is_written(
    effects_sweep: Path, tmp_path: Path
) -> None:
    out = tmp_path / "copy"
    shutil.copytree(effects_sweep / "runs", out / "runs")
    write_report(out)
    assert overview(out)["runs missing"].startswith("unknown")
    warnings = pl.read_parquet(out / TABLES / "warnings.parquet")["warning"].to_list()
    assert any("manifest.json not found" in w for w in warnings)
