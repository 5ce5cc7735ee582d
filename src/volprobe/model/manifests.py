"""The Kubernetes objects volprobe creates: their names, labels and manifests (pure functions).

Everything the controller needs to rebuild its state after a restart is written on the objects
themselves (labels to find them, annotations to know which run they belong to), so no state
lives only in memory. Names are deterministic per run, so a create that was sent but whose
answer was lost comes back as AlreadyExists and is adopted rather than duplicated.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from volprobe import __version__
from volprobe.contract.pod import AGENT_UID, DEVICE_PATH, MOUNT_PATH, NODE_FIELD, RESULT_FILE, Env, Invocation
from volprobe.model.spec import API_GROUP, API_VERSION, KIND, ProbeSpec
from volprobe.model.targets import Target

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "volprobe"
LABEL_PROBE = "volprobe.io/probe"
LABEL_KIND = "volprobe.io/kind"
LABEL_NODE_HASH = "volprobe.io/node-hash"
ANNOTATION_NODE = "volprobe.io/node"
ANNOTATION_RUN = "volprobe.io/run"
ANNOTATION_PROBE_UID = "volprobe.io/probe-uid"
ANNOTATION_GENERATION = "volprobe.io/generation"
"""On a long-lived claim: the generation the last successful run wrote (what the next must find)."""

SELECTOR = f"{MANAGED_BY}={MANAGER}"
DEFAULT_AGENT_IMAGE = f"ghcr.io/volprobe/volprobe:{__version__}"
"""The image built from this source (Containerfile); the Helm chart and `check` default to it."""
VOLUME_NAME = "volume"


@dataclass(frozen=True)
class AgentImage:
    """The image probe pods run and how to start the agent in it."""

    image: str
    command: tuple[str, ...] = ("volprobe",)
    pull_policy: str = "IfNotPresent"


def node_hash(node: str) -> str:
    """Node names can be 253 characters; labels and pod names need something short."""
    return hashlib.sha256(node.encode()).hexdigest()[:10]


def node_claim_name(probe: str, node: str) -> str:
    """The long-lived claim a probe keeps on one node."""
    return f"vp-{probe}-{node_hash(node)}"


def pod_name(target: Target, short: str, slot: str) -> str:
    """One pod per run; at most 63 characters with a 40-character probe name.

    `short` is the kind's abbreviation; per-node targets add a hash of their node.
    """
    if not target.node:
        return f"vp-{target.probe}-{short}-{slot}"
    return f"vp-{target.probe}-{short}-{node_hash(target.node)[:8]}-{slot}"


def labels(target: Target) -> dict[str, str]:
    found = {MANAGED_BY: MANAGER, LABEL_PROBE: target.probe, LABEL_KIND: target.kind}
    if target.node:
        found[LABEL_NODE_HASH] = node_hash(target.node)
    return found


def owner_references(spec: ProbeSpec) -> list[dict[str, Any]]:
    """Everything we create is owned by its StorageProbe: deleting the probe collects it all.

    A one-shot `volprobe check` has no StorageProbe object (its spec has no UID): an owner that
    does not exist would make the garbage collector delete our objects at once, so none is set.
    """
    if not spec.uid:
        return []
    return [
        {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": KIND,
            "name": spec.name,
            "uid": spec.uid,
            "controller": True,
            "blockOwnerDeletion": False,
        }
    ]


def target_of(meta_labels: Mapping[str, str], annotations: Mapping[str, str]) -> Target | None:
    """Which target an object we created belongs to (None for anything else)."""
    if meta_labels.get(MANAGED_BY) != MANAGER:
        return None
    probe = meta_labels.get(LABEL_PROBE)
    kind = meta_labels.get(LABEL_KIND)
    if not probe or not kind:
        return None
    return Target(probe, kind, annotations.get(ANNOTATION_NODE, ""))


def _claim_spec(spec: ProbeSpec) -> dict[str, Any]:
    return {
        "storageClassName": spec.storage_class,
        "accessModes": [spec.volume.access_mode],
        "volumeMode": spec.volume.mode,
        "resources": {"requests": {"storage": spec.volume.size}},
    }


def lasting_claim(spec: ProbeSpec, target: Target, name: str, namespace: str) -> dict[str, Any]:
    """A claim that outlives runs (a node's volume that each run verifies and rewrites)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels(target),
            "annotations": {ANNOTATION_NODE: target.node, ANNOTATION_PROBE_UID: spec.uid},
            "ownerReferences": owner_references(spec),
        },
        "spec": _claim_spec(spec),
    }


MAX_AVOIDED_NODES = 100
"""Cap on nodes a provision pod is told to avoid, so the pod spec stays small at any scale."""


def _node_affinity(spec: ProbeSpec, target: Target, avoid_nodes: Sequence[str]) -> dict[str, Any]:
    if target.node:
        # Pin by the node's name (matchFields), not its hostname label: the two differ on some
        # clouds, and the label can be changed by anyone who can edit the node.
        terms: list[Mapping[str, Any]] = [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [target.node]}]}
        ]
    else:
        # Probes run Linux containers: every term also requires Linux (no terms: Linux nodes).
        linux = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
        terms = [
            {**term, "matchExpressions": [*term.get("matchExpressions", []), linux]}
            for term in (spec.node_selector_terms or [{}])
        ]
    if avoid_nodes and not target.node:
        # Keep the provision probe off nodes we skip (just rebooted, too new): the scheduler
        # would happily use them and turn their hiccups into provisioning failures.
        # Node field selectors take one value per requirement; requirements of a term are ANDed.
        avoid = [
            {"key": "metadata.name", "operator": "NotIn", "values": [node]}
            for node in sorted(avoid_nodes)[:MAX_AVOIDED_NODES]
        ]
        terms = [{**term, "matchFields": [*term.get("matchFields", []), *avoid]} for term in terms]
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}


def probe_pod(
    spec: ProbeSpec,
    target: Target,
    *,
    name: str,
    namespace: str,
    agent: AgentImage,
    claim: str | None = None,
    expect_generation: int | None = None,
    avoid_nodes: Sequence[str] = (),
) -> dict[str, Any]:
    """The pod of one run: mounts the volume, runs the agent, reports via its termination message.

    `claim` names an existing claim to mount (a per-node kind's long-lived volume); without it
    the pod brings a new generic ephemeral volume of the class (a provision run). A target with a
    node is pinned to it; one without may land on any selected node but those in `avoid_nodes`.

    - `activeDeadlineSeconds` makes the kubelet kill a pod whose run overstays, even while the
      controller is down: nothing we start can hang forever.
    - No service-account token, no service links, no DNS: the agent talks to nobody.
    - Requests and limits always set (pod defaults come from the StorageProbe's schema).
    """
    timeouts = spec.timeouts
    invocation = Invocation(
        kind=target.kind,
        run_id=name,
        probe=spec.name,
        storage_class=spec.storage_class,
        block_device=spec.volume.block,
        deadline=timeouts.agent_deadline,
        payload_bytes=spec.payload_bytes,
        block_bytes=spec.block_bytes,
        expect_generation=expect_generation,
    )
    env: list[dict[str, Any]] = [
        {"name": key, "value": value} for key, value in invocation.environment().items()
    ]
    env.append({"name": Env.NODE, "valueFrom": {"fieldRef": {"fieldPath": NODE_FIELD}}})
    container: dict[str, Any] = {
        "name": "agent",
        "image": agent.image,
        "imagePullPolicy": agent.pull_policy,
        "command": [*agent.command],
        "args": invocation.args(),
        "env": env,
        "resources": dict(spec.pod.resources),
        "terminationMessagePath": RESULT_FILE,
        "terminationMessagePolicy": "File",
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    if spec.volume.block:
        container["volumeDevices"] = [{"name": VOLUME_NAME, "devicePath": DEVICE_PATH}]
    else:
        container["volumeMounts"] = [{"name": VOLUME_NAME, "mountPath": MOUNT_PATH}]
    if claim is not None:
        volume: dict[str, Any] = {"name": VOLUME_NAME, "persistentVolumeClaim": {"claimName": claim}}
    else:
        volume = {
            "name": VOLUME_NAME,
            "ephemeral": {
                "volumeClaimTemplate": {"metadata": {"labels": labels(target)}, "spec": _claim_spec(spec)}
            },
        }
    # A raw device node is root-owned inside the container; the agent needs uid 0 to open it
    # (with every capability still dropped). Filesystem volumes are written as an unprivileged user.
    user = 0 if spec.volume.block else AGENT_UID
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "activeDeadlineSeconds": int(timeouts.schedule + timeouts.mount + timeouts.io + 30),
        "terminationGracePeriodSeconds": 5,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "dnsPolicy": "Default",
        "affinity": _node_affinity(spec, target, avoid_nodes),
        "securityContext": {
            "runAsUser": user,
            "runAsGroup": user,
            "runAsNonRoot": user != 0,
            "fsGroup": AGENT_UID,
            "fsGroupChangePolicy": "OnRootMismatch",
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": [volume],
    }
    if spec.pod.tolerations:
        pod_spec["tolerations"] = [dict(t) for t in spec.pod.tolerations]
    if spec.pod.priority_class_name:
        pod_spec["priorityClassName"] = spec.pod.priority_class_name
    if spec.pod.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in spec.pod.image_pull_secrets]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {**spec.pod.labels, **labels(target)},
            "annotations": {
                **spec.pod.annotations,
                ANNOTATION_RUN: name,
                ANNOTATION_PROBE_UID: spec.uid,
                **({ANNOTATION_NODE: target.node} if target.node else {}),
            },
            "ownerReferences": owner_references(spec),
        },
        "spec": pod_spec,
    }
