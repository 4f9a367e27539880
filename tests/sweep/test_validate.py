"""``sweep validate`` and ``sweep readme``: the pass/fail rules on synthetic inputs, the case
registry against published.yaml and the sweep files, and a reduced run of every case through the
same code path that fails when a mechanism's effect changes sign."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sweep import config as config_mod
from sweep import points
from sweep import readme as readme_mod
from sweep.validation import cases, compare, run, table
from sweep.validation.spec import FACTOR_2, Compare, Tolerance, improvement
from sweep.validation.stats import RatioEstimate, ratio_interval
from tests.sweep.conftest import invoke

PUBLISHED = cases.load_published()
CASE_IDS = list(PUBLISHED)
RATIO_10 = Tolerance(ratio=0.10)


def _case(case_id: str, root: Path = Path("/nonexistent")) -> cases.Case:
    return cases.load_case(case_id, root)


# -- the rules ------------------------------------------------------------------------------------


def test_improvement_sign_follows_the_metric_direction() -> None:
    assert improvement(1.25, higher_is_better=True) == pytest.approx(0.25)
    assert improvement(0.8, higher_is_better=False) == pytest.approx(0.2)
    assert improvement(1.1, higher_is_better=False) == pytest.approx(-0.1)


@pytest.mark.parametrize(
    ("sim", "pub", "higher", "ok"),
    [
        (1.5, 1.5, True, True),  # exact
        (1.26, 1.5, True, True),  # +26 % vs +50 %: within x2
        (1.24, 1.5, True, False),  # +24 %: below half
        (2.0, 1.5, True, True),  # +100 % = 2 x 50 %
        (2.01, 1.5, True, False),  # just above twice
        (0.9, 1.5, True, False),  # wrong sign
        (0.97, 0.971, False, True),  # hackbench time: 3 % vs 2.9 % faster
        (0.94, 0.971, False, False),  # 6 % faster: beyond x2 of 2.9 %
        (1.01, 0.971, False, False),  # slower: wrong sign
        (30.0, 2.857, True, False),  # boost at 2 VMs: far too large
    ],
)
def test_factor_rule(sim: float, pub: float, higher: bool, ok: bool) -> None:
    assert FACTOR_2.check(sim, pub, higher) is ok


@pytest.mark.parametrize(
    ("sim", "pub", "tol", "ok"),
    [
        (0.836, 0.836, 0.10, True),
        (0.919, 0.836, 0.10, True),
        (0.93, 0.836, 0.10, False),
        (1.0, 1.097, 0.15, True),
    ],
)
def test_ratio_rule(sim: float, pub: float, tol: float, ok: bool) -> None:
    assert Tolerance(ratio=tol).check(sim, pub, False) is ok
    assert not Tolerance(ratio=tol).check(math.nan, pub, False)


def test_ratio_interval_paired_and_unpaired() -> None:
    base = np.array([100.0, 110.0, 90.0, 105.0])
    paired = ratio_interval(base * 1.2, base, paired=True)
    assert paired.ratio == pytest.approx(1.2)
    assert paired.low == pytest.approx(1.2) and paired.high == pytest.approx(1.2)  # CRN: no noise left
    unpaired = ratio_interval(base * 1.2, base, paired=False)
    assert unpaired.ratio == pytest.approx(1.2)
    assert unpaired.low < 1.2 < unpaired.high
    one = ratio_interval(np.array([3.0]), np.array([2.0]), paired=True)
    assert (one.ratio, one.low, one.high, one.n) == (1.5, 1.5, 1.5, 1)
    assert math.isnan(ratio_interval(np.array([]), base, paired=False).ratio)


def _synthetic_runs(
    case: cases.Case,
    effect: dict[str, float],
    replicates: int = 3,
    ci: float | None = None,
    bias: float | None = None,
) -> pl.DataFrame:
    """Runs of every modelled (series, condition) of a case: metric = baseline x ``effect[condition]``,
    with replicate noise shared by the conditions (same seed per replicate when they differ in features)."""
    rows: list[dict[str, Any]] = []
    for series in case.compare.series:
        if not series.modelled:
            continue
        pub = case.series_values(series)
        base_value = pub.values[case.compare.baseline] if pub.values else 100.0
        for name, cond in case.compare.conditions.items():
            if not cond.modelled:
                continue
            crn = all(k.startswith("features.") for k in cond.select)
            for rep in range(replicates):
                noise = 1.0 + 0.01 * (rep - 1)
                row = {
                    "status": "ok",
                    "replicate": rep,
                    "seed": rep if crn else 100 * rep + len(rows),
                    **series.select,
                    **cond.select,
                    series.metric: base_value * effect.get(name, 1.0) * noise,
                }
                if ci is not None:
                    row[series.metric + compare.CI_SUFFIX] = ci * (1 + rep)
                if bias is not None:
                    row[compare.WARMUP_BIAS] = bias * (rep - 1) * (2.0 if name == case.compare.baseline else 1.0)
                rows.append(row)
    return pl.DataFrame(rows)


def test_evaluate_passes_the_published_ratios_and_fails_far_ones() -> None:
    case = _case("ipi-fastpath-unicast")
    values = PUBLISHED[case.id]["values"]
    exact = compare.evaluate(
        case, _synthetic_runs(case, {"fastpath": values["fastpath"] / values["no_fastpath"]})
    )
    by = {r["condition"]: r for r in exact.iter_rows(named=True)}
    assert by["no_fastpath"]["verdict"] == compare.BASELINE
    assert by["fastpath"]["verdict"] == compare.PASS and by["fastpath"]["interval_verdict"] == compare.PASS
    assert by["fastpath"]["paired"] is True and by["fastpath"]["replicates"] == 3
    assert by["fastpath"]["tolerance_kind"] == "ratio" and by["fastpath"]["tolerance_value"] == 0.10
    assert by["fastpath"]["within_run_ci95_pct"] is None  # the dataset has no <metric>_ci95_pct column
    assert by["fastpath_in_run_loop"]["verdict"] == compare.NOT_MODELLED
    assert "vcpu_run loop" in by["fastpath_in_run_loop"]["reason"]
    assert by["fastpath_in_run_loop"]["published_ratio"] == pytest.approx(3293 / 4238)
    # the effect with the wrong sign fails
    wrong = compare.evaluate(case, _synthetic_runs(case, {"fastpath": 1.1}))
    assert wrong.filter(pl.col("condition") == "fastpath")["verdict"].item() == compare.FAIL


def test_within_run_uncertainty_is_carried_when_the_dataset_has_it() -> None:
    case = _case("ipi-fastpath-unicast")
    got = compare.evaluate(case, _synthetic_runs(case, {"fastpath": 0.836}, ci=1.0))
    row = got.filter(pl.col("condition") == "fastpath").row(0, named=True)
    assert row["within_run_ci95_pct"] == pytest.approx(2.0)  # mean of 1, 2, 3 over the replicates
    assert row["baseline_within_run_ci95_pct"] == pytest.approx(2.0)
    assert table.cells(row)["within-run ±95 %"] == "±2 % / ±2 %"
    assert "±2 % / ±2 %" in table.markdown(got)
    assert row["warmup_bias_pct"] is None and table.cells(row)["warm-up bias"] == ""  # not in the dataset


def test_warmup_bias_is_the_largest_magnitude_over_the_replicates() -> None:
    case = _case("ipi-fastpath-unicast")
    # replicates' biases: -b, 0, +b (condition) and -2b, 0, +2b (baseline): the sign must not cancel
    got = compare.evaluate(case, _synthetic_runs(case, {"fastpath": 0.836}, bias=3.0))
    row = got.filter(pl.col("condition") == "fastpath").row(0, named=True)
    assert row["warmup_bias_pct"] == pytest.approx(3.0)
    assert row["baseline_warmup_bias_pct"] == pytest.approx(6.0)
    assert table.cells(row)["warm-up bias"] == "3 % / 6 %"
    assert "3 % / 6 %" in table.markdown(got)


def test_evaluate_factor_rule_per_series_and_unpaired_conditions() -> None:
    case = _case("rome-180vcpu-apic-modes")
    # ebizzy: AVIC x1.93 (pub 1.93) and x2APIC x20 (pub 7.9: beyond x2); hackbench: no change (fails)
    runs = _synthetic_runs(case, {"avic1_xapic": 18157 / 9416, "avic0_x2apic": 20.0})
    runs = runs.with_columns(
        pl.when(pl.col("workload.kind") == "hackbench")
        .then(pl.lit(121.339))
        .otherwise(pl.col("hackbench_time_s"))
        .alias("hackbench_time_s")
    )
    got = {(r["series"], r["condition"]): r for r in compare.evaluate(case, runs).iter_rows(named=True)}
    assert got[("ebizzy", "avic1_xapic")]["verdict"] == compare.PASS
    assert got[("ebizzy", "avic1_xapic")]["paired"] is False  # vm.apic/avic are not features: no CRN
    assert got[("ebizzy", "avic0_x2apic")]["verdict"] == compare.FAIL
    assert got[("hackbench", "avic1_xapic")]["verdict"] == compare.FAIL
    assert got[("hackbench", "avic1_xapic")]["published_improvement"] == pytest.approx(1 - 117.840 / 121.339)
    # the IPI microbenchmark series (lower is better): x1.93 slower against a published x1.55 slower
    ipi = got[("ipi_benchmark", "avic1_xapic")]
    assert ipi["verdict"] == compare.PASS
    assert ipi["published_ratio"] == pytest.approx(19106424733.30 / 12313907508.50)


def test_evaluate_without_runs_says_no_data() -> None:
    case = _case("boost-ready-ebizzy")
    runs = _synthetic_runs(case, {"boost_ready_on": 1.05}).filter(pl.col("overcommit") == 1.0)
    got = compare.evaluate(case, runs).filter(pl.col("condition") == "boost_ready_on")
    assert dict(zip(got["series"], got["verdict"], strict=True)) == {
        "1vm": compare.PASS,
        "2vm": compare.NO_DATA,
        "3vm": compare.NO_DATA,
    }
    assert "1 of 1 compared ratios pass" in table.summary_line(compare.evaluate(case, runs))


def test_a_result_published_in_words_uses_the_stated_ratio() -> None:
    case = _case("clx-boost-user-irq")
    got = compare.evaluate(case, _synthetic_runs(case, {"boost_user_irq_on": 1.03}))
    ebizzy = got.filter((pl.col("series") == "ebizzy") & (pl.col("condition") == "boost_user_irq_on")).row(
        0, named=True
    )
    assert ebizzy["published"] is None and ebizzy["published_ratio"] == 1.0
    assert "no regression" in ebizzy["published_note"]
    assert ebizzy["verdict"] == compare.PASS  # +3 % within ±5 %
    far = compare.evaluate(case, _synthetic_runs(case, {"boost_user_irq_on": 1.2}))
    assert (
        far.filter((pl.col("series") == "ebizzy") & (pl.col("condition") == "boost_user_irq_on"))[
            "verdict"
        ].item()
        == compare.FAIL
    )


# -- the cases ------------------------------------------------------------------------------------


def test_every_published_case_has_a_sweep_file_with_a_compare_block(tmp_path: Path) -> None:
    assert len(CASE_IDS) == 9
    loaded = cases.load_cases(None, tmp_path)
    assert [c.id for c in loaded] == CASE_IDS
    for case in loaded:
        for series in case.compare.series:
            names = set(case.series_values(series).ratios)
            assert names == set(case.compare.conditions), (case.id, series.label)


@pytest.mark.parametrize("case_id", CASE_IDS)
def test_each_condition_selects_one_design_row_per_series(case_id: str, tmp_path: Path) -> None:
    case = cases.load_case(case_id, tmp_path)
    assert points.check(case.config) > 0
    rows = [row.flat for row in points.design_rows(case.config)]
    for series in case.compare.series:
        for name, cond in case.compare.conditions.items():
            if not (series.modelled and cond.modelled):
                continue
            wanted = {**series.select, **cond.select}
            hits = [r for r in rows if all(r[k] == v for k, v in wanted.items())]
            assert len(hits) == 1, (case_id, series.label, name, len(hits))


def test_quick_reductions_are_valid_configs(tmp_path: Path) -> None:
    for case in cases.load_cases(None, tmp_path, quick=True):
        assert case.quick and points.check(case.config) > 0
        assert case.config.output == tmp_path / case.id
        assert case.config.config_hash() != _case(case.id, tmp_path).config.config_hash()


def _compare_problems(block: dict[str, Any]) -> list[str]:
    raw = config_mod.yamlsafe.load_file(cases.conf_path("ipi-fastpath-unicast"))
    raw["compare"] = block
    try:
        config = config_mod.from_dict(raw)
    except config_mod.ConfigError as err:
        return err.problems
    return cases._problems(cases.Case("ipi-fastpath-unicast", PUBLISHED["ipi-fastpath-unicast"], config))


def test_a_wrong_compare_block_names_every_problem() -> None:
    structural = _compare_problems(
        {
            "baseline": "no_fastpath",
            "conditions": {"no_fastpath": {"selekt": {}}},
            "series": [{"label": "x", "metric": "m", "better": "up"}],
        }
    )
    assert any("compare.conditions.no_fastpath.selekt: unknown key; did you mean" in p and "allowed: select, not_modelled" in p for p in structural)
    assert any("compare.series[0].better" in p and "'higher'" in p for p in structural)
    meaning = _compare_problems(
        {
            "baseline": "no_fastpath",
            "conditions": {
                "no_fastpath": {"select": {"features.ipi_fastpat": False}},
                "fastpath": {"select": {"vm.apic": "xapik"}},
            },
            "series": [{"label": "ipi", "metric": "vmexit_op_cycle", "better": "lower"}],
        }
    )
    text = "\n".join(meaning)
    assert "features.ipi_fastpat: unknown scenario key; did you mean 'features.ipi_fastpath'" in text
    assert "vm.apic: 'xapik' is not allowed; allowed:" in text
    assert "published conditions without a rule: fastpath_in_run_loop" in text
    assert "unknown metric 'vmexit_op_cycle'; did you mean 'vmexit_op_cycles'" in text
    assert len(meaning) == 4


def test_unknown_case_is_one_line_naming_the_allowed_ids(cli: Any) -> None:
    result = invoke(cli, "validate", "--case", "no-such-case")
    assert result.exit_code == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "no-such-case" in lines[0] and all(cid in lines[0] for cid in CASE_IDS)


def test_changed_config_is_refused_before_anything_runs(tmp_path: Path) -> None:
    case = _case("ipi-fastpath-unicast", tmp_path)
    out = tmp_path / case.id
    out.mkdir()
    (out / "manifest.json").write_text('{"config_hash": "something else", "config": {}}')
    with pytest.raises(cases.ValidationError) as info:
        run.prepare([case])
    assert any("--rerun" in line for line in info.value.lines)
    assert run.prepare([case], rerun=True)  # --rerun accepts it


# -- README ------------------------------------------------------------------------------------------


def test_splice_appends_then_replaces_between_the_markers() -> None:
    text = "# Title\n\nintro\n"
    once = readme_mod.splice(text, "## What the model says\n\nA\n")
    assert once.startswith(text) and once.count(readme_mod.BEGIN) == 1
    twice = readme_mod.splice(once + "\ntail\n", "## What the model says\n\nB\n")
    assert "A\n" not in twice and "B\n" in twice and twice.endswith("\ntail\n")
    assert readme_mod.splice(twice, "## What the model says\n\nB\n") == twice
    with pytest.raises(readme_mod.ReadmeError):
        readme_mod.splice(readme_mod.END + readme_mod.BEGIN, "x")


def test_readme_section_from_a_table_and_missing_sweeps(tmp_path: Path, cli: Any) -> None:
    case = _case("ipi-fastpath-unicast")
    got = compare.evaluate(case, _synthetic_runs(case, {"fastpath": 0.84}))
    table.write_outputs(got, tmp_path / "validation")
    readme = tmp_path / "README.md"
    readme.write_text("# kvmsweep\n")
    result = invoke(
        cli,
        "readme",
        "--readme",
        str(readme),
        "--validation",
        str(tmp_path / "validation"),
        "--sweep",
        str(tmp_path / "nowhere"),
    )
    assert result.exit_code == 0, result.output
    text = readme.read_text()
    assert text.startswith("# kvmsweep\n")
    assert "## What the model says" in text and "ipi-fastpath-unicast" in text and "not modelled" in text
    assert "Not available: no sweep output" in text
    check = invoke(
        cli,
        "readme",
        "--readme",
        str(readme),
        "--validation",
        str(tmp_path / "validation"),
        "--sweep",
        str(tmp_path / "nowhere"),
        "--check",
    )
    assert check.exit_code == 0


def test_readme_keep_leaves_the_subsections_whose_inputs_are_missing(tmp_path: Path, cli: Any) -> None:
    """--keep: a rerun flagship is regenerated while the validation part (no results here) stays as it was."""
    readme = tmp_path / "README.md"
    old_validation = "### Against published results\n\nthe old table, code abc1234\n"
    readme.write_text(
        f"# kvmsweep\n\n{readme_mod.BEGIN}\n## What the model says\n\n{old_validation}\n"
        f"### nowhere\n\nold flagship text\n{readme_mod.END}\n"
    )
    args = ["readme", "--readme", str(readme), "--validation", str(tmp_path / "no-validation")]
    args += ["--sweep", str(tmp_path / "nowhere")]
    kept = invoke(cli, *args, "--keep")
    assert kept.exit_code == 0, kept.output
    text = readme.read_text()
    assert old_validation in text and "old flagship text" in text and "Not available" not in text
    assert "kept the README's current 'Against published results'" in kept.output
    assert invoke(cli, *args, "--keep", "--check").exit_code == 0
    # without --keep the missing inputs are said, replacing the old text
    assert invoke(cli, *args).exit_code == 0
    text = readme.read_text()
    assert "the old table" not in text and text.count("Not available") == 2
    # and a 'Not available' subsection is never what --keep keeps
    assert invoke(cli, *args, "--keep").exit_code == 0
    assert readme.read_text() == text


def test_flagship_configurations_show_within_run_intervals_and_what_acted(tmp_path: Path) -> None:
    """The cascadelake table: ratios to stock with each run's own ±95 %, and the counters per configuration."""
    import json

    import polars as pl

    out = tmp_path / "cascadelake"
    part = out / "runs" / "hardware=cascadelake" / "workload=ebizzy"
    part.mkdir(parents=True)
    stock, no_tlb = (True, False, True, True), (True, False, True, False)
    rows = [
        # configuration, overcommit, records/s, its ±95 %, kicks
        (stock, 1.0, 1000.0, 4.0, 0.0),
        (stock, 2.0, 800.0, 3.0, 5.0),
        (no_tlb, 1.0, 1000.0, 4.0, 0.0),
        (no_tlb, 2.0, 600.0, 6.0, 7.0),
    ]
    frame = pl.DataFrame(
        {
            "status": ["ok"] * len(rows),
            "replicate": [0] * len(rows),
            "seed": [1] * len(rows),
            "code_version": ["abc1234"] * len(rows),
            **{k: [r[0][i] for r in rows] for i, k in enumerate(readme_mod.CASCADELAKE_KEYS)},
            "overcommit": [r[1] for r in rows],
            "records_per_s": [r[2] for r in rows],
            "records_per_s_ci95_pct": [r[3] for r in rows],
            "kicks": [r[4] for r in rows],
        }
    )
    frame.write_parquet(part / "part-0.parquet")
    manifest = {"name": "cascadelake", "config": {"description": "d"}, "counts": {"ok": 4, "total": 4}}
    (out / "manifest.json").write_text(json.dumps(manifest))
    text = "\n".join(readme_mod.flagship_part(out).lines)
    assert "(code abc1234)" in text
    assert "| stock 5.13 (queue-head boost off) | 1,000 ±4 % | 800 ±3 % |" in text
    assert "| pv_tlb_flush off | 1.00x ±4 % | 0.75x ±6 % |" in text
    # configurations the sweep did not run are left out
    assert "| boost_ready off |" not in text
    assert "| pv_tlb_flush off | 0 / 7 |" in text and "| stock 5.13 (queue-head boost off) | 0 / 5 |" in text


# -- reduced runs through the real code path --------------------------------------------------------


# Rows whose reduced (--quick) run does not resolve the effect, so their point estimate's sign follows
# the seeds: boost-ready-ebizzy at 2 and 3 VMs is bistable (pv_wait cascades), with within-run
# intervals of +-50-60 % even in the full run (2 VMs reduced: 1.39, 0.81, 1.18, 0.98 at successive
# commits that only reseeded the points).  Their full-run verdicts are reported as they come.
UNRESOLVED_IN_REDUCED_RUN = {("boost-ready-ebizzy", "2vm"), ("boost-ready-ebizzy", "3vm")}

# Published effects the model gets with the wrong sign, and why (reported as failures in the table).
KNOWN_WRONG_SIGN = {
    ("rome-180vcpu-apic-modes", "ebizzy", "avic0_x2apic"): (
        "same cause as the AVIC ebizzy row: x2APIC removes the xAPIC APIC_WRITE exits of the"
        " shootdown IPIs, but the kernel-faithful ebizzy spends its time in page and lock work, so"
        " records/s moves by ~1 % against the published 7.9x: an open failure of the model"
    ),
    ("rome-180vcpu-apic-modes", "ebizzy", "avic1_xapic"): (
        "since ebizzy -M follows the kernel (mmap_sem for read, pcp/LRU batches, concurrent shootdowns)"
        " a 1x ebizzy VM is bound by page and lock work, not by the IPI send path, so AVIC changes"
        " records/s by < 1 % against the published 1.93x (no IPI-path figure is fitted to this row):"
        " an open failure of the model (16.4k records/s against the published 9.4k; resolved windows: 400 ms)"
    ),
    ("rome-180vcpu-apic-modes", "ipi_benchmark", "avic0_x2apic"): (
        "published x2APIC broadcast 6 % slower than xAPIC; the 5.8 guest (x2APIC physical: no IR) sends"
        " both as one shorthand ICR write and KVM delivers both through the same kvm_irq_delivery_to_apic"
        " loop, so the model has x2APIC ~1.5 % faster (one MMIO read exit fewer); no kernel mechanism"
        " for the published sign is known"
    ),
}


def _expected_sign(row: dict[str, Any]) -> bool:
    """Whether the published effect is clear of the tolerance, so that its sign is a claim to keep."""
    if row["tolerance_kind"] == "factor":
        return True
    return abs(row["published_ratio"] - 1.0) > row["tolerance_value"]


@pytest.mark.usefixtures("ray_cluster")
def test_reduced_validation_keeps_every_published_sign(tmp_path: Path, cli: Any) -> None:
    runs = run.validate(None, tmp_path, quick=True)
    got = run.combined(runs)
    assert [r.case.id for r in runs] == CASE_IDS
    assert all(r.missing == 0 and r.errors == 0 for r in runs)
    compared = got.filter(~pl.col("verdict").is_in([compare.BASELINE, compare.NOT_MODELLED, compare.NO_DATA]))
    # every modelled published condition has a reduced counterpart: ipi-fastpath 1, cyclictest 1,
    # tscdeadline-immed 1, boost-ready-ebizzy 3, tscdeadline 2 (no / adaptive advance), epyc 1 + 1,
    # clx-boost-user-irq 2 (pbzip2, ebizzy), rome 6
    assert compared.height == 18
    for row in compared.iter_rows(named=True):
        where = f"{row['case']} {row['series']} {row['condition']}: simulated ratio {row['simulated_ratio']:.3f}, published {row['published_ratio']:.3f}"
        known = KNOWN_WRONG_SIGN.get((row["case"], row["series"], row["condition"]))
        if known:  # a failure the model is known to have: it must show in the table as one
            assert row["verdict"] == compare.FAIL, f"{where}: now passes? remove it from KNOWN_WRONG_SIGN"
            continue
        if (row["case"], row["series"]) in UNRESOLVED_IN_REDUCED_RUN:
            # the point estimate is noise here; the interval must not lie wholly on the wrong side
            wrong_side = row["ci_high"] < 1.0 if row["published_ratio"] > 1.0 else row["ci_low"] > 1.0
            assert not wrong_side, where
        elif _expected_sign(row):
            assert np.sign(row["simulated_improvement"]) == np.sign(row["published_improvement"]), where
        else:  # published within the tolerance of no effect (boost-ready at 1 VM, clx ebizzy "no
            # regression"): the reduced run's interval must admit that (one run's point estimate is noise)
            assert row["verdict"] == compare.PASS or row["interval_verdict"] == compare.MIXED, where
    # the table and the documents are written; a second run reuses every point
    paths = table.write_outputs(got, tmp_path, order=CASE_IDS)
    assert pl.read_csv(paths["csv"]).height == got.height
    assert "| case |" in paths["md"].read_text()
    result = invoke(
        cli, "validate", "--quick", "-q", "--output", str(tmp_path), "--case", "ipi-fastpath-unicast"
    )
    assert result.exit_code == 0, result.output
    assert "all reused" in result.stderr
    assert table.read_table(tmp_path).height == got.height  # the other cases' rows are kept


def test_config_files_load() -> None:
    for name in ("rome", "cascadelake"):
        config = config_mod.load(cases.REPO / "conf" / f"{name}.yaml")
        assert points.check(config) >= (100 if name == "rome" else 1)


def test_pass_range_and_interval_verdict() -> None:
    assert FACTOR_2.pass_range(1.5, True) == pytest.approx((1.25, 2.0))
    assert FACTOR_2.pass_range(0.9, False) == pytest.approx((0.8, 0.95))  # 10 % faster: 5-20 %
    assert RATIO_10.pass_range(0.8, False) == pytest.approx((0.72, 0.88))
    verdict = compare.interval_verdict_of
    assert verdict(FACTOR_2, RatioEstimate(1.5, 1.3, 1.9, 3, True), 1.5, True) == compare.PASS
    assert verdict(FACTOR_2, RatioEstimate(3.0, 2.5, 3.5, 3, True), 1.5, True) == compare.FAIL
    # an interval wider than the whole pass region is mixed, though both of its ends fail
    assert verdict(FACTOR_2, RatioEstimate(1.5, 1.1, 3.5, 3, True), 1.5, True) == compare.MIXED


def test_tolerance_needs_exactly_one_rule() -> None:
    with pytest.raises(ValueError):
        Tolerance()
    with pytest.raises(ValueError):
        Tolerance(factor=2, ratio=0.1)
    with pytest.raises(ValueError):
        Compare(
            baseline="a", conditions={"b": {}}, series=[{"label": "s", "metric": "m", "better": "higher"}]
        )
