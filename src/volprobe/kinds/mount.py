"""The mount probe: on every selected node, that node's long-lived volume, mounted by a fresh pod.

One target per selected node, each with a claim that outlives the runs. Every run verifies what
the previous run wrote (the generation recorded on the claim, so a volume that comes back empty
or older is `data_lost`, not "first run"), writes a new payload, fsyncs, reads it back past the
page cache and verifies it. Data that must survive a remount and a new pod is what applications
rely on, and what pie never checked.
"""

from __future__ import annotations

from dataclasses import dataclass

from volprobe.contract.reasons import Phase, Reason
from volprobe.kinds.storageprobe import storage_probe
from volprobe.model.kind import Placement
from volprobe.model.manifests import ANNOTATION_GENERATION, lasting_claim, node_claim_name, probe_pod
from volprobe.model.outcome import Outcome, failed
from volprobe.model.runs import RunRequest
from volprobe.model.spec import PLURAL
from volprobe.model.targets import Target
from volprobe.runtime.engine import Engine, PodKind, PodRun
from volprobe.runtime.kube import ApiError


@dataclass(frozen=True)
class MountKind(PodKind):
    name: str = "mount"
    short: str = "m"
    placement: Placement = Placement.PER_NODE
    resource: str = PLURAL
    description: str = (
        "The node's long-lived volume, mounted by a fresh pod on that node, verified and rewritten."
    )

    def lasting_claims(self, target: Target) -> tuple[str, ...]:
        return (node_claim_name(target.probe, target.node),)

    async def execute(self, request: RunRequest, engine: Engine) -> Outcome:
        spec = storage_probe(request)
        claim = node_claim_name(request.target.probe, request.target.node)
        if request.adopt is not None:
            current = engine.caches.claim(claim)
            bound = current is not None and current.phase == "Bound"
            plan = PodRun(spec.timeouts, claim, None, claim_preexisting=bound, keeps_claim=True)
            return await engine.run_pod(request, plan)
        prepared = await _prepare_claim(request, engine, claim)
        if isinstance(prepared, Outcome):
            return prepared
        bound, expect = prepared
        manifest = probe_pod(
            spec,
            request.target,
            name=request.pod_name,
            namespace=engine.namespace,
            agent=engine.agent,
            claim=claim,
            expect_generation=expect,
        )
        plan = PodRun(spec.timeouts, claim, manifest, claim_preexisting=bound, keeps_claim=True)
        return await engine.run_pod(request, plan)


async def _prepare_claim(
    request: RunRequest, engine: Engine, claim: str
) -> tuple[bool, int | None] | Outcome:
    """Make sure the node's claim exists; return (already bound, generation to expect)."""
    now = engine.clock()
    existing = engine.caches.claim(claim)
    if existing is not None and existing.meta.deleting:
        return failed(
            request.target,
            Reason.CLAIM_LOST,
            Phase.PROVISION,
            f"claim {claim} is being deleted; a new one is made next run",
            now=now,
        )
    if existing is None:
        manifest = lasting_claim(storage_probe(request), request.target, claim, engine.namespace)
        try:
            await engine.client.create(engine.path("persistentvolumeclaims"), manifest)
        except ApiError as error:
            if not error.already_exists:
                return failed(
                    request.target,
                    Reason.API_ERROR,
                    Phase.PROVISION,
                    f"creating claim {claim}: {error.status} {error.message}",
                    now=now,
                )
        return False, None
    generation = existing.meta.annotations.get(ANNOTATION_GENERATION)
    expect = int(generation) if generation and generation.isdigit() else None
    return existing.phase == "Bound", expect


KIND = MountKind()
