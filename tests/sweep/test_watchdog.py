"""The watchdog finds a Ray session's processes by mark or by open file, kills them, removes the dir;
and a loopback-only head is told apart from one on the external address."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from sweep import runner, watchdog
from tests.sweep import procs

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]


def _sleeper(env: dict[str, str], stdout: Any = None) -> subprocess.Popen[bytes]:
    """A process that sleeps, once it runs (exec'd: its environment is its own)."""
    proc = subprocess.Popen(SLEEPER, env=env, stdout=stdout)
    deadline = time.monotonic() + 30
    while "time.sleep(60)" not in procs.cmdline(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.01)
    return proc


def test_session_processes_are_the_marked_and_those_with_files_in_the_temp_dir(tmp_path: Path) -> None:
    mark = "0123abcd"
    base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    marked = _sleeper({**base, watchdog.MARK_ENV: mark})
    logs = tmp_path / "session_x" / "logs"
    logs.mkdir(parents=True)
    with open(logs / "worker.out", "w") as log:
        logging = _sleeper(base, stdout=log)  # no mark, but its stdout is a file in the session
    other = _sleeper({**base, watchdog.MARK_ENV: "another-mark"})
    started = [marked, logging, other]
    try:
        found = watchdog.session_processes(mark, tmp_path, spare={os.getpid()})
        assert marked.pid in found and logging.pid in found and other.pid not in found
        assert watchdog.kill_session(mark, tmp_path, spare={os.getpid()}) >= 2
        assert marked.wait(5) == logging.wait(5) == -9
        assert other.poll() is None
    finally:
        for proc in started:
            proc.kill()
            proc.wait()


def test_watchdog_cleans_up_when_its_launcher_dies(tmp_path: Path) -> None:
    """A stand-in launcher starts a marked process and the watchdog, then is SIGKILLed."""
    temp_dir = tmp_path / "kvmsweep-ray-test"
    temp_dir.mkdir()
    code = f"""
import os, subprocess, sys, time
mark = "feedbeef"
wd = subprocess.Popen([sys.executable, "-I", {watchdog.__file__!r}, mark, {str(temp_dir)!r}, str(os.getpid())],
                      stdin=subprocess.PIPE, start_new_session=True)
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                         env={{**os.environ, {watchdog.MARK_ENV!r}: mark}})
print(wd.pid, child.pid, flush=True)
time.sleep(60)
"""
    launcher = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert launcher.stdout is not None
    wd_pid, child_pid = map(int, launcher.stdout.readline().split())
    try:
        launcher.kill()
        launcher.wait()
        assert procs.wait_dead({wd_pid, child_pid}, 10) == set()
        assert not temp_dir.exists()
    finally:
        procs.reap({wd_pid, child_pid}, 0)


def _listening(host: str, port: int = 0) -> socket.socket:
    sock = socket.socket()
    sock.bind((host, port))
    sock.listen()
    return sock


def test_a_loopback_only_head_is_joined_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """The machine's "external" address is 127.0.0.2 here, so that the test listens on loopback only."""
    from ray._private import services

    monkeypatch.setattr(services, "get_node_ip_address", lambda address=None: "127.0.0.2")
    with _listening("127.0.0.1") as loopback:
        port = loopback.getsockname()[1]
        # Only 127.0.0.1 answers: a head on loopback only, joined on loopback.
        assert runner.loopback_only(f"127.0.0.1:{port}") is True
        assert runner.loopback_only(f"localhost:{port}") is True
        # The external address answers too (plain `ray start --head`): Ray's own way.
        with _listening("127.0.0.2", port):
            assert runner.loopback_only(f"127.0.0.1:{port}") is False
    assert runner.loopback_only("head.example:6379") is False
    assert runner.loopback_only("10.0.0.1:6379") is False
    assert runner.loopback_only(f"ray://127.0.0.1:{port}") is False


@pytest.mark.parametrize("address", ["auto", "127.0.0.1", ""])
def test_addresses_without_a_port_are_left_to_ray(address: str) -> None:
    assert runner.loopback_only(address) is False
