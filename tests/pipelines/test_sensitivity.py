"""Sobol indices of the Ishigami function through the whole pipeline; refusal on missing points; Morris."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from pipelines import open_dataset, sensitivity, write_report
from tests.pipelines.conftest import ISHIGAMI_NAMES, ishigami_problem, write_ishigami
from tests.pipelines.synthetic import write_design_sweep

# Analytic indices of Ishigami (a=7, b=0.1).
S1 = [0.3139, 0.4424, 0.0]
ST = [0.5576, 0.4424, 0.2437]


@pytest.fixture(scope="module")
def ishigami_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = write_ishigami(tmp_path_factory.mktemp("ishigami"), replicates=2)
    return write_report(out)


def test_ishigami_indices_within_intervals(ishigami_report: Path) -> None:
    table = pl.read_parquet(ishigami_report / "tables" / "sobol.parquet")
    assert table["parameter"].to_list() == ISHIGAMI_NAMES
    for row, s1, st in zip(table.iter_rows(named=True), S1, ST, strict=True):
        assert row["S1_low"] <= s1 <= row["S1_high"], row
        assert row["ST_low"] <= st <= row["ST_high"], row
        assert row["S1"] == pytest.approx(s1, abs=0.06)
        assert row["ST"] == pytest.approx(st, abs=0.06)


def test_ishigami_warnings_flag_wide_or_negative(ishigami_report: Path) -> None:
    table = pl.read_parquet(ishigami_report / "tables" / "sobol.parquet")
    x3 = table.filter(pl.col("parameter") == ISHIGAMI_NAMES[2]).row(0, named=True)
    assert "S1 interval wider than 10%" in x3["warning"]  # S1 of x3 is 0: any interval is wide
    second = pl.read_parquet(ishigami_report / "tables" / "sobol_second_order.parquet")
    x1x3 = second.filter((pl.col("parameter") == ISHIGAMI_NAMES[0]) & (pl.col("other") == ISHIGAMI_NAMES[2]))
    assert x1x3.row(0, named=True)["S2"] == pytest.approx(0.244, abs=0.1)  # the x1-x3 interaction


def test_sobol_with_missing_points_refuses(tmp_path: Path) -> None:
    out = write_ishigami(tmp_path, drop_points=[5, 17, 900])
    ds = open_dataset(out)
    with pytest.raises(
        sensitivity.SensitivityRefused, match=r"refused: 3 of 8192 points are missing or failed"
    ):
        sensitivity.sobol_indices(ds.runs, ds.problem, ["messages_per_s"], replicates=1)
    report = write_report(out)
    assert not (report / "tables" / "sobol.parquet").exists()
    text = (report / "index.md").read_text()
    assert "Sobol analysis refused" in text and "design_index 5, 17, 900" in text


def test_sobol_with_failed_points_refuses(tmp_path: Path) -> None:
    out = write_ishigami(tmp_path, failed_points=[3])
    ds = open_dataset(out)
    with pytest.raises(sensitivity.SensitivityRefused, match="design_index 3"):
        sensitivity.sobol_indices(ds.runs, ds.problem, ["messages_per_s"], replicates=1)


def test_morris_ranks_inputs(tmp_path: Path) -> None:
    from SALib.sample import morris as morris_sample

    problem = {
        "num_vars": 3,
        "names": ISHIGAMI_NAMES,
        "bounds": [[0.0, 1.0]] * 3,
        "num_levels": 4,
        "trajectories": 40,
    }
    x = morris_sample.sample(
        {k: problem[k] for k in ("num_vars", "names", "bounds")}, 40, num_levels=4, seed=2
    )
    y = 10.0 * x[:, 0] + 2.0 * x[:, 1] + 0.0 * x[:, 2]
    out = write_design_sweep(tmp_path, "morris", problem, x, {"messages_per_s": y})
    report = write_report(out)
    table = pl.read_parquet(report / "tables" / "morris.parquet")
    mu_star = dict(zip(table["parameter"], table["mu_star"], strict=True))
    assert mu_star[ISHIGAMI_NAMES[0]] == pytest.approx(10.0, rel=0.01)
    assert mu_star[ISHIGAMI_NAMES[1]] == pytest.approx(2.0, rel=0.01)
    assert mu_star[ISHIGAMI_NAMES[2]] == pytest.approx(0.0, abs=1e-9)


def test_sobol_rows_follow_saltelli() -> None:
    assert sensitivity.sobol_rows(ishigami_problem(1024)) == 1024 * 8
    assert sensitivity.sobol_rows({**ishigami_problem(64), "calc_second_order": False}) == 64 * 5
    assert np.isfinite(sensitivity.SEED)
