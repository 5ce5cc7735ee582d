"""The `status` of a StorageProbe, computed from the latest outcome of each of its targets.

Pure: it takes what the controller knows and returns the document to apply. Conditions keep
their `lastTransitionTime` unless their status flips, as API conventions require, so the
previous status is an input.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from volprobe.contract.reasons import Phase, Reason, SkipReason
from volprobe.model.runs import Outcome

LIST_LIMIT = 20
"""Failing and skipped nodes listed in status; counts are always complete."""


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(member: Phase | Reason | None) -> str:
    return member.value if member is not None else ""


def camel(value: str) -> str:
    """`provisioning_timeout` -> `ProvisioningTimeout` (condition reasons are CamelCase)."""
    return "".join(part.capitalize() for part in value.split("_"))


@dataclass
class ProbeState:
    """What the controller knows about one StorageProbe right now."""

    generation: int
    class_exists: bool
    provision_enabled: bool
    mount_enabled: bool
    selected_nodes: frozenset[str] = frozenset()
    skipped: Mapping[str, SkipReason] = field(default_factory=dict)
    mounts: Mapping[str, Outcome] = field(default_factory=dict)
    """Latest completed (not skipped) mount outcome per node."""
    provision: Outcome | None = None
    last_provision_success: float | None = None
    last_mount_success: float | None = None


def node_counts(state: ProbeState) -> dict[str, int]:
    probed = [n for n in state.selected_nodes if n not in state.skipped] if state.mount_enabled else []
    passing = sum(1 for n in probed if n in state.mounts and state.mounts[n].passed)
    failing = sum(1 for n in probed if n in state.mounts and not state.mounts[n].passed)
    return {
        "selected": len(state.selected_nodes),
        "passing": passing,
        "failing": failing,
        "skipped": sum(1 for n in state.selected_nodes if n in state.skipped),
        "pending": len(probed) - passing - failing,
    }


def _last(outcome: Outcome | None, last_success: float | None) -> dict[str, Any] | None:
    if outcome is None:
        return None
    last: dict[str, Any] = {
        "result": outcome.result.value,
        "time": rfc3339(outcome.finished),
        "durationSeconds": round(outcome.seconds, 3),
    }
    if outcome.node:
        last["node"] = outcome.node
    if outcome.phase:
        last["phase"] = outcome.phase.value
    if outcome.reason:
        last["reason"] = outcome.reason.value
    if outcome.message:
        last["message"] = outcome.message[:300]
    if last_success is not None:
        last["lastSuccessTime"] = rfc3339(last_success)
    return last


def _condition(
    kind: str,
    verdict: tuple[bool, str, str],
    *,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    status, reason, message = verdict
    value = "True" if status else "False"
    since = rfc3339(now)
    if previous is not None and previous.get("status") == value and previous.get("lastTransitionTime"):
        since = str(previous["lastTransitionTime"])
    return {
        "type": kind,
        "status": value,
        "reason": reason,
        "message": message[:1000],
        "observedGeneration": generation,
        "lastTransitionTime": since,
    }


def _failure_summary(state: ProbeState, failing_nodes: list[str]) -> tuple[str, str]:
    """(reason, message) for the Degraded condition: the most frequent failure reason wins."""
    reasons: Counter[str] = Counter()
    parts = []
    provision = state.provision
    if state.provision_enabled and provision is not None and not provision.passed:
        reasons[_value(provision.reason)] += 1
        detail = f" ({provision.message})" if provision.message else ""
        parts.append(
            f"provision probe: {_value(provision.reason)} in phase {_value(provision.phase)}{detail}"
        )
    if failing_nodes:
        reasons.update(_value(state.mounts[node].reason) for node in failing_nodes)
        shown = ", ".join(f"{n} ({_value(state.mounts[n].reason)})" for n in failing_nodes[:5])
        more = f" and {len(failing_nodes) - 5} more" if len(failing_nodes) > 5 else ""
        first = state.mounts[failing_nodes[0]]
        detail = f"; {failing_nodes[0]}: {first.message}" if first.message else ""
        parts.append(f"mount probe failing on {len(failing_nodes)} node(s): {shown}{more}{detail}")
    reason = reasons.most_common(1)[0][0] if reasons else ""
    return camel(reason or "failing"), "; ".join(parts)


def build(state: ProbeState, previous: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """The status document for this probe."""
    previous_conditions = {
        c.get("type"): c for c in (previous or {}).get("conditions", []) if isinstance(c, dict)
    }
    counts = node_counts(state)
    failing_nodes = sorted(
        n
        for n in state.selected_nodes
        if state.mount_enabled and n not in state.skipped and n in state.mounts and not state.mounts[n].passed
    )
    provision_failing = bool(state.provision_enabled and state.provision and not state.provision.passed)
    provision_passing = bool(state.provision_enabled and state.provision and state.provision.passed)

    if not state.class_exists:
        ready = (
            False,
            "StorageClassNotFound",
            "the StorageClass does not exist; probing starts when it appears",
        )
        degraded = (True, "StorageClassNotFound", ready[2])
    elif not state.provision_enabled and not state.mount_enabled:
        ready = (False, "Paused", "both the provision and the mount probes are disabled")
        degraded = (False, "Paused", ready[2])
    elif provision_failing or failing_nodes:
        reason, message = _failure_summary(state, failing_nodes)
        ready = (False, "ProbesFailing", message)
        degraded = (True, reason, message)
    elif provision_passing or counts["passing"]:
        message = f"{counts['passing']}/{counts['selected']} nodes passing"
        if counts["skipped"]:
            message += f", {counts['skipped']} skipped"
        if state.provision_enabled:
            message += "; provisioning works" if provision_passing else "; provision probe pending"
        ready = (True, "ProbesPassing", message)
        degraded = (False, "ProbesPassing", message)
    else:
        message = "waiting for the first runs"
        if counts["selected"] and counts["skipped"] == counts["selected"]:
            message = f"all {counts['selected']} selected nodes are skipped"
        ready = (False, "Pending", message)
        degraded = (False, "Pending", message)

    status: dict[str, Any] = {
        "observedGeneration": state.generation,
        "conditions": [
            _condition(
                "Ready",
                ready,
                generation=state.generation,
                previous=previous_conditions.get("Ready"),
                now=now,
            ),
            _condition(
                "Degraded",
                degraded,
                generation=state.generation,
                previous=previous_conditions.get("Degraded"),
                now=now,
            ),
        ],
        "nodes": counts,
        "failingNodes": [
            {
                "node": n,
                "phase": _value(state.mounts[n].phase),
                "reason": _value(state.mounts[n].reason),
                "time": rfc3339(state.mounts[n].finished),
            }
            for n in failing_nodes[:LIST_LIMIT]
        ],
        "skippedNodes": [
            {"node": n, "reason": state.skipped[n].value}
            for n in sorted(n for n in state.selected_nodes if n in state.skipped)[:LIST_LIMIT]
        ],
    }
    provision = _last(state.provision, state.last_provision_success) if state.provision_enabled else None
    if provision:
        status["provision"] = provision
    latest_mount = max(
        (o for n, o in state.mounts.items() if n in state.selected_nodes),
        key=lambda o: o.finished,
        default=None,
    )
    mount = _last(latest_mount, state.last_mount_success) if state.mount_enabled else None
    if mount:
        status["mount"] = mount
    return status
