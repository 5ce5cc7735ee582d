"""Kubernetes Events on StorageProbes, for what a person should notice: transitions only.

An Event per run would be noise (and API load); an Event when a target starts failing, when it
recovers, and when the StorageClass goes missing or comes back is what `kubectl describe` should
show. Events are queued and sent by one worker under a small rate limit, so a storm of failures
(a whole rack down) can never turn into a storm of writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from volprobe.model.spec import API_GROUP, API_VERSION
from volprobe.model.status import rfc3339
from volprobe.runtime.kube import ApiError, KubeClient

log = logging.getLogger(__name__)

EVENT_NAMESPACE = "default"
"""The API server requires Events about cluster-scoped objects (a StorageProbe) to live here."""
QUEUE_LIMIT = 1000
PER_SECOND = 5.0


@dataclass(frozen=True)
class ProbeEvent:
    api_kind: str
    """The involved object's kind: StorageProbe, ObjectStoreProbe."""
    probe: str
    probe_uid: str
    type: str
    reason: str
    message: str


class EventRecorder:
    def __init__(self, client: KubeClient, instance: str) -> None:
        self.client = client
        self.instance = instance
        self._queue: asyncio.Queue[ProbeEvent] = asyncio.Queue(QUEUE_LIMIT)
        self.dropped = 0

    def emit(self, api_kind: str, name: str, uid: str, *, type_: str, reason: str, message: str) -> None:
        """Queue an Event about a probe; drop it (and count) when the queue is full, rather than block."""
        try:
            self._queue.put_nowait(ProbeEvent(api_kind, name, uid, type_, reason, message[:1000]))
        except asyncio.QueueFull:
            self.dropped += 1

    async def run(self) -> None:
        while True:
            event = await self._queue.get()
            with contextlib.suppress(ApiError, OSError):
                await self._send(event)
            await asyncio.sleep(1 / PER_SECOND)

    def _manifest(self, event: ProbeEvent) -> dict[str, Any]:
        now = rfc3339(time.time())
        return {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{event.probe}.", "namespace": EVENT_NAMESPACE},
            "involvedObject": {
                "apiVersion": f"{API_GROUP}/{API_VERSION}",
                "kind": event.api_kind,
                "name": event.probe,
                "uid": event.probe_uid,
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": "volprobe-controller"},
            "reportingComponent": "volprobe.io/controller",
            "reportingInstance": self.instance[:128],
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        }

    async def _send(self, event: ProbeEvent) -> None:
        try:
            await self.client.create(f"/api/v1/namespaces/{EVENT_NAMESPACE}/events", self._manifest(event))
        except ApiError as error:
            log.warning("could not record event %s for %s: %s", event.reason, event.probe, error)
            raise
