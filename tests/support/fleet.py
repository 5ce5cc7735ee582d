"""One StorageProbe over many nodes, as the leader's planner sees it, built without a cluster.

The planner and memory benchmarks measure the same state (for node counts the one-machine test
bed cannot run), so they build it here once: a probe whose class every node can mount, the node
views, and the claims of the nodes whose volume already exists.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tests.unit.factories import NOW, node_json, our_claim, pod_json
from volprobe.kinds import REGISTRY, RESOURCES
from volprobe.model.manifests import node_claim_name
from volprobe.model.planner import Planner, World
from volprobe.model.spec import PLURAL, ProbeSpec, parse_probe
from volprobe.model.targets import Target
from volprobe.model.views import ClassView, NodeView, PodView

CLASS = "standard"
INTERVAL = 60


@dataclass(frozen=True)
class Fleet:
    spec: ProbeSpec
    world: World
    """The world at NOW; `at` moves it in time."""

    def at(self, now: float) -> World:
        return replace(self.world, now=now)

    def warmed_planner(self) -> Planner:
        """A planner that has ticked twice a second for one interval and a bit, so every node has
        had its first slot."""
        planner = Planner(REGISTRY, list(RESOURCES.values()))
        planner.start(self.world)
        for step in range(2 * INTERVAL + 10):
            planner.tick(self.at(NOW + step / 2))
        return planner


def fleet(nodes: int, *, with_volume: float = 1.0, runs_in_flight: bool = False) -> Fleet:
    """`nodes` nodes named node-00000 on; the first `with_volume` share of them have their volume,
    and with `runs_in_flight` each of those has a mount run's pod too."""
    spec = parse_probe(
        {
            "metadata": {"name": "bench", "uid": "uid-bench", "generation": 1},
            "spec": {"storageClassName": CLASS, "intervalSeconds": INTERVAL},
        }
    )
    views = {view.name: view for view in (NodeView.of(node_json(f"node-{i:05}")) for i in range(nodes))}
    with_claim = list(views)[: int(nodes * with_volume)]
    claims = [our_claim(node_claim_name(spec.name, n), Target(spec.name, "mount", n)) for n in with_claim]
    pods = [
        PodView.of(pod_json(f"vp-bench-m-{n}", created=NOW, node=n, claim=node_claim_name(spec.name, n)))
        for n in with_claim
        if runs_in_flight
    ]
    world = World(
        now=NOW,
        probes={(PLURAL, spec.name): spec},
        classes={CLASS: ClassView(CLASS, "rancher.io/local-path")},
        nodes=views,
        claims=claims,
        pods=pods,
    )
    return Fleet(spec, world)
