"""Turn points and their outcomes into Arrow tables of the runs and exits schemas.

A metric the model reports as NaN does not apply to the run (no sample, a
share of zero time: ``model.result``); it is stored as null, so that every
reader's mean, sum and count skip it (a NaN would make them NaN).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from model.result import METRIC_NAMES
from sweep import store
from sweep.points import Point
from sweep.worker import Outcome

WORKLOAD_KEY = "workload.kind"  # the scenario key behind the ``workload`` partition
HARDWARE_KEY = "hardware"


@dataclass(frozen=True, slots=True)
class Stamp:
    """What every row of a sweep carries besides its point."""

    sweep: str
    config_hash: str
    code_version: str  # sweep.manifest.code_version() at the launch that ran the rows


def _common(stamp: Stamp, point: Point) -> dict[str, Any]:
    return {
        "point_id": point.point_id,
        "sweep": stamp.sweep,
        "config_hash": stamp.config_hash,
        "replicate": point.replicate,
        "seed": point.seed,
        "hardware": point.flat[HARDWARE_KEY],
        "workload": point.flat[WORKLOAD_KEY],
    }


def applicable(value: float) -> float | None:
    """A metric value as stored: null where the model says it does not apply (NaN)."""
    return None if math.isnan(value) else value


def tables(stamp: Stamp, points: Sequence[Point], outcomes: Sequence[Outcome]) -> tuple[pa.Table, pa.Table]:
    """(runs, exits) tables for one batch; outcomes are in the points' order."""
    metric_columns = store.metric_columns()
    runs: list[dict[str, Any]] = []
    exits: list[dict[str, Any]] = []
    for point, outcome in zip(points, outcomes, strict=True):
        if point.point_id != outcome.point_id:
            raise RuntimeError(f"outcome {outcome.point_id} returned for point {point.point_id}")
        common = _common(stamp, point)
        metrics = dict(zip(METRIC_NAMES, outcome.metrics, strict=True))
        row = {
            **point.flat,
            **common,
            "design_index": point.design_index,
            "status": store.STATUS_OK if outcome.ok else store.STATUS_ERROR,
            "error_type": outcome.error_type,
            "error": outcome.error,
            "wall_s": outcome.wall_s,
            "code_version": stamp.code_version,
        }
        row.update({m: applicable(metrics[m]) for m in metric_columns})
        runs.append(row)
        for reason, detail, samples, total_ns, min_ns, max_ns in outcome.exits:
            exits.append(
                {
                    **common,
                    "reason": reason,
                    "detail": detail,
                    "samples": samples,
                    "total_ns": total_ns,
                    "min_ns": min_ns,
                    "max_ns": max_ns,
                }
            )
    return (
        pa.Table.from_pylist(runs, schema=store.runs_schema()),
        pa.Table.from_pylist(exits, schema=store.exits_schema()),
    )
