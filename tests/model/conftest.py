"""Small scenarios shared by the model tests."""

from __future__ import annotations

from typing import Any

import pytest

from model import Result, Scenario, simulate

SMALL = {"topology": {"sockets": 1, "cores_per_socket": 4, "threads_per_core": 2}}


def scenario(**overrides: Any) -> Scenario:
    """A small host (1 x 4 x 2) with dotted overrides: scenario(**{"vm.vcpus": 8})."""
    return Scenario.build(SMALL, overrides)


def run(seed: int = 1, **overrides: Any) -> Result:
    result = simulate(scenario(**overrides), seed)
    assert result.ok, f"{result.error_type}: {result.error}"
    return result


@pytest.fixture
def run_small():
    return run
