"""A probe resource: a custom resource whose objects the planner runs probes for.

StorageProbes and ObjectStoreProbes are scheduled by one planner — the same slots, one run in
flight per target, status pacing, Events — but they are different objects: a StorageProbe names
a StorageClass and nodes, an ObjectStoreProbe an S3 endpoint; each has a status document of its
own. A `ProbeResource` is what differs, seen from the planner: how an object is read, which
nodes it covers, what must exist before it can run, and its status. Each lives beside its kinds
in `volprobe.kinds` and is registered there.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from volprobe.contract.reasons import Reason, SkipReason
from volprobe.model.baseline import Baseline
from volprobe.model.kind import ProbeKind
from volprobe.model.outcome import Outcome
from volprobe.model.probe import Probe
from volprobe.model.runs import RunProgress
from volprobe.model.targets import Target
from volprobe.model.views import ClassView, NodeView


@dataclass(frozen=True)
class Missing:
    """Something a probe needs does not exist (its StorageClass): every slot fails with `reason`."""

    reason: Reason
    message: str
    """The failure's message (e.g. "StorageClass fast does not exist")."""
    gone_event: str
    """The Event when it disappears (StorageClassNotFound)..."""
    gone_message: str
    back_event: str
    """...and when it comes back (StorageClassFound)."""
    back_message: str


@dataclass(frozen=True)
class TargetView:
    """One target of a probe as the planner knows it, for the status."""

    target: Target
    last: Outcome | None
    """Latest completed run that was not a skip."""
    skip: SkipReason | None
    stalled: RunProgress | None
    queued: bool


@dataclass(frozen=True)
class ProbeView:
    """Everything the planner knows about one probe object, for its status."""

    spec: Probe
    kinds: tuple[ProbeKind, ...]
    """Its resource's kinds that the probe enables, in registry order."""
    prerequisite: Missing | None
    selected: frozenset[str]
    targets: tuple[TargetView, ...]
    last_success: Mapping[str, float] = field(default_factory=dict)
    """Per kind: when its latest successful run finished."""
    baseline: Baseline = field(default_factory=Baseline)


@dataclass(frozen=True)
class StatusUpdate:
    document: Mapping[str, Any]
    node_counts: Mapping[str, int] | None = None
    """For resources that cover nodes: the `volprobe_nodes` gauge's values."""


class ProbeResource(Protocol):
    @property
    def plural(self) -> str:
        """The resource's plural name (`storageprobes`): its API path and status endpoint."""

    @property
    def api_kind(self) -> str:
        """Its `kind` (`StorageProbe`): Events name it as their involved object."""

    def parse(self, obj: Mapping[str, Any]) -> Probe:
        """Read an object as the API server returns it; raise ValueError if it cannot be probed."""

    def covers(self, spec: Any, node: NodeView) -> bool:
        """The probe covers this node (never, for probes that run in the controller)."""

    def node_skip(self, spec: Any, node: NodeView | None, now: float) -> SkipReason | None:
        """Why this selected node must not be probed now (None: it may be)."""

    def skip_settles(self, spec: Any, node: NodeView) -> float:
        """From this time on, `node_skip` for this node's view no longer depends on the time
        (a grace period is over), so the planner may keep its answer."""

    def prerequisite(self, spec: Any, classes: Mapping[str, ClassView]) -> Missing | None: ...

    def status(self, view: ProbeView, previous: Mapping[str, Any] | None, now: float) -> StatusUpdate: ...
