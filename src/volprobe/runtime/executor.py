"""Carry out what the planner decides: start and stop runs, delete, count, write status.

The leader's loop is small on purpose: take a snapshot of the caches (`World`), ask the
`Planner` what to do, do it, and sleep until something changes or the planner's next slot. All
the policy lives in the planner (pure, unit-tested); this module only turns actions into API
calls, tasks, metric updates and Events, and feeds results back. A broken run, a refused write
or a malformed object costs one log line, never the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any

import httpx

from volprobe.contract.reasons import Result
from volprobe.model.manifests import AgentImage
from volprobe.model.outcome import Outcome
from volprobe.model.planner import (
    Abort,
    Action,
    Count,
    Delete,
    Emit,
    Forget,
    Launch,
    Planner,
    Publish,
    Retire,
    SetNodeCounts,
    SetSkipped,
    SetStalled,
    Stop,
    World,
    WriteStatus,
)
from volprobe.model.probe import Probe, ProbeKey
from volprobe.model.resource import ProbeResource
from volprobe.model.runs import RunRequest
from volprobe.model.spec import API_GROUP, API_VERSION
from volprobe.model.targets import Target
from volprobe.runtime.caches import Caches, probes_path
from volprobe.runtime.engine import Engine, RunnableKind
from volprobe.runtime.events import EventRecorder
from volprobe.runtime.kube import ApiError, KubeClient
from volprobe.runtime.metrics import ProbeMetrics

log = logging.getLogger(__name__)

FIELD_MANAGER = "volprobe-controller"


@dataclass(frozen=True)
class ExecutorConfig:
    agent: AgentImage
    status_interval: float = 5.0
    sweep_interval: float = 30.0
    min_tick_interval: float = 0.5
    """Ticks come at most this often. Every node's status update wakes the loop; with thousands
    of nodes that is hundreds of wake-ups a second, and each tick looks at every target. A run
    starting half a second after its slot costs nothing."""


class Executor:
    """The leader's work. Created when leadership starts, discarded when it ends."""

    def __init__(
        self,
        client: KubeClient,
        caches: Caches,
        config: ExecutorConfig,
        *,
        metrics: ProbeMetrics,
        events: EventRecorder,
        kinds: Mapping[str, RunnableKind],
        resources: Mapping[str, ProbeResource],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.caches = caches
        self.metrics = metrics
        self.events = events
        self.kinds = kinds
        self.resources = resources
        self.clock = clock
        self.engine = Engine(client, caches, config.agent, clock=clock, on_pod_created=self._pod_created)
        self.planner = Planner(
            list(kinds.values()),
            list(resources.values()),
            status_interval=config.status_interval,
            sweep_interval=config.sweep_interval,
        )
        self._runs: dict[Target, tuple[str, asyncio.Task[Outcome]]] = {}
        self._background: set[asyncio.Task[Any]] = set()
        self._unreadable: dict[ProbeKey, str] = {}
        """Probes that cannot be parsed, with the error already logged (once, not every loop)."""
        self._parsed: dict[ProbeKey, tuple[str, Probe]] = {}
        """Each probe as last parsed, with its resourceVersion: every tick and every run's end
        builds a world, and the object rarely changed since."""
        self._min_tick = config.min_tick_interval

    async def run(self) -> None:
        try:
            self._apply(self.planner.start(self.world()))
            last_tick = -math.inf
            while True:
                await asyncio.sleep(max(0.0, last_tick + self._min_tick - time.monotonic()))
                last_tick = time.monotonic()
                self.caches.changed.clear()
                self._apply(self.planner.tick(self.world()))
                wake = self.planner.wake_at(self.clock())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.caches.changed.wait(), timeout=max(0.05, wake - self.clock()))
        finally:
            await self._stop_all()

    def world(self) -> World:
        probes: dict[ProbeKey, Probe] = {}
        statuses: dict[ProbeKey, Mapping[str, Any]] = {}
        parsed: dict[ProbeKey, tuple[str, Probe]] = {}
        for plural, reflector in self.caches.probes.items():
            resource = self.resources[plural]
            for raw in reflector.store.values():
                metadata = raw.get("metadata") or {}
                key = (plural, str(metadata.get("name", "")))
                version = str(metadata.get("resourceVersion") or "")
                spec = self._spec(key, version, resource, raw)
                if spec is None:
                    continue
                probes[key] = spec
                parsed[key] = (version, spec)
                if isinstance(raw.get("status"), dict):
                    statuses[key] = raw["status"]
        self._parsed = parsed
        return World(
            now=self.clock(),
            progress={name: tracker.progress() for name, tracker in self.engine.in_flight.items()},
            live=self.caches.live,
            probes=probes,
            classes=self.caches.classes.store,
            nodes=self.caches.nodes.store,
            pods=self.caches.pods.store.values(),
            claims=self.caches.claims.store.values(),
            statuses=statuses,
        )

    def _spec(
        self, key: ProbeKey, version: str, resource: ProbeResource, raw: Mapping[str, Any]
    ) -> Probe | None:
        """The probe as parsed at this resourceVersion; None (logged once) if it cannot be."""
        kept = self._parsed.get(key)
        if kept is not None and version and kept[0] == version:
            return kept[1]
        try:
            spec = resource.parse(raw)
        except ValueError as error:
            if self._unreadable.get(key) != str(error):
                log.error("ignoring %s %s: %s", resource.api_kind, key[1], error)
                self._unreadable[key] = str(error)
            return None
        self._unreadable.pop(key, None)
        return spec

    # -- actions -------------------------------------------------------------------------------

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Launch(request):
                    self._launch(request)
                case Abort(target, reason):
                    if target in self._runs:
                        self.engine.abort(self._runs[target][0], reason)
                case Stop(target):
                    if target in self._runs:
                        self._runs.pop(target)[1].cancel()
                case Delete(resource, name):
                    self._spawn(self._delete(resource, name))
                case Count(outcome, spec):
                    self.metrics.record(outcome, spec.storage_class)
                    self.kinds[outcome.target.kind].observe(self.metrics, outcome, spec)
                    _log_outcome(outcome)
                case SetSkipped(probe, node, reason):
                    self.metrics.set_skipped(probe, node, reason.value if reason else None)
                case SetStalled(target, storage_class, phase):
                    self.metrics.set_stalled(target, storage_class, phase.value if phase else None)
                case Forget(probe, node):
                    self.metrics.forget(probe, node)
                case Emit((plural, name), uid, type_, reason, message):
                    api_kind = self.resources[plural].api_kind
                    self.events.emit(api_kind, name, uid, type_=type_, reason=reason, message=message)
                case Retire(target, spec):
                    self._spawn(self._retire(target, spec))
                case SetNodeCounts(probe, storage_class, counts):
                    self.metrics.set_node_counts(probe, storage_class, dict(counts))
                case WriteStatus(probe, document):
                    self._spawn(self._write_status(probe, document))
                case Publish(in_flight, queued, intervals):
                    self.metrics.set_in_flight(in_flight)
                    self.metrics.set_queued(queued)
                    self.metrics.set_intervals(dict(intervals))

    def _launch(self, request: RunRequest) -> None:
        target = request.target
        task = asyncio.create_task(
            self.kinds[target.kind].execute(request, self.engine), name=f"run {request.pod_name}"
        )
        self._runs[target] = (request.pod_name, task)
        task.add_done_callback(partial(self._ended, target, request.pod_name))

    def _pod_created(self, request: RunRequest, created: float) -> None:
        if request.slot is not None:
            self.metrics.start_lag(request.target.probe, created - request.slot)

    def _ended(self, target: Target, run: str, task: asyncio.Task[Outcome]) -> None:
        if self._runs.get(target, ("", None))[1] is task:
            del self._runs[target]
        if task.cancelled():
            return
        error = task.exception()
        if error is not None:
            log.error("run %s of %s broke: %r", run, target, error)
            self._apply(self.planner.broke(target, run, repr(error), self.world()))
        else:
            self._apply(self.planner.finished(target, run, task.result(), self.world()))

    async def _delete(self, resource: str, name: str) -> None:
        with contextlib.suppress(ApiError, httpx.TransportError, OSError):
            await self.client.delete(self.engine.path(resource, name))

    async def _retire(self, target: Target, spec: Probe) -> None:
        try:
            await self.kinds[target.kind].retire(spec, self.engine)
        except Exception as error:  # a clean-up outside the cluster must not take the loop down
            log.warning("cleaning up after %s: %r", target, error)

    async def _write_status(self, probe: ProbeKey, document: Mapping[str, Any]) -> None:
        plural, name = probe
        body = {
            "apiVersion": f"{API_GROUP}/{API_VERSION}",
            "kind": self.resources[plural].api_kind,
            "metadata": {"name": name},
            "status": dict(document),
        }
        try:
            await self.client.apply_status(
                f"{probes_path(plural)}/{name}", body, field_manager=FIELD_MANAGER, force=True
            )
        except ApiError as error:
            if not error.not_found:
                log.warning("writing status of %s: %s", probe, error)
            self.planner.status_failed(probe, retry=not error.not_found)
            return
        except (httpx.TransportError, OSError) as error:
            log.warning("writing status of %s: %r", probe, error)
            self.planner.status_failed(probe, retry=True)
            return
        self.planner.status_written(probe, document, self.clock())

    def _spawn(self, coroutine: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _stop_all(self) -> None:
        tasks = [task for _, task in self._runs.values()] + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def _log_outcome(outcome: Outcome) -> None:
    where = f" on node {outcome.node}" if outcome.node else ""
    if outcome.result is Result.SKIPPED:
        log.debug("%s skipped: %s", outcome.target, outcome.skip)
    elif outcome.passed:
        log.info("%s run %s passed%s in %.1fs", outcome.target, outcome.run, where, outcome.seconds)
    else:
        log.warning(
            "%s run %s %s%s: %s in phase %s: %s",
            outcome.target,
            outcome.run,
            outcome.result.value,
            where,
            outcome.reason,
            outcome.phase,
            outcome.message,
        )
