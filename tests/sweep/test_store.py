"""Store: schemas, atomic commits, crash recovery and compaction (no Ray)."""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from model import METRIC_NAMES, flat_schema
from sweep import config as config_mod
from sweep import points, rows, store
from sweep.worker import Outcome
from tests.sweep.conftest import tiny_config


def _batches(n_batches: int = 4) -> list[tuple[list[points.Point], list[Outcome]]]:
    cfg = config_mod.from_dict(
        tiny_config(
            space={
                "design": "grid",
                "params": {"hardware": ["cascadelake", "rome"], "vm.guest_hz": [100, 250, 1000]},
            }
        )
    )
    pts = list(points.iter_points(cfg))
    size = len(pts) // n_batches
    out = []
    for i in range(n_batches):
        chunk = pts[i * size : (i + 1) * size]
        outcomes = [
            Outcome(
                p.point_id,
                0.01,
                tuple(float(j + p.replicate) for j in range(len(METRIC_NAMES))),
                (("HLT", "", 3, 300, 90, 110),),
            )
            for p in chunk
        ]
        out.append((chunk, outcomes))
    return out


STAMP = rows.Stamp("t", "hash")


def _write_all(output: Path, batches: list[tuple[list[points.Point], list[Outcome]]]) -> None:
    for pts, outcomes in batches:
        store.write_batch(output, *rows.tables(STAMP, pts, outcomes))


def test_schema_follows_the_contract() -> None:
    names = store.runs_schema().names
    fixed = [
        "point_id",
        "sweep",
        "config_hash",
        "design_index",
        "replicate",
        "seed",
        "status",
        "error_type",
        "error",
        "wall_s",
    ]
    assert names[: len(fixed)] == fixed
    params = list(flat_schema())
    assert names[len(fixed) : len(fixed) + len(params)] == params
    assert names[len(fixed) + len(params) : -1] == [m for m in METRIC_NAMES if m != "wall_s"]
    assert names[-1] == "workload"
    assert store.exits_schema().names == [
        "point_id", "sweep", "config_hash", "replicate", "seed", "hardware", "workload",
        "reason", "detail", "samples", "total_ns", "min_ns", "max_ns",
    ]  # fmt: skip


def test_write_and_read_back(tmp_path: Path) -> None:
    batches = _batches()
    _write_all(tmp_path, batches)
    table = store.read_runs(tmp_path)
    assert table.schema == store.runs_schema()
    assert table.num_rows == sum(len(b[0]) for b in batches)
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == ["hardware=cascadelake", "hardware=rome"]
    exits = store.exits_dataset(tmp_path)
    assert exits is not None and exits.to_table().num_rows == table.num_rows
    one_file = pq.read_table(store.data_files(tmp_path, store.RUNS_DIR)[0])
    assert one_file.schema.names == store.runs_schema().names  # self-describing files


def test_crash_before_commit_point_leaves_nothing_visible(tmp_path: Path) -> None:
    (pts, outcomes), *_ = _batches()
    ready = store.stage(tmp_path, *rows.tables(STAMP, pts, outcomes))
    os.replace(ready, ready.with_name(ready.name + store.PENDING_SUFFIX))  # as if killed while writing
    assert store.done_ids(tmp_path) == set()
    store.recover(tmp_path)
    assert not any((tmp_path / store.STAGING_DIR).iterdir())
    assert store.done_ids(tmp_path) == set()


def test_crash_during_commit_is_rolled_forward_once(tmp_path: Path) -> None:
    (pts, outcomes), *_ = _batches(2)
    ready = store.stage(tmp_path, *rows.tables(STAMP, pts, outcomes))
    # Move only the first staged file, as if killed in the middle of the commit.
    first = min((ready / store.EXITS_DIR).rglob("*.parquet"))
    dst = tmp_path / store.EXITS_DIR / first.relative_to(ready / store.EXITS_DIR)
    dst.parent.mkdir(parents=True)
    os.replace(first, dst)
    assert store.pending_commits(tmp_path) == 1
    assert store.recover(tmp_path) == 1
    ids = store.read_runs(tmp_path, ["point_id"]).column("point_id").to_pylist()
    assert sorted(ids) == sorted(p.point_id for p in pts)
    assert store.exits_dataset(tmp_path).to_table().num_rows == len(pts)  # type: ignore[union-attr]


def test_compact_keeps_rows_once(tmp_path: Path) -> None:
    batches = _batches(6)
    _write_all(tmp_path, batches)
    before = store.read_runs(tmp_path).sort_by("point_id")
    n_before = len(store.data_files(tmp_path, store.RUNS_DIR))
    result = store.compact(tmp_path)
    assert result.files_before > result.files_after
    assert len(store.data_files(tmp_path, store.RUNS_DIR)) == 2 < n_before  # one per partition
    after = store.read_runs(tmp_path).sort_by("point_id")
    assert after.equals(before)
    assert store.counts(tmp_path).duplicates == 0
    assert store.compact(tmp_path).files_after == result.files_after  # idempotent


def test_compact_crash_is_rolled_forward_without_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _write_all(tmp_path, _batches(6))
    before = store.read_runs(tmp_path).sort_by("point_id")

    def die(output: Path, ready: Path) -> None:
        raise KeyboardInterrupt  # killed right after the journal became ready

    monkeypatch.setattr(store, "commit", die)
    with pytest.raises(KeyboardInterrupt):
        store.compact(tmp_path)
    monkeypatch.undo()
    assert store.pending_commits(tmp_path) == 1
    store.recover(tmp_path)
    after = store.read_runs(tmp_path).sort_by("point_id")
    assert after.equals(before)


def test_lock_refuses_a_second_writer(tmp_path: Path) -> None:
    with (
        store.locked(tmp_path),
        pytest.raises(RuntimeError, match="another sweep process"),
        store.locked(tmp_path),
    ):
        pass
