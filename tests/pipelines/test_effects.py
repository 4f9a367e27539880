"""Feature effects recover planted ratios, cover them with their intervals, and mark null effects."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from pipelines import effects as fx
from tests.pipelines.conftest import BOOST, IPI, METRICS, PLANTED, YIELD


def effects_table(out: Path) -> pl.DataFrame:
    return pl.read_parquet(out / "report" / "tables" / "feature_effects.parquet")


def row(table: pl.DataFrame, feature: str, metric: str, by: str = "all", level: str = "all") -> dict:
    hit = table.filter(
        (pl.col("feature") == feature)
        & (pl.col("metric") == metric)
        & (pl.col("by") == by)
        & (pl.col("level") == level)
    )
    assert hit.height == 1, (feature, metric, by, level)
    return hit.row(0, named=True)


@pytest.mark.parametrize("metric", ["messages_per_s", "ipi_latency_p50_us"])
def test_planted_ratio_recovered_and_covered(effects_sweep: Path, metric: str) -> None:
    planted = PLANTED[IPI][metric]
    r = row(effects_table(effects_sweep), IPI, metric)
    assert r["median_ratio"] == pytest.approx(planted, rel=0.02)
    assert r["ci_low"] <= planted <= r["ci_high"]
    assert r["shown"]
    assert r["pairs"] == 288  # every run pairs: 576 runs / 2


@pytest.mark.parametrize("metric", ["messages_per_s", "ipi_latency_p50_us"])
@pytest.mark.parametrize(
    ("by", "levels"), [("hardware", ["cascadelake", "rome"]), ("vm.apic", ["x2apic_cluster", "xapic"])]
)
def test_constant_effect_holds_in_every_breakdown(
    effects_sweep: Path, metric: str, by: str, levels: list[str]
) -> None:
    """Each level recovers the planted ratio (coverage of one 95 % interval among many is not
    asserted level by level: about one in twenty would miss by design)."""
    planted = PLANTED[IPI][metric]
    table = effects_table(effects_sweep)
    for level in levels:
        r = row(table, IPI, metric, by, level)
        assert r["median_ratio"] == pytest.approx(planted, rel=0.02), (by, level, r)
        assert r["ci_high"] - r["ci_low"] < 0.1 * planted
        assert r["shown"]


def test_overcommit_dependent_effect_by_level(effects_sweep: Path) -> None:
    table = effects_table(effects_sweep)
    for level, planted in {"1.0": 1.0, "2.0": 0.9, "4.0": 0.8}.items():
        r = row(table, YIELD, "steal_pct", "overcommit", level)
        assert r["ci_low"] <= planted <= r["ci_high"], (level, r)
        assert r["shown"] == (planted != 1.0)


def test_feature_without_effect_not_shown(effects_sweep: Path) -> None:
    table = effects_table(effects_sweep).filter((pl.col("feature") == BOOST) & (pl.col("by") == "all"))
    assert sorted(table["metric"].to_list()) == sorted(METRICS)
    assert not table["shown"].any()
    assert (table["ci_low"] <= 1.0).all() and (table["ci_high"] >= 1.0).all()


def test_breakdowns_are_the_defaults_that_vary(effects_sweep: Path) -> None:
    assert set(effects_table(effects_sweep)["by"].unique()) == {
        "all",
        "overcommit",
        "hardware",
        "vm.vcpus",
        "vm.apic",
    }


def test_pairs_need_the_same_replicate() -> None:
    """Two runs that differ only in the feature but sit in different replicates do not pair."""
    runs = pl.LazyFrame(
        {
            "replicate": [0, 1, 0, 0],
            "seed": [1, 2, 1, 1],
            "overcommit": [1.0, 1.0, 2.0, 2.0],
            IPI: [True, False, True, False],
            "m": [2.0, 1.0, 3.0, 1.5],
        }
    )
    table, pairing = fx.feature_effects(runs, [IPI], ["overcommit", IPI], ["m"], [])
    assert table.filter(pl.col("by") == "all")["pairs"].to_list() == [1]
    assert table["median_ratio"].to_list() == [2.0]
    assert pairing.row(0, named=True)["unpaired_runs"] == 2


def test_null_parameter_values_pair_with_each_other() -> None:
    """A nullable cost override left unset (null) on both sides is the same parameter value."""
    runs = pl.LazyFrame(
        {
            "replicate": [0, 0, 0, 0],
            "seed": [1, 1, 1, 1],
            "costs.exit_hlt_ns": [None, None, 900.0, 900.0],
            IPI: [True, False, True, False],
            "m": [3.0, 1.0, 4.0, 2.0],
        }
    )
    table, _ = fx.feature_effects(runs, [IPI], ["costs.exit_hlt_ns", IPI], ["m"], ["costs.exit_hlt_ns"])
    assert table.filter(pl.col("by") == "all")["pairs"].to_list() == [2]
    levels = table.filter(pl.col("by") == "costs.exit_hlt_ns")["level"].to_list()
    assert sorted(levels) == ["900.0", "none"]


def test_not_applicable_metric_gives_no_pairs() -> None:
    runs = pl.LazyFrame(
        {"replicate": [0, 0], "seed": [1, 1], IPI: [True, False], "m": [float("nan"), 1.0], "z": [0.0, 0.0]}
    )
    table, _ = fx.feature_effects(runs, [IPI], [IPI], ["m", "z"], [])
    assert table.is_empty()  # NaN side for m, 0/0 for z: neither is a ratio


def test_duplicated_runs_are_averaged_and_flagged() -> None:
    runs = pl.LazyFrame(
        {
            "replicate": [0, 0, 0],
            "seed": [1, 1, 1],
            IPI: [True, True, False],
            "m": [2.0, 4.0, 1.0],
        }
    )
    table, pairing = fx.feature_effects(runs, [IPI], [IPI], ["m"], [])
    assert table["median_ratio"].to_list() == [3.0]
    assert pairing.row(0, named=True)["duplicated_groups"] == 1


def test_wide_keys_fall_back_to_ranking(monkeypatch: pytest.MonkeyPatch, effects_sweep: Path) -> None:
    """Keys too wide for one int64 pair the same way through the ranked code tuple."""
    from pipelines import open_dataset

    ds = open_dataset(effects_sweep)
    runs = ds.runs.filter(pl.col("status") == "ok")
    varying = ["hardware", "overcommit", "vm.vcpus", "vm.apic", IPI, BOOST, YIELD]
    args = (runs, [IPI, YIELD], varying, ["messages_per_s", "steal_pct"], ["overcommit"])
    exact, _ = fx.feature_effects(*args)
    monkeypatch.setattr(fx, "MAX_KEY", 2)
    ranked, _ = fx.feature_effects(*args)
    assert exact.equals(ranked)
