"""The controller: watches StorageProbes and nodes, owns every probe's timers, runs and counts.

No CronJobs, no Jobs: one timer per target (a probe's provision probe, or its mount probe on
one node) inside this process, spread over the interval by `scheduling`, at most one run in
flight per target, pod creations under the cluster-wide budget of `volprobe.budget`. The
controller is restartable at any moment: what is running is found again from the pods'
labels, and only the leader probes, so two replicas never double-count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from volprobe.contract.reasons import INTEGRITY_REASONS, Kind, Phase, Reason, Result, SkipReason
from volprobe.model import nodes, status
from volprobe.model.manifests import AgentImage, claim_name, pod_name, target_of
from volprobe.model.runs import Outcome, failed, skipped
from volprobe.model.slots import Target, next_slot, offset, slot_id
from volprobe.model.spec import ProbeSpec, SpecError, parse
from volprobe.model.views import NodeView
from volprobe.runtime.caches import PROBES_PATH, Caches
from volprobe.runtime.engine import Engine, RunRequest
from volprobe.runtime.events import EventRecorder
from volprobe.runtime.kube import ApiError, KubeClient, LeaderElector
from volprobe.runtime.metrics import ProbeMetrics

log = logging.getLogger(__name__)

FIELD_MANAGER = "volprobe-controller"


@dataclass(frozen=True)
class ControllerConfig:
    namespace: str
    agent: AgentImage
    identity: str
    leader_election: bool = True
    lease_name: str = "volprobe-controller"
    status_interval: float = 5.0
    """At most one status write per probe per this many seconds."""
    sweep_interval: float = 30.0
    """How often leftover pods and claims (of targets that no longer exist) are looked for."""
    probe_selector: str = ""
    """Only StorageProbes matching this label selector (empty: all); lets controllers share a cluster."""


@dataclass
class Health:
    """What /healthz and /readyz report; updated by the event loop, read by the HTTP thread."""

    heartbeat: float = field(default_factory=time.monotonic)
    synced: bool = False
    leading: bool = False
    leader_election: bool = True

    def alive(self, max_age: float = 30.0) -> bool:
        return time.monotonic() - self.heartbeat < max_age

    def ready(self) -> bool:
        return self.synced and (self.leading or not self.leader_election)


@dataclass
class TargetState:
    target: Target
    slot_offset: float
    interval: float
    next_due: float
    task: asyncio.Task[Outcome] | None = None
    pod_name: str = ""
    last: Outcome | None = None
    """Latest outcome that was not a skip."""
    skip: SkipReason | None = None


@dataclass
class ProbeRecord:
    spec: ProbeSpec
    class_exists: bool = True
    selected: frozenset[str] = frozenset()
    last_provision_success: float | None = None
    last_mount_success: float | None = None
    status_written: dict[str, Any] | None = None
    status_written_at: float = 0.0
    dirty: bool = True


def demote_if_node_unwell(outcome: Outcome, reason: SkipReason | None) -> Outcome:
    """A run that failed while its node went unwell is a skip, not a storage failure.

    Draining or rebooting a node kills its probe pod; counting that as a failure is exactly
    the false positive operators had to filter out of pie's metrics by hand.
    """
    if outcome.passed or outcome.result is Result.SKIPPED or reason is None:
        return outcome
    if outcome.reason in INTEGRITY_REASONS:
        return outcome  # corruption found during a drain is still corruption
    return skipped(outcome.target, reason, outcome.finished, outcome.run)


class Prober:
    """Everything the leader does. Created when leadership starts, discarded when it ends."""

    def __init__(
        self,
        client: KubeClient,
        caches: Caches,
        config: ControllerConfig,
        metrics: ProbeMetrics,
        events: EventRecorder,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.caches = caches
        self.config = config
        self.metrics = metrics
        self.events = events
        self.clock = clock
        self.engine = Engine(client, caches, config.agent, clock=clock)
        self.records: dict[str, ProbeRecord] = {}
        self.targets: dict[Target, TargetState] = {}
        self._last_sweep = 0.0
        self._background: set[asyncio.Task[Any]] = set()

    # -- main loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        try:
            self.reconcile(self.clock())
            self.adopt()
            while True:
                now = self.clock()
                self.caches.changed.clear()
                self.reconcile(now)
                self.launch_due(now)
                await self.write_statuses(now)
                self.sweep(now)
                self.publish_gauges()
                wake = min((s.next_due for s in self.targets.values()), default=now + 1.0)
                wake = min(wake, now + self.config.status_interval)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.caches.changed.wait(), timeout=max(0.05, wake - self.clock()))
        finally:
            await self._stop_tasks()

    async def _stop_tasks(self) -> None:
        tasks = [s.task for s in self.targets.values() if s.task is not None] + list(self._background)
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # -- desired state -------------------------------------------------------------------------

    def reconcile(self, now: float) -> None:
        """Bring targets in line with the probes, nodes and classes in the caches."""
        specs: dict[str, ProbeSpec] = {}
        for raw in self.caches.probes.store.values():
            try:
                spec = parse(raw)
            except SpecError as error:
                log.error("ignoring StorageProbe %s: %s", (raw.get("metadata") or {}).get("name"), error)
                continue
            specs[spec.name] = spec
        for name in [n for n in self.records if n not in specs]:
            self.drop_probe(name)
        all_nodes = list(self.caches.all_nodes())
        desired: set[Target] = set()
        for spec in specs.values():
            record = self._update_record(spec, all_nodes)
            if spec.provision_enabled:
                desired.add(Target(spec.name, Kind.PROVISION))
            if spec.mount_enabled:
                desired.update(Target(spec.name, Kind.MOUNT, node) for node in record.selected)
        for raw in self.caches.probes.store.values():
            probe_name = str((raw.get("metadata") or {}).get("name", ""))
            if probe_name in specs:
                self._seed_status(probe_name, raw)
        for target in [t for t in self.targets if t not in desired]:
            self.drop_target(target)
        for target in desired:
            spec = specs[target.probe]
            state = self.targets.get(target)
            if state is None:
                slot_offset = offset(spec.uid, target, spec.interval)
                self.targets[target] = TargetState(
                    target, slot_offset, spec.interval, next_slot(now, spec.interval, slot_offset)
                )
            elif state.interval != spec.interval:
                state.interval = spec.interval
                state.slot_offset = offset(spec.uid, target, spec.interval)
                state.next_due = next_slot(now, spec.interval, state.slot_offset)

    def _seed_status(self, name: str, raw: dict[str, Any]) -> None:
        record = self.records.get(name)
        if record is not None and record.status_written is None and isinstance(raw.get("status"), dict):
            record.status_written = raw["status"]

    def _update_record(self, spec: ProbeSpec, all_nodes: list[NodeView]) -> ProbeRecord:
        record = self.records.get(spec.name)
        if record is None:
            record = self.records[spec.name] = ProbeRecord(spec)
            log.info(
                "probing StorageClass %s with StorageProbe %s every %ss",
                spec.storage_class,
                spec.name,
                spec.interval,
            )
        if record.spec.generation != spec.generation:
            record.dirty = True
        record.spec = spec
        class_exists = self.caches.storage_class(spec.storage_class) is not None
        if class_exists != record.class_exists:
            record.dirty = True
            if class_exists:
                self.events.emit(
                    spec, "Normal", "StorageClassFound", f"StorageClass {spec.storage_class} exists now"
                )
        if not class_exists and record.class_exists:
            self.events.emit(
                spec,
                "Warning",
                "StorageClassNotFound",
                f"StorageClass {spec.storage_class} does not exist; probing starts when it appears",
            )
        record.class_exists = class_exists
        selected = frozenset(n.name for n in all_nodes if nodes.selected(spec.node_selector_terms, n))
        if selected != record.selected:
            record.dirty = True
            record.selected = selected
        return record

    def drop_target(self, target: Target) -> None:
        """The target no longer exists (probe, node or kind gone): stop it and remove its traces."""
        state = self.targets.pop(target)
        if state.task is not None:
            state.task.cancel()
        if state.pod_name:
            self._spawn(self._delete("pods", state.pod_name))
        if target.kind is Kind.MOUNT:
            self._spawn(self._delete("persistentvolumeclaims", claim_name(target.probe, target.node)))
            self.metrics.forget(target.probe, target.node)
        else:
            self.metrics.forget(target.probe, "")
        record = self.records.get(target.probe)
        if record is not None:
            record.dirty = True

    def drop_probe(self, name: str) -> None:
        for target in [t for t in self.targets if t.probe == name]:
            self.drop_target(target)
        self.records.pop(name, None)
        self.metrics.forget(name)
        log.info("StorageProbe %s is gone; stopped probing it", name)

    async def _delete(self, resource: str, name: str) -> None:
        with contextlib.suppress(ApiError):
            await self.client.delete(f"/api/v1/namespaces/{self.config.namespace}/{resource}/{name}")

    # -- runs ----------------------------------------------------------------------------------

    def _ours(self, target: Target | None) -> bool:
        """Objects of probes we handle; others belong to another controller (or to a deleted
        probe, whose objects the garbage collector removes through their ownerReferences)."""
        return target is not None and target.probe in self.records

    def adopt(self) -> None:
        """Follow the runs a previous leader started; delete pods of targets that are gone."""
        for pod in list(self.caches.pods.store.values()):
            target = target_of(pod.meta.labels, pod.meta.annotations)
            if pod.meta.deleting or not self._ours(target):
                continue
            state = self.targets.get(target) if target else None
            if state is None or state.task is not None:
                self._spawn(self._delete("pods", pod.name))
                continue
            record = self.records[state.target.probe]
            log.info("adopting run %s", pod.name)
            self._start(state, record, RunRequest(record.spec, state.target, pod.name, adopt=pod))

    def node_skip(self, spec: ProbeSpec, node_name: str, now: float) -> SkipReason | None:
        node = self.caches.nodes.store.get(node_name)
        if node is None:
            return SkipReason.DELETING
        return nodes.skip_reason(node, tolerations=spec.pod.tolerations, grace=spec.node_grace, now=now)

    def unwell_nodes(self, record: ProbeRecord, now: float) -> tuple[tuple[str, ...], SkipReason | None]:
        """(selected nodes to avoid now, the most common skip reason if that is all of them)."""
        verdicts = {n: self.node_skip(record.spec, n, now) for n in record.selected}
        avoid = tuple(sorted(n for n, r in verdicts.items() if r is not None))
        if not record.selected or len(avoid) < len(record.selected):
            return avoid, None
        return avoid, Counter(r for r in verdicts.values() if r is not None).most_common(1)[0][0]

    def launch_due(self, now: float) -> None:
        for state in sorted(self.targets.values(), key=lambda s: s.next_due):
            if state.next_due > now:
                break
            slot = state.next_due
            state.next_due = next_slot(now, state.interval, state.slot_offset)
            if state.task is not None:
                continue  # the previous run overran into this slot; its own deadline will end it
            record = self.records[state.target.probe]
            spec = record.spec
            target = state.target
            if not record.class_exists:
                self.complete(
                    state,
                    failed(
                        target,
                        Reason.STORAGE_CLASS_MISSING,
                        Phase.PROVISION,
                        f"StorageClass {spec.storage_class} does not exist",
                        now=now,
                    ),
                )
                continue
            avoid: tuple[str, ...] = ()
            if target.kind is Kind.MOUNT:
                reason = self.node_skip(spec, target.node, now)
                if reason is not None:
                    self.complete(state, skipped(target, reason, now))
                    continue
            else:
                avoid, nowhere = self.unwell_nodes(record, now)
                if nowhere is not None:
                    self.complete(state, skipped(target, nowhere, now))
                    continue
            name = pod_name(target, slot_id(slot))
            self._start(state, record, RunRequest(spec, target, name, avoid_nodes=avoid))

    def _start(self, state: TargetState, record: ProbeRecord, request: RunRequest) -> None:
        if state.skip is not None and state.target.kind is Kind.MOUNT:
            state.skip = None
            self.metrics.set_skipped(state.target.probe, state.target.node, None)
            record.dirty = True
        state.pod_name = request.pod_name
        state.task = asyncio.create_task(self.engine.execute(request), name=f"run {request.pod_name}")
        state.task.add_done_callback(partial(self._finished, state))

    def _finished(self, state: TargetState, task: asyncio.Task[Outcome]) -> None:
        if state.task is task:
            state.task = None
        if task.cancelled() or self.targets.get(state.target) is not state:
            return
        state.pod_name = ""
        error = task.exception()
        now = self.clock()
        if error is not None:
            log.error("run of %s broke: %r", state.target, error)
            outcome = failed(
                state.target, Reason.API_ERROR, Phase.PROVISION, f"controller error: {error!r}"[:300], now=now
            )
        else:
            outcome = task.result()
        record = self.records.get(state.target.probe)
        if record is None:
            return
        node = outcome.node or state.target.node
        if node:
            outcome = demote_if_node_unwell(outcome, self.node_skip(record.spec, node, now))
        else:
            # A provision pod that never got a node: unschedulable only because every selected
            # node went unwell meanwhile (the only node cordoned) is a skip, not a failure.
            outcome = demote_if_node_unwell(outcome, self.unwell_nodes(record, now)[1])
        self.complete(state, outcome)

    def complete(self, state: TargetState, outcome: Outcome) -> None:
        """Count a finished run and remember it for status and Events."""
        record = self.records[state.target.probe]
        spec = record.spec
        self.metrics.record(outcome, spec.storage_class)
        record.dirty = True
        target = state.target
        if outcome.result is Result.SKIPPED:
            if target.kind is Kind.MOUNT and state.skip != outcome.skip:
                state.skip = outcome.skip
                self.metrics.set_skipped(
                    target.probe, target.node, outcome.skip.value if outcome.skip else None
                )
            log.debug("%s skipped: %s", target, outcome.skip)
            return
        previous = state.last
        state.last = outcome
        if outcome.passed:
            if target.kind is Kind.PROVISION:
                record.last_provision_success = outcome.finished
            else:
                record.last_mount_success = outcome.finished
        where = f" on node {outcome.node}" if outcome.node else ""
        if not outcome.passed:
            log.warning(
                "%s run %s %s%s: %s in phase %s: %s",
                target,
                outcome.run,
                outcome.result.value,
                where,
                outcome.reason,
                outcome.phase,
                outcome.message,
            )
            if previous is None or previous.passed:
                self.events.emit(
                    spec,
                    "Warning",
                    "ProbeFailed",
                    f"{target.kind.value} probe{where} failed: {outcome.reason} in phase "
                    f"{outcome.phase}: {outcome.message}",
                )
        else:
            log.info("%s run %s passed%s in %.1fs", target, outcome.run, where, outcome.seconds)
            if previous is not None and not previous.passed:
                self.events.emit(
                    spec, "Normal", "ProbeRecovered", f"{target.kind.value} probe{where} passes again"
                )

    # -- status, gauges and leftovers ----------------------------------------------------------

    def probe_state(self, record: ProbeRecord) -> status.ProbeState:
        name = record.spec.name
        mine = [s for t, s in self.targets.items() if t.probe == name]
        provision = next((s.last for s in mine if s.target.kind is Kind.PROVISION), None)
        return status.ProbeState(
            generation=record.spec.generation,
            class_exists=record.class_exists,
            provision_enabled=record.spec.provision_enabled,
            mount_enabled=record.spec.mount_enabled,
            selected_nodes=record.selected,
            skipped={
                s.target.node: s.skip for s in mine if s.target.kind is Kind.MOUNT and s.skip is not None
            },
            mounts={
                s.target.node: s.last for s in mine if s.target.kind is Kind.MOUNT and s.last is not None
            },
            provision=provision,
            last_provision_success=record.last_provision_success,
            last_mount_success=record.last_mount_success,
        )

    async def write_statuses(self, now: float) -> None:
        for record in list(self.records.values()):
            generation_changed = (record.status_written or {}).get(
                "observedGeneration"
            ) != record.spec.generation
            if not record.dirty or (
                now - record.status_written_at < self.config.status_interval and not generation_changed
            ):
                continue
            state = self.probe_state(record)
            self.metrics.set_node_counts(
                record.spec.name, record.spec.storage_class, status.node_counts(state)
            )
            document = status.build(state, record.status_written, now)
            record.dirty = False
            if document == record.status_written:
                continue
            body = {
                "apiVersion": "volprobe.io/v1alpha1",
                "kind": "StorageProbe",
                "metadata": {"name": record.spec.name},
                "status": document,
            }
            try:
                await self.client.apply_status(
                    f"{PROBES_PATH}/{record.spec.name}", body, field_manager=FIELD_MANAGER, force=True
                )
            except ApiError as error:
                if not error.not_found:
                    log.warning("writing status of %s: %s", record.spec.name, error)
                    record.dirty = True
                continue
            record.status_written = document
            record.status_written_at = now

    def publish_gauges(self) -> None:
        in_flight: Counter[tuple[str, Kind]] = Counter()
        for target, state in self.targets.items():
            in_flight[(target.probe, target.kind)] += 0 if state.task is None else 1
        self.metrics.set_in_flight(dict(in_flight))
        self.metrics.set_intervals(
            {name: (r.spec.storage_class, r.spec.interval) for name, r in self.records.items()}
        )

    def sweep(self, now: float) -> None:
        """Delete pods and claims nobody owns any more (a crash between create and record)."""
        if now - self._last_sweep < self.config.sweep_interval:
            return
        self._last_sweep = now
        running = {s.pod_name for s in self.targets.values() if s.pod_name}
        for pod in list(self.caches.pods.store.values()):
            target = target_of(pod.meta.labels, pod.meta.annotations)
            if pod.meta.deleting or pod.name in running or not self._ours(target):
                continue
            if target not in self.targets or self._older_than(pod.meta.created, now, 60):
                log.info("deleting leftover pod %s", pod.name)
                self._spawn(self._delete("pods", pod.name))
        wanted_claims = {claim_name(t.probe, t.node) for t in self.targets if t.kind is Kind.MOUNT}
        for claim in list(self.caches.claims.store.values()):
            target = target_of(claim.meta.labels, claim.meta.annotations)
            if (
                claim.meta.deleting
                or target is None
                or target.kind is not Kind.MOUNT
                or not self._ours(target)
            ):
                continue
            if claim.name not in wanted_claims:
                log.info("deleting claim %s of a target that is gone", claim.name)
                self._spawn(self._delete("persistentvolumeclaims", claim.name))

    @staticmethod
    def _older_than(created: float | None, now: float, seconds: float) -> bool:
        return created is not None and now - created > seconds


class Controller:
    """Caches, leader election, health and the Prober, wired together."""

    def __init__(
        self, client: KubeClient, config: ControllerConfig, metrics: ProbeMetrics, health: Health
    ) -> None:
        self.client = client
        self.config = config
        self.metrics = metrics
        self.health = health
        self.caches = Caches(client, config.namespace, config.probe_selector)
        self.events = EventRecorder(client, config.identity)
        health.leader_election = config.leader_election

    async def run(self) -> None:
        self.caches.start()
        helpers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self.events.run())]
        try:
            await self.caches.wait_synced()
            self.health.synced = True
            log.info("caches synced")
            if not self.config.leader_election:
                self._set_leading(True)
                await self._lead()
                return
            stopped = asyncio.Event()
            elector = LeaderElector(
                self.client,
                self.config.namespace,
                self.config.lease_name,
                self.config.identity,
                on_started_leading=stopped.clear,
                on_stopped_leading=stopped.set,
            )
            election = asyncio.create_task(elector.run())
            helpers.append(election)
            while True:
                await elector.leading.wait()
                self._set_leading(True)
                leading = asyncio.create_task(self._lead())
                stepped_down = asyncio.create_task(stopped.wait())
                await asyncio.wait({leading, stepped_down, election}, return_when=asyncio.FIRST_COMPLETED)
                for task in (leading, stepped_down):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self._set_leading(False)
                self.metrics.reset_probe_series()
                if election.done():
                    election.result()
                    return
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.caches.stop()

    def _set_leading(self, leading: bool) -> None:
        self.health.leading = leading
        self.metrics.set_leader(leading)

    async def _lead(self) -> None:
        prober = Prober(self.client, self.caches, self.config, self.metrics, self.events)
        await prober.run()

    async def _heartbeat(self) -> None:
        """Liveness means "the event loop still turns": this is what stops when it does not."""
        while True:
            self.health.heartbeat = time.monotonic()
            budget = self.client.budget.stats
            self.metrics.set_api_budget(budget.throttle_events, budget.seconds_waited)
            await asyncio.sleep(1.0)
