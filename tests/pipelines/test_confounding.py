"""No table or plot of the report shows a confounded on/off comparison as an effect.

The planted design is rome's: ``features.ipi_fastpath=false`` exists only for
``vm.apic=x2apic_phys``, while ``true`` also covers xAPIC and x2APIC-cluster
points, and x2APIC-physical IPIs are planted three times slower.  The fastpath
itself multiplies IPI latency by 0.935.  Comparing the unmatched groups gives
about 0.52 (on/off), an effect that does not exist; matched pairs give 0.935.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from pipelines import main_effects as me
from pipelines import write_report
from tests.pipelines.synthetic import GridSpec, write_grid_sweep

IPI = "features.ipi_fastpath"
METRIC = "ipi_latency_p50_us"
TRUE_RATIO = 0.935
PHYS_SLOWDOWN = 3.0


def rome_like(frame: pl.DataFrame) -> pl.DataFrame:
    """x2apic_phys is slower; the fastpath is turned off only on x2apic_phys points."""
    slow = pl.col("vm.apic") == "x2apic_phys"
    frame = frame.with_columns(
        pl.when(slow).then(pl.col(METRIC) * PHYS_SLOWDOWN).otherwise(pl.col(METRIC)).alias(METRIC)
    )
    return frame.filter(pl.col(IPI) | slow)


@pytest.fixture(scope="module")
def confounded(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spec = GridSpec(
        hardware=("rome",),
        workloads=("hackbench",),
        overcommit=(1.0, 2.0),
        vcpus=(8, 16),
        apic=("xapic", "x2apic_phys", "x2apic_cluster"),
        features=(IPI,),
        effects={IPI: {METRIC: TRUE_RATIO}},
        replicates=4,
        noise=0.02,
        seed=3,
        name="rome-like",
        report_metrics=(METRIC, "messages_per_s"),
    )
    out = write_grid_sweep(tmp_path_factory.mktemp("confounded"), spec, rome_like)
    write_report(out)
    return out


def confounded_ratio(out: Path) -> float:
    runs = pl.read_parquet(out / "runs" / "**" / "*.parquet", hive_partitioning=True)
    means = runs.group_by(IPI).agg(pl.col(METRIC).mean()).sort(IPI)
    off, on = means[METRIC].to_list()
    return on / off


def numbers(text: str) -> list[float]:
    return [float(x.replace(",", "")) for x in re.findall(r"-?\d[\d,]*\.?\d*(?:e[-+]?\d+)?", text)]


def test_the_design_is_confounded(confounded: Path) -> None:
    ratio = confounded_ratio(confounded)
    assert ratio == pytest.approx(TRUE_RATIO * (1 + PHYS_SLOWDOWN + 1) / 3 / PHYS_SLOWDOWN, rel=0.03)


def test_paired_effect_is_the_true_one_with_its_interval(confounded: Path) -> None:
    effects = pl.read_parquet(confounded / "report" / "tables" / "feature_effects.parquet")
    row = effects.filter((pl.col("metric") == METRIC) & (pl.col("by") == "all")).row(0, named=True)
    assert row["ci_low"] <= TRUE_RATIO <= row["ci_high"] and row["shown"]
    assert row["median_ratio"] == pytest.approx(TRUE_RATIO, rel=0.02)
    assert row["pairs"] == 2 * 2 * 4  # only x2apic_phys points have a partner: overcommit x vcpus x reps
    page = (confounded / "report" / "index.html").read_text()
    assert f"{row['median_ratio']:.4f}"[:5] in page  # shown, e.g. 0.935x


def test_no_table_shows_the_confounded_ratio(confounded: Path) -> None:
    bad = confounded_ratio(confounded)
    for target in (bad, 1 / bad):
        for path in sorted((confounded / "report" / "tables").glob("*.csv")):
            hits = [x for x in numbers(path.read_text()) if x and abs(x / target - 1) < 0.02]
            assert not hits, f"{path.name} shows the confounded ratio {target:.3f}: {hits[:3]}"
        for doc in ("index.md", "index.html"):
            text = (confounded / "report" / doc).read_text()
            text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "", text)
            hits = [x for x in numbers(text) if x and abs(x / target - 1) < 0.02]
            assert not hits, f"{doc} shows the confounded ratio {target:.3f}: {hits[:3]}"


def test_matched_two_way_table_and_suppressed_main_effects(confounded: Path) -> None:
    tables = confounded / "report" / "tables"
    inter = pl.read_parquet(tables / "interactions.parquet").filter(pl.col("metric") == METRIC)
    assert inter.height and (inter["matched_cells"] > 0).all() and (inter["unmatched_cells"] > 0).all()
    for ratio in inter["ratio_of_matched_means"]:
        assert ratio == pytest.approx(TRUE_RATIO, rel=0.03)
    mains = pl.read_parquet(tables / "main_effects.parquet")
    assert IPI not in mains["parameter"].to_list() and "vm.apic" not in mains["parameter"].to_list()
    assert {"overcommit", "vm.vcpus"} <= set(mains["parameter"].to_list())  # balanced: still shown
    warnings = pl.read_parquet(tables / "warnings.parquet")["warning"].to_list()
    assert any(w.startswith(f"main effect of {IPI} not shown") and "vm.apic" in w for w in warnings)


def test_plots_compare_pairs_only(confounded: Path) -> None:
    names = {p.name for p in (confounded / "report" / "plots").glob("*.png")}
    assert {"effects_overcommit.png", "heatmap_overcommit.png", "overcommit.png"} <= names
    # the only per-setting means drawn are matched ones; marginal plots do not split by feature
    cells = me.cells(
        pl.read_parquet(confounded / "runs" / "**" / "*.parquet", hive_partitioning=True).lazy(),
        [IPI, "vm.apic", "overcommit", "vm.vcpus", "hardware"],
        [METRIC],
    )
    kept = me.matched(cells, IPI, [IPI, "vm.apic", "overcommit", "vm.vcpus", "hardware"]).collect()
    assert set(kept["vm.apic"]) == {"x2apic_phys"}


def test_balance_names_the_parameter_that_differs() -> None:
    cells = pl.DataFrame(
        {IPI: [True, True, True, False], "vm.apic": ["a", "b", "c", "b"], "overcommit": [1.0] * 4}
    )
    assert me.balance(cells, IPI, [IPI, "vm.apic", "overcommit"]) == ["vm.apic"]
    full = pl.DataFrame({IPI: [True, False] * 3, "vm.apic": ["a", "a", "b", "b", "c", "c"]})
    assert me.balance(full, IPI, [IPI, "vm.apic"]) == []
