"""Within-run uncertainty by batch means (model/metrics.py, MODEL.md section 12c)."""

import math

import numpy as np
import pytest
from scipy.stats import t as student_t

from model.metrics import CI_BATCHES, batch_means_ci95_pct
from tests.model.conftest import run


def test_batch_means_half_width_is_t_times_the_standard_error():
    y = np.array([9.0, 11.0] * (CI_BATCHES // 2))
    expected = student_t.ppf(0.975, CI_BATCHES - 1) * y.std(ddof=1) / math.sqrt(CI_BATCHES) / 10.0 * 100
    assert batch_means_ci95_pct(y) == pytest.approx(expected)
    assert batch_means_ci95_pct(np.full(CI_BATCHES, 5.0)) == 0.0
    assert math.isnan(batch_means_ci95_pct([3.0]))  # one batch: no spread to estimate


def test_batch_means_interval_covers_the_true_mean_of_a_synthetic_series():
    """i.i.d. noise around 100: about 95 % of the intervals cover 100."""
    rng = np.random.default_rng(1)
    covered = 0
    trials = 400
    for _ in range(trials):
        batches = rng.normal(100.0, 10.0, size=(CI_BATCHES, 50)).mean(axis=1)
        half = batch_means_ci95_pct(batches) * batches.mean() / 100
        covered += abs(batches.mean() - 100.0) <= half
    assert 0.92 < covered / trials < 0.98


def test_batch_means_interval_shrinks_as_one_over_root_window_on_a_synthetic_series():
    rng = np.random.default_rng(2)
    series = rng.normal(100.0, 10.0, size=CI_BATCHES * 4000)

    def ci(n):  # the first n samples cut into CI_BATCHES batches
        return batch_means_ci95_pct(series[:n].reshape(CI_BATCHES, -1).mean(axis=1))

    short, long_ = ci(CI_BATCHES * 100), ci(CI_BATCHES * 1600)  # 16 x the window
    assert long_ < short
    assert long_ / short == pytest.approx(0.25, rel=0.35)  # 1 / sqrt(16)


def test_the_main_metric_uncertainty_of_a_run_shrinks_with_a_longer_window():
    """cpu-bound VMs sharing pCPUs: progress comes in 12 ms slices, so a 20 ms window is mostly luck."""
    kw = {"workload.kind": "cpu-bound", "vm.vcpus": 8, "overcommit": 2.0, "sim.warmup_ms": 5}
    short = run(**kw, **{"sim.duration_ms": 25})
    long_ = run(**kw, **{"sim.duration_ms": 205})
    assert 0 < long_.metrics["compute_s_per_s_ci95_pct"] < short.metrics["compute_s_per_s_ci95_pct"] / 2


@pytest.mark.parametrize(("kind", "metric"), [
    ("hackbench", "messages_per_s"), ("hackbench", "hackbench_time_s"), ("lockbench", "acquisitions_per_s"),
    ("ebizzy", "records_per_s"),
    ("cpu-bound", "compute_s_per_s"), ("cyclictest", "timer_latency_avg_us"), ("vmexit", "vmexit_op_cycles"),
])
def test_main_metric_ci_is_finite_for_every_workload(kind, metric):
    extra = {"workload.hackbench.groups": 1, "workload.hackbench.senders": 4, "workload.hackbench.receivers": 4}
    r = run(**{"workload.kind": kind, "vm.vcpus": 4, "sim.duration_ms": 25, "sim.warmup_ms": 5,
               **(extra if kind == "hackbench" else {}), **({"vm.idle": "poll"} if kind == "vmexit" else {})})
    value = r.metrics[f"{metric}_ci95_pct"]
    assert math.isfinite(value) and value >= 0
    assert math.isfinite(r.metrics["warmup_bias_pct"])


def test_warmup_bias_sees_a_start_transient_and_not_an_early_outlier() -> None:
    """MSER (White 1997) truncation: a window that starts uncollapsed (ebizzy under
    overcommit, 30 ms batches of a 600 ms run) is biased ~+65 %; a stationary run
    with one early outlier batch is biased only by that outlier's weight."""
    from model.metrics import mser_truncation, warmup_bias_pct

    transient = [272, 15, 12, 27, 24, 18, 20, 7, 18, 18, 32, 13, 19, 37, 20, 33, 12, 13, 18, 13]
    assert mser_truncation(transient) == 1
    assert warmup_bias_pct(transient) > 50
    stationary = [119, 92, 62, 55, 84, 94, 112, 61, 50, 60, 94, 68, 57, 99, 97, 75, 67, 278, 58, 68]
    assert warmup_bias_pct(stationary) == 0.0
    outlier = [50, 59, 51, 65, 126, 49, 59, 58, 67, 50, 61, 74, 46, 51, 56, 52, 66, 50, 53, 61]
    assert 0 < warmup_bias_pct(outlier) < 10
