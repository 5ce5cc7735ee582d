"""The provision probe: a new volume of the class, mounted, written, verified and deleted.

One target per StorageProbe. Each run is a pod with a generic ephemeral volume, placed on any
selected node that is well (the others are avoided). It times claim bound -> pod scheduled ->
container running -> IO -> pod, claim and, for classes with `reclaimPolicy: Delete`, the
PersistentVolume gone: a volume left behind is a failure of its own (`pv_not_deleted`), because
leaked volumes cost money and hide capacity.
"""

from __future__ import annotations

from dataclasses import dataclass

from volprobe.kinds.storageprobe import storage_probe
from volprobe.model.kind import Placement
from volprobe.model.manifests import VOLUME_NAME, probe_pod
from volprobe.model.outcome import Outcome
from volprobe.model.runs import RunRequest
from volprobe.model.spec import PLURAL
from volprobe.model.targets import Target
from volprobe.runtime.engine import Engine, PodKind, PodRun


@dataclass(frozen=True)
class ProvisionKind(PodKind):
    name: str = "provision"
    short: str = "p"
    placement: Placement = Placement.ANY_NODE
    resource: str = PLURAL
    description: str = (
        "A new volume of the class, created, mounted, written and deleted, on any selected node."
    )

    def lasting_claims(self, target: Target) -> tuple[str, ...]:
        return ()

    async def execute(self, request: RunRequest, engine: Engine) -> Outcome:
        spec = storage_probe(request)
        # The ephemeral-volume controller names the claim after the pod and the volume.
        claim = f"{request.pod_name}-{VOLUME_NAME}"
        storage_class = engine.caches.storage_class(spec.storage_class)
        manifest = None
        if request.adopt is None:
            manifest = probe_pod(
                spec,
                request.target,
                name=request.pod_name,
                namespace=engine.namespace,
                agent=engine.agent,
                avoid_nodes=request.avoid_nodes,
            )
        plan = PodRun(
            timeouts=spec.timeouts,
            claim=claim,
            manifest=manifest,
            require_volume_gone=storage_class is None or storage_class.reclaim_policy == "Delete",
        )
        return await engine.run_pod(request, plan)


KIND = ProvisionKind()
