"""The order-statistic bootstrap of the median equals the resampling bootstrap, and is deterministic."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.bootstrap import median_ci, naive_median_ci


@pytest.mark.parametrize("n", [1, 2, 3, 8, 25, 200])
def test_matches_resampling_bootstrap(n: int) -> None:
    rng = np.random.default_rng(n)
    x = np.sort(rng.lognormal(0.0, 0.3, n))
    fast = median_ci(x, np.array([n]), resamples=40_000)
    median, low, high = naive_median_ci(x, resamples=40_000)
    assert fast.median[0] == pytest.approx(median)
    spread = max(x[-1] - x[0], 1e-12)
    # Same distribution, independent draws: the percentiles agree within Monte Carlo error.
    assert fast.low[0] == pytest.approx(low, abs=0.03 * spread)
    assert fast.high[0] == pytest.approx(high, abs=0.03 * spread)


def test_many_groups_at_once_and_deterministic() -> None:
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 400, 300)
    values = np.concatenate([np.sort(rng.normal(1.0, 0.1, k)) for k in lengths])
    first = median_ci(values, lengths)
    again = median_ci(values, lengths)
    np.testing.assert_array_equal(first.low, again.low)
    np.testing.assert_array_equal(first.high, again.high)
    assert np.all(first.low <= first.median) and np.all(first.median <= first.high)
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    medians = [np.median(values[s : s + k]) for s, k in zip(starts, lengths, strict=True)]
    np.testing.assert_allclose(first.median, medians)


def test_large_group_is_cheap_and_tight() -> None:
    x = np.sort(np.random.default_rng(3).normal(2.0, 1.0, 1_000_000))
    ci = median_ci(x, np.array([len(x)]))
    assert ci.low[0] < 2.0 < ci.high[0]
    assert ci.high[0] - ci.low[0] < 0.01


def test_rejects_inconsistent_lengths() -> None:
    with pytest.raises(ValueError):
        median_ci(np.array([1.0, 2.0]), np.array([3]))
