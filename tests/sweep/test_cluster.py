"""``sweep launch --address`` joins a real Ray head started with ``ray start``.

The head runs with ``--block`` in its own temp dir, so that stopping it (and
only it) is ending one process tree that this test started: ``ray stop
--force`` would also kill every other Ray on the machine, the in-process one
of this very pytest session included.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import polars as pl

from tests.sweep.conftest import REPO, free_port, subprocess_env, sweep_command, tiny_config
from tests.sweep.test_kill import _descendants, _reap

HEAD_START_TIMEOUT_S = 60
HEAD_STOP_TIMEOUT_S = 20
LAUNCH_TIMEOUT_S = 180


def _ray_cli() -> str:
    return str(Path(sys.executable).with_name("ray"))


def _wait_for_port(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + HEAD_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"ray start exited: {proc.stdout.read().decode() if proc.stdout else ''}")
        with socket.socket() as sock, contextlib.suppress(OSError):
            sock.settimeout(0.5)
            sock.connect(("127.0.0.1", port))
            return
        time.sleep(0.2)
    raise AssertionError("the Ray head did not open its port")


def test_launch_against_a_running_head(tmp_path: Path, write_conf: Any) -> None:
    port = free_port()
    temp_dir = tempfile.mkdtemp(prefix="rt", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    head = subprocess.Popen(
        [
            _ray_cli(),
            "start",
            "--head",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            str(port),
            "--num-cpus",
            "2",
            "--include-dashboard=false",
            "--block",
            "--temp-dir",
            temp_dir,
        ],
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        _wait_for_port(port, head)
        conf = write_conf(tiny_config(name="cluster"))
        out = tmp_path / "out"
        done = subprocess.run(
            sweep_command(
                "launch", str(conf), "-o", str(out), "--address", f"127.0.0.1:{port}", "--no-report", "-q"
            ),
            cwd=REPO,
            env=subprocess_env(),
            capture_output=True,
            text=True,
            timeout=LAUNCH_TIMEOUT_S,
            check=False,
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "2 workers" in done.stderr
        frame = pl.read_parquet(str(out / "runs" / "**" / "*.parquet"), hive_partitioning=True)
        assert frame.height == 12 and frame["status"].unique().to_list() == ["ok"]
        assert json.loads((out / "manifest.json").read_text())["counts"]["missing"] == 0
    finally:
        family = _descendants(head.pid)
        head.send_signal(signal.SIGTERM)  # ray start --block stops its processes on SIGTERM
        try:
            head.wait(HEAD_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        _reap(family)
        shutil.rmtree(temp_dir, ignore_errors=True)
