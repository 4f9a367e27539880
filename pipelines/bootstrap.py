"""Median and percentile-bootstrap interval of the median, for many groups at once.

The bootstrap of a median does not need the resamples themselves.  Sort a
group's n values.  Draw n indices uniformly; the m-th smallest drawn index is
``floor(n * U_(m))`` where ``U_(m)``, the m-th order statistic of n uniforms,
is Beta(m, n - m + 1) distributed; and given ``U_(m) = u`` the next one is
``u + (1 - u) * Beta(1, n - m)``.  So one resample's median is read off the
sorted values at one (odd n) or two (even n) Beta-drawn positions.  This is
exactly the ordinary resampling bootstrap, in distribution, at a cost of
O(resamples) per group instead of O(resamples * n): a group of a million
pairs costs what a group of ten does, and every group is drawn in one
vectorised numpy call.  The generator is seeded, so the intervals are the
same on every run.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000  # bootstrap resamples per group
SEED = 20_240_605  # fixed: the report is reproducible
CHUNK = 2048  # groups drawn per numpy call, bounds memory at RESAMPLES * CHUNK floats


@dataclass(frozen=True)
class MedianCI:
    """Per group: the sample median and the percentile-bootstrap interval."""

    median: np.ndarray
    low: np.ndarray
    high: np.ndarray


def group_offsets(lengths: np.ndarray) -> np.ndarray:
    """Start of each group in the concatenated values."""
    return np.concatenate(([0], np.cumsum(lengths)[:-1])).astype(np.int64)


def sample_median(values: np.ndarray, offsets: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Median of each sorted group (mean of the two middle values when n is even)."""
    lo = offsets + (lengths - 1) // 2
    hi = offsets + lengths // 2
    return 0.5 * (values[lo] + values[hi])


def _bootstrap_medians(
    values: np.ndarray, offsets: np.ndarray, lengths: np.ndarray, resamples: int, rng: np.random.Generator
) -> np.ndarray:
    """``resamples x groups`` bootstrap medians, drawn through the order statistics."""
    n = lengths.astype(np.float64)
    m = (lengths + 1) // 2  # rank of the (lower) middle value, 1-based
    u_m = rng.beta(m, lengths - m + 1, size=(resamples, len(lengths)))
    first = np.minimum(np.floor(n * u_m), n - 1).astype(np.int64)
    second = first.copy()
    even = np.flatnonzero(lengths % 2 == 0)
    if len(even):  # the upper middle value: only even groups have one
        k = lengths[even]
        tail = rng.beta(1.0, k - m[even], size=(resamples, len(even)))
        u_next = u_m[:, even] + (1.0 - u_m[:, even]) * tail
        second[:, even] = np.minimum(np.floor(n[even] * u_next), n[even] - 1).astype(np.int64)
    return 0.5 * (values[offsets + first] + values[offsets + second])


def _percentiles(draws: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Column-wise ``alpha`` and ``1 - alpha`` quantiles (numpy's linear rule), by partial sort."""
    positions = np.array([alpha, 1.0 - alpha]) * (draws.shape[0] - 1)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, draws.shape[0] - 1)
    ranks = np.unique(np.concatenate([below, above]))
    parted = np.partition(draws, ranks, axis=0)
    frac = positions - below
    low, high = (parted[b] + f * (parted[a] - parted[b]) for b, a, f in zip(below, above, frac, strict=True))
    return low, high


def median_ci(
    values: np.ndarray,
    lengths: np.ndarray,
    *,
    level: float = 0.95,
    resamples: int = RESAMPLES,
    seed: int = SEED,
) -> MedianCI:
    """Median and ``level`` percentile-bootstrap interval of each group.

    ``values`` is the concatenation of the groups, each sorted ascending;
    ``lengths`` the group sizes (all >= 1).  Deterministic for a given seed.
    """
    values = np.asarray(values, dtype=np.float64)
    lengths = np.asarray(lengths, dtype=np.int64)
    if len(lengths) == 0:
        empty = np.empty(0)
        return MedianCI(empty, empty, empty)
    if np.any(lengths < 1) or lengths.sum() != len(values):
        raise ValueError("lengths must be >= 1 and add up to len(values)")
    offsets = group_offsets(lengths)
    rng = np.random.default_rng(seed)
    alpha = (1.0 - level) / 2.0
    low = np.empty(len(lengths))
    high = np.empty(len(lengths))
    for start in range(0, len(lengths), CHUNK):
        part = slice(start, start + CHUNK)
        medians = _bootstrap_medians(values, offsets[part], lengths[part], resamples, rng)
        low[part], high[part] = _percentiles(medians, alpha)
    return MedianCI(sample_median(values, offsets, lengths), low, high)


def naive_median_ci(
    values: np.ndarray, *, level: float = 0.95, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float, float]:
    """Reference implementation for one group: materialise each resample (tests compare against it)."""
    rng = np.random.default_rng(seed)
    values = np.asarray(values, dtype=np.float64)
    draws = values[rng.integers(0, len(values), size=(resamples, len(values)))]
    medians = np.median(draws, axis=1)
    alpha = (1.0 - level) / 2.0
    low, high = np.quantile(medians, [alpha, 1.0 - alpha])
    return float(np.median(values)), float(low), float(high)
