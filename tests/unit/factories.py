"""Realistic API objects (as the API server returns them) and outcomes, for the pure-core tests.

The builders return plain JSON-like dicts shaped like `kubectl get -o json` output, so the tests
exercise the same projections (`volprobe.views`) the controller runs on watched objects.
Times are Unix seconds in the arguments and RFC 3339 strings in the objects.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.contract.report import Report
from volprobe.model.manifests import labels
from volprobe.model.outcome import Outcome
from volprobe.model.targets import Target
from volprobe.model.views import ClaimView

NOW = datetime(2026, 11, 22, 3, 0, 0, tzinfo=UTC).timestamp()
"""A fixed "now" every test measures from."""
DAY = 86400.0
NAMESPACE = "volprobe"
PROBE = "fast-ssd"
STORAGE_CLASS = "fast-ssd"


def rfc3339(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- nodes ---------------------------------------------------------------------------------------


def node_json(
    name: str = "worker-1",
    *,
    labels: dict[str, str] | None = None,
    os: str = "linux",
    created: float = NOW - 30 * DAY,
    ready: str = "True",
    ready_since: float = NOW - 7 * DAY,
    unschedulable: bool = False,
    taints: list[dict[str, Any]] | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A node as the API server returns it (status trimmed to what matters, but realistic)."""
    metadata: dict[str, Any] = {
        "name": name,
        "uid": f"uid-{name}",
        "resourceVersion": "48213",
        "creationTimestamp": rfc3339(created),
        "labels": {
            "beta.kubernetes.io/arch": "amd64",
            "beta.kubernetes.io/os": os,
            "kubernetes.io/arch": "amd64",
            "kubernetes.io/hostname": name,
            "kubernetes.io/os": os,
            **(labels or {}),
        },
        "annotations": {"node.alpha.kubernetes.io/ttl": "0"},
    }
    if deleting:
        metadata["deletionTimestamp"] = rfc3339(NOW - 5)
        metadata["finalizers"] = ["example.com/drain"]
    spec: dict[str, Any] = {"podCIDR": "10.244.1.0/24", "providerID": f"kwok://{name}"}
    if unschedulable:
        spec["unschedulable"] = True
    if taints:
        spec["taints"] = taints
    heartbeat = rfc3339(NOW - 10)
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": metadata,
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": rfc3339(created),
                },
                {
                    "type": "DiskPressure",
                    "status": "False",
                    "reason": "KubeletHasNoDiskPressure",
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": rfc3339(created),
                },
                {
                    "type": "Ready",
                    "status": ready,
                    "reason": "KubeletReady" if ready == "True" else "NodeStatusUnknown",
                    "message": "kubelet is posting ready status",
                    "lastHeartbeatTime": heartbeat,
                    "lastTransitionTime": rfc3339(ready_since),
                },
            ],
            "nodeInfo": {"kubeletVersion": "v1.34.0", "operatingSystem": os, "architecture": "amd64"},
        },
    }


def taint(key: str, effect: str, value: str | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {"key": key, "effect": effect}
    if value is not None:
        found["value"] = value
    return found


# -- pods ----------------------------------------------------------------------------------------


def waiting(reason: str, message: str = "") -> dict[str, Any]:
    found: dict[str, Any] = {"reason": reason}
    if message:
        found["message"] = message
    return {"waiting": found}


def running(started: float) -> dict[str, Any]:
    return {"running": {"startedAt": rfc3339(started)}}


def terminated(
    exit_code: int,
    *,
    reason: str = "Completed",
    message: str | None = None,
    started: float,
    finished: float,
) -> dict[str, Any]:
    found: dict[str, Any] = {
        "exitCode": exit_code,
        "reason": reason,
        "startedAt": rfc3339(started),
        "finishedAt": rfc3339(finished),
        "containerID": "containerd://4f1c0a",
    }
    if message is not None:
        found["message"] = message
    return {"terminated": found}


def pod_json(
    name: str,
    *,
    created: float,
    node: str | None = None,
    scheduled: float | None = None,
    unschedulable_message: str = "",
    state: dict[str, Any] | None = None,
    phase: str = "Pending",
    reason: str = "",
    message: str = "",
    claim: str | None = None,
    deleting: bool = False,
) -> dict[str, Any]:
    """A probe pod at some point of its life: unscheduled, scheduled, running or terminated."""
    metadata: dict[str, Any] = {
        "name": name,
        "namespace": NAMESPACE,
        "uid": f"uid-{name}",
        "creationTimestamp": rfc3339(created),
        "labels": {"app.kubernetes.io/managed-by": "volprobe", "volprobe.io/probe": PROBE},
    }
    if deleting:
        metadata["deletionTimestamp"] = rfc3339(created + 1)
    volume: dict[str, Any] = (
        {"name": "volume", "persistentVolumeClaim": {"claimName": claim}}
        if claim
        else {"name": "volume", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
    )
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "containers": [{"name": "agent", "image": "volprobe:dev"}],
        "volumes": [volume],
    }
    if node:
        spec["nodeName"] = node
    conditions: list[dict[str, Any]] = []
    if scheduled is not None:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": rfc3339(scheduled)}
        )
    elif unschedulable_message:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable_message,
                "lastTransitionTime": rfc3339(created),
            }
        )
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if reason:
        status["reason"] = reason
    if message:
        status["message"] = message
    if state is not None:
        status["containerStatuses"] = [
            {
                "name": "agent",
                "image": "volprobe:dev",
                "imageID": "",
                "ready": "running" in state,
                "restartCount": 0,
                "state": state,
            }
        ]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec, "status": status}


# -- claims, volumes, events ---------------------------------------------------------------------


def claim_json(
    name: str,
    *,
    phase: str = "Pending",
    volume: str = "",
    created: float = NOW,
    storage_class: str = STORAGE_CLASS,
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": ["ReadWriteOnce"],
        "resources": {"requests": {"storage": "64Mi"}},
        "storageClassName": storage_class,
        "volumeMode": "Filesystem",
    }
    if volume:
        spec["volumeName"] = volume
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": NAMESPACE,
            "uid": f"uid-{name}",
            "creationTimestamp": rfc3339(created),
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "owner", "uid": "uid-owner"}],
        },
        "spec": spec,
        "status": {"phase": phase},
    }


def our_claim(name: str, target: Target) -> ClaimView:
    """A bound claim volprobe made for `target`, as the controller's cache projects it."""
    raw = claim_json(name, phase="Bound", volume=f"pv-{name}")
    raw["metadata"]["labels"] = labels(target)
    raw["metadata"]["annotations"] = {"volprobe.io/node": target.node} if target.node else {}
    return ClaimView.of(raw)


def volume_json(name: str, claim: str, *, phase: str = "Released", policy: str = "Delete") -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "64Mi"},
            "claimRef": {"kind": "PersistentVolumeClaim", "namespace": NAMESPACE, "name": claim, "uid": "c1"},
            "persistentVolumeReclaimPolicy": policy,
            "storageClassName": STORAGE_CLASS,
        },
        "status": {"phase": phase},
    }


def event_json(reason: str, message: str, *, event_type: str = "Warning", count: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"x.{reason.lower()}", "namespace": NAMESPACE},
        "reason": reason,
        "message": message,
        "type": event_type,
        "count": count,
        "lastTimestamp": rfc3339(NOW),
    }


# -- outcomes ------------------------------------------------------------------------------------


def mount_outcome(
    node: str,
    *,
    result: Result = Result.SUCCESS,
    phase: Phase | None = None,
    reason: Reason | None = None,
    message: str = "",
    finished: float = NOW,
    seconds: float = 4.0,
    durations: dict[Phase, float] | None = None,
    report: Report | None = None,
    probe: str = PROBE,
) -> Outcome:
    return Outcome(
        target=Target(probe, "mount", node),
        run=f"vp-{probe}-m-{node}",
        result=result,
        phase=phase,
        reason=reason,
        message=message,
        node=node,
        started=finished - seconds,
        finished=finished,
        durations=durations or {},
        report=report,
    )


def provision_outcome(
    *,
    result: Result = Result.SUCCESS,
    phase: Phase | None = None,
    reason: Reason | None = None,
    message: str = "",
    node: str = "worker-1",
    finished: float = NOW,
    seconds: float = 9.0,
    durations: dict[Phase, float] | None = None,
    probe: str = PROBE,
) -> Outcome:
    return Outcome(
        target=Target(probe, "provision"),
        run=f"vp-{probe}-p-1",
        result=result,
        phase=phase,
        reason=reason,
        message=message,
        node=node,
        started=finished - seconds,
        finished=finished,
        durations=durations or {},
    )


def skipped_outcome(node: str, reason: SkipReason, *, finished: float = NOW, probe: str = PROBE) -> Outcome:
    return Outcome(
        target=Target(probe, "mount", node),
        run="",
        result=Result.SKIPPED,
        phase=None,
        reason=None,
        message=f"skipped: {reason.value}",
        node=node,
        started=finished,
        finished=finished,
        skip=reason,
    )
