"""A driver killed with SIGKILL (or stopped with SIGINT) mid-sweep loses nothing and doubles nothing.

Its in-process Ray is a good citizen: while it runs, every socket of the
launcher's process tree listens on loopback only; once the launcher is gone
(SIGKILL included), none of its processes lives more than
:data:`SURVIVE_S` longer and its Ray temp dir is gone.

The interrupted run is a subprocess with one worker and tiny batches (many
commits); the resumed and the reference runs are in-process with two workers
and the default batch size, so the comparison also shows that results do not
depend on the number of workers or the batch size.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sweep import store
from tests.sweep import procs
from tests.sweep.conftest import (
    LONG_SWEEP_POINTS,
    REPO,
    invoke,
    long_sweep_config,
    subprocess_env,
    sweep_command,
)
from tests.sweep.test_runner import exits_frame, launch, runs_frame

pytestmark = pytest.mark.usefixtures("ray_cluster")

FILES_BEFORE_KILL = 5  # run files that must exist before the driver is killed
START_TIMEOUT_S = 90
EXIT_TIMEOUT_S = 30
# No process of a launcher outlives it by more than this (measured: all gone within ~1.2 s, the
# watchdog's own exit last).
SURVIVE_S = 5.0
POINTS = LONG_SWEEP_POINTS


def _start(conf: Path, output: Path) -> subprocess.Popen[bytes]:
    """``sweep launch`` in its own session (one worker, tiny batches: many commits)."""
    args = ["-o", str(output), "--num-cpus", "1", "--batch-seconds", "0.01", "--no-report", "-q"]
    return subprocess.Popen(
        sweep_command("launch", str(conf), *args),
        cwd=REPO,
        env=subprocess_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _wait_for_files(proc: subprocess.Popen[bytes], output: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while len(store.data_files(output, store.RUNS_DIR)) < FILES_BEFORE_KILL:
        if proc.poll() is not None:
            pytest.fail(
                f"sweep ended before it could be interrupted: {proc.stdout.read().decode() if proc.stdout else ''}"
            )
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail("no batch files appeared")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """An uninterrupted run of the same config (in-process, two workers, default batches)."""
    from typer.testing import CliRunner

    base = tmp_path_factory.mktemp("reference")
    conf = base / "killed.yaml"
    conf.write_text(json.dumps(long_sweep_config("killed")))
    out = base / "out"
    result = launch(CliRunner(), conf, out)
    assert result.exit_code == 0, result.output
    return conf, out


def _assert_same_as_reference(out: Path, reference_out: Path) -> None:
    frame = runs_frame(out)
    assert frame.height == POINTS
    assert frame["point_id"].n_unique() == POINTS  # every point exactly once
    assert frame.equals(runs_frame(reference_out))  # and with the same results
    assert exits_frame(out).equals(exits_frame(reference_out))


def test_sigkill_mid_sweep_then_resume(cli: Any, reference: tuple[Path, Path], tmp_path: Path) -> None:
    conf, reference_out = reference
    out = tmp_path / "out"
    proc = _start(conf, out)
    family: set[int] = set()
    try:
        _wait_for_files(proc, out)
        family = procs.descendants(proc.pid)
        sockets = procs.listeners(family | {proc.pid})
        temp_dirs = procs.ray_temp_dirs(family)
        proc.send_signal(signal.SIGKILL)
        proc.wait(EXIT_TIMEOUT_S)
        survivors = procs.wait_dead(family, SURVIVE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        procs.reap(family)
    # Loopback only: GCS, raylet, object manager, agents, driver and workers (``ss -ltunp``).
    assert len(sockets) >= 4 and {"gcs_server", "raylet"} <= {s.name for s in sockets}
    assert [str(s) for s in sockets if not s.loopback] == []
    # Nothing outlives the launcher by more than a few seconds, and its Ray temp dir is removed.
    assert [procs.describe(p) for p in survivors] == []
    assert len(temp_dirs) == 1 and not any(d.exists() for d in temp_dirs)
    assert not any(Path("/tmp/ray") == d or Path("/tmp/ray") in d.parents for d in temp_dirs)
    partial = store.read_runs(out, ["point_id"]).num_rows
    assert 0 < partial < POINTS, "the driver must die mid-sweep"

    status = json.loads(invoke(cli, "status", str(out), "--json").stdout)
    assert status["missing"] == POINTS - partial and status["duplicates"] == 0

    resumed = launch(cli, conf, out)
    assert resumed.exit_code == 0, resumed.output
    assert f"ran {POINTS - partial} points" in resumed.stderr  # only the missing ones
    _assert_same_as_reference(out, reference_out)
    assert not (out / store.STAGING_DIR).exists() or not any((out / store.STAGING_DIR).iterdir())


def test_sigint_stops_cleanly_and_keeps_what_finished(
    cli: Any, reference: tuple[Path, Path], tmp_path: Path
) -> None:
    conf, reference_out = reference
    out = tmp_path / "out"
    proc = _start(conf, out)
    family: set[int] = set()
    try:
        _wait_for_files(proc, out)
        family = procs.descendants(proc.pid)
        temp_dirs = procs.ray_temp_dirs(family)
        os.killpg(proc.pid, signal.SIGINT)  # as Ctrl-C does: the driver and its Ray processes
        output, _ = proc.communicate(timeout=EXIT_TIMEOUT_S)
        survivors = procs.wait_dead(family, SURVIVE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
        procs.reap(family)
    assert [procs.describe(p) for p in survivors] == []
    assert temp_dirs and not any(d.exists() for d in temp_dirs)
    assert proc.returncode == 130, output.decode()
    assert b"interrupted" in output and b"Traceback" not in output
    manifest = json.loads((out / "manifest.json").read_text())
    done = store.read_runs(out, ["point_id"]).num_rows
    assert manifest["counts"]["ok"] == done and 0 < done < POINTS
    assert manifest["counts"]["missing"] == POINTS - done

    resumed = launch(cli, conf, out)
    assert resumed.exit_code == 0, resumed.output
    _assert_same_as_reference(out, reference_out)
    frame = pl.read_parquet(str(out / "runs" / "**" / "*.parquet"))
    assert frame["status"].unique().to_list() == ["ok"]
