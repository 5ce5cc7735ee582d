"""What the leader holds in memory per node, without a cluster: a projection for node counts the
one-machine test bed cannot run (docs/performance.md: 1,000 kwok nodes already saturate it).

    python bench/memory.py --nodes 1000 5000

For each size, in a fresh process, the state a leader keeps for one StorageProbe covering every
node is built from realistic API objects (`tests.unit.factories`): the cached views of every node,
its bound claim, a run's pod in flight on each node; the planner after one interval of
ticks; and every node's Prometheus series after a run. Printed: the process's RSS after the
imports, after building that state, and the difference per node. The real controller adds the
HTTP client, the watch buffers and its tasks, which do not grow with nodes: calibrate against
`bench/scale.py`'s measured RSS at 1,000 nodes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.unit.factories import NOW, mount_outcome, node_json, our_claim, pod_json  # noqa: E402
from volprobe.contract.reasons import Phase  # noqa: E402
from volprobe.kinds import REGISTRY, RESOURCES  # noqa: E402
from volprobe.model.manifests import node_claim_name  # noqa: E402
from volprobe.model.planner import Planner, World  # noqa: E402
from volprobe.model.spec import PLURAL, parse_probe  # noqa: E402
from volprobe.model.targets import Target  # noqa: E402
from volprobe.model.views import ClassView, NodeView, PodView  # noqa: E402
from volprobe.runtime.metrics import ProbeMetrics  # noqa: E402

CLASS = "standard"


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def measure(nodes: int) -> tuple[float, float]:
    """(RSS after the imports, RSS with the state of `nodes` nodes), in MiB."""
    before = rss_mib()
    spec = parse_probe(
        {
            "metadata": {"name": "bench", "uid": "uid-bench", "generation": 1},
            "spec": {"storageClassName": CLASS, "intervalSeconds": 60},
        }
    )
    names = [f"node-{i:05}" for i in range(nodes)]
    views = {name: NodeView.of(node_json(name)) for name in names}
    claims = [our_claim(node_claim_name(spec.name, n), Target(spec.name, "mount", n)) for n in names]
    pods = [PodView.of(pod_json(f"vp-bench-m-{n}", created=NOW, node=n, claim=f"c-{n}")) for n in names]
    planner = Planner(REGISTRY, list(RESOURCES.values()))
    metrics = ProbeMetrics()
    world = World(
        now=NOW,
        probes={(PLURAL, spec.name): spec},
        classes={CLASS: ClassView(CLASS, "rancher.io/local-path")},
        nodes=views,
        claims=claims,
        pods=pods,
    )
    planner.start(world)
    for step in range(130):
        planner.tick(replace(world, now=NOW + step / 2))
    durations = {Phase.PROVISION: 2.0, Phase.MOUNT: 1.0, Phase.IO: 0.5}
    for name in names:
        metrics.record(mount_outcome(name, probe=spec.name, durations=durations), CLASS)
    return before, rss_mib()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        before, after = measure(args.one)
        print(f"{before} {after}")
        return 0
    for nodes in args.nodes:
        # A fresh process per size: freed memory is not given back to the system reliably.
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(nodes)], check=True, capture_output=True, text=True
        ).stdout
        before, after = map(float, out.split())
        print(
            f"{nodes:>6} nodes: RSS {before:.0f} MiB after the imports, {after:.0f} MiB with the "
            f"state; {1024 * (after - before) / nodes:.1f} KiB per node"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
