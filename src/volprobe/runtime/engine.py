"""Execute one pod-based run against the cluster: create, follow, decide, clean up.

This is the only place that turns a `RunTracker`'s decisions into API calls, and it is shared
by the controller and the one-shot `check` command, so both exercise exactly the same path.
Kinds (`volprobe.kinds`) decide what their pod mounts and what must exist first; the engine does
the rest the same way for all of them.

A cancelled run (lost leadership, shutdown) deletes nothing: its pod carries everything the
next leader needs to adopt it, which is what makes restarts and fail-overs count each run once.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from volprobe.contract.reasons import Phase, Reason, SkipReason
from volprobe.model.kind import ProbeKind
from volprobe.model.manifests import ANNOTATION_GENERATION, AgentImage
from volprobe.model.outcome import Outcome, failed
from volprobe.model.probe import Probe
from volprobe.model.runs import RunRequest, RunTracker
from volprobe.model.spec import Timeouts
from volprobe.model.views import EventView
from volprobe.runtime.caches import Caches
from volprobe.runtime.kube import ApiError, KubeClient
from volprobe.runtime.metrics import ProbeMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PodRun:
    """What a kind wants from one run's pod."""

    timeouts: Timeouts
    claim: str
    """The claim the pod mounts: followed for the provision phase, and deleted with the pod
    unless `keeps_claim`."""
    manifest: Mapping[str, Any] | None
    """The pod to create; None when the run adopts an existing pod."""
    claim_preexisting: bool = False
    """The claim was bound before the run: there is no provision phase to time."""
    keeps_claim: bool = False
    """The claim outlives the run, and remembers the generation each run wrote on it."""
    require_volume_gone: bool = False
    """Clean-up waits for the claim's PersistentVolume too (classes with reclaimPolicy Delete)."""


class RunnableKind(ProbeKind, Protocol):
    """A kind as the executor and `check` use it: the pure description plus how to run it."""

    async def execute(self, request: RunRequest, engine: Engine) -> Outcome: ...

    def observe(self, metrics: ProbeMetrics, outcome: Outcome, spec: Probe) -> None:
        """Export what only this kind's runs find (`outcome.details`), after the common series."""

    async def retire(self, spec: Probe, engine: Engine) -> None:
        """The target is gone for good: remove what the kind keeps outside the cluster."""


class PodKind:
    """What every pod-based kind shares: its runs leave nothing but the outcome and pods, claims
    and volumes, which the owner references and the sweep take care of."""

    def observe(self, metrics: ProbeMetrics, outcome: Outcome, spec: Probe) -> None:
        """Pod runs have no series of their own beyond the common ones."""

    async def retire(self, spec: Probe, engine: Engine) -> None:
        """Owner references delete a probe's pods and claims; a dropped node's claim is deleted
        by the planner."""


class Engine:
    def __init__(
        self,
        client: KubeClient,
        caches: Caches,
        agent: AgentImage,
        *,
        clock: Callable[[], float] = time.time,
        on_pod_created: Callable[[RunRequest, float], None] | None = None,
    ) -> None:
        """`on_pod_created(request, time)` is told when a run's pod was created (not adopted)."""
        self.client = client
        self._on_pod_created = on_pod_created
        self.caches = caches
        self.agent = agent
        self.clock = clock
        self.namespace = caches.namespace
        self.in_flight: dict[str, RunTracker] = {}
        """Runs being followed, by pod name (for progress displays)."""
        self._aborts: dict[str, SkipReason] = {}

    def path(self, resource: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{self.namespace}/{resource}"
        return f"{base}/{name}" if name else base

    def abort(self, pod_name: str, reason: SkipReason) -> None:
        """Ask the run of `pod_name` to end as a skip if its pod has no node yet (see
        `RunTracker.abort`); remembered if the run has not started following its pod."""
        self._aborts[pod_name] = reason
        tracker = self.in_flight.get(pod_name)
        if tracker is not None:
            tracker.abort(reason)
            self.caches.nudge(self.caches.pod_key(pod_name))

    async def run_pod(self, request: RunRequest, plan: PodRun) -> Outcome:
        """Create (or adopt) the run's pod, follow it to a verdict, and clean up."""
        name, target = request.pod_name, request.target
        now = self.clock()
        if request.adopt is not None:
            created = request.adopt.meta.created or now
        else:
            created = now
            assert plan.manifest is not None, "a new run needs a pod manifest"
            refused = await self._create_pod(request, plan.manifest, now)
            if refused is not None:
                self._aborts.pop(name, None)
                return refused
            created = self.clock()
            if self._on_pod_created is not None:
                self._on_pod_created(request, created)
        tracker = RunTracker(
            target,
            name,
            plan.claim,
            plan.timeouts,
            created,
            claim_preexisting=plan.claim_preexisting,
            keeps_claim=plan.keeps_claim,
            adopted=request.adopt is not None,
        )
        tracker.require_volume_gone = plan.require_volume_gone
        self.in_flight[name] = tracker
        if name in self._aborts:
            tracker.abort(self._aborts[name])
        try:
            return await self._follow(tracker, name, plan.claim)
        finally:
            del self.in_flight[name]
            self._aborts.pop(name, None)

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
        if tracker.keeps_claim and report is not None and report.written_generation is not None:
            await self._record_generation(claim, report.written_generation)
        return await self._clean_up(tracker, name, claim)

    async def _create_pod(
        self, request: RunRequest, manifest: Mapping[str, Any], now: float
    ) -> Outcome | None:
        try:
            await self.client.create(self.path("pods"), manifest)
        except ApiError as error:
            if error.already_exists:
                return None  # a previous attempt's create went through: follow that pod
            phase = Phase.SCHEDULE if request.target.node else Phase.PROVISION
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
            result = await self.client.list(self.path("events"), field_selector=selector)
        except ApiError as error:
            log.warning("listing events of %s %s: %s", kind, name, error)
            return []
        return [EventView.of(item) for item in result.items]

    async def _record_generation(self, claim: str, generation: int) -> None:
        """Remember on the claim what the next run must find: how data loss is noticed."""
        patch = {"metadata": {"annotations": {ANNOTATION_GENERATION: str(generation)}}}
        try:
            await self.client.patch(self.path("persistentvolumeclaims", claim), patch, "merge")
        except ApiError as error:
            log.warning("recording generation %s on claim %s: %s", generation, claim, error)

    async def _clean_up(self, tracker: RunTracker, name: str, claim: str) -> Outcome:
        """Delete the pod (a claim it brought follows) and wait until everything is gone."""
        now = self.clock()
        tracker.milestones.delete_requested = now
        pod = self.caches.pod(name)
        if pod is not None and not pod.meta.deleting:
            try:
                await self.client.delete(self.path("pods", name), preconditions={"uid": pod.meta.uid})
            except ApiError as error:
                if not (error.not_found or error.conflict):
                    log.warning("deleting pod %s: %s", name, error)
        keys = [self.caches.pod_key(name), self.caches.claim_key(claim)]
        while True:
            now = self.clock()
            claim_view = None if tracker.keeps_claim else self.caches.claim(claim)
            volume = None if tracker.keeps_claim else self.caches.volume(tracker.volume_name)
            pod = self.caches.pod(name)
            if tracker.cleaned_up(pod, claim_view, volume) or now >= tracker.cleanup_deadline():
                return tracker.finish(now, pod, claim_view, volume)
            wait_keys = [*keys, self.caches.volume_key(tracker.volume_name)] if tracker.volume_name else keys
            await self.caches.wait(wait_keys, tracker.cleanup_deadline() - now)
