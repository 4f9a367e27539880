"""Sweeps on a real multi-node Ray cluster: joining it, as a Ray job, and losing a node mid-sweep.

The cluster (a head with the Jobs API and two worker nodes, one CPU each, all
on 127.0.0.1) runs in a process of its own, :mod:`tests.sweep.raycluster`,
shared by this module's tests; the launches are ``sweep`` subprocesses, as a
user runs them.  Every process the tests start is ended by pid, and Ray's
files stay in the test's temp dir.  The node-loss test removes a worker node,
so it comes last.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sweep.runner import NO_CLUSTER_ENV
from tests.sweep import procs
from tests.sweep.conftest import (
    LONG_SWEEP_POINTS,
    REPO,
    free_port,
    long_sweep_config,
    subprocess_env,
    sweep_command,
    tiny_config,
)

CLUSTER_START_TIMEOUT_S = 120
CLUSTER_STOP_TIMEOUT_S = 30
LAUNCH_TIMEOUT_S = 150
BATCH_WAIT_TIMEOUT_S = 60
NODES = 3  # head + 2 worker nodes, 1 CPU each
NODE_LOSS_POINTS = LONG_SWEEP_POINTS


@dataclass
class Cluster:
    proc: subprocess.Popen[str]
    address: str
    dashboard: str
    worker_raylets: list[int]
    temp_dir: Path

    def remove_worker(self, index: int) -> None:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(f"remove {index}\n")
        self.proc.stdin.flush()
        assert self.proc.stdout.readline().strip() == f"removed {index}"


def _cluster_env(temp_dir: Path) -> dict[str, str]:
    return {**subprocess_env(), **NO_CLUSTER_ENV, "RAY_TMPDIR": str(temp_dir)}


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    temp_dir = Path(tempfile.mkdtemp(prefix="rc", dir="/tmp"))  # short: Ray's socket paths must fit 107 bytes
    proc = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "tests" / "sweep" / "raycluster.py"),
            "--workers",
            str(NODES - 1),
            "--dashboard-port",
            str(free_port()),
            "--agent-port",
            str(free_port()),
        ],
        cwd=REPO,
        env=_cluster_env(temp_dir),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    family: set[int] = set()
    try:
        assert proc.stdout is not None
        line = _readline(proc, CLUSTER_START_TIMEOUT_S)
        info = json.loads(line)
        family = procs.descendants(proc.pid)
        yield Cluster(proc, info["address"], info["dashboard"], info["workers"], temp_dir)
    finally:
        family |= procs.descendants(proc.pid)
        if proc.stdin is not None:
            proc.stdin.close()  # EOF: the helper stops every node
        try:
            proc.wait(CLUSTER_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        procs.reap(family)
        subprocess.run(["rm", "-rf", str(temp_dir)], check=False)


def _readline(proc: subprocess.Popen[str], timeout_s: float) -> str:
    """The helper's first line, or a failure if it died or took too long."""
    import selectors

    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            proc.kill()
            pytest.fail("the Ray cluster did not start")
    line = proc.stdout.readline()
    if not line:
        pytest.fail(f"the Ray cluster helper exited with {proc.wait()}")
    return line


def _runs(out: Path) -> pl.DataFrame:
    return pl.read_parquet(str(out / "runs" / "**" / "*.parquet"), hive_partitioning=True)


def _launch(args: list[str], timeout_s: float = LAUNCH_TIMEOUT_S) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=REPO, env=subprocess_env(), capture_output=True, text=True, timeout=timeout_s, check=False
    )


def test_cluster_listens_on_loopback_only(cluster: Cluster) -> None:
    sockets = procs.listeners(procs.descendants(cluster.proc.pid) | {cluster.proc.pid})
    assert {"gcs_server", "raylet"} <= {s.name for s in sockets}
    assert [str(s) for s in sockets if not s.loopback] == []


def test_launch_joins_a_running_cluster(cluster: Cluster, write_conf: Any, tmp_path: Path) -> None:
    conf = write_conf(tiny_config(name="cluster"))
    out = tmp_path / "out"
    done = _launch(
        sweep_command("launch", str(conf), "-o", str(out), "--address", cluster.address, "--no-report", "-q")
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"{NODES} workers" in done.stderr  # the CPUs of every node
    frame = _runs(out)
    assert frame.height == 12 and frame["status"].unique().to_list() == ["ok"]
    assert json.loads((out / "manifest.json").read_text())["counts"]["missing"] == 0


def test_ray_job_submit_runs_a_sweep(cluster: Cluster, write_conf: Any, tmp_path: Path) -> None:
    """``ray job submit`` through the head's Jobs API; the job's driver joins via RAY_ADDRESS."""
    conf = write_conf(tiny_config(name="job"))
    out = tmp_path / "out"
    job_id = f"kvmsweep-test-{time.time_ns()}"
    ray_cli = str(Path(sys.executable).with_name("ray"))
    entrypoint = [sys.executable, "-m", "sweep.cli", "launch", str(conf), "-o", str(out), "--no-report", "-q"]
    done = _launch(
        [ray_cli, "job", "submit", "--address", cluster.dashboard, "--submission-id", job_id, "--", *entrypoint]
    )
    logs = done.stdout + done.stderr
    assert done.returncode == 0, logs
    assert f"Job '{job_id}' succeeded" in logs, logs
    assert f"{NODES} workers" in logs  # the job's own output, streamed back
    status = _launch([ray_cli, "job", "status", "--address", cluster.dashboard, job_id], timeout_s=60)
    assert f"job '{job_id}' succeeded" in (status.stdout + status.stderr).lower()
    frame = _runs(out)
    assert frame.height == 12 and frame["point_id"].n_unique() == 12
    assert frame["status"].unique().to_list() == ["ok"]


def _running_batch(raylet: int) -> int | None:
    """A worker process of this node that is running a sweep batch now, if any."""
    for pid in procs.descendants(raylet):
        if "sweep-batch" in procs.cmdline(pid):
            return pid
    return None


def test_node_lost_mid_sweep_loses_and_doubles_nothing(
    cluster: Cluster, write_conf: Any, tmp_path: Path
) -> None:
    conf = write_conf(long_sweep_config("node-loss"))
    out = tmp_path / "out"
    args = ["-o", str(out), "--address", cluster.address, "--batch-seconds", "0.05", "--no-report", "-q"]
    proc = subprocess.Popen(
        sweep_command("launch", str(conf), *args),
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + BATCH_WAIT_TIMEOUT_S
        while _running_batch(cluster.worker_raylets[0]) is None:
            assert proc.poll() is None, f"the sweep ended before a batch ran on the node: {proc.stdout.read()}"
            assert time.monotonic() < deadline, "no batch ran on the worker node"
            time.sleep(0.02)
        cluster.remove_worker(0)  # SIGKILL of the node's raylet, workers and agents, mid-batch
        assert not procs.alive(cluster.worker_raylets[0])
        assert proc.poll() is None, "the sweep must still be running when the node goes"
        output, _ = proc.communicate(timeout=LAUNCH_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, output
    frame = _runs(out)
    assert frame.height == NODE_LOSS_POINTS  # nothing lost ...
    assert frame["point_id"].n_unique() == NODE_LOSS_POINTS  # ... nothing doubled
    assert frame["status"].unique().to_list() == ["ok"]  # the lost batch ran again elsewhere, not as errors
    assert json.loads((out / "manifest.json").read_text())["counts"]["missing"] == 0
