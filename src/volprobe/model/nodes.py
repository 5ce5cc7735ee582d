"""Which nodes a probe covers, and which of those it may probe right now.

Two separate questions with separate answers. *Selection* (the probe's NodeSelector) decides
what a probe covers; a node outside it simply is not ours. *Eligibility* decides whether a
covered node can be probed now: a NotReady, cordoned, tainted, deleting or just-started node
is skipped with a reason, counted and shown, but never reported as a storage failure. pie
and its users learnt that the hard way: rebooting and draining nodes made most of its alerts
false positives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from volprobe.contract.reasons import SkipReason
from volprobe.model.views import NodeView, Taint

SCHEDULING_EFFECTS = ("NoSchedule", "NoExecute")


def _values(requirement: Mapping[str, Any]) -> list[str]:
    values = requirement.get("values") or []
    return [str(v) for v in values] if isinstance(values, list) else []


def _matches(requirement: Mapping[str, Any], actual: str | None) -> bool:
    operator = requirement.get("operator")
    values = _values(requirement)
    if operator == "In":
        return actual is not None and actual in values
    if operator == "NotIn":
        return actual is None or actual not in values
    if operator == "Exists":
        return actual is not None
    if operator == "DoesNotExist":
        return actual is None
    if operator in ("Gt", "Lt") and actual is not None and len(values) == 1:
        try:
            left, right = int(actual), int(values[0])
        except ValueError:
            return False
        return left > right if operator == "Gt" else left < right
    return False


def _term_matches(term: Mapping[str, Any], node: NodeView) -> bool:
    """All requirements of a term must hold; an empty term matches nothing (as in Kubernetes)."""
    expressions = term.get("matchExpressions") or []
    fields = term.get("matchFields") or []
    if not expressions and not fields:
        return False
    for requirement in expressions:
        if not _matches(requirement, node.meta.labels.get(str(requirement.get("key", "")))):
            return False
    for requirement in fields:
        actual = node.name if requirement.get("key") == "metadata.name" else None
        if not _matches(requirement, actual):
            return False
    return True


def selected(terms: Sequence[Mapping[str, Any]], node: NodeView) -> bool:
    """The probe covers this node. No terms: every Linux node (probes run Linux containers)."""
    if node.os != "linux":
        return False
    if not terms:
        return True
    return any(_term_matches(term, node) for term in terms)


def tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Taint) -> bool:
    for toleration in tolerations:
        effect = toleration.get("effect") or ""
        if effect and effect != taint.effect:
            continue
        key = toleration.get("key") or ""
        operator = toleration.get("operator") or "Equal"
        if operator == "Exists" and (not key or key == taint.key):
            return True
        if operator == "Equal" and key == taint.key and (toleration.get("value") or "") == taint.value:
            return True
    return False


def skip_reason(
    node: NodeView, *, tolerations: Sequence[Mapping[str, Any]], grace: float, now: float
) -> SkipReason | None:
    """Why this (selected) node must not be probed now, or None if it may be.

    Order matters only for which reason is shown when several apply; the most fundamental
    comes first (a node being deleted is also usually NotReady, but "deleting" says more).
    """
    if node.meta.deleting:
        return SkipReason.DELETING
    if not node.ready:
        return SkipReason.NOT_READY
    if node.unschedulable:
        return SkipReason.CORDONED
    if any(t.effect in SCHEDULING_EFFECTS and not tolerates(tolerations, t) for t in node.taints):
        return SkipReason.TAINTED
    if node.meta.created is not None and now - node.meta.created < grace:
        return SkipReason.TOO_NEW
    if node.ready_since is not None and now - node.ready_since < grace:
        return SkipReason.RECOVERING
    return None


def settles_at(node: NodeView, *, grace: float) -> float:
    """When `skip_reason` for this node stops depending on the time: its grace periods (since it
    was created, since it became Ready) are over."""
    times = [t + grace for t in (node.meta.created, node.ready_since) if t is not None]
    return max(times, default=-math.inf)


def unwell_since(node: NodeView, started: float) -> SkipReason | None:
    """Why a node that may be probed now was not fit at some time since `started`, or None.

    A verdict looks at the node as it is when the run ends; a node that went NotReady during
    the run and came back before the end (kwok nodes on an overloaded machine flap like this,
    and so do real ones whose kubelet restarts) would make its run's failure count although
    the node, not the storage, was the trouble. Its Ready condition's last change tells.
    """
    if node.ready and node.ready_since is not None and node.ready_since > started:
        return SkipReason.NOT_READY
    return None
