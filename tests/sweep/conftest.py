"""Shared fixtures: one in-process Ray for the module's tests, tiny configs, readers."""

from __future__ import annotations

import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from sweep.cli import app
from tests.sweep.fakes import FAKE_DIR_ENV

REPO = Path(__file__).resolve().parents[2]
TEST_RAY_CPUS = 2

# A host of 2 pCPUs, 2 vCPUs, 5 ms simulated: a few ms of wall time per point.
TINY_BASE: dict[str, Any] = {
    "hardware": "cascadelake",
    "topology": {"sockets": 1, "cores_per_socket": 2, "threads_per_core": 1},
    "vm": {"vcpus": 2},
    "sim": {"duration_ms": 5, "warmup_ms": 1},
}


def tiny_config(name: str = "tiny", **overrides: Any) -> dict[str, Any]:
    """A small valid sweep config (12 points) as a dict; top-level keys replaced by ``overrides``."""
    config: dict[str, Any] = {
        "name": name,
        "description": "test sweep",
        "base": TINY_BASE,
        "space": {
            "design": "grid",
            "params": {
                "workload.kind": ["cpu-bound", "hackbench", "cyclictest"],
                "features.ipi_fastpath": [True, False],
            },
        },
        "replicates": 2,
        "seed": 7,
    }
    config.update(overrides)
    return config


LONG_SWEEP_POINTS = 120  # points of long_sweep_config(): 20 rows x 6 replicates


def long_sweep_config(name: str) -> dict[str, Any]:
    """A sweep long enough to interrupt (kill, node loss): :data:`LONG_SWEEP_POINTS` points of 20 ms
    hackbench on the tiny host, ~40 ms each, seconds of work on one worker, many small batches."""
    return tiny_config(
        name=name,
        base={**TINY_BASE, "workload": {"kind": "hackbench"}, "sim": {"duration_ms": 20, "warmup_ms": 1}},
        space={
            "design": "grid",
            "params": {
                "vm.halt_poll_ns": [0, 1000, 2000, 5000, 10000, 20000, 50000, 100000, 200000, 400000],
                "features.ipi_fastpath": [True, False],
            },
        },
        replicates=6,
    )


@pytest.fixture
def write_conf(tmp_path: Path) -> Callable[..., Path]:
    """Write a config dict (or raw text) to a YAML file in tmp_path; return its path."""

    def write(data: dict[str, Any] | str, name: str = "sweep.yaml") -> Path:
        path = tmp_path / name
        path.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def fake_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("fakes")
    os.environ[FAKE_DIR_ENV] = str(path)
    return path


@pytest.fixture(scope="session")
def ray_cluster(fake_dir: Path) -> Iterator[None]:
    """One in-process Ray for every test that runs a sweep in-process (the runner reuses it).

    Started as ``sweep launch`` starts its own: on loopback, in a temp dir that is removed after.
    """
    from sweep import runner

    os.environ.pop("RAY_ADDRESS", None)
    assert runner.start_ray(None, TEST_RAY_CPUS)
    yield
    runner.stop_ray()


@pytest.fixture
def cli() -> CliRunner:
    return CliRunner()


def invoke(runner: CliRunner, *args: str) -> Any:
    """Run ``sweep ARGS`` in-process; fail with the output on an unexpected exception."""
    result = runner.invoke(app, list(args), catch_exceptions=True)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def sweep_command(*args: str) -> list[str]:
    """``sweep ARGS`` as a subprocess command line (the venv's interpreter)."""
    return [sys.executable, "-m", "sweep.cli", *args]


def subprocess_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = str(REPO)
    return env
