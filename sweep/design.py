"""Designs: the ordered rows of parameter values a sweep visits.

A design turns ``space.params`` into rows ``(design_index, {key: value})``.
The index is the row's position in the design's own sample order; it is the
same for every replicate and is stored with every run so that an analysis
(Sobol, Morris) can put results back in sample order.  Rows are produced
lazily; exclusions are applied later (:mod:`sweep.points`), so indices keep
their meaning.

Every parameter lives in a *problem space* coordinate ``x``, the one SALib
samples and analyses:

* a float range: ``x`` in ``[low, high]`` (``[log10 low, log10 high]`` if log),
  the value is ``x`` (``10**x``);
* an integer range: ``x`` in ``[low, high + 1]`` (log: ``[log10 low, log10(high + 1)]``),
  the value is ``floor(x)`` (``floor(10**x)``), clipped to ``high``, so every
  integer gets the same share;
* a list of ``n`` values: ``x`` in ``[0, n]``, the value is ``values[floor(x)]``
  (clipped to the last).

``random`` and ``lhs`` draw ``x`` uniformly (plain or Latin hypercube, from
scipy), ``sobol`` and ``morris`` use SALib's samplers; ``grid`` and
``factorial`` enumerate values directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.stats import qmc

from sweep.config import Range, Space

# Sub-stream of the sweep seed that drives the design's sampler (points use others).
DESIGN_STREAM = 0
# 10**log10(n) can land a hair below n: nudge before flooring integer values.
INTEGER_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Axis:
    """One parameter: its key, problem-space bounds and the map from ``x`` to a value."""

    key: str
    spec: Range | tuple[Any, ...]

    @property
    def bounds(self) -> tuple[float, float]:
        spec = self.spec
        if not isinstance(spec, Range):
            return (0.0, float(len(spec)))
        high = spec.high + 1 if spec.integer else spec.high
        if spec.log:
            return (math.log10(spec.low), math.log10(high))
        return (float(spec.low), float(high))

    @property
    def scale(self) -> str:
        """How ``x`` maps to a value: ``discrete``, ``linear``, ``log10`` (+ ``-integer``)."""
        spec = self.spec
        if not isinstance(spec, Range):
            return "discrete"
        return ("log10" if spec.log else "linear") + ("-integer" if spec.integer else "")

    def value(self, x: float) -> Any:
        """The parameter value at problem-space coordinate ``x``."""
        spec = self.spec
        if not isinstance(spec, Range):
            return spec[min(max(math.floor(x), 0), len(spec) - 1)]
        v = 10.0**x if spec.log else float(x)
        if spec.integer:
            return int(min(max(math.floor(v + INTEGER_EPSILON), spec.low), spec.high))
        return min(max(v, spec.low), spec.high)

    def levels(self) -> tuple[Any, ...]:
        """Grid/factorial values: a list as given, a range's levels (or its two ends)."""
        spec = self.spec
        if not isinstance(spec, Range):
            return spec
        n = spec.levels or 2
        points = np.geomspace(spec.low, spec.high, n) if spec.log else np.linspace(spec.low, spec.high, n)
        values = [int(np.rint(p)) for p in points] if spec.integer else [float(p) for p in points]
        return tuple(dict.fromkeys(values))  # integer rounding can repeat a level


def axes(space: Space) -> list[Axis]:
    return [Axis(k, v if isinstance(v, Range) else tuple(v)) for k, v in space.params.items()]


def size(space: Space) -> int:
    """Number of design rows (before exclusions), without generating them."""
    ax = axes(space)
    d = len(ax)
    if space.design in ("grid", "factorial"):
        return math.prod(len(a.levels()) for a in ax)
    n = space.samples or 0
    if space.design == "sobol":
        return n * (2 * d + 2 if space.calc_second_order else d + 2)
    if space.design == "morris":
        return n * (d + 1)
    return n


def problem(space: Space) -> dict[str, Any]:
    """The SALib problem dict: names, bounds (problem space), num_vars, and how to read them."""
    ax = axes(space)
    return {
        "names": [a.key for a in ax],
        "bounds": [list(a.bounds) for a in ax],
        "num_vars": len(ax),
        "scales": [a.scale for a in ax],
    }


def salib_problem(space: Space) -> dict[str, Any] | None:
    """The problem plus the sampler's settings that the analysis needs (sobol, morris)."""
    if space.design == "sobol":
        return {**problem(space), "N": space.samples, "calc_second_order": bool(space.calc_second_order)}
    if space.design == "morris":
        return {**problem(space), "num_levels": space.num_levels, "trajectories": space.samples}
    return None


def sample_matrix(space: Space, seed: int) -> np.ndarray | None:
    """The sampler's rows in problem space (None for grid and factorial)."""
    design = space.design
    if design in ("grid", "factorial"):
        return None
    prob = problem(space)
    ss = np.random.SeedSequence(seed, spawn_key=(DESIGN_STREAM,))
    n = int(space.samples or 0)
    if design == "sobol":
        from SALib.sample import sobol

        salib_seed = int(ss.generate_state(1)[0])
        return sobol.sample(prob, n, calc_second_order=bool(space.calc_second_order), seed=salib_seed)
    if design == "morris":
        from SALib.sample import morris

        salib_seed = int(ss.generate_state(1)[0])
        return morris.sample(prob, n, num_levels=int(space.num_levels or 4), seed=salib_seed)
    d = prob["num_vars"]
    rng = np.random.default_rng(ss)
    unit = qmc.LatinHypercube(d=d, rng=rng).random(n) if design == "lhs" else rng.random((n, d))
    low = np.array([b[0] for b in prob["bounds"]])
    high = np.array([b[1] for b in prob["bounds"]])
    return low + unit * (high - low)


def rows(space: Space, seed: int) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(design_index, {key: value})`` in the design's sample order, lazily."""
    ax = axes(space)
    keys = [a.key for a in ax]
    if space.design in ("grid", "factorial"):
        for index, combo in enumerate(itertools.product(*(a.levels() for a in ax))):
            yield index, dict(zip(keys, combo, strict=True))
        return
    matrix = sample_matrix(space, seed)
    assert matrix is not None
    for index, x in enumerate(matrix):
        yield index, {a.key: a.value(float(xi)) for a, xi in zip(ax, x, strict=True)}
