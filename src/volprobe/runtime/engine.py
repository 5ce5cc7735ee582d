"""Execute one run against the cluster: create, follow, decide, clean up.

This is the only place that turns a `RunTracker`'s decisions into API calls, and it is shared
by the controller and the one-shot `check` command, so both exercise exactly the same path.
A cancelled run (lost leadership, shutdown) deletes nothing: its pod carries everything the
next leader needs to adopt it, which is what makes restarts and fail-overs count each run once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from volprobe.contract.reasons import Kind, Phase, Reason
from volprobe.model.manifests import (
    ANNOTATION_GENERATION,
    VOLUME_NAME,
    AgentImage,
    claim_name,
    mount_claim,
    probe_pod,
)
from volprobe.model.runs import Outcome, RunTracker, failed
from volprobe.model.slots import Target
from volprobe.model.spec import ProbeSpec
from volprobe.model.views import EventView, PodView
from volprobe.runtime.caches import Caches
from volprobe.runtime.kube import ApiError, KubeClient

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    spec: ProbeSpec
    target: Target
    pod_name: str
    avoid_nodes: tuple[str, ...] = ()
    adopt: PodView | None = None
    """An existing pod of this run (after a restart or fail-over): follow it instead of creating."""


class Engine:
    def __init__(
        self,
        client: KubeClient,
        caches: Caches,
        agent: AgentImage,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.caches = caches
        self.agent = agent
        self.clock = clock
        self.namespace = caches.namespace
        self.in_flight: dict[str, RunTracker] = {}
        """Runs being executed, by pod name (for progress displays)."""

    def _path(self, resource: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{self.namespace}/{resource}"
        return f"{base}/{name}" if name else base

    async def execute(self, request: RunRequest) -> Outcome:
        spec, target, name = request.spec, request.target, request.pod_name
        mount = target.kind is Kind.MOUNT
        claim = claim_name(spec.name, target.node) if mount else f"{name}-{VOLUME_NAME}"
        now = self.clock()
        claim_preexisting = False
        if request.adopt is not None:
            created = request.adopt.meta.created or now
            current_claim = self.caches.claim(claim)
            claim_preexisting = mount and current_claim is not None and current_claim.phase == "Bound"
        else:
            created = now
            expect: int | None = None
            if mount:
                prepared = await self._prepare_mount_claim(spec, target, claim, now)
                if isinstance(prepared, Outcome):
                    return prepared
                claim_preexisting, expect = prepared
            refused = await self._create_pod(request, expect if mount else None, now)
            if refused is not None:
                return refused
        tracker = RunTracker(
            target,
            name,
            claim,
            spec.timeouts,
            created,
            claim_preexisting=claim_preexisting,
            adopted=request.adopt is not None,
        )
        class_view = self.caches.storage_class(spec.storage_class)
        tracker.require_volume_gone = not mount and (
            class_view is None or class_view.reclaim_policy == "Delete"
        )

        self.in_flight[name] = tracker
        try:
            return await self._follow(tracker, name, claim)
        finally:
            del self.in_flight[name]

    async def _follow(self, tracker: RunTracker, name: str, claim: str) -> Outcome:
        """Wait for the verdict, explain it if needed, remember the generation, clean up."""
        keys = [self.caches.pod_key(name), self.caches.claim_key(claim)]
        while True:
            now = self.clock()
            verdict = tracker.decide(self.caches.pod(name), self.caches.claim(claim), now)
            if verdict is not None:
                break
            await self.caches.wait(keys, tracker.phase_deadline() - now)
        if tracker.needs_explaining():
            pod = self.caches.pod(name)
            pod_events = await self._events(pod.meta.uid if pod else "", "Pod", name)
            claim_events = await self._events("", "PersistentVolumeClaim", claim)
            tracker.explain(pod, pod_events, claim_events)
        report = tracker.report
        # The agent writes a fresh generation even after a failed verification (so one incident
        # does not fail every later run); the next run must expect that one.
        if tracker.target.kind is Kind.MOUNT and report is not None and report.written_generation is not None:
            await self._record_generation(claim, report.written_generation)
        return await self._clean_up(tracker, name, claim)

    async def _prepare_mount_claim(
        self, spec: ProbeSpec, target: Target, claim: str, now: float
    ) -> tuple[bool, int | None] | Outcome:
        """Make sure the node's claim exists; return (already bound, generation to expect)."""
        existing = self.caches.claim(claim)
        if existing is not None and existing.meta.deleting:
            return failed(
                target,
                Reason.CLAIM_LOST,
                Phase.PROVISION,
                f"claim {claim} is being deleted; a new one is made next run",
                now=now,
            )
        if existing is None:
            try:
                await self.client.create(
                    self._path("persistentvolumeclaims"), mount_claim(spec, target.node, self.namespace)
                )
            except ApiError as error:
                if not error.already_exists:
                    return failed(
                        target,
                        Reason.API_ERROR,
                        Phase.PROVISION,
                        f"creating claim {claim}: {error.status} {error.message}",
                        now=now,
                    )
            return False, None
        generation = existing.meta.annotations.get(ANNOTATION_GENERATION)
        expect = int(generation) if generation and generation.isdigit() else None
        return existing.phase == "Bound", expect

    async def _create_pod(self, request: RunRequest, expect: int | None, now: float) -> Outcome | None:
        manifest = probe_pod(
            request.spec,
            request.target,
            name=request.pod_name,
            namespace=self.namespace,
            agent=self.agent,
            expect_generation=expect,
            avoid_nodes=request.avoid_nodes,
        )
        try:
            await self.client.create(self._path("pods"), manifest)
        except ApiError as error:
            if error.already_exists:
                return None  # a previous attempt's create went through: follow that pod
            phase = Phase.PROVISION if request.target.kind is Kind.PROVISION else Phase.SCHEDULE
            return failed(
                request.target,
                Reason.API_ERROR,
                phase,
                f"creating pod {request.pod_name}: {error.status} {error.message}",
                now=now,
                run=request.pod_name,
            )
        return None

    async def _events(self, uid: str, kind: str, name: str) -> list[EventView]:
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        try:
            result = await self.client.list(self._path("events"), field_selector=selector)
        except ApiError as error:
            log.warning("listing events of %s %s: %s", kind, name, error)
            return []
        return [EventView.of(item) for item in result.items]

    async def _record_generation(self, claim: str, generation: int) -> None:
        """Remember on the claim what the next run must find: how data loss is noticed."""
        patch = {"metadata": {"annotations": {ANNOTATION_GENERATION: str(generation)}}}
        try:
            await self.client.patch(self._path("persistentvolumeclaims", claim), patch, "merge")
        except ApiError as error:
            log.warning("recording generation %s on claim %s: %s", generation, claim, error)

    async def _clean_up(self, tracker: RunTracker, name: str, claim: str) -> Outcome:
        """Delete the pod (its ephemeral claim follows) and wait until everything is gone."""
        now = self.clock()
        tracker.milestones.delete_requested = now
        pod = self.caches.pod(name)
        if pod is not None and not pod.meta.deleting:
            try:
                await self.client.delete(self._path("pods", name), preconditions={"uid": pod.meta.uid})
            except ApiError as error:
                if not (error.not_found or error.conflict):
                    log.warning("deleting pod %s: %s", name, error)
        keys = [self.caches.pod_key(name), self.caches.claim_key(claim)]
        while True:
            now = self.clock()
            claim_view = self.caches.claim(claim) if tracker.target.kind is Kind.PROVISION else None
            volume = (
                self.caches.volume(tracker.volume_name) if tracker.target.kind is Kind.PROVISION else None
            )
            pod = self.caches.pod(name)
            if tracker.cleaned_up(pod, claim_view, volume) or now >= tracker.cleanup_deadline():
                return tracker.finish(now, pod, claim_view, volume)
            wait_keys = [*keys, self.caches.volume_key(tracker.volume_name)] if tracker.volume_name else keys
            await self.caches.wait(wait_keys, tracker.cleanup_deadline() - now)
