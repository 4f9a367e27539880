"""``sweep plan``'s run-time estimate: cost strata, the timed points, the spread (sweep/plan.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from model import Scenario
from sweep import config as config_mod
from sweep import plan as plan_mod
from sweep import points
from tests.sweep.conftest import REPO, TINY_BASE, invoke, tiny_config

FAKE = "tests.sweep.test_plan:fake_simulate"


class FakeClock:
    """What the fake simulator "spends": ``per_unit[workload] x work_ms ** power`` seconds a point."""

    def __init__(self) -> None:
        self.now = 0.0
        self.per_unit = {"hackbench": 1e-3, "cpu-bound": 5e-3}
        self.power = 1.0
        self.runs = 0

    def cost(self, flat: dict[str, Any]) -> float:
        return self.per_unit[flat["workload.kind"]] * plan_mod.work_ms(flat) ** self.power

    def __call__(self) -> float:
        return self.now


CLOCK = FakeClock()


def fake_simulate(scenario: Scenario, seed: int) -> None:
    CLOCK.now += CLOCK.cost(scenario.flat())
    CLOCK.runs += 1


@pytest.fixture
def clock() -> FakeClock:
    CLOCK.__init__()  # type: ignore[misc]
    return CLOCK


def _config(**overrides: Any) -> config_mod.SweepConfig:
    """Two partitions (hackbench, cpu-bound) x 3 VM sizes x 2 overcommits x 2 windows: rows whose
    proxy spans 1 x 5 / 2 = 2.5 to 4 x 20 = 80 vCPU-ms."""
    data = tiny_config(
        base={**TINY_BASE, "topology": {"sockets": 1, "cores_per_socket": 4, "threads_per_core": 1}},
        space={
            "design": "grid",
            "params": {
                "workload.kind": ["hackbench", "cpu-bound"],
                "vm.vcpus": [1, 2, 4],
                "overcommit": [1, 2],
                "sim.duration_ms": [5, 20],
            },
        },
        replicates=3,
        **overrides,
    )
    return config_mod.from_dict(data)


def _truth(config: config_mod.SweepConfig, clock: FakeClock) -> float:
    """CPU seconds of every point of the sweep, point by point."""
    return sum(clock.cost(p.flat) for p in points.iter_points(config))


def test_work_ms_is_the_measured_vms_running_vcpu_time() -> None:
    flat = {"vm.vcpus": 48, "sim.duration_ms": 130.0, "overcommit": 1.0}
    assert plan_mod.work_ms(flat) == 48 * 130
    assert plan_mod.work_ms({**flat, "overcommit": 2.0}) == 48 * 130 / 2  # each vCPU gets half its pCPU
    assert plan_mod.work_ms({**flat, "overcommit": 0.5}) == 48 * 130  # under 1: never more than all of it


def test_cut_gives_the_costly_end_as_many_strata_as_the_cheap_end() -> None:
    costs = [1.0] * 8 + [8.0]
    assert plan_mod.cut(costs, 2) == [(0, 8, 3), (8, 9, 8)]  # eight cheap rows share one stratum
    runs = plan_mod.cut([float(c) for c in range(1, 11)], 3)
    assert [stop - start for start, stop, _ in runs] == [6, 2, 2]  # cumulative 21, 36, 55: nearest 18, 37, 55
    assert all(start <= pick < stop for start, stop, pick in runs)
    assert plan_mod.cut([3.0, 4.0], 5) == [(0, 1, 0), (1, 2, 1)]  # never more strata than rows


def test_allocate_is_proportional_with_one_point_per_partition_first() -> None:
    work = {("h", "a"): 10.0, ("h", "b"): 30.0, ("h", "c"): 60.0}
    assert plan_mod.allocate(work, 6) == {("h", "a"): 1, ("h", "b"): 2, ("h", "c"): 3}
    assert plan_mod.allocate(work, 2) == {("h", "a"): 0, ("h", "b"): 1, ("h", "c"): 1}  # costliest first
    assert sum(plan_mod.allocate(work, 7).values()) == 7


def test_estimate_is_exact_when_cost_is_proportional_to_the_proxy(clock: FakeClock) -> None:
    config = _config()
    result = plan_mod.plan(config, timed=6, simulator=FAKE, cpus=2, clock=clock)
    assert clock.runs == 6 and len(result.timed) == 6
    assert result.cpu_s == pytest.approx(_truth(config, clock), rel=1e-9)
    assert result.estimate_s == pytest.approx(result.cpu_s / 2)
    assert result.cpu_range_s == pytest.approx((result.cpu_s, result.cpu_s))  # equal ratios: no spread
    # the points are shared out before anything is timed, by the proxy alone: cpu-bound costs 5x per
    # unit here, but both partitions have the same rows, so they get 3 each
    per = {w: sum(t.cost_class[1] == w for t in result.timed) for w in ("hackbench", "cpu-bound")}
    assert per == {"hackbench": 3, "cpu-bound": 3}


def test_stratified_estimate_holds_when_cost_grows_faster_than_the_proxy(clock: FakeClock) -> None:
    """Cost as the proxy squared (the ratio per unit moves 32x over the rows): each stratum's own
    ratio keeps the estimate within a few %, the costliest row's stratum is timed, and the spread
    shows the ratio moving between neighbouring strata."""
    config = _config()
    clock.power = 2.0
    truth = _truth(config, clock)
    result = plan_mod.plan(config, timed=12, simulator=FAKE, cpus=1, clock=clock)
    assert abs(result.cpu_s / truth - 1) < 0.05
    assert result.has_spread
    low, high = result.cpu_range_s
    assert low < result.cpu_s < high
    costliest = max(plan_mod.work_ms(p.flat) for p in points.iter_points(config))
    assert max(t.work_ms for t in result.timed) == costliest


def test_classes_left_untimed_take_their_partitions_ratio_else_all(clock: FakeClock) -> None:
    config = _config()
    # two points for four classes (2 workloads x 2 overcommits): the costlier overcommit-1 classes
    result = plan_mod.plan(config, timed=2, simulator=FAKE, cpus=1, clock=clock)
    assert sorted(t.cost_class for t in result.timed) == [
        ("cascadelake", "cpu-bound", "1.0"),
        ("cascadelake", "hackbench", "1.0"),
    ]
    assert not result.has_spread
    # each overcommit-2 class takes its own workload's ratio (5x apart here), so still exact
    assert result.cpu_s == pytest.approx(_truth(config, clock), rel=1e-9)
    clock.__init__()  # type: ignore[misc]
    clock.per_unit = {"hackbench": 1e-3, "cpu-bound": 1e-3}
    result = plan_mod.plan(config, timed=1, simulator=FAKE, cpus=1, clock=clock)
    assert len(result.timed) == 1  # the three other classes take that one ratio
    assert result.cpu_s == pytest.approx(_truth(config, clock), rel=1e-9)


def test_no_timing_gives_no_estimate(clock: FakeClock) -> None:
    result = plan_mod.plan(_config(), timed=0, simulator=FAKE, clock=clock)
    assert clock.runs == 0 and result.estimate_s is None and result.estimate_range_s is None


def test_sampled_cost_rows_stand_for_the_whole_design(
    clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A design with more rows than COST_ROWS: the rows given a proxy are weighted up to all."""
    monkeypatch.setattr(plan_mod, "COST_ROWS", 12)
    config = _config()
    clock.per_unit = {"hackbench": 1e-3, "cpu-bound": 1e-3}
    result = plan_mod.plan(config, timed=2, sample=0, simulator=FAKE, cpus=1, clock=clock)
    assert sum(s.rows for s in result.strata) == pytest.approx(result.kept_rows)
    assert result.cpu_s == pytest.approx(_truth(config, clock), rel=0.35)


def test_cli_prints_the_estimate_its_spread_and_basis(cli: Any, tmp_path: Path) -> None:
    out = tmp_path / "never-written"
    args = ["plan", str(REPO / "conf" / "smoke.yaml"), "-s", f"run.output={out}", "--sample", "0"]
    data = json.loads(invoke(cli, *args, "--time", "4", "--json", "--num-cpus", "2").stdout)
    assert len(data["timed"]) == 4 and data["cpus"] == 2
    assert data["estimate_low_s"] <= data["estimate_s"] <= data["estimate_high_s"]
    assert data["cpu_s"] == pytest.approx(2 * data["estimate_s"])
    assert all(t["cpu_s"] > 0 and t["work_ms"] > 0 for t in data["timed"])
    assert data["timing_s"] > 0 and not math.isnan(data["mean_point_s"])
    text = invoke(cli, *args, "--time", "2").stdout
    assert "timed 2 points, one per cost stratum" in text and "estimate: about" in text
    assert "of CPU in all" in text and "plus Ray's start-up" in text
    assert not out.exists()
