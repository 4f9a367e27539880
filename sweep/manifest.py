"""``OUTPUT/manifest.json``: what a sweep is, what produced it, and how far it got.

Keys: ``name``, ``config`` (the resolved sweep config), ``config_hash``,
``seed``, ``versions`` (packages), ``code_version`` (``git describe`` of the
source tree if it is a git checkout, else the package version), ``created``,
``updated``, ``counts`` {ok, error, missing, total}, ``schema`` (every column
of ``runs/`` and ``exits/`` with its type, role, unit, meaning, kernel counter
and direction: :func:`sweep.store.schema_json`; the report reads column roles
from here), ``launches`` (each ``sweep launch`` of this output: started,
finished, elapsed_s, runs written), ``elapsed_s`` (their real wall time added
up) and, for sobol and morris, ``problem`` (the SALib problem plus what the
analysis needs).  It is rewritten atomically; the datasets, not the manifest,
are the truth about which points are done (``sweep status`` recounts them).
"""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import json
import platform
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sweep import design, store
from sweep.config import SweepConfig

MANIFEST_FILE = "manifest.json"
VERSIONED_PACKAGES = ("kvmsweep", "ray", "pyarrow", "polars", "numpy", "SALib", "scipy", "pydantic")
GIT_TIMEOUT_S = 5


def path(output: Path) -> Path:
    return output / MANIFEST_FILE


def read(output: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path(output).read_text())
    except FileNotFoundError:
        return None


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in VERSIONED_PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return out


def code_version() -> str:
    """``git describe --always --dirty`` of this source tree, else the package version."""
    root = Path(__file__).resolve().parent.parent
    try:
        done = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=GIT_TIMEOUT_S,
            check=False,
        )
        if done.returncode == 0 and done.stdout.strip():
            return done.stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    try:
        return importlib.metadata.version("kvmsweep")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


@dataclass
class Clock:
    """The real elapsed time of the launches of one output: the earlier launches (from the previous
    manifest) and this one, from :meth:`start` (its construction) to :meth:`stop`."""

    previous: list[dict[str, Any]] = field(default_factory=list)
    started: str = field(default_factory=now)
    finished: str | None = None
    _t0: float = field(default_factory=time.monotonic)
    _elapsed: float | None = None
    done_before: int | None = None

    @staticmethod
    def resume(previous_manifest: dict[str, Any] | None) -> Clock:
        """A clock started now, after the launches the previous manifest records."""
        launches = (previous_manifest or {}).get("launches") or []
        return Clock(previous=[dict(x) for x in launches if isinstance(x, dict)])

    def stop(self) -> None:
        self._elapsed = time.monotonic() - self._t0
        self.finished = now()

    @property
    def elapsed_s(self) -> float:
        return self._elapsed if self._elapsed is not None else time.monotonic() - self._t0

    def launches(self, written: int | None) -> list[dict[str, Any]]:
        this = {
            "started": self.started,
            "finished": self.finished,
            "elapsed_s": round(self.elapsed_s, 3),
            "runs_written": written,
        }
        return [*self.previous, this]

    def total_s(self) -> float:
        return sum(float(x.get("elapsed_s") or 0.0) for x in self.previous) + self.elapsed_s


def build(
    config: SweepConfig,
    total: int,
    created: str | None,
    counts: store.Counts | None,
    clock: Clock | None = None,
) -> dict[str, Any]:
    ok = counts.ok if counts else 0
    error = counts.error if counts else 0
    manifest: dict[str, Any] = {
        "name": config.name,
        "config": config.to_json(),
        "config_hash": config.config_hash(),
        "seed": config.seed,
        "versions": versions(),
        "code_version": code_version(),
        "created": created or (clock.started if clock is not None else now()),
        "updated": now(),
        "counts": {"ok": ok, "error": error, "missing": max(total - ok - error, 0), "total": total},
        "schema": store.schema_json(),
    }
    if clock is not None:
        if clock.done_before is None:
            clock.done_before = ok + error
        manifest["launches"] = clock.launches(max(ok + error - clock.done_before, 0))
        manifest["elapsed_s"] = round(clock.total_s(), 3)
    problem = design.salib_problem(config.space)
    if problem is not None:
        problem["X_file"] = store.DESIGN_FILE
        manifest["problem"] = problem
    return manifest


def write(output: Path, manifest: dict[str, Any]) -> None:
    store.write_json_atomic(path(output), manifest)
