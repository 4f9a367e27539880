"""The simulated ratio of a condition to its baseline, with a percentile-bootstrap interval."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

RESAMPLES = 2000
BOOT_SEED = 20_200_411  # fixed: the report is the same on every run
LEVEL = 0.95


@dataclass(frozen=True)
class RatioEstimate:
    ratio: float
    low: float
    high: float
    n: int  # replicates (pairs when paired)
    paired: bool


def ratio_interval(
    condition: np.ndarray,
    baseline: np.ndarray,
    *,
    paired: bool,
    resamples: int = RESAMPLES,
    level: float = LEVEL,
    seed: int = BOOT_SEED,
) -> RatioEstimate:
    """Ratio of the means ``mean(condition) / mean(baseline)`` and its percentile-bootstrap interval.

    ``paired``: the i-th values of both share a seed (common random numbers);
    replicates are resampled jointly.  Otherwise each side is resampled on its own.
    """
    cond = np.asarray(condition, dtype=np.float64)
    base = np.asarray(baseline, dtype=np.float64)
    if len(cond) == 0 or len(base) == 0:
        return RatioEstimate(math.nan, math.nan, math.nan, 0, paired)
    if paired and len(cond) != len(base):
        raise ValueError("paired samples must have the same length")
    point = float(cond.mean() / base.mean()) if base.mean() != 0 else math.nan
    rng = np.random.default_rng(seed)
    if paired:
        idx = rng.integers(0, len(cond), size=(resamples, len(cond)))
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = cond[idx].mean(axis=1) / base[idx].mean(axis=1)
    else:
        ci = rng.integers(0, len(cond), size=(resamples, len(cond)))
        bi = rng.integers(0, len(base), size=(resamples, len(base)))
        with np.errstate(divide="ignore", invalid="ignore"):
            draws = cond[ci].mean(axis=1) / base[bi].mean(axis=1)
    draws = draws[np.isfinite(draws)]
    alpha = (1.0 - level) / 2.0
    if len(draws) == 0:
        low = high = math.nan
    else:
        low, high = (float(x) for x in np.quantile(draws, [alpha, 1.0 - alpha]))
    return RatioEstimate(point, low, high, len(cond) if paired else min(len(cond), len(base)), paired)
