"""The StorageProbe resource: a StorageClass probed on the nodes it selects (kinds provision, mount).

What the planner needs to know about StorageProbes that it does not about other probe
resources: a StorageProbe covers the nodes its node selector picks, a node that is NotReady,
cordoned, tainted or just started is skipped, nothing runs without its StorageClass, and its
status counts nodes by how their mount probes fare (`volprobe.model.status`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from volprobe.contract.reasons import Reason, SkipReason
from volprobe.model import nodes, status
from volprobe.model.kind import Placement
from volprobe.model.resource import Missing, ProbeView, StatusUpdate
from volprobe.model.runs import RunRequest
from volprobe.model.spec import PLURAL, ProbeSpec, parse_probe
from volprobe.model.views import ClassView, NodeView


def storage_probe(request: RunRequest) -> ProbeSpec:
    """The request's spec, which for the kinds of this resource is always a StorageProbe's."""
    if not isinstance(request.spec, ProbeSpec):
        raise TypeError(
            f"a {request.target.kind} run needs a StorageProbe, not {type(request.spec).__name__}"
        )
    return request.spec


@dataclass(frozen=True)
class StorageProbeResource:
    plural: str = PLURAL
    api_kind: str = "StorageProbe"

    def parse(self, obj: Mapping[str, Any]) -> ProbeSpec:
        return parse_probe(obj)

    def covers(self, spec: ProbeSpec, node: NodeView) -> bool:
        return nodes.selected(spec.node_selector_terms, node)

    def node_skip(self, spec: ProbeSpec, node: NodeView | None, now: float) -> SkipReason | None:
        if node is None:
            return SkipReason.DELETING  # gone from the cache: it is being deleted
        return nodes.skip_reason(node, tolerations=spec.pod.tolerations, grace=spec.node_grace, now=now)

    def skip_settles(self, spec: ProbeSpec, node: NodeView) -> float:
        return nodes.settles_at(node, grace=spec.node_grace)

    def prerequisite(self, spec: ProbeSpec, classes: Mapping[str, ClassView]) -> Missing | None:
        if spec.storage_class in classes:
            return None
        name = spec.storage_class
        return Missing(
            reason=Reason.STORAGE_CLASS_MISSING,
            message=f"StorageClass {name} does not exist",
            gone_event="StorageClassNotFound",
            gone_message=f"StorageClass {name} does not exist; probing starts when it appears",
            back_event="StorageClassFound",
            back_message=f"StorageClass {name} exists now",
        )

    def status(self, view: ProbeView, previous: Mapping[str, Any] | None, now: float) -> StatusUpdate:
        state = probe_state(view)
        return StatusUpdate(status.build(state, previous, now), status.node_counts(state))


def probe_state(view: ProbeView) -> status.ProbeState:
    """The planner's view of a StorageProbe, as `volprobe.model.status` takes it."""
    kinds = tuple(
        status.KindState(
            name=kind.name,
            per_node=kind.placement is Placement.PER_NODE,
            latest={
                t.target.node: t.last
                for t in view.targets
                if t.target.kind == kind.name and t.last is not None
            },
            last_success=view.last_success.get(kind.name),
        )
        for kind in view.kinds
    )
    return status.ProbeState(
        generation=view.spec.generation,
        class_exists=view.prerequisite is None,
        kinds=kinds,
        selected_nodes=view.selected,
        skipped={t.target.node: t.skip for t in view.targets if t.target.node and t.skip is not None},
        stalled=tuple(
            status.Stall(t.target.kind, t.target.node, t.stalled.phase, t.stalled.since)
            for t in view.targets
            if t.stalled is not None
        ),
        baselines=view.baseline.to_status(),
        queued=sum(1 for t in view.targets if t.queued),
    )


RESOURCE = StorageProbeResource()
