"""Clean up an in-process Ray when the launcher that started it is gone.

``python watchdog.py MARK TEMP_DIR LAUNCHER_PID`` is started by
:func:`sweep.runner.start_ray` before ``ray.init``, in its own session, with a
pipe on stdin whose other end only the launcher holds.  The pipe reaches EOF
when the launcher closes it (a normal stop) or dies, however it dies (SIGKILL
included: the kernel closes a dead process's files).  Then the watchdog:

1. SIGKILLs every process of the session, repeatedly until none is left,
   for at most :data:`KILL_WINDOW_S`: each process of this user whose
   environment holds ``KVMSWEEP_RAY_SESSION=MARK`` (the launcher puts it in
   its environment for ``ray.init``, so that GCS, raylet, the dashboard head,
   the agents and every worker inherit it; no other process has this random
   mark) or that has a file open under ``TEMP_DIR`` (see :func:`session_processes`);
2. removes ``TEMP_DIR``, the per-launch Ray temp dir (sessions, sockets, logs).

Why: Ray fate-shares its direct children with the driver (``prctl(PR_SET_PDEATHSIG)``
in ``ray._private.services.start_ray_process``), but the raylet's own
children do not: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` notice
that the raylet died within ~2 s (``ray._private.process_watcher``) and then
take about a minute to exit, and workers take a few seconds.  Ray keeps every
session directory.

Standard library only, and run with ``python -I``: it must start fast and
must not depend on the launcher's import path.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
import time
from pathlib import Path

MARK_ENV = "KVMSWEEP_RAY_SESSION"
LOG_ENV = "KVMSWEEP_WATCHDOG_LOG"  # a file to log each kill to (debugging)
KILL_WINDOW_S = 30.0  # keep killing marked processes this long at most
QUIET_S = 1.0  # ... and stop once none has been seen for this long
POLL_S = 0.1


def session_processes(mark: str, temp_dir: Path, spare: set[int]) -> list[int]:
    """Live processes (of this user: others' are unreadable) of the Ray session.

    A process is the session's if its environment holds the mark, or if it has a file open
    under the session's temp dir (Ray points every process's stdout and stderr at a log file
    there).  The second test is needed: ``setproctitle``, with which Ray titles its processes
    ``ray::...``, may reuse the memory of the initial environment, and ``/proc/PID/environ``
    then reads as zeros.
    """
    needle = f"{MARK_ENV}={mark}".encode()
    prefix = str(temp_dir) + os.sep
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        pid = int(proc.name)
        if pid in spare:
            continue
        try:
            if needle in (proc / "environ").read_bytes().split(b"\0") or any(
                os.readlink(fd).startswith(prefix) for fd in (proc / "fd").iterdir()
            ):
                found.append(pid)
        except OSError:  # gone, or not ours
            continue
    return found


def kill_session(mark: str, temp_dir: Path, spare: set[int]) -> int:
    """SIGKILL the session's processes until none is seen for QUIET_S; the number killed."""
    killed = 0
    deadline = time.monotonic() + KILL_WINDOW_S
    quiet_since = time.monotonic()
    while time.monotonic() < deadline and time.monotonic() - quiet_since < QUIET_S:
        pids = session_processes(mark, temp_dir, spare)
        _log(f"{time.monotonic():.3f} killing {pids}")
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except OSError:
                pass
        if pids:
            quiet_since = time.monotonic()
        time.sleep(POLL_S)
    return killed


def _log(line: str) -> None:
    path = os.environ.get(LOG_ENV)
    if path:
        with open(path, "a") as log:
            log.write(line + "\n")


def main(argv: list[str]) -> int:
    mark, temp_dir, launcher = argv[1], Path(argv[2]), int(argv[3])
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # only the pipe decides
    while os.read(0, 4096):  # EOF: the launcher closed the pipe or died
        pass
    kill_session(mark, temp_dir, {os.getpid(), launcher})
    shutil.rmtree(temp_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
