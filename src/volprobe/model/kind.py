"""A kind of probe as the pure layers see it: where its runs go and what outlives them.

Kinds are the unit of extension (docs/design.md, "Adding a probe kind"). Each lives in one
module of `volprobe.kinds`, which also holds how its runs are executed; this module is the part
the planner, the status and the one-shot check need, without any I/O. Everything that follows
from *where* a kind runs — which targets a probe has, whether a target may run now, which nodes
a run should avoid — is derived from its `Placement` here, once, instead of in every kind.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from volprobe.contract.reasons import SkipReason
from volprobe.model.probe import Probe
from volprobe.model.targets import Target


class Placement(StrEnum):
    PER_NODE = "per-node"
    """One target per selected node; each run's pod is pinned to its node."""
    ANY_NODE = "any-node"
    """One target per probe; each run's pod may land on any selected node that is well."""
    CONTROLLER = "controller"
    """One target per probe, run by the controller itself: no node, no pod (an object store)."""


class ProbeKind(Protocol):
    """What the pure layers need to know about a kind (its module adds how to run it)."""

    @property
    def name(self) -> str:
        """The `kind` label value, the key in status, and the agent's subcommand argument."""

    @property
    def short(self) -> str:
        """One or two letters in pod names (pod names are limited to 63 characters)."""

    @property
    def placement(self) -> Placement: ...

    @property
    def resource(self) -> str:
        """The plural of the probe resource whose objects have this kind (`storageprobes`)."""

    @property
    def description(self) -> str:
        """One line for docs/reasons.md (generated)."""

    def lasting_claims(self, target: Target) -> tuple[str, ...]:
        """Claims that outlive a run and are deleted only when the target goes."""


def targets(kind: ProbeKind, spec: Probe, selected: Iterable[str]) -> list[Target]:
    """The targets a probe has for this kind, given the nodes it selects."""
    if not spec.enables(kind.name):
        return []
    if kind.placement is Placement.PER_NODE:
        return [Target(spec.name, kind.name, node) for node in selected]
    return [Target(spec.name, kind.name)]


@dataclass(frozen=True)
class Readiness:
    """Whether a target may run now: a skip reason, or the nodes its pod should avoid."""

    skip: SkipReason | None = None
    avoid_nodes: tuple[str, ...] = ()


def readiness(
    placement: Placement,
    target: Target,
    *,
    selected: Collection[str],
    unwell: Mapping[str, SkipReason],
) -> Readiness:
    """May this target run now? `unwell` names the selected nodes that must not be probed now,
    with the reason.

    Per-node targets follow their node; any-node targets avoid unwell nodes and are skipped only
    when every selected node is unwell (then with the most common reason, so "the only node is
    cordoned" reads as `cordoned`); targets run by the controller always may.
    """
    if placement is Placement.CONTROLLER:
        return Readiness()
    if placement is Placement.PER_NODE:
        return Readiness(skip=unwell.get(target.node))
    # Sorted so that the pod spec and a tie between skip reasons are the same on every tick.
    avoid = tuple(sorted(name for name in unwell if name in selected))
    if not selected or len(avoid) < len(selected):
        return Readiness(avoid_nodes=avoid)
    common = Counter(unwell[name] for name in avoid).most_common(1)[0][0]
    return Readiness(skip=common, avoid_nodes=avoid)
