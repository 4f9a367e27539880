"""The cluster examples in deploy/: the Slurm batch script and the KubeRay RayJob.

Neither Slurm nor Kubernetes is here, so: the sbatch script passes ``bash -n``
and runs end to end against stand-ins for ``srun``, ``scontrol``, ``ray`` and
``sweep`` that log their arguments (head first, then one worker per other
node, then the sweep joined to the head; Slurm's SIGTERM reaches the sweep);
the RayJob manifest parses and has what KubeRay requires, consistent with the
Dockerfile and the repository.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import yaml

from sweep.config import load as load_config

REPO = Path(__file__).resolve().parents[2]
SBATCH = REPO / "deploy" / "slurm" / "sweep.sbatch"
RAYJOB = REPO / "deploy" / "kubernetes" / "rayjob.yaml"
DOCKERFILE = REPO / "deploy" / "kubernetes" / "Dockerfile"
NODES = ["node1", "node2", "node3"]
HEAD_IP = "10.1.2.3"
RUN_TIMEOUT_S = 60
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")

# Stand-ins: each logs "NAME ARGS" to $FAKE_LOG.  srun runs its command (after the options) as
# Slurm would on the named node; `ray start` returns at once (the real one blocks).
FAKES = {
    "scontrol": 'echo "scontrol $*" >> "$FAKE_LOG"; printf "%s\\n" ' + " ".join(NODES),
    "srun": (
        'node=; while [ "${1#-}" != "$1" ]; do [ "$1" = -w ] && { node=$2; shift; }; shift; done\n'
        'echo "srun $node: $*" >> "$FAKE_LOG"; exec "$@"'
    ),
    "hostname": f'echo "{HEAD_IP} fe80::1"',
    # `ray status` answers once the head was started.
    "ray": 'echo "ray $*" >> "$FAKE_LOG"; [ "$1" != status ] || grep -q "ray start --head" "$FAKE_LOG"',
    "python": f'cat > /dev/null; echo {len(NODES)}',
    "sweep": (
        'echo "sweep $*" >> "$FAKE_LOG"\n'
        "trap 'kill $!; echo \"sweep got TERM\" >> \"$FAKE_LOG\"; exit 130' TERM\n"
        'sleep "${FAKE_SWEEP_S:-0}" & wait $!; exit "${FAKE_SWEEP_RC:-0}"'
    ),
}


def test_sbatch_script_is_valid_bash() -> None:
    subprocess.run(["bash", "-n", str(SBATCH)], check=True)
    directives = {
        key: value
        for key, _, value in (
            line.removeprefix("#SBATCH ").partition("=")
            for line in SBATCH.read_text().splitlines()
            if line.startswith("#SBATCH ")
        )
    }
    assert {"--nodes", "--ntasks-per-node", "--cpus-per-task", "--time"} <= set(directives)
    assert directives["--ntasks-per-node"] == "1"  # one Ray node per Slurm node
    assert directives["--signal"].startswith("B:TERM@")  # the batch shell gets the early SIGTERM


def _fake_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, body in FAKES.items():
        path = bin_dir / name
        path.write_text(f"#!/bin/bash\n{body}\n")
        path.chmod(0o755)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f"export PATH={shlex.quote(str(bin_dir))}:$PATH\n")
    return {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "VENV": str(venv),
        "FAKE_LOG": str(tmp_path / "log"),
        "SLURM_JOB_NODELIST": "node[1-3]",
        "SLURM_CPUS_PER_TASK": "32",
        "NODE_WAIT_S": "20",
        **extra,
    }


def _log(tmp_path: Path) -> list[str]:
    return (tmp_path / "log").read_text().splitlines()


def test_sbatch_script_starts_head_then_workers_then_the_sweep(tmp_path: Path) -> None:
    env = _fake_env(tmp_path, FAKE_SWEEP_RC="1")
    done = subprocess.run(
        ["bash", str(SBATCH), "conf/smoke.yaml", "/shared/out"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr  # the sweep's status is the job's
    log = _log(tmp_path)
    address = f"{HEAD_IP}:6379"
    head = f"srun node1: ray start --head --node-ip-address={HEAD_IP} --port=6379 --num-cpus=32"
    starts = [i for i, line in enumerate(log) if line.startswith("srun") and "ray start" in line]
    assert log[starts[0]].startswith(head)
    workers = [log[i] for i in starts[1:]]
    assert sorted(w.split(":")[0] for w in workers) == ["srun node2", "srun node3"]
    assert all(f"ray start --address {address} --num-cpus=32 --block" in w for w in workers)
    sweep = [line for line in log if line.startswith("sweep ")]
    assert sweep == [f"sweep launch conf/smoke.yaml --address {address} -o /shared/out"]
    assert log.index(sweep[0]) > max(starts)  # after every node was started
    assert f"Ray head on node1 at {address}; 3 nodes, 32 CPUs each" in done.stdout


def test_sbatch_script_passes_slurms_sigterm_to_the_sweep(tmp_path: Path) -> None:
    env = _fake_env(tmp_path, FAKE_SWEEP_S="30")
    proc = subprocess.Popen(
        ["bash", str(SBATCH)], cwd=tmp_path, env=env, stdout=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        deadline = time.monotonic() + RUN_TIMEOUT_S
        while not any(line.startswith("sweep ") for line in _log_or_empty(tmp_path)):
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
        time.sleep(0.2)  # let the script reach its wait
        proc.send_signal(signal.SIGTERM)  # what --signal=B:TERM@600 sends
        proc.wait(RUN_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 130  # the sweep stopped cleanly: resubmit to resume
    log = _log(tmp_path)
    assert "sweep got TERM" in log
    assert log[log.index("sweep got TERM") - 1] == "sweep launch conf/rome.yaml --address 10.1.2.3:6379 -o " + str(
        tmp_path / "results" / "rome"
    )


def _log_or_empty(tmp_path: Path) -> list[str]:
    return _log(tmp_path) if (tmp_path / "log").exists() else []


@pytest.fixture(scope="module")
def rayjob() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(RAYJOB.read_text()))
    jobs = [d for d in docs if d.get("kind") == "RayJob"]
    assert len(jobs) == 1
    return jobs[0]


def test_rayjob_has_what_kuberay_requires(rayjob: dict[str, Any]) -> None:
    assert rayjob["apiVersion"] == "ray.io/v1"
    assert DNS_LABEL.match(rayjob["metadata"]["name"])
    spec = rayjob["spec"]
    assert spec["submissionMode"] in {"K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode"}
    cluster = spec["rayClusterSpec"]
    head = cluster["headGroupSpec"]
    groups = [head, *cluster["workerGroupSpecs"]]
    for group in groups:
        # KubeRay turns rayStartParams into `ray start --KEY=VALUE`: strings only.
        assert all(isinstance(v, str) for v in group["rayStartParams"].values())
        containers = group["template"]["spec"]["containers"]
        assert containers and all(DNS_LABEL.match(c["name"]) and c["image"] for c in containers)
    for worker in cluster["workerGroupSpecs"]:
        assert worker["groupName"] and worker["minReplicas"] <= worker["replicas"] <= worker["maxReplicas"]
    assert head["rayStartParams"]["dashboard-host"] == "0.0.0.0"  # the submitter reaches the Jobs API


def test_rayjob_matches_the_image_and_the_repository(rayjob: dict[str, Any]) -> None:
    spec = rayjob["spec"]
    cluster = spec["rayClusterSpec"]
    base = re.search(r"^FROM rayproject/ray:(\S+?)-py(\d)(\d+)$", DOCKERFILE.read_text(), re.MULTILINE)
    assert base is not None
    assert cluster["rayVersion"] == base.group(1) == ray.__version__  # the Ray the tests ran
    # The entrypoint is a sweep launch of a config in the image, into the mounted volume.
    words = shlex.split(spec["entrypoint"])
    assert words[:2] == ["sweep", "launch"] and "--address" not in words
    conf = Path(words[2])
    assert conf.parts[:2] == ("/", "app")
    assert load_config(REPO / conf.relative_to("/app"), []).name  # the config is valid
    output = Path(words[words.index("-o") + 1])
    head_pod = cluster["headGroupSpec"]["template"]["spec"]
    mounts = {m["name"]: Path(m["mountPath"]) for m in head_pod["containers"][0]["volumeMounts"]}
    volume = next(n for n, path in mounts.items() if path in output.parents)
    claim = next(v for v in head_pod["volumes"] if v["name"] == volume)["persistentVolumeClaim"]["claimName"]
    claims = [d for d in yaml.safe_load_all(RAYJOB.read_text()) if d.get("kind") == "PersistentVolumeClaim"]
    assert [c["metadata"]["name"] for c in claims] == [claim]
    # Everything the package needs to install is copied into the image.
    copied = {line.split()[-2] for line in DOCKERFILE.read_text().splitlines() if line.startswith("COPY")}
    assert {"model", "sweep", "pipelines", "conf"} <= copied
