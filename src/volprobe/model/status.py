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
from volprobe.model.outcome import Outcome

LIST_LIMIT = 20
"""Failing and skipped nodes listed in status; counts are always complete."""


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _value(member: Phase | Reason | None) -> str:
    return member.value if member is not None else ""


def camel(value: str) -> str:
    """`provisioning_timeout` -> `ProvisioningTimeout` (condition reasons are CamelCase)."""
    return "".join(part.capitalize() for part in value.split("_"))


@dataclass(frozen=True)
class KindState:
    """What one enabled kind of a probe has found so far."""

    name: str
    per_node: bool
    latest: Mapping[str, Outcome] = field(default_factory=dict)
    """Latest completed (not skipped) outcome per node ("" for kinds that are not per node)."""
    last_success: float | None = None


@dataclass(frozen=True)
class Stall:
    kind: str
    node: str
    phase: Phase
    since: float


@dataclass(frozen=True)
class ProbeState:
    """What the controller knows about one StorageProbe right now."""

    generation: int
    class_exists: bool
    kinds: tuple[KindState, ...] = ()
    """The enabled kinds, in registry order."""
    selected_nodes: frozenset[str] = frozenset()
    skipped: Mapping[str, SkipReason] = field(default_factory=dict)
    """Selected nodes skipped now, and why."""
    stalled: tuple[Stall, ...] = ()
    """Runs in flight stalled now (see `volprobe.model.baseline`)."""
    baselines: Mapping[str, list[float]] = field(default_factory=dict)
    """Recent healthy phase durations, carried for the next leader (`Baseline.to_status`)."""
    queued: int = 0
    """Targets waiting for room to create a volume (`volprobe.model.pacing`)."""

    @property
    def node_kinds(self) -> tuple[KindState, ...]:
        return tuple(kind for kind in self.kinds if kind.per_node)

    @property
    def probe_kinds(self) -> tuple[KindState, ...]:
        """Kinds with one target per probe (a provision probe, say)."""
        return tuple(kind for kind in self.kinds if not kind.per_node)


def _on_node(state: ProbeState, node: str) -> list[tuple[str, Outcome]]:
    return [(kind.name, kind.latest[node]) for kind in state.node_kinds if node in kind.latest]


def _probed_nodes(state: ProbeState) -> list[str]:
    """Selected nodes some per-node kind is meant to probe now."""
    if not state.node_kinds:
        return []
    return [n for n in state.selected_nodes if n not in state.skipped]


def _failing_nodes(state: ProbeState) -> list[str]:
    return sorted(n for n in _probed_nodes(state) if any(not o.passed for _, o in _on_node(state, n)))


def node_counts(state: ProbeState) -> dict[str, int]:
    probed = _probed_nodes(state)
    failing = len(_failing_nodes(state))
    passing = sum(1 for n in probed if (found := _on_node(state, n)) and all(o.passed for _, o in found))
    return {
        "selected": len(state.selected_nodes),
        "passing": passing,
        "failing": failing,
        "skipped": sum(1 for n in state.selected_nodes if n in state.skipped),
        "pending": len(probed) - passing - failing,
    }


def last_run(outcome: Outcome | None, last_success: float | None) -> dict[str, Any] | None:
    """The status entry of a latest run (shared by every probe resource's status)."""
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


def condition(
    kind: str,
    verdict: tuple[bool, str, str],
    *,
    generation: int,
    previous: Mapping[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """A condition of any probe resource: `lastTransitionTime` moves only when it flips, as the
    API conventions ask (so the previous one is an input)."""
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


def _first_failure(state: ProbeState, node: str) -> tuple[str, Outcome]:
    return next((kind, o) for kind, o in _on_node(state, node) if not o.passed)


def _failure_summary(state: ProbeState, failing_nodes: list[str]) -> tuple[str, str]:
    """(reason, message) for the Degraded condition: the most frequent failure reason wins."""
    reasons: Counter[str] = Counter()
    parts = []
    for kind in state.probe_kinds:
        outcome = kind.latest.get("")
        if outcome is None or outcome.passed:
            continue
        reasons[_value(outcome.reason)] += 1
        detail = f" ({outcome.message})" if outcome.message else ""
        parts.append(f"{kind.name} probe: {_value(outcome.reason)} in phase {_value(outcome.phase)}{detail}")
    if failing_nodes:
        first = {node: _first_failure(state, node) for node in failing_nodes}
        reasons.update(_value(outcome.reason) for _, outcome in first.values())
        shown = ", ".join(f"{n} ({_value(first[n][1].reason)})" for n in failing_nodes[:5])
        more = f" and {len(failing_nodes) - 5} more" if len(failing_nodes) > 5 else ""
        kinds = "/".join(sorted({kind for kind, _ in first.values()}))
        example = first[failing_nodes[0]][1]
        detail = f"; {failing_nodes[0]}: {example.message}" if example.message else ""
        parts.append(f"{kinds} probe failing on {len(failing_nodes)} node(s): {shown}{more}{detail}")
    reason = reasons.most_common(1)[0][0] if reasons else ""
    return camel(reason or "failing"), "; ".join(parts)


def _latest(kind: KindState, selected: frozenset[str]) -> Outcome | None:
    """The kind's newest outcome (of a node the probe still covers, for per-node kinds)."""
    found = [o for node, o in kind.latest.items() if not kind.per_node or node in selected]
    return max(found, key=lambda o: o.finished, default=None)


def build(state: ProbeState, previous: Mapping[str, Any] | None, now: float) -> dict[str, Any]:
    """The status document for this probe."""
    previous_conditions = {
        c.get("type"): c for c in (previous or {}).get("conditions", []) if isinstance(c, dict)
    }
    counts = node_counts(state)
    failing_nodes = _failing_nodes(state)
    probe_results = [(kind.name, kind.latest.get("")) for kind in state.probe_kinds]
    any_probe_failing = any(o is not None and not o.passed for _, o in probe_results)
    any_probe_passing = any(o is not None and o.passed for _, o in probe_results)

    if not state.class_exists:
        ready = (
            False,
            "StorageClassNotFound",
            "the StorageClass does not exist; probing starts when it appears",
        )
        degraded = (True, "StorageClassNotFound", ready[2])
    elif not state.kinds:
        ready = (False, "Paused", "every kind of probe is disabled")
        degraded = (False, "Paused", ready[2])
    elif any_probe_failing or failing_nodes:
        reason, message = _failure_summary(state, failing_nodes)
        ready = (False, "ProbesFailing", message)
        degraded = (True, reason, message)
    elif state.stalled:
        message = "; ".join(
            f"{s.kind} probe{f' on node {s.node}' if s.node else ''} stalled in phase {s.phase.value} "
            f"since {rfc3339(s.since)}"
            for s in state.stalled[:5]
        )
        ready = (False, "ProbesStalled", message)
        degraded = (True, camel(f"{state.stalled[0].phase.value}_stalled"), message)
    elif any_probe_passing or counts["passing"]:
        message = f"{counts['passing']}/{counts['selected']} nodes passing"
        if counts["skipped"]:
            message += f", {counts['skipped']} skipped"
        for name, outcome in probe_results:
            message += f"; {name} probe passes" if outcome is not None else f"; {name} probe pending"
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
            condition(
                "Ready",
                ready,
                generation=state.generation,
                previous=previous_conditions.get("Ready"),
                now=now,
            ),
            condition(
                "Degraded",
                degraded,
                generation=state.generation,
                previous=previous_conditions.get("Degraded"),
                now=now,
            ),
        ],
        "nodes": counts,
        "failingNodes": [
            {"node": n, "phase": _value(o.phase), "reason": _value(o.reason), "time": rfc3339(o.finished)}
            for n, o in ((n, _first_failure(state, n)[1]) for n in failing_nodes[:LIST_LIMIT])
        ],
        "skippedNodes": [
            {"node": n, "reason": state.skipped[n].value}
            for n in sorted(n for n in state.selected_nodes if n in state.skipped)[:LIST_LIMIT]
        ],
    }
    for kind in state.kinds:
        last = last_run(_latest(kind, state.selected_nodes), kind.last_success)
        if last:
            status[kind.name] = last
    if state.stalled:
        status["stalled"] = [
            {
                "kind": s.kind,
                "phase": s.phase.value,
                "since": rfc3339(s.since),
                **({"node": s.node} if s.node else {}),
            }
            for s in state.stalled[:LIST_LIMIT]
        ]
    if state.queued:
        status["queuedRuns"] = state.queued
        note = f"; {state.queued} runs queued behind volume creation (rollout in progress)"
        for entry in status["conditions"]:
            entry["message"] = (entry["message"] + note)[:1000]
    if state.baselines:
        status["baselines"] = dict(state.baselines)
    return status
