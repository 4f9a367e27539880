"""Every failure a user can cause in ``sweep launch | status | simulate`` is one paragraph with a
documented exit code (2 bad input, 3 file system, 4 cluster), never a traceback, and leaves the
output as it was: one test per case of issue 13's list."""

from __future__ import annotations

import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import launch as launch_mod
from sweep import points, store
from sweep.errors import EXIT_CLUSTER, EXIT_INCOMPLETE, EXIT_IO, EXIT_USAGE
from tests.sweep.conftest import REPO, invoke, subprocess_env, sweep_command, tiny_config

SMOKE = REPO / "conf" / "smoke.yaml"


def launch(cli: Any, conf: Path, output: Path, *args: str) -> Any:
    return invoke(cli, "launch", str(conf), "-o", str(output), "--no-report", "-q", *args)


def disk_full_after_one_batch(write_batch: Any) -> Any:
    """``store.write_batch`` that commits the first batch, then fails as a full disk does."""
    calls = {"n": 0}

    def write(*args: Any, **kwargs: Any) -> None:
        calls["n"] += 1
        if calls["n"] > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        write_batch(*args, **kwargs)

    return write


def one_paragraph(result: Any, code: int) -> str:
    """The error text, after asserting the exit code, no traceback, and no blank line in it."""
    assert result.exit_code == code, result.output
    text = result.stderr.strip()
    assert text and "Traceback" not in result.output and "\n\n" not in text, text
    return text


def tree(path: Path) -> dict[str, bytes]:
    """Every file below ``path`` with its content."""
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    """A directory of a user's own files, with a runs/ of its own and no manifest.json."""
    path = tmp_path / "mine"
    (path / "runs" / "mine").mkdir(parents=True)
    (path / "runs" / "mine" / "important.parquet").write_bytes(b"PAR1 not ours PAR1")
    (path / "runs" / "notes.txt").write_text("my notes\n")
    (path / "thesis.tex").write_text("\\documentclass{article}\n")
    return path


@pytest.fixture
def tiny(write_conf: Any) -> Path:
    return write_conf(
        tiny_config(replicates=1, space={"design": "grid", "params": {"workload.kind": ["cpu-bound"]}})
    )


# -- --restart never destroys what is not ours --------------------------------------------------


def test_restart_refuses_a_directory_that_is_not_a_sweep_output(cli: Any, user_dir: Path) -> None:
    before = tree(user_dir)
    text = one_paragraph(launch(cli, SMOKE, user_dir, "--restart"), EXIT_USAGE)
    assert "not this sweep's" in text and "nothing was deleted" in text
    assert tree(user_dir) == before  # every file, byte for byte; no .lock left either


def test_restart_refuses_a_non_sweep_directory_without_runs(cli: Any, tmp_path: Path) -> None:
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "thesis.tex").write_text("x")
    text = one_paragraph(launch(cli, SMOKE, tmp_path / "home", "--restart"), EXIT_USAGE)
    assert "not a sweep output (no manifest.json)" in text
    assert tree(tmp_path / "home") == {"thesis.tex": b"x"}


def test_without_restart_foreign_files_in_runs_are_refused_not_read(cli: Any, user_dir: Path) -> None:
    before = tree(user_dir)
    text = one_paragraph(launch(cli, SMOKE, user_dir), EXIT_USAGE)
    assert "runs/mine/important.parquet" in text and "ArrowInvalid" not in text
    assert tree(user_dir) == before


@pytest.mark.usefixtures("ray_cluster")
def test_restart_deletes_only_the_files_the_sweep_wrote(cli: Any, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert launch(cli, tiny, out).exit_code == 0
    (out / "README.txt").write_text("about this output\n")
    (out / "report").mkdir()
    (out / "report" / "index.md").write_text("# mine\n")
    ours, foreign = launch_mod.survey_files(out)
    assert ours and not foreign
    old = {str(p) for p in ours}
    assert launch(cli, tiny, out, "-s", "seed=99", "--restart").exit_code == 0
    assert (out / "README.txt").read_text() == "about this output\n"
    assert (out / "report" / "index.md").read_text() == "# mine\n"
    new, _ = launch_mod.survey_files(out)
    assert not old & {str(p) for p in new}  # the old data files went, new ones came
    assert json.loads((out / "manifest.json").read_text())["config"]["seed"] == 99


@pytest.mark.usefixtures("ray_cluster")
def test_foreign_files_added_to_a_sweep_are_refused_and_kept(cli: Any, tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert launch(cli, tiny, out).exit_code == 0
    stray = out / "runs" / "hardware=cascadelake" / "copy of part.parquet"
    stray.write_bytes(b"junk")
    for extra in ((), ("--restart",)):
        text = one_paragraph(launch(cli, tiny, out, *extra), EXIT_USAGE)
        assert "copy of part.parquet" in text
        assert stray.read_bytes() == b"junk"
    status = json.loads(invoke(cli, "status", str(out), "--json").stdout)
    assert status["foreign_files"] == [str(stray.relative_to(out))] and status["ok"] == 1


# -- bad input: one paragraph, exit 2 ------------------------------------------------------------


def test_non_utf8_config(cli: Any, tmp_path: Path) -> None:
    conf = tmp_path / "latin1.yaml"
    conf.write_bytes("name: caf\xe9\n".encode("latin-1"))
    text = one_paragraph(launch(cli, conf, tmp_path / "out"), EXIT_USAGE)
    assert "not UTF-8" in text
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "content", ["{}", "{not json", "[1, 2]", '{"name": "x", "config_hash": "y", "counts": {}}']
)
def test_status_on_a_corrupt_or_empty_manifest(cli: Any, tmp_path: Path, content: str) -> None:
    (tmp_path / "manifest.json").write_text(content)
    text = one_paragraph(invoke(cli, "status", str(tmp_path)), EXIT_USAGE)
    assert "manifest.json is not a sweep manifest" in text


def test_status_and_compact_of_a_non_sweep_directory(cli: Any, tmp_path: Path) -> None:
    for command in ("status", "compact"):
        assert "not a sweep output" in one_paragraph(invoke(cli, command, str(tmp_path)), EXIT_USAGE)
        assert "not a sweep output" in one_paragraph(invoke(cli, command, str(tmp_path / "nope")), EXIT_USAGE)


def test_simulate_negative_seed(cli: Any) -> None:
    result = invoke(cli, "simulate", "--seed", "-1")
    assert result.exit_code == EXIT_USAGE and "Traceback" not in result.output
    assert "Invalid value" in result.output and "greater than or equal to 0" in result.output


def test_alias_bomb_and_duplicate_keys(cli: Any, tmp_path: Path) -> None:
    bomb = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        bomb.append(f"{name}: &{name} [" + ", ".join(f"*{prev}" for _ in range(10)) + "]")
    conf = tmp_path / "bomb.yaml"
    conf.write_text("\n".join(bomb) + "\n")
    assert len(conf.read_bytes()) < 1500
    start = time.perf_counter()
    assert "alias bomb" in one_paragraph(launch(cli, conf, tmp_path / "out"), EXIT_USAGE)
    assert time.perf_counter() - start < 5
    dup = tmp_path / "dup.yaml"
    dup.write_text("name: a\nseed: 1\nseed: 2\nspace: {params: {workload.kind: [ebizzy]}}\n")
    text = one_paragraph(launch(cli, dup, tmp_path / "out"), EXIT_USAGE)
    assert "duplicate key 'seed' (first given on line 2)" in text


def test_every_mistake_of_a_file_at_once_each_with_what_is_allowed(
    cli: Any, write_conf: Any, tmp_path: Path
) -> None:
    data = tiny_config(foo=1, replicates=0)
    data["space"]["params"]["vm.vcpu"] = [2]  # a meaning problem, beside the structure's
    data["base"] = {**data["base"], "sim": {"duration_ms": float("nan"), "warmup_ms": 1}}
    data["report"] = {"metrics": ["records_per_second"]}
    text = one_paragraph(launch(cli, write_conf(data), tmp_path / "out"), EXIT_USAGE)
    lines = [line for line in text.splitlines() if line.startswith("  - ")]
    assert len(lines) == 5, text
    assert "foo: unknown key; allowed: name, description, base, space, replicates, seed, report, run" in text
    assert "replicates: input should be greater than or equal to 1 (got 0)" in text
    assert "base.sim.duration_ms: must be a finite number (got nan)" in text
    assert (
        "space.params.vm.vcpu: unknown scenario key; did you mean 'vm.vcpus'?; allowed: vm.vcpus, vm.apic"
        in text
    )
    assert "report.metrics[0]: unknown metric 'records_per_second'; did you mean 'records_per_s'?" in text
    assert not (tmp_path / "out").exists()


def test_typed_options_are_not_reparsed_as_yaml(
    cli: Any, tiny: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    """``-o yes`` is a directory called yes, not the boolean true (options are typed values)."""
    monkeypatch.chdir(tmp_path)
    seen: list[Any] = []

    def fake_launch(config: Any, **_: Any) -> Any:
        seen.append(config)
        raise launch_mod.ClusterError("stop here")

    monkeypatch.setattr(launch_mod, "launch", fake_launch)
    result = invoke(cli, "launch", str(tiny), "-o", "yes", "--address", "null", "-q")
    assert result.exit_code == EXIT_CLUSTER
    assert seen[0].run.output == "yes" and seen[0].run.address == "null"


# -- the file system: exit 3, nothing half-written ------------------------------------------------


@pytest.mark.parametrize("where", ["file", "below a file", "/dev/null", "/proc"])
def test_output_that_cannot_be_a_directory(cli: Any, tiny: Path, tmp_path: Path, where: str) -> None:
    (tmp_path / "afile").write_text("x")
    output = {
        "file": tmp_path / "afile",
        "below a file": tmp_path / "afile" / "out",
        "/dev/null": Path("/dev/null"),
        "/proc": Path("/proc/kvmsweep-test/out"),
    }[where]
    text = one_paragraph(launch(cli, tiny, output), EXIT_IO)
    assert str(output) in text
    assert (tmp_path / "afile").read_text() == "x"


def test_read_only_file_system(cli: Any, tiny: Path, tmp_path: Path, monkeypatch: Any) -> None:
    def refuse(*_: Any, **__: Any) -> Any:
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "out"))

    monkeypatch.setattr(os, "access", lambda *_: True)
    monkeypatch.setattr(Path, "mkdir", refuse)
    text = one_paragraph(launch(cli, tiny, tmp_path / "out"), EXIT_IO)
    assert "read-only file system" in text


@pytest.mark.usefixtures("ray_cluster")
def test_full_disk_during_a_run_keeps_what_was_committed(
    cli: Any, write_conf: Any, tmp_path: Path, monkeypatch: Any
) -> None:
    conf = write_conf(tiny_config(replicates=3))
    out = tmp_path / "out"
    real = store.write_batch
    monkeypatch.setattr(store, "write_batch", disk_full_after_one_batch(real))
    text = one_paragraph(launch(cli, conf, out, "--batch-seconds", "0.0001"), EXIT_IO)
    assert "no space left on the device" in text
    monkeypatch.setattr(store, "write_batch", real)
    status = json.loads(invoke(cli, "status", str(out), "--json").stdout)
    assert status["ok"] >= 1 and status["duplicates"] == 0 and status["pending_commits"] == 0
    assert launch(cli, conf, out).exit_code == 0  # the next launch resumes
    assert json.loads(invoke(cli, "status", str(out), "--json").stdout)["missing"] == 0


# -- the cluster: exit 4, nothing written -------------------------------------------------------------


def test_unreachable_address_leaves_nothing_behind(cli: Any, tiny: Path, tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    out = tmp_path / "out"
    start = time.perf_counter()
    text = one_paragraph(launch(cli, tiny, out, "--address", f"127.0.0.1:{port}"), EXIT_CLUSTER)
    assert time.perf_counter() - start < 30
    assert f"cannot reach the Ray cluster at 127.0.0.1:{port}" in text
    assert not out.exists()  # no manifest.json, no .lock
    out.mkdir()
    one_paragraph(launch(cli, tiny, out, "--address", "nonsense"), EXIT_CLUSTER)
    assert list(out.iterdir()) == []


# -- large designs, progress, the runs read once --------------------------------------------------------


def test_a_million_point_grid_is_counted_in_seconds_in_bounded_memory(write_conf: Any) -> None:
    import tracemalloc

    from sweep import config as config_mod

    levels = {"low": 1, "high": 100_000, "levels": 100}
    data = tiny_config(replicates=1)
    data["space"] = {
        "design": "grid",
        "params": {
            "vm.halt_poll_ns": levels,
            "workload.hackbench.loops": levels,
            "workload.cyclictest.interval_us": {"low": 100, "high": 100_000, "levels": 100},
        },
        "exclude": [{"vm.halt_poll_ns": 1}],
    }
    config = config_mod.load(write_conf(data))
    tracemalloc.start()
    start = time.perf_counter()
    found = points.census(config, pick=5)
    elapsed = time.perf_counter() - start
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert found.design_rows == 10**6 and found.kept_rows == 10**6 - 10**4
    assert (
        found.checked_rows >= 0.9 * points.CHECK_SAMPLE_ROWS and len(found.picked) == 5
    )  # excluded ones aside
    assert elapsed < 30  # ~1 s on an idle core
    assert peak < 64 * 1024 * 1024  # chunks of the grid, not the grid


@pytest.mark.usefixtures("ray_cluster")
def test_progress_lines_when_stderr_is_not_a_terminal(tiny: Path, tmp_path: Path, monkeypatch: Any) -> None:
    import io

    from sweep import config as config_mod
    from sweep.progress import LogProgress, make_progress

    stream = io.StringIO()
    assert isinstance(make_progress(stream=stream), LogProgress)
    monkeypatch.setenv("KVMSWEEP_PROGRESS_S", "0")
    config = config_mod.load(tiny, [f"run.output={tmp_path / 'out'}", "replicates=4"])
    launch_mod.launch(config, progress=make_progress(stream=stream))
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("progress: 0/4 points (0.0 %)")
    assert (
        lines[-1].startswith("progress: 4/4 points (100.0 %)")
        and "0 failed" in lines[-1]
        and "ETA" in lines[-1]
    )


@pytest.mark.usefixtures("ray_cluster")
def test_the_runs_dataset_is_read_once_per_launch(tiny: Path, tmp_path: Path, monkeypatch: Any) -> None:
    from sweep import config as config_mod

    config = config_mod.load(tiny, [f"run.output={tmp_path / 'out'}", "replicates=3"])
    launch_mod.launch(config)
    reads: list[Any] = []
    real = launch_mod.read_own_runs
    monkeypatch.setattr(launch_mod, "read_own_runs", lambda *a: reads.append(a) or real(*a))
    monkeypatch.setattr(store, "read_runs", lambda *a, **k: pytest.fail("store.read_runs called"))
    monkeypatch.setattr(store, "counts", lambda *a, **k: pytest.fail("store.counts called"))
    result = launch_mod.launch(config_mod.load(tiny, [f"run.output={tmp_path / 'out'}", "replicates=3"]))
    assert len(reads) == 1 and result.counts.ok == 3


def test_help_starts_without_the_model_or_the_data_stack() -> None:
    """``sweep --help`` imports only the CLI (typer): the model, polars, scipy, ray stay out."""
    import subprocess

    code = (
        "import sys, time; t = time.perf_counter(); import sweep.cli; "
        "heavy = [m for m in ('model', 'polars', 'pyarrow', 'scipy', 'ray', 'numpy', 'pydantic') if m in sys.modules]; "
        "print(heavy)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), check=True
    )
    assert done.stdout.strip() == "[]", done.stdout
    start = time.perf_counter()
    subprocess.run([*sweep_command("--help")], capture_output=True, env=subprocess_env(), check=True)
    assert time.perf_counter() - start < 3  # ~0.3 s here; generous for a loaded CI box


def test_incomplete_exit_code_is_documented() -> None:
    assert EXIT_INCOMPLETE == 1 and EXIT_USAGE == 2 and EXIT_IO == 3 and EXIT_CLUSTER == 4


@pytest.mark.usefixtures("ray_cluster")
def test_restart_refuses_the_output_of_another_sweep(
    cli: Any, tiny: Path, write_conf: Any, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    assert launch(cli, tiny, out).exit_code == 0
    before = tree(out)
    other = write_conf(tiny_config(name="other", replicates=1), "other.yaml")
    text = one_paragraph(launch(cli, other, out, "--restart"), EXIT_USAGE)
    assert "it holds sweep 'tiny', not 'other'" in text
    assert tree(out) == before


@pytest.mark.usefixtures("ray_cluster")
def test_a_resumed_sweep_records_the_code_version_of_each_row(
    tiny: Path, tmp_path: Path, monkeypatch: Any
) -> None:
    from sweep import config as config_mod
    from sweep import manifest
    from sweep.status import status

    out = tmp_path / "out"
    overrides = [f"run.output={out}", "replicates=4", "run.batch_seconds=0.0001"]
    real = store.write_batch
    monkeypatch.setattr(manifest, "code_version", lambda: "v-one")
    monkeypatch.setattr(store, "write_batch", disk_full_after_one_batch(real))
    with pytest.raises(OSError):  # the CLI turns it into exit 3; what was committed stays
        launch_mod.launch(config_mod.load(tiny, overrides))
    first = store.read_runs(out, ["code_version"]).column("code_version").to_pylist()
    assert first and set(first) == {"v-one"} and len(first) < 4
    monkeypatch.setattr(store, "write_batch", real)
    monkeypatch.setattr(manifest, "code_version", lambda: "v-two")
    launch_mod.launch(config_mod.load(tiny, overrides))
    versions = store.read_runs(out, ["code_version"]).column("code_version").to_pylist()
    assert len(versions) == 4 and versions.count("v-one") == len(first)  # the old rows keep theirs
    assert store.code_versions(out) == ["v-one", "v-two"]
    info = manifest.read(out)
    assert [x["code_version"] for x in info["launches"]] == ["v-one", "v-two"]
    assert info["code_version"] == "v-two" and status(out).code_version == "v-one, v-two"
