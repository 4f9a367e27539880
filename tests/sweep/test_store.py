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


STAMP = rows.Stamp("t", "hash", "v-test")


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
        "code_version",
    ]
    assert names[: len(fixed)] == fixed
    params = [p for p in flat_schema() if p != "hardware"]
    assert names[len(fixed) : len(fixed) + len(params)] == params
    assert names[len(fixed) + len(params) : -2] == [m for m in METRIC_NAMES if m != "wall_s"]
    assert names[-2:] == ["hardware", "workload"]
    assert store.exits_schema().names == [
        "point_id", "sweep", "config_hash", "replicate", "seed",
        "reason", "detail", "samples", "total_ns", "min_ns", "max_ns", "hardware", "workload",
    ]  # fmt: skip
    # the files hold everything but the partitions
    assert store.runs_file_schema().names == names[:-2]
    assert store.exits_file_schema().names == store.exits_schema().names[:-2]


def test_schema_is_derived_from_the_result_record(monkeypatch: pytest.MonkeyPatch) -> None:
    """A metric added to model.result (with its ci95 companion) reaches the schema and the
    manifest's column roles with no other edit."""
    from model import result

    extended = {**result.METRICS, "spinlock_steals": "locks taken out of turn", "steal_pct_ci95_pct": ""}
    del extended["steal_pct_ci95_pct"]
    extended["steal_pct_ci95_pct"] = result.Metric("within-run interval of steal_pct")
    monkeypatch.setattr(result, "METRICS", extended)
    monkeypatch.setattr(result, "METRIC_NAMES", tuple(extended))
    monkeypatch.setattr(store, "METRIC_NAMES", tuple(extended))
    store.runs_columns.cache_clear()
    try:
        roles = {c["name"]: c for c in store.schema_json()["runs"]}
    finally:
        store.runs_columns.cache_clear()
    assert roles["spinlock_steals"]["role"] == store.ROLE_METRIC
    assert roles["spinlock_steals"]["unit"] == "count"
    assert roles["steal_pct_ci95_pct"] == {
        "name": "steal_pct_ci95_pct",
        "type": "double",
        "role": store.ROLE_UNCERTAINTY,
        "unit": "%",
        "meaning": "within-run interval of steal_pct",
        "of": "steal_pct",
    }
    assert roles["messages_per_s"]["better"] == "higher"
    assert roles["steal_pct"]["counter"].startswith("guest /proc/stat steal")
    assert roles["hardware"]["partition"] and roles["hardware"]["role"] == store.ROLE_PARAM
    assert roles["workload"]["role"] == store.ROLE_PARTITION
    assert roles["sim_s"]["role"] == store.ROLE_BOOKKEEPING
    assert roles["vm.halt_poll_ns"]["default"] == 200_000 and roles["vm.halt_poll_ns"]["unit"] == "ns"


def test_not_applicable_metrics_are_null_and_readers_agree(tmp_path: Path) -> None:
    """NaN from the model (does not apply) is stored as null; pandas, Polars and DuckDB read the
    partitioned directory as it is, with the partitions as columns."""
    import duckdb
    import pandas as pd
    import polars as pl

    pts, outcomes = _batches(1)[0]
    nan_at = METRIC_NAMES.index("timer_latency_p99_us")
    outcomes = [
        Outcome(
            o.point_id,
            o.wall_s,
            tuple(float("nan") if j == nan_at else v for j, v in enumerate(o.metrics)),
            o.exits,
        )
        for o in outcomes
    ]
    _write_all(tmp_path, [(pts, outcomes)])
    files = store.data_files(tmp_path, store.RUNS_DIR)
    assert files and all("hardware" not in pq.read_schema(f).names for f in files)
    runs = pq.read_table(files[0])
    assert runs.column("timer_latency_p99_us").null_count == runs.num_rows
    frame = pd.read_parquet(tmp_path / "runs")
    assert len(frame) == len(pts) and set(frame["hardware"]) == {"cascadelake", "rome"}
    assert frame["timer_latency_p99_us"].isna().all()
    lazy = pl.scan_parquet(tmp_path / "runs" / "**" / "*.parquet", hive_partitioning=True)
    means = lazy.group_by("hardware").agg(pl.col("timer_latency_p99_us").mean(), pl.col("steal_pct").mean())
    got = means.collect()
    assert got["timer_latency_p99_us"].null_count() == 2 and got["steal_pct"].is_finite().all()
    pattern = str(tmp_path / "runs" / "*" / "*" / "*.parquet")
    hw = duckdb.sql(
        f"SELECT hardware, avg(steal_pct) FROM read_parquet('{pattern}', hive_partitioning=1) GROUP BY 1"
    ).fetchall()
    assert sorted(h for h, _ in hw) == ["cascadelake", "rome"]


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
    assert one_file.schema.names == store.runs_file_schema().names  # the partitions are in the path only


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


def test_data_dictionary_is_in_sync() -> None:
    """docs/dataset.md is generated from the schema: regenerate it with
    ``python -m sweep.manifest > docs/dataset.md`` after adding a metric or parameter."""
    from sweep import manifest

    doc = (Path(__file__).resolve().parents[2] / "docs" / "dataset.md").read_text()
    assert doc == manifest.dataset_doc(), (
        "docs/dataset.md is stale: python -m sweep.manifest > docs/dataset.md"
    )
    for column in store.runs_columns():
        assert f"| `{column.name}` |" in doc
        if column.role == store.ROLE_METRIC:
            assert column.unit and column.meaning, column.name


def test_manifest_records_schema_and_real_elapsed_time(tmp_path: Path) -> None:
    from sweep import manifest

    cfg = config_mod.from_dict(tiny_config())
    clock = manifest.Clock.resume(None)
    first = manifest.build(cfg, 12, None, None, clock)
    assert first["schema"] == store.schema_json() and first["created"] == clock.started
    clock.stop()
    done = manifest.build(cfg, 12, first["created"], store.Counts(12, 0, 12, 12), clock)
    assert done["launches"][0]["finished"] and done["launches"][0]["runs_written"] == 12
    resumed = manifest.Clock.resume(done)
    again = manifest.build(cfg, 12, done["created"], store.Counts(12, 0, 12, 12), resumed)
    assert len(again["launches"]) == 2 and again["launches"][1]["runs_written"] == 0
    assert again["elapsed_s"] >= done["elapsed_s"] == done["launches"][0]["elapsed_s"]
