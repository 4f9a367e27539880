"""Deterministic discrete-event simulator of a KVM host.

Public interface: build a :class:`Scenario`, call :func:`simulate`, read the
:class:`Result`.  This package imports nothing of ``sweep`` or ``pipelines``.
"""

from model.hardware import PROFILES, Profile
from model.result import EXIT_COLUMNS, METRIC_NAMES, METRICS, ExitRow, Metric, Result, exit_table, metric_info
from model.scenario import Scenario, ScenarioError, flat_schema, valid_keys
from model.simulate import simulate

__all__ = [
    "EXIT_COLUMNS",
    "METRICS",
    "METRIC_NAMES",
    "PROFILES",
    "ExitRow",
    "Metric",
    "Profile",
    "Result",
    "Scenario",
    "ScenarioError",
    "exit_table",
    "flat_schema",
    "metric_info",
    "simulate",
    "valid_keys",
]
