"""Simulators that misbehave on purpose, injected with ``sweep launch --simulator``.

They wrap the real ``model.simulate`` and pick their victims by a scenario
value that the test configs sweep: ``vm.halt_poll_ns`` equal to
:data:`FAIL_MARKER` fails, equal to :data:`DIE_MARKER` kills the worker
process the first time it is seen (a marker file in ``$KVMSWEEP_FAKE_DIR``
remembers that it died).
"""

from __future__ import annotations

import os
from pathlib import Path

from model import Result, Scenario, simulate

FAIL_MARKER = 123_457  # vm.halt_poll_ns that makes a simulation raise
DIE_MARKER = 234_567  # vm.halt_poll_ns whose first simulation kills the worker
ALWAYS_DIE_MARKER = 345_679  # vm.halt_poll_ns whose simulation always kills the worker
FAKE_DIR_ENV = "KVMSWEEP_FAKE_DIR"


class InjectedFailure(RuntimeError):
    """The failure a test asked for."""


def fail_on_marker(scenario: Scenario, seed: int) -> Result:
    """Raise (not caught by simulate) for the marked scenario, else simulate."""
    if scenario.vm.halt_poll_ns == FAIL_MARKER:
        raise InjectedFailure(f"injected failure (seed {seed})")
    return simulate(scenario, seed)


def die_once(scenario: Scenario, seed: int) -> Result:
    """``os._exit(1)`` the first time the marked scenario runs, then simulate normally."""
    if scenario.vm.halt_poll_ns == DIE_MARKER:
        marker = Path(os.environ[FAKE_DIR_ENV]) / f"died-{seed}"
        if not marker.exists():
            marker.touch()
            os._exit(1)
    if scenario.vm.halt_poll_ns == ALWAYS_DIE_MARKER:
        os._exit(1)
    return simulate(scenario, seed)
