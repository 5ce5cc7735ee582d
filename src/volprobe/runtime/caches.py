"""The controller's view of the cluster: one list+watch cache per resource, and wake-ups.

Runs wait for "something about my pod, claim or volume changed" instead of polling: each
reflector event wakes the waiters registered for that object's key. The scheduler waits for
"probes, nodes or classes changed". Pods and claims are watched only in volprobe's namespace
and only with volprobe's label, so the cost does not grow with the cluster's workloads.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from volprobe.model.manifests import SELECTOR
from volprobe.model.spec import API_GROUP, API_VERSION
from volprobe.model.views import ClaimView, ClassView, NodeView, PodView, VolumeView
from volprobe.runtime.kube import KubeClient, Reflector


def probes_path(plural: str) -> str:
    """The collection of a probe resource (`storageprobes`, `objectstoreprobes`)."""
    return f"/apis/{API_GROUP}/{API_VERSION}/{plural}"


class Caches:
    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        probe_selector: str | None = None,
        *,
        probe_resources: Sequence[str] = (),
    ) -> None:
        """`probe_resources`: the plurals of the probe resources to watch (none for `check`).

        Only the first is required to exist: the others are optional CRDs (an installation may
        have only StorageProbes), watched as empty until they appear.
        """
        self.namespace = namespace
        self._waiters: dict[str, set[asyncio.Event]] = defaultdict(set)
        self.changed = asyncio.Event()
        """Set when a probe, node or StorageClass changed: the scheduler should look again."""
        self.probes: dict[str, Reflector[dict[str, Any]]] = {
            plural: Reflector(
                client,
                probes_path(plural),
                label_selector=probe_selector or None,
                on_event=self._on_topology,
                missing_ok=index > 0,
            )
            for index, plural in enumerate(probe_resources)
        }
        """Raw objects of each probe resource, by plural (their specs are parsed on each look)."""
        self.classes = Reflector(
            client, "/apis/storage.k8s.io/v1/storageclasses", project=ClassView.of, on_event=self._on_topology
        )
        self.nodes = Reflector(client, "/api/v1/nodes", project=NodeView.of, on_event=self._on_topology)
        self.pods = Reflector(
            client,
            f"/api/v1/namespaces/{namespace}/pods",
            label_selector=SELECTOR,
            project=PodView.of,
            on_event=self._notifier("pod"),
        )
        self.claims = Reflector(
            client,
            f"/api/v1/namespaces/{namespace}/persistentvolumeclaims",
            label_selector=SELECTOR,
            project=ClaimView.of,
            on_event=self._notifier("claim"),
        )
        self.volumes = Reflector(
            client, "/api/v1/persistentvolumes", project=VolumeView.of, on_event=self._notifier("volume")
        )
        self._tasks: list[asyncio.Task[None]] = []

    @property
    def reflectors(self) -> tuple[Reflector[Any], ...]:
        return (*self.probes.values(), self.classes, self.nodes, self.pods, self.claims, self.volumes)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(r.run(), name=f"reflector {r.path}") for r in self.reflectors]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []

    async def wait_synced(self) -> None:
        await asyncio.gather(*(r.synced.wait() for r in self.reflectors))

    @property
    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self.reflectors)

    @property
    def live(self) -> bool:
        """Every watch is current (none is retrying after an error)."""
        return all(r.live for r in self.reflectors)

    # -- lookups -------------------------------------------------------------------------------

    def pod(self, name: str) -> PodView | None:
        return self.pods.store.get(f"{self.namespace}/{name}")

    def claim(self, name: str) -> ClaimView | None:
        return self.claims.store.get(f"{self.namespace}/{name}")

    def volume(self, name: str) -> VolumeView | None:
        return self.volumes.store.get(name) if name else None

    def storage_class(self, name: str) -> ClassView | None:
        return self.classes.store.get(name)

    def all_nodes(self) -> Iterator[NodeView]:
        return iter(self.nodes.store.values())

    # -- waiting -------------------------------------------------------------------------------

    def _notifier(self, kind: str) -> Any:
        def notify(_event: str, key: str, _old: Any, _new: Any) -> None:
            for waiter in self._waiters.get(f"{kind}:{key}", ()):
                waiter.set()

        return notify

    def nudge(self, key: str) -> None:
        """Wake whoever waits on this object although it did not change (an aborted run)."""
        for waiter in self._waiters.get(key, ()):
            waiter.set()

    def _on_topology(self, _event: str, _key: str, _old: Any, _new: Any) -> None:
        self.changed.set()

    def pod_key(self, name: str) -> str:
        return f"pod:{self.namespace}/{name}"

    def claim_key(self, name: str) -> str:
        return f"claim:{self.namespace}/{name}"

    @staticmethod
    def volume_key(name: str) -> str:
        return f"volume:{name}"

    async def wait(self, keys: Iterable[str], within: float) -> None:
        """Return when any of these objects changes, or after `within` seconds."""
        event = asyncio.Event()
        keys = list(keys)
        for key in keys:
            self._waiters[key].add(event)
        try:
            # Not `wait_for`: it makes a task for every wait, and every run waits several times.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(0.0, within)):
                    await event.wait()
        finally:
            for key in keys:
                waiters = self._waiters.get(key)
                if waiters is not None:
                    waiters.discard(event)
                    if not waiters:
                        del self._waiters[key]
