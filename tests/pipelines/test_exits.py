"""Exit tables in perf kvm stat form."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines.exits import exit_tables


def exits() -> pl.LazyFrame:
    rows = [
        # run 1
        ("p1", "rome", "hb", "MSR_WRITE", "0x830", 10, 10_000, 500, 2_000),
        ("p1", "rome", "hb", "MSR_WRITE", "0x6e0", 30, 15_000, 300, 900),
        ("p1", "rome", "hb", "HLT", "", 20, 100_000, 1_000, 9_000),
        # run 2, same group
        ("p2", "rome", "hb", "HLT", "", 40, 60_000, 800, 4_000),
        # another group
        ("p3", "icelake", "hb", "HLT", "", 5, 5_000, 1_000, 1_000),
    ]
    cols = ["point_id", "hardware", "workload", "reason", "detail", "samples", "total_ns", "min_ns", "max_ns"]
    return pl.LazyFrame(rows, schema=cols, orient="row")


def test_perf_kvm_stat_form() -> None:
    table = exit_tables(exits()).collect()
    rome = table.filter(pl.col("hardware") == "rome")
    assert rome.select("reason", "detail").rows() == [
        ("HLT", ""),
        ("MSR_WRITE", ""),
        ("MSR_WRITE", "0x6e0"),
        ("MSR_WRITE", "0x830"),
    ]
    hlt = rome.row(0, named=True)
    assert hlt["samples"] == 60
    assert hlt["samples_pct"] == pytest.approx(60)
    assert hlt["time_pct"] == pytest.approx(160 / 185 * 100)
    assert (hlt["min_us"], hlt["max_us"], hlt["avg_us"]) == pytest.approx((0.8, 9.0, 160_000 / 60 / 1000))
    msr = rome.row(1, named=True)
    assert (msr["samples"], msr["min_us"], msr["max_us"]) == (40, 0.3, 2.0)
    reasons = rome.filter(pl.col("detail") == "")
    assert reasons["samples_pct"].sum() == pytest.approx(100.0)
    assert reasons["time_pct"].sum() == pytest.approx(100.0)
    icelake = table.filter(pl.col("hardware") == "icelake").row(0, named=True)
    assert icelake["samples_pct"] == pytest.approx(100.0)


def test_written_report_has_one_exit_table_per_group(effects_sweep: Path) -> None:
    table = pl.read_parquet(effects_sweep / "report" / "tables" / "exits.parquet")
    assert set(table["hardware"]) == {"cascadelake", "rome"}
    text = (effects_sweep / "report" / "index.md").read_text()
    assert "### Exits: hardware=rome, workload=hackbench" in text
    assert "| MSR\\_WRITE | 0x6e0 |" in text or "| MSR_WRITE | 0x6e0 |" in text
