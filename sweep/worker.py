"""What runs on a Ray worker: simulate a batch of points and return compact outcomes.

The simulator is named by import path (``module:function``) so that tests can
inject one that fails or dies; real sweeps use ``model:simulate``.  A
simulation that raises becomes an error outcome (``simulate`` catches its own
exceptions; this also covers an injected function that does not), so one bad
point never costs its batch.  A worker that *dies* is Ray's business: the task
is retried, see :mod:`sweep.runner`.
"""

from __future__ import annotations

import importlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any

from model.result import METRIC_NAMES, Result
from model.scenario import Scenario

DEFAULT_SIMULATOR = "model:simulate"

Simulator = Callable[[Scenario, int], Result]
ExitTuple = tuple[str, str, int, int, int, int]


@dataclass(frozen=True, slots=True)
class Outcome:
    """One point's result, small to ship back: metrics in METRIC_NAMES order, exits as tuples."""

    point_id: str
    wall_s: float
    metrics: tuple[float, ...]
    exits: tuple[ExitTuple, ...] = ()
    error_type: str | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error_type is None and self.error is None

    @staticmethod
    def failed(point_id: str, error_type: str, error: str, wall_s: float = math.nan) -> Outcome:
        return Outcome(point_id, wall_s, (math.nan,) * len(METRIC_NAMES), (), error_type, error)


@cache
def load_simulator(path: str) -> Simulator:
    """Import ``module:function``; ValueError with the reason if that fails."""
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"simulator {path!r}: expected module:function")
    try:
        module = importlib.import_module(module_name)
        func = getattr(module, attr)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"simulator {path!r}: {err}") from None
    if not callable(func):
        raise ValueError(f"simulator {path!r}: not callable")  # noqa: TRY004 - one error type for callers
    return func


def simulate_one(simulator: Simulator, point_id: str, scenario: Scenario, seed: int) -> Outcome:
    start = time.perf_counter()
    try:
        result = simulator(scenario, seed)
    except Exception as exc:  # noqa: BLE001 - any simulation failure is a row, not a crash
        return Outcome.failed(point_id, type(exc).__name__, str(exc), time.perf_counter() - start)
    wall_s = time.perf_counter() - start
    metrics = tuple(float(result.metrics.get(name, math.nan)) for name in METRIC_NAMES)
    exits = tuple((e.reason, e.detail, e.samples, e.total_ns, e.min_ns, e.max_ns) for e in result.exits)
    return Outcome(point_id, wall_s, metrics, exits, result.error_type, result.error)


def run_batch(simulator_path: str, items: list[tuple[str, Scenario, int]]) -> list[Outcome]:
    """Simulate ``(point_id, scenario, seed)`` items in order; one outcome each."""
    simulator = load_simulator(simulator_path)
    return [simulate_one(simulator, point_id, scenario, seed) for point_id, scenario, seed in items]


def describe(value: Any) -> str:
    """First line of an exception's text, for error rows."""
    text = str(value).strip()
    return text.splitlines()[0] if text else type(value).__name__
