"""Synthetic sweep outputs shared by the report tests (written once per session)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.pipelines.synthetic import GridSpec, write_design_sweep, write_grid_sweep

IPI = "features.ipi_fastpath"
BOOST = "features.boost_ready"
YIELD = "features.pv_sched_yield"

# Planted effects: ratio on/off per feature and metric (or per overcommit level).
PLANTED = {
    IPI: {"messages_per_s": 1.25, "ipi_latency_p50_us": 0.6},
    YIELD: {"steal_pct": {1.0: 1.0, 2.0: 0.9, 4.0: 0.8}},
}
METRICS = ["messages_per_s", "ipi_latency_p50_us", "steal_pct"]
ISHIGAMI_NAMES = ["costs.exit_hlt_ns", "costs.exit_pause_ns", "costs.exit_vmcall_ns"]


def effects_spec(**changes: object) -> GridSpec:
    """A 576-run grid: 3 features (one without effect) x hardware x overcommit x vCPUs x APIC x 3 replicates."""
    base = {
        "hardware": ("cascadelake", "rome"),
        "workloads": ("hackbench",),
        "overcommit": (1.0, 2.0, 4.0),
        "vcpus": (4, 8),
        "apic": ("xapic", "x2apic_cluster"),
        "features": (IPI, BOOST, YIELD),
        "effects": PLANTED,
        "replicates": 3,
        "noise": 0.05,
        "seed": 7,
        "report_metrics": METRICS,
    }
    base.update(changes)
    return GridSpec(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def effects_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete grid sweep with planted effects, its report written."""
    from pipelines import write_report

    out = write_grid_sweep(tmp_path_factory.mktemp("effects"), effects_spec())
    write_report(out)
    return out


@pytest.fixture(scope="session")
def broken_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The same grid with 5 % failed and 3 % missing runs, a cyclictest workload, and a hostile name."""
    from pipelines import write_report

    spec = effects_spec(
        workloads=("hackbench", "cyclictest"),
        failed_fraction=0.05,
        missing_fraction=0.03,
        name='evil <script>alert("x")</script> & co',
        report_metrics=None,
        seed=11,
    )
    out = write_grid_sweep(tmp_path_factory.mktemp("broken"), spec)
    write_report(out)
    return out


def ishigami_problem(n: int = 1024) -> dict:
    return {
        "num_vars": 3,
        "names": ISHIGAMI_NAMES,
        "bounds": [[-np.pi, np.pi]] * 3,
        "N": n,
        "calc_second_order": True,
    }


def write_ishigami(directory: Path, **kwargs: object) -> Path:
    """A sobol sweep whose metric ``messages_per_s`` is the Ishigami function of the sample."""
    from SALib.sample import sobol as sobol_sample
    from SALib.test_functions import Ishigami

    problem = ishigami_problem()
    salib = {k: problem[k] for k in ("num_vars", "names", "bounds")}
    x = sobol_sample.sample(salib, problem["N"], calc_second_order=True, seed=1)
    return write_design_sweep(
        directory, "sobol", problem, x, {"messages_per_s": Ishigami.evaluate(x)}, **kwargs
    )


REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def smoke_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real ``conf/smoke.yaml`` sweep (36 simulations, Ray in a child process), its report written."""
    import os
    import subprocess
    import sys

    from pipelines import write_report

    out = tmp_path_factory.mktemp("smoke") / "smoke"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "sweep.cli", "launch", "conf/smoke.yaml", "-o", str(out), "--no-report"]
    done = subprocess.run(
        command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    write_report(out)
    return out
