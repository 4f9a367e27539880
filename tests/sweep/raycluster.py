"""A multi-node Ray cluster on loopback, in a process of its own, for the cluster tests.

``python tests/sweep/raycluster.py --workers N ...`` starts a head (with the
dashboard, hence the Jobs API, on 127.0.0.1) and N worker nodes with
:class:`ray.cluster_utils.Cluster`, the tool Ray's own tests use for several
nodes on one machine, prints one JSON line (the GCS address, the dashboard
URL, each worker node's raylet pid), then obeys lines on stdin:

- ``remove I``: kill worker node I at once (no graceful stop), as a lost machine would be;
  answers ``removed I``;
- ``quit`` or EOF (the test ended, or died): stop every node and exit.

Every process stays on loopback: ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (see
:data:`sweep.runner.NO_CLUSTER_ENV`) and ``node_ip_address=127.0.0.1`` for
every node (``ray start`` refuses worker nodes in that mode, ``Cluster`` does
not).  ``RAY_TMPDIR`` keeps the sessions and Ray's address file in the test's
temp dir.
"""

from __future__ import annotations

import argparse
import json
import sys

LOOPBACK = "127.0.0.1"
# Notice a killed node in about a second instead of Ray's default ~30 s (GCS health checks).
FAST_NODE_DEATH = {"health_check_period_ms": 500, "health_check_failure_threshold": 2}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--head-cpus", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--worker-cpus", type=int, default=1)
    parser.add_argument("--dashboard-port", type=int, required=True)
    parser.add_argument("--agent-port", type=int, required=True)
    args = parser.parse_args()

    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={
            "node_ip_address": LOOPBACK,
            "num_cpus": args.head_cpus,
            "include_dashboard": True,
            "dashboard_host": LOOPBACK,
            "dashboard_port": args.dashboard_port,
            "dashboard_agent_listen_port": args.agent_port,
            "_system_config": FAST_NODE_DEATH,
        },
    )
    workers = [
        cluster.add_node(node_ip_address=LOOPBACK, num_cpus=args.worker_cpus) for _ in range(args.workers)
    ]
    cluster.wait_for_nodes()
    info = {
        "address": cluster.address,
        "dashboard": f"http://{LOOPBACK}:{args.dashboard_port}",
        "workers": [node.all_processes["raylet"][0].process.pid for node in workers],
    }
    print(json.dumps(info), flush=True)
    try:
        for line in sys.stdin:
            command, *rest = line.split()
            if command == "remove":
                index = int(rest[0])
                cluster.remove_node(workers[index], allow_graceful=False)
                print(f"removed {index}", flush=True)
            elif command == "quit":
                break
    finally:
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
