"""``OUTPUT/manifest.json``: what a sweep is, what produced it, and how far it got.

Keys: ``name``, ``config`` (the resolved sweep config), ``config_hash``,
``seed``, ``versions`` (packages), ``code_version`` (``git describe`` of the
source tree if it is a git checkout, else the package version, at the latest
launch; each launch records its own, and each row of ``runs/`` the one that
ran it, so a resumed sweep that mixes versions says so), ``created``,
``updated``, ``counts`` {ok, error, missing, total}, ``schema`` (every column
of ``runs/`` and ``exits/`` with its type, role, unit, meaning, kernel counter
and direction: :func:`sweep.store.schema_json`; the report reads column roles
from here), ``launches`` (each ``sweep launch`` of this output: started,
finished, elapsed_s, runs written, code version), ``elapsed_s`` (their real wall time added
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
    code_version: str = field(default_factory=lambda: code_version())  # of this launch, asked of git once

    @staticmethod
    def resume(previous_manifest: dict[str, Any] | None) -> Clock:
        """A clock started now, after the launches the previous manifest records."""
        launches = (previous_manifest or {}).get("launches") or []
        return Clock(previous=[dict(x) for x in launches if isinstance(x, dict)])

    def follows(self, previous_manifest: dict[str, Any] | None) -> Clock:
        """Count this launch after those the previous manifest records (for a clock started earlier)."""
        self.previous = Clock.resume(previous_manifest).previous
        return self

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
            "code_version": self.code_version,
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
        "code_version": clock.code_version if clock is not None else code_version(),
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


# -- the data dictionary ---------------------------------------------------------------------------

DATASET_DOC_INTRO = """# The dataset: every column

Generated from the schema (`sweep.store.runs_columns`, `exits_columns`, themselves derived from
`model.result` and `model.scenario`) by `python -m sweep.manifest > docs/dataset.md`; a test keeps
this file in sync. Every sweep also writes this schema into its `manifest.json` (key `schema`).

`runs/` has one row per run and `exits/` one row per (run, exit reason, MSR), both hive-partitioned
as `hardware=H/workload=W/part-*.parquet`. The partition columns are in the directory names only:
read the directory with hive partitioning (pandas `pd.read_parquet(dir)`, Polars
`pl.scan_parquet(glob, hive_partitioning=True)`, DuckDB `read_parquet(glob, hive_partitioning=1)`).
A metric that does not apply to a run (a latency no event measured, a workload's figure on another
workload) is **null**, never NaN; a failed run (`status = 'error'`) has null metrics.

Roles: `id` identifies the run; `status` says whether it finished; `param` is a scenario parameter
(`default`: the scenario's default); `metric` a measured result (`better`: which direction is
better); `uncertainty` the within-run 95 % half-width of the metric it names, in % of it;
`bookkeeping` describes the run rather than the system; `partition` is in the paths only; `exit`
is a column of the exit table.
"""


def _cell(text: object) -> str:
    return str(text if text is not None else "").replace("|", "\\|").replace("\n", " ")


def _doc_table(columns: list[dict[str, Any]], with_default: bool) -> list[str]:
    head = ["column", "type", "role", "unit", "meaning", "kernel counter / source", "better"]
    head += ["default"] if with_default else []
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for c in columns:
        row = [f"`{c['name']}`", c["type"], c["role"], c.get("unit", ""), c.get("meaning", "")]
        of = f" (of `{c['of']}`)" if c.get("of") else ""
        row[4] = row[4] + of
        row += [c.get("counter", ""), c.get("better", "")]
        if with_default:
            row.append("" if c["role"] != store.ROLE_PARAM else json.dumps(c.get("default")))
        lines.append("| " + " | ".join(_cell(x) for x in row) + " |")
    return lines


def dataset_doc() -> str:
    """``docs/dataset.md``: every column of both datasets with type, role, unit, meaning, counter."""
    schema = store.schema_json()
    runs = schema["runs"]
    params = [c for c in runs if c["role"] == store.ROLE_PARAM]
    others = [c for c in runs if c["role"] != store.ROLE_PARAM]
    out = [DATASET_DOC_INTRO]
    out += [f"## runs/: results and bookkeeping ({len(others)} columns)", ""]
    out += _doc_table(others, with_default=False)
    out += ["", f"## runs/: scenario parameters ({len(params)} columns)", ""]
    out += _doc_table(params, with_default=True)
    out += ["", f"## exits/ ({len(schema['exits'])} columns)", ""]
    out += _doc_table(schema["exits"], with_default=False)
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    print(dataset_doc(), end="")
