"""What one planner tick costs with many nodes: the leader's pure decisions, without a cluster.

    python bench/planner.py --nodes 1000 5000

The leader ticks up to twice a second (`ExecutorConfig.min_tick_interval`) whenever runs are
due, which with a thousand nodes at a 60 s interval is always, so the CPU time of one tick times
two is the planner's share of a core. One StorageProbe covers every node; two cases per size:

- steady: every node's volume exists (bound claim), runs are launched as their slots come;
- rollout: only a fifth of the nodes have their volume, so most runs wait in the queue behind
  volume creation, and every tick looks at each of them again (may its node be probed now?).

Runs never finish here (the worst case: every run of the interval is in flight). Printed: the
mean CPU time per tick over 240 ticks (two simulated minutes), per case and size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.unit.factories import NOW, node_json, our_claim  # noqa: E402
from volprobe.kinds import REGISTRY, RESOURCES  # noqa: E402
from volprobe.model.manifests import node_claim_name  # noqa: E402
from volprobe.model.planner import Planner, World  # noqa: E402
from volprobe.model.spec import PLURAL, ProbeSpec, parse_probe  # noqa: E402
from volprobe.model.targets import Target  # noqa: E402
from volprobe.model.views import ClassView, NodeView  # noqa: E402

CLASS = "standard"
TICKS = 240


def probe() -> ProbeSpec:
    return parse_probe(
        {
            "metadata": {"name": "bench", "uid": "uid-bench", "generation": 1},
            "spec": {"storageClassName": CLASS, "intervalSeconds": 60},
        }
    )


def tick_seconds(nodes: int, with_volume: float) -> tuple[float, int]:
    """Mean CPU seconds per tick, and how many runs were queued at the end."""
    spec = probe()
    views = {view.name: view for view in (NodeView.of(node_json(f"node-{i:05}")) for i in range(nodes))}
    with_claim = list(views)[: int(nodes * with_volume)]
    claims = [our_claim(node_claim_name(spec.name, n), Target(spec.name, "mount", n)) for n in with_claim]
    planner = Planner(REGISTRY, list(RESOURCES.values()))

    def world(now: float) -> World:
        return World(
            now=now,
            probes={(PLURAL, spec.name): spec},
            classes={CLASS: ClassView(CLASS, "rancher.io/local-path")},
            nodes=views,
            claims=claims,
        )

    planner.start(world(NOW))
    for step in range(130):  # one interval and a bit: every target has had its slot
        planner.tick(world(NOW + step / 2))
    started = time.process_time()
    for step in range(TICKS):
        now = NOW + 65 + step / 2
        planner.tick(world(now))
        planner.wake_at(now)
    seconds = (time.process_time() - started) / TICKS
    return seconds, sum(state.queued is not None for state in planner.targets.values())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    for nodes in args.nodes:
        for case, with_volume in (("steady", 1.0), ("rollout", 0.2)):
            seconds, queued = tick_seconds(nodes, with_volume)
            print(
                f"{nodes:>6} nodes, {case:<7} ({queued:>4} queued): {1000 * seconds:6.2f} ms per tick, "
                f"{200 * seconds:5.1f} % of a core at 2 ticks/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
