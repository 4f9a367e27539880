"""``sweep status``: how far a sweep got, as data (:func:`status` returns a :class:`Status`)."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from sweep import store
from sweep.errors import UserError
from sweep.launch import read_manifest, read_own_runs, survey_files


@dataclass(frozen=True)
class Status:
    name: str
    output: str
    config_hash: str
    code_version: str | None  # the versions that ran the rows, comma-separated (else the manifest's)
    created: str | None
    updated: str | None
    ok: int
    error: int
    missing: int
    total: int
    duplicates: int
    pending_commits: int
    files: dict[str, int]
    partitions: list[dict[str, Any]] = field(default_factory=list)
    error_types: dict[str, int] = field(default_factory=dict)
    foreign_files: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def status(output: Path) -> Status:
    """Count what ``output`` holds (the datasets are the truth; the manifest gives the total).

    Reads only.  Raises :class:`~sweep.errors.UserError` if ``output`` is not a sweep output.
    """
    info = read_manifest(output) if output.is_dir() else None
    if info is None:
        raise UserError(f"{output} is not a sweep output (no manifest.json)", "sweep status")
    ours, foreign = survey_files(output)
    runs = read_own_runs(
        output, ours, ["point_id", "status", "error_type", "hardware", "workload", "code_version"]
    ).to_pylist()
    by_part: dict[tuple[str, str], Counter[str]] = {}
    errors: Counter[str] = Counter()
    for row in runs:
        by_part.setdefault((row["hardware"], row["workload"]), Counter())[row["status"]] += 1
        if row["status"] == store.STATUS_ERROR:
            errors[row["error_type"] or "?"] += 1
    ok = sum(c[store.STATUS_OK] for c in by_part.values())
    error = sum(errors.values())
    total = int(info["counts"]["total"])
    return Status(
        name=str(info["name"]),
        output=str(output),
        config_hash=str(info["config_hash"]),
        code_version=", ".join(sorted({r["code_version"] for r in runs if r["code_version"]}))
        or info.get("code_version"),
        created=info.get("created"),
        updated=info.get("updated"),
        ok=ok,
        error=error,
        missing=max(total - ok - error, 0),
        total=total,
        duplicates=len(runs) - len({r["point_id"] for r in runs}),
        pending_commits=store.pending_commits(output),
        files={top: sum(1 for p in ours if p.parts[0] == top) for top in (store.RUNS_DIR, store.EXITS_DIR)},
        partitions=[
            {"hardware": h, "workload": w, "ok": c[store.STATUS_OK], "error": c[store.STATUS_ERROR]}
            for (h, w), c in sorted(by_part.items())
        ],
        error_types=dict(errors.most_common()),
        foreign_files=[str(p) for p in foreign],
    )
