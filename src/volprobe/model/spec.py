"""A StorageProbe as the controller uses it: typed, defaulted, immutable.

The API server applies the CRD's defaults and validation before we ever see an object, so the
defaults below matter for the one-shot `check` mode (which has no object) and as a second line
of defence against objects written before a schema change. They must equal the CRD's
(tests/unit/test_crd.py compares them), so both places are the same fact written twice on
purpose, checked by a test rather than generated.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

API_GROUP = "volprobe.io"
API_VERSION = "v1alpha1"
PLURAL = "storageprobes"
KIND = "StorageProbe"

DEFAULT_INTERVAL_SECONDS = 60
DEFAULT_NODE_GRACE_SECONDS = 60
DEFAULT_TIMEOUTS = {
    "provisionSeconds": 120,
    "scheduleSeconds": 60,
    "mountSeconds": 120,
    "ioSeconds": 60,
    "cleanupSeconds": 120,
}
DEFAULT_VOLUME = {"size": "64Mi", "volumeMode": "Filesystem", "accessMode": "ReadWriteOnce"}
DEFAULT_IO = {"payloadBytes": 4 * 1024 * 1024, "blockBytes": 1024 * 1024}
DEFAULT_RESOURCES = {
    "requests": {"cpu": "10m", "memory": "32Mi"},
    "limits": {"cpu": "500m", "memory": "64Mi"},
}


class SpecError(ValueError):
    """The object cannot be probed as written (only possible if it bypassed the CRD schema)."""


@dataclass(frozen=True)
class Timeouts:
    provision: float = DEFAULT_TIMEOUTS["provisionSeconds"]
    schedule: float = DEFAULT_TIMEOUTS["scheduleSeconds"]
    mount: float = DEFAULT_TIMEOUTS["mountSeconds"]
    io: float = DEFAULT_TIMEOUTS["ioSeconds"]
    cleanup: float = DEFAULT_TIMEOUTS["cleanupSeconds"]

    @property
    def agent_deadline(self) -> float:
        """The agent's own IO deadline: short enough that its `timeout` report beats ours.

        The agent's watchdog must write its report and exit before the controller gives up on
        the container, so it gets 80 % of the IO phase (and at least 3 s).
        """
        return max(3.0, round(self.io * 0.8, 1))


@dataclass(frozen=True)
class Volume:
    size: str = DEFAULT_VOLUME["size"]
    mode: str = DEFAULT_VOLUME["volumeMode"]
    access_mode: str = DEFAULT_VOLUME["accessMode"]

    @property
    def block(self) -> bool:
        return self.mode == "Block"


@dataclass(frozen=True)
class PodSettings:
    resources: Mapping[str, Any] = field(default_factory=lambda: DEFAULT_RESOURCES)
    tolerations: tuple[Mapping[str, Any], ...] = ()
    priority_class_name: str = ""
    image_pull_secrets: tuple[str, ...] = ()
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ProbeSpec:
    """Everything the controller needs to know about one StorageProbe."""

    name: str
    uid: str
    generation: int
    storage_class: str
    node_selector_terms: tuple[Mapping[str, Any], ...] = ()
    interval: float = DEFAULT_INTERVAL_SECONDS
    timeouts: Timeouts = field(default_factory=Timeouts)
    disabled_kinds: frozenset[str] = frozenset()
    """Kinds switched off with `spec.<kind>.enabled: false` (every kind runs by default)."""
    node_grace: float = DEFAULT_NODE_GRACE_SECONDS
    volume: Volume = field(default_factory=Volume)
    payload_bytes: int = DEFAULT_IO["payloadBytes"]
    block_bytes: int = DEFAULT_IO["blockBytes"]
    pod: PodSettings = field(default_factory=PodSettings)

    def enables(self, kind: str) -> bool:
        return kind not in self.disabled_kinds


def _disabled_kinds(spec: Mapping[str, Any]) -> frozenset[str]:
    """`spec.<kind>.enabled: false` for any kind: a new kind needs no parsing code of its own."""
    return frozenset(
        str(key)
        for key, value in spec.items()
        if isinstance(value, Mapping) and value.get("enabled") is False
    )


def parse_probe(obj: Mapping[str, Any]) -> ProbeSpec:
    """Read a StorageProbe object (as returned by the API server) into a ProbeSpec."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    storage_class = spec.get("storageClassName")
    if not isinstance(storage_class, str) or not storage_class:
        raise SpecError("spec.storageClassName is required")
    timeouts = {**DEFAULT_TIMEOUTS, **(spec.get("timeouts") or {})}
    volume = {**DEFAULT_VOLUME, **(spec.get("volume") or {})}
    io = {**DEFAULT_IO, **(spec.get("io") or {})}
    pod = spec.get("pod") or {}
    terms = (spec.get("nodeSelector") or {}).get("nodeSelectorTerms") or []
    try:
        return ProbeSpec(
            name=str(metadata["name"]),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation", 0)),
            storage_class=storage_class,
            node_selector_terms=tuple(terms),
            interval=float(spec.get("intervalSeconds", DEFAULT_INTERVAL_SECONDS)),
            timeouts=Timeouts(
                provision=float(timeouts["provisionSeconds"]),
                schedule=float(timeouts["scheduleSeconds"]),
                mount=float(timeouts["mountSeconds"]),
                io=float(timeouts["ioSeconds"]),
                cleanup=float(timeouts["cleanupSeconds"]),
            ),
            disabled_kinds=_disabled_kinds(spec),
            node_grace=float(spec.get("nodeGracePeriodSeconds", DEFAULT_NODE_GRACE_SECONDS)),
            volume=Volume(
                size=str(volume["size"]),
                mode=str(volume["volumeMode"]),
                access_mode=str(volume["accessMode"]),
            ),
            payload_bytes=int(io["payloadBytes"]),
            block_bytes=int(io["blockBytes"]),
            pod=PodSettings(
                resources=pod.get("resources") or DEFAULT_RESOURCES,
                tolerations=tuple(pod.get("tolerations") or ()),
                priority_class_name=str(pod.get("priorityClassName") or ""),
                image_pull_secrets=tuple(str(s["name"]) for s in pod.get("imagePullSecrets") or ()),
                labels=dict(pod.get("labels") or {}),
                annotations=dict(pod.get("annotations") or {}),
            ),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(f"unreadable StorageProbe spec: {error}") from None
