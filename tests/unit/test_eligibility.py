"""The planner's per-probe node answers: re-derived only when a node, the spec or the clock can
have changed them, and then exactly what `volprobe.model.nodes` says."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.unit.factories import NOW, node_json
from volprobe.contract.reasons import SkipReason
from volprobe.kinds.storageprobe import StorageProbeResource
from volprobe.model.eligibility import Eligibility
from volprobe.model.spec import ProbeSpec, parse_probe
from volprobe.model.views import NodeView

GRACE = 60.0


def spec(**fields: Any) -> ProbeSpec:
    return parse_probe(
        {
            "metadata": {"name": "p", "uid": "u", "generation": 1},
            "spec": {"storageClassName": "c", "nodeGracePeriodSeconds": GRACE, **fields},
        }
    )


def node(name: str, **fields: Any) -> NodeView:
    return NodeView.of(node_json(name, **fields))


@dataclass(frozen=True)
class Counting(StorageProbeResource):
    """The real StorageProbe answers, counting how often each node is asked about."""

    asked: list[str] = field(default_factory=list)

    def node_skip(self, spec: ProbeSpec, node: NodeView | None, now: float) -> SkipReason | None:
        self.asked.append(node.name if node else "<gone>")
        return super().node_skip(spec, node, now)


def fleet(*views: NodeView) -> dict[str, NodeView]:
    return {view.name: view for view in views}


def test_answers_are_those_of_the_resource() -> None:
    eligibility = Eligibility(StorageProbeResource())
    nodes = fleet(node("a"), node("b", unschedulable=True), node("win", os="windows"))
    eligibility.refresh(spec(), nodes, NOW)
    assert eligibility.selected == {"a", "b"}
    assert eligibility.unwell == {"b": SkipReason.CORDONED}


def test_an_unchanged_node_is_not_asked_about_again() -> None:
    resource = Counting()
    eligibility = Eligibility(resource)
    nodes = fleet(node("a"), node("b"))
    eligibility.refresh(spec(), nodes, NOW)
    eligibility.refresh(spec(), nodes, NOW + 1)  # an equal spec, parsed again, as every tick
    assert sorted(resource.asked) == ["a", "b"]
    assert eligibility.skip("a", nodes["a"], NOW + 2) is None
    assert sorted(resource.asked) == ["a", "b"]


def test_a_changed_node_is_asked_about_again() -> None:
    resource = Counting()
    eligibility = Eligibility(resource)
    nodes = fleet(node("a"), node("b"))
    eligibility.refresh(spec(), nodes, NOW)
    nodes["b"] = node("b", unschedulable=True)
    eligibility.refresh(spec(), nodes, NOW + 1)
    assert resource.asked[2:] == ["b"]
    assert eligibility.unwell == {"b": SkipReason.CORDONED}
    nodes["b"] = node("b")
    eligibility.refresh(spec(), nodes, NOW + 2)
    assert eligibility.unwell == {}


def test_a_node_in_its_grace_period_is_asked_every_time_until_it_is_over() -> None:
    resource = Counting()
    eligibility = Eligibility(resource)
    nodes = fleet(node("old"), node("new", created=NOW - 10, ready_since=NOW - 10))
    eligibility.refresh(spec(), nodes, NOW)
    assert eligibility.unwell == {"new": SkipReason.TOO_NEW}
    eligibility.refresh(spec(), nodes, NOW + 30)
    assert eligibility.unwell == {"new": SkipReason.TOO_NEW}
    eligibility.refresh(spec(), nodes, NOW + GRACE)  # 70 s old: over
    assert eligibility.unwell == {}
    eligibility.refresh(spec(), nodes, NOW + GRACE + 1)
    assert sorted(resource.asked) == ["new", "new", "new", "old"]


def test_a_recovering_node_is_not_kept_as_fit_before_its_grace_is_over() -> None:
    eligibility = Eligibility(StorageProbeResource())
    view = node("a", ready_since=NOW - 5)
    eligibility.refresh(spec(), fleet(view), NOW)
    assert eligibility.skip("a", view, NOW) is SkipReason.RECOVERING
    assert eligibility.skip("a", view, NOW + GRACE) is None


def test_a_new_spec_asks_about_every_node_again() -> None:
    resource = Counting()
    eligibility = Eligibility(resource)
    tainted = node("a", taints=[{"key": "gpu", "effect": "NoSchedule"}])
    nodes = fleet(tainted, node("b"))
    eligibility.refresh(spec(), nodes, NOW)
    assert eligibility.unwell == {"a": SkipReason.TAINTED}
    tolerant = spec(pod={"tolerations": [{"key": "gpu", "operator": "Exists"}]})
    eligibility.refresh(tolerant, nodes, NOW + 1)
    assert sorted(resource.asked) == ["a", "a", "b", "b"]
    assert eligibility.unwell == {}


def test_a_new_selector_changes_the_selection() -> None:
    eligibility = Eligibility(StorageProbeResource())
    nodes = fleet(node("a", labels={"disk": "ssd"}), node("b"))
    eligibility.refresh(spec(), nodes, NOW)
    assert eligibility.selected == {"a", "b"}
    selector = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}
    eligibility.refresh(spec(nodeSelector=selector), nodes, NOW)
    assert eligibility.selected == {"a"}


def test_a_node_that_left_is_no_longer_selected_and_reads_as_deleting() -> None:
    eligibility = Eligibility(StorageProbeResource())
    nodes = fleet(node("a"), node("b", unschedulable=True))
    eligibility.refresh(spec(), nodes, NOW)
    del nodes["b"]
    eligibility.refresh(spec(), nodes, NOW + 1)
    assert eligibility.selected == {"a"}
    assert eligibility.unwell == {}
    assert eligibility.skip("b", None, NOW + 1) is SkipReason.DELETING


def test_unwell_names_only_selected_nodes() -> None:
    eligibility = Eligibility(StorageProbeResource())
    selector = {"nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}]}
    nodes = fleet(node("a", labels={"disk": "ssd"}), node("b", unschedulable=True))
    eligibility.refresh(spec(nodeSelector=selector), nodes, NOW)
    assert eligibility.unwell == {}


def test_skip_asks_afresh_for_a_view_it_has_not_seen() -> None:
    """`finished` may come between ticks, with a newer view of the run's node."""
    eligibility = Eligibility(StorageProbeResource())
    eligibility.refresh(spec(), fleet(node("a")), NOW)
    assert eligibility.skip("a", node("a", ready="False"), NOW) is SkipReason.NOT_READY
