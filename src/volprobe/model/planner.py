"""Everything the leader decides, as a pure class: what the caches show and the time in, actions out.

The controller used to decide and act in one object; now the decisions live here and the
executor (`volprobe.runtime.executor`) only carries them out. That split is what lets every
policy — slots and jitter, one run in flight per target, skips and demotion, drops when a
probe or node changes, adoption after a restart, the sweep of leftovers, status pacing — be
tested with plain data and a fake clock, while the integration tests prove the wiring.

The planner never performs I/O and never awaits. It is driven by four calls:

* `start(world)` once leadership begins: adopt the runs a previous leader left in flight;
* `tick(world)` whenever something changed or a slot is due (`wake_at`);
* `finished(target, run, outcome, world)` when the executor's run of a target ended;
* `status_written` / `status_failed` when a status write it asked for came back.

Each returns the `Action`s to carry out, in order. A target has at most one run in flight; a
slot that arrives while it runs is folded into it (the run's own deadlines end it), so nothing
queues behind a hung run. Runs are counted only through `finished`, after the executor saw the
run to its end, which is how a restart or fail-over counts each run once.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.model.baseline import Baseline
from volprobe.model.eligibility import Eligibility
from volprobe.model.kind import Placement, ProbeKind, readiness, targets
from volprobe.model.manifests import pod_name, target_of
from volprobe.model.nodes import unwell_since
from volprobe.model.outcome import Outcome, demote_if_node_unwell, failed, skipped
from volprobe.model.pacing import Window, congested_after
from volprobe.model.probe import Probe, ProbeKey
from volprobe.model.resource import Missing, ProbeResource, ProbeView, TargetView
from volprobe.model.runs import RunProgress, RunRequest
from volprobe.model.slots import next_slot, offset, slot_id
from volprobe.model.targets import Target
from volprobe.model.views import ClaimView, ClassView, NodeView, PodView

log = logging.getLogger(__name__)

LEFTOVER_AGE = 60.0
"""A pod of a live target that no run follows is deleted once it is this old (seconds)."""


# -- what the planner sees -----------------------------------------------------------------------


@dataclass(frozen=True)
class World:
    """A snapshot of what the caches hold, and the time. Read-only for the planner."""

    now: float
    probes: Mapping[ProbeKey, Probe]
    """The probe objects this controller handles, of every resource, parsed (unreadable ones are
    left out)."""
    classes: Mapping[str, ClassView]
    nodes: Mapping[str, NodeView]
    pods: Collection[PodView] = ()
    """Our pods (volprobe's label, our namespace)."""
    claims: Collection[ClaimView] = ()
    """Our claims."""
    statuses: Mapping[ProbeKey, Mapping[str, Any]] = field(default_factory=dict)
    """The status each probe has on the API server (seeds condition times and baselines)."""
    progress: Mapping[str, RunProgress] = field(default_factory=dict)
    """Where each run in flight is, by pod name (runs the executor follows)."""
    live: bool = True
    """The caches are current. While a watch is failing (an API outage) runs look stuck only
    because nothing reaches us: no run is called stalled then."""


# -- what the planner asks for -------------------------------------------------------------------


@dataclass(frozen=True)
class Launch:
    """Start (or, with `request.adopt`, follow) a run; report its end through `finished`."""

    request: RunRequest


@dataclass(frozen=True)
class Abort:
    """Give up a run that has not reached a node; it ends as a skip with this reason."""

    target: Target
    reason: SkipReason


@dataclass(frozen=True)
class Stop:
    """Stop following the run of a target that no longer exists; it is never counted."""

    target: Target


@dataclass(frozen=True)
class Delete:
    """Delete one of our objects in our namespace (pods, persistentvolumeclaims)."""

    resource: str
    name: str


@dataclass(frozen=True)
class Count:
    """A run is over: count it (metrics) and log it."""

    outcome: Outcome
    spec: Probe
    """The probe it belongs to, as it was when the run ended."""


@dataclass(frozen=True)
class SetSkipped:
    """A node of a probe is skipped for this reason now (None: no longer skipped)."""

    probe: str
    node: str
    reason: SkipReason | None


@dataclass(frozen=True)
class SetStalled:
    """A run in flight is stalled in this phase (None: no longer stalled)."""

    target: Target
    storage_class: str
    phase: Phase | None


@dataclass(frozen=True)
class Forget:
    """Drop every metric series of a probe, or of one of its nodes ("" for per-probe kinds)."""

    probe: str
    node: str | None = None


@dataclass(frozen=True)
class Emit:
    """Record a Kubernetes Event on the probe."""

    probe: ProbeKey
    uid: str
    type: str
    reason: str
    message: str


@dataclass(frozen=True)
class Retire:
    """A target is gone for good: let its kind remove what it keeps outside the cluster (an
    object store's canary), with the probe's last spec."""

    target: Target
    spec: Probe


@dataclass(frozen=True)
class SetNodeCounts:
    probe: str
    storage_class: str
    counts: Mapping[str, int]


@dataclass(frozen=True)
class WriteStatus:
    """Apply this status document; answer with `status_written` or `status_failed`."""

    probe: ProbeKey
    document: Mapping[str, Any]


@dataclass(frozen=True)
class Publish:
    """The gauges that describe the planner itself: runs in flight and intervals."""

    in_flight: Mapping[tuple[str, str], int]
    queued: Mapping[tuple[str, str], int]
    """Per (probe, kind): targets whose slot passed, waiting for room to create a volume."""
    intervals: Mapping[str, tuple[str, float]]


Action = (
    Launch
    | Abort
    | Stop
    | Delete
    | Count
    | SetSkipped
    | SetStalled
    | Forget
    | Emit
    | Retire
    | SetNodeCounts
    | WriteStatus
    | Publish
)


# -- what the planner remembers ------------------------------------------------------------------


@dataclass
class TargetState:
    target: Target
    slot_offset: float
    interval: float
    next_due: float
    run: str = ""
    """The pod name of the run in flight ("" when none)."""
    aborting: bool = False
    last: Outcome | None = None
    """Latest outcome that was not a skip."""
    skip: SkipReason | None = None
    stalled: RunProgress | None = None
    """The phase the run in flight is stalled in, and since when."""
    queued: float | None = None
    """The slot this target waits with for room to create a volume (`volprobe.model.pacing`)."""
    new_volume: bool = False
    """The run in flight makes a new volume (it counts against its class's window)."""
    lasting_claims: tuple[str, ...] = ()
    """The claims that outlive its runs (`ProbeKind.lasting_claims`), named once: every tick
    asks whether they are bound."""


@dataclass
class ProbeRecord:
    key: ProbeKey
    spec: Probe
    eligibility: Eligibility
    """Which nodes it covers and may probe now, kept between ticks."""
    prerequisite: Missing | None = None
    """What the probe needs and does not have (its StorageClass), if anything."""
    selected: frozenset[str] = frozenset()
    last_success: dict[str, float] = field(default_factory=dict)
    """Per kind: when its latest successful run finished."""
    status_written: Mapping[str, Any] | None = None
    status_written_at: float = float("-inf")
    status_writing: bool = False
    dirty: bool = True
    baseline: Baseline = field(default_factory=Baseline)


class Planner:
    """The leader's decisions. Created when leadership starts, discarded when it ends."""

    def __init__(
        self,
        kinds: Sequence[ProbeKind],
        resources: Sequence[ProbeResource],
        *,
        status_interval: float = 5.0,
        sweep_interval: float = 30.0,
    ) -> None:
        self.kinds: dict[str, ProbeKind] = {kind.name: kind for kind in kinds}
        self.resources: dict[str, ProbeResource] = {resource.plural: resource for resource in resources}
        self.status_interval = status_interval
        """At most one status write per probe per this many seconds (unless its spec changed)."""
        self.sweep_interval = sweep_interval
        self.records: dict[ProbeKey, ProbeRecord] = {}
        self.targets: dict[Target, TargetState] = {}
        self._last_sweep = float("-inf")
        self._next_stall_check = math.inf
        self._desired_from: tuple[tuple[ProbeKey, Probe, frozenset[str]], ...] | None = None
        """What the targets were last derived from: while probes and selections stay the same,
        so do the targets, and a tick need not look at each of them again."""
        self._gauge_keys: set[tuple[str, str]] = set()
        """The (probe, kind) pairs of the targets: each has its gauges, at 0 when nothing runs."""
        self.windows: dict[str, Window] = {}
        """Per StorageClass: how many of its volumes may be in the making at once."""

    # -- entry points --------------------------------------------------------------------------

    def start(self, world: World) -> list[Action]:
        """Leadership began: learn the probes, then follow the runs a previous leader left."""
        actions = self._reconcile(world)
        actions += self._adopt(world)
        return actions

    def tick(self, world: World) -> list[Action]:
        actions = self._reconcile(world)
        actions += self._abort_stranded(world)
        actions += self._stalls(world)
        making = self._in_the_making(world)
        self._pace(making, world.now)
        actions += self._launch_due(world, self._room(making))
        actions += self._statuses(world.now)
        actions += self._sweep(world)
        actions.append(self._gauges())
        return actions

    def finished(self, target: Target, run: str, outcome: Outcome, world: World) -> list[Action]:
        """The executor's run of `target` (pod `run`) ended with `outcome`."""
        state = self.targets.get(target)
        record = self.records.get(self._key(target))
        if state is None or record is None or state.run != run:
            return []  # the target was dropped meanwhile: its run is not counted
        state.run = ""
        state.aborting = False
        if state.new_volume:
            self._volume_done(record, outcome, world.now)
            state.new_volume = False
        actions = self._set_stalled(state, record, None, world.now)
        outcome = self._judged_against_baseline(record, self._demoted(record, outcome, world))
        return actions + self._complete(state, record, outcome, world.now)

    def broke(self, target: Target, run: str, error: str, world: World) -> list[Action]:
        """The executor's run ended with an exception (a bug or an unexpected API answer)."""
        outcome = failed(
            target,
            Reason.API_ERROR,
            Phase.PROVISION,
            f"controller error: {error}"[:300],
            now=world.now,
            run=run,
        )
        return self.finished(target, run, outcome, world)

    def status_written(self, probe: ProbeKey, document: Mapping[str, Any], now: float) -> None:
        record = self.records.get(probe)
        if record is not None:
            record.status_writing = False
            record.status_written = document
            record.status_written_at = now

    def status_failed(self, probe: ProbeKey, *, retry: bool) -> None:
        record = self.records.get(probe)
        if record is not None:
            record.status_writing = False
            record.dirty = record.dirty or retry

    def wake_at(self, now: float) -> float:
        """When `tick` must run next even if nothing changes."""
        due = min((state.next_due for state in self.targets.values()), default=now + 1.0)
        if any(state.queued is not None for state in self.targets.values()):
            due = min(due, now + 1.0)  # room for a queued run comes with a claim's binding
        return min(due, now + self.status_interval, self._next_stall_check)

    # -- desired state -------------------------------------------------------------------------

    def _key(self, target: Target) -> ProbeKey:
        return self.kinds[target.kind].resource, target.probe

    def _ours(self, target: Target | None) -> bool:
        """Objects of probes and kinds we handle; others belong to another controller (or to a
        deleted probe, whose objects the garbage collector removes through their owners)."""
        return target is not None and target.kind in self.kinds and self._key(target) in self.records

    def _reconcile(self, world: World) -> list[Action]:
        """Bring records and targets in line with the probes, nodes and classes."""
        actions: list[Action] = []
        for key in [k for k in self.records if k not in world.probes]:
            actions += self._drop_probe(key)
        records: list[ProbeRecord] = []
        for key, spec in world.probes.items():
            if key[0] not in self.resources:
                continue
            record, events = self._update_record(key, spec, world)
            actions += events
            records.append(record)
            if record.status_written is None and key in world.statuses:
                record.status_written = world.statuses[key]
                record.baseline = Baseline.from_status(record.status_written, self.kinds)
        desired_from = tuple((record.key, record.spec, record.selected) for record in records)
        if desired_from == self._desired_from:
            return actions
        self._desired_from = desired_from
        desired: dict[Target, Probe] = {}
        for record in records:
            selection = sorted(record.selected)
            for kind in self.kinds.values():
                if kind.resource == record.key[0]:
                    desired.update((target, record.spec) for target in targets(kind, record.spec, selection))
        for target in [t for t in self.targets if t not in desired]:
            actions += self._drop_target(target)
        self._gauge_keys = {(target.probe, target.kind) for target in desired}
        for target, spec in desired.items():
            state = self.targets.get(target)
            if state is None:
                slot_offset = offset(spec.uid, target, spec.interval)
                self.targets[target] = TargetState(
                    target,
                    slot_offset,
                    spec.interval,
                    next_slot(world.now, spec.interval, slot_offset),
                    lasting_claims=self.kinds[target.kind].lasting_claims(target),
                )
            elif state.interval != spec.interval:
                state.interval = spec.interval
                state.slot_offset = offset(spec.uid, target, spec.interval)
                state.next_due = next_slot(world.now, spec.interval, state.slot_offset)
        return actions

    def _update_record(self, key: ProbeKey, spec: Probe, world: World) -> tuple[ProbeRecord, list[Action]]:
        resource = self.resources[key[0]]
        actions: list[Action] = []
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = ProbeRecord(key, spec, Eligibility(resource))
            log.info("probing with %s %s every %ss", resource.api_kind, spec.name, spec.interval)
        if record.spec.generation != spec.generation:
            record.dirty = True
        record.spec = spec
        missing = resource.prerequisite(spec, world.classes)
        if (missing is None) != (record.prerequisite is None):
            record.dirty = True
            if missing is not None:
                actions.append(Emit(key, spec.uid, "Warning", missing.gone_event, missing.gone_message))
            elif record.prerequisite is not None:
                gone = record.prerequisite
                actions.append(Emit(key, spec.uid, "Normal", gone.back_event, gone.back_message))
        record.prerequisite = missing
        record.eligibility.refresh(spec, world.nodes, world.now)
        selected = record.eligibility.selected
        if selected != record.selected:
            record.dirty = True
            record.selected = selected
        return record, actions

    def _drop_target(self, target: Target) -> list[Action]:
        """The target no longer exists (probe, node or kind gone): stop it and remove its traces."""
        state = self.targets.pop(target)
        actions: list[Action] = []
        if state.run:
            actions += [Stop(target), Delete("pods", state.run)]
        actions += [Delete("persistentvolumeclaims", claim) for claim in state.lasting_claims]
        actions.append(Forget(target.probe, target.node))
        record = self.records.get(self._key(target))
        if record is not None:
            record.dirty = True
            actions.append(Retire(target, record.spec))
        return actions

    def _drop_probe(self, key: ProbeKey) -> list[Action]:
        actions: list[Action] = []
        for target in [t for t in self.targets if self._key(t) == key]:
            actions += self._drop_target(target)
        self.records.pop(key, None)
        actions.append(Forget(key[1]))
        log.info("%s %s is gone; stopped probing it", self.resources[key[0]].api_kind, key[1])
        return actions

    # -- runs ----------------------------------------------------------------------------------

    def _adopt(self, world: World) -> list[Action]:
        """Follow the runs a previous leader started; delete pods nobody can follow."""
        actions: list[Action] = []
        for pod in world.pods:
            target = target_of(pod.meta.labels, pod.meta.annotations)
            if pod.meta.deleting or target is None or not self._ours(target):
                continue
            state = self.targets.get(target)
            if state is None or state.run:
                actions.append(Delete("pods", pod.name))
                continue
            log.info("adopting run %s", pod.name)
            state.run = pod.name
            record = self.records[self._key(target)]
            request = RunRequest(record.spec, target, pod.name, adopt=pod, status=record.status_written)
            actions.append(Launch(request))
        return actions

    def _readiness(self, record: ProbeRecord, target: Target) -> tuple[SkipReason | None, tuple[str, ...]]:
        """As of the record's latest `Eligibility.refresh` (each tick refreshes every record)."""
        placement, nodes = self.kinds[target.kind].placement, record.eligibility
        ready = readiness(placement, target, selected=nodes.selected, unwell=nodes.unwell)
        return ready.skip, ready.avoid_nodes

    def _launch_due(self, world: World, room: dict[str, int]) -> list[Action]:
        actions: list[Action] = []
        now = world.now
        claims = {claim.name: claim for claim in world.claims}
        waiting = [s for s in self.targets.values() if s.next_due <= now or s.queued is not None]
        for state in sorted(waiting, key=lambda s: s.next_due if s.queued is None else s.queued):
            slot = state.next_due if state.queued is None else state.queued
            if state.next_due <= now:
                state.next_due = next_slot(now, state.interval, state.slot_offset)
            if state.run:
                state.queued = None
                continue  # the previous run overran into this slot; its own deadlines end it
            record = self.records[self._key(state.target)]
            spec, target = record.spec, state.target
            if record.prerequisite is not None:
                state.queued = None
                gone = record.prerequisite
                actions += self._complete(
                    state, record, failed(target, gone.reason, Phase.PROVISION, gone.message, now=now), now
                )
                continue
            skip, avoid = self._readiness(record, target)
            if skip is not None:
                state.queued = None
                actions += self._complete(state, record, skipped(target, skip, now), now)
                continue
            if state.skip is not None and target.node:
                state.skip = None
                record.dirty = True
                actions.append(SetSkipped(target.probe, target.node, None))
            state.new_volume = self._needs_volume(state, claims)
            if state.new_volume:
                if room.get(spec.storage_class, 0) <= 0:
                    if state.queued is None:
                        record.dirty = True
                    state.queued = slot
                    continue
                room[spec.storage_class] -= 1
            if state.queued is not None:
                record.dirty = True
            state.queued = None
            state.run = pod_name(target, self.kinds[target.kind].short, slot_id(slot))
            request = RunRequest(
                spec,
                target,
                state.run,
                avoid_nodes=avoid,
                slot=slot,
                previous=state.last,
                status=record.status_written,
            )
            actions.append(Launch(request))
        return actions

    # -- pacing new volumes --------------------------------------------------------------------

    def _needs_volume(self, state: TargetState, claims: Mapping[str, ClaimView]) -> bool:
        """A run of this target creates a volume: it brings its own, or its node's is not bound."""
        if self.kinds[state.target.kind].placement is Placement.CONTROLLER:
            return False
        lasting = state.lasting_claims
        return not lasting or any(name not in claims or claims[name].phase != "Bound" for name in lasting)

    def _in_the_making(self, world: World) -> dict[str, list[float]]:
        """Per class: since when each volume a run is waiting for has been in the making."""
        making: dict[str, list[float]] = {}
        for state in self.targets.values():
            if not (state.run and state.new_volume):
                continue
            progress = world.progress.get(state.run)
            if progress is None or progress.phase is Phase.PROVISION:
                since = progress.since if progress else world.now
                making.setdefault(self.records[self._key(state.target)].spec.storage_class, []).append(since)
        return making

    def _room(self, making: Mapping[str, list[float]]) -> dict[str, int]:
        """Per class: how many more volumes may be started now."""
        classes = {record.spec.storage_class for record in self.records.values() if record.spec.storage_class}
        return {c: self._window(c).allowed() - len(making.get(c, ())) for c in classes}

    def _window(self, storage_class: str) -> Window:
        return self.windows.setdefault(storage_class, Window())

    def _congestion_after(self, storage_class: str) -> float:
        """How long a volume of this class may be in the making before it means congestion."""
        learned = [
            fastest
            for record in self.records.values()
            if record.spec.storage_class == storage_class
            for kind in self.kinds
            if (fastest := record.baseline.fastest(kind, Phase.PROVISION)) is not None
        ]
        seen = self._window(storage_class).fastest
        return congested_after([*learned, seen] if math.isfinite(seen) else learned)

    def _pace(self, making: Mapping[str, list[float]], now: float) -> None:
        """A volume in the making for longer than normal shrinks its class's window."""
        for storage_class, since in making.items():
            limit = self._congestion_after(storage_class)
            if now - min(since) > limit:
                self._congested(storage_class, now, limit)

    def _volume_done(self, record: ProbeRecord, outcome: Outcome, now: float) -> None:
        storage_class = record.spec.storage_class
        limit = self._congestion_after(storage_class)
        seconds = outcome.durations.get(Phase.PROVISION)
        if outcome.reason in (Reason.PROVISIONING_TIMEOUT, Reason.PROVISIONING_FAILED):
            self._congested(storage_class, now, limit)
        elif seconds is not None:
            self._window(storage_class).bound(seconds, limit)

    def _congested(self, storage_class: str, now: float, limit: float) -> None:
        # Logged because the window is the one piece of pacing no metric shows: when a rollout
        # is slow, this says whether volprobe held back and why.
        window = self._window(storage_class)
        if window.congested(now, limit):
            log.info(
                "volumes of class %s take longer than %.0fs: at most %d in the making now",
                storage_class,
                limit,
                window.allowed(),
            )

    def _abort_stranded(self, world: World) -> list[Action]:
        """Runs whose pod waits for a node that must not be probed now end as skips at once."""
        waiting = {pod.name for pod in world.pods if not pod.node and not pod.meta.deleting}
        actions: list[Action] = []
        for state in self.targets.values():
            if not state.run or state.aborting or state.run not in waiting:
                continue
            skip, _ = self._readiness(self.records[self._key(state.target)], state.target)
            if skip is not None:
                state.aborting = True
                actions.append(Abort(state.target, skip))
        return actions

    def _stalls(self, world: World) -> list[Action]:
        """Runs in a phase for far longer than this probe's successes take are stalled: said at
        once, long before the phase's hard deadline (see `volprobe.model.baseline`)."""
        actions: list[Action] = []
        self._next_stall_check = math.inf
        for state in self.targets.values():
            if not state.run and state.stalled is None:
                continue
            record = self.records[self._key(state.target)]
            progress = world.progress.get(state.run) if state.run and world.live else None
            stalled = None
            if progress is not None:
                limit = record.baseline.threshold(state.target.kind, progress.phase)
                if limit is not None and world.now - progress.since > limit:
                    stalled = progress
                elif limit is not None:
                    self._next_stall_check = min(self._next_stall_check, progress.since + limit)
            if (stalled and stalled.phase) != (state.stalled and state.stalled.phase):
                actions += self._set_stalled(state, record, stalled, world.now)
        return actions

    def _set_stalled(
        self, state: TargetState, record: ProbeRecord, stalled: RunProgress | None, now: float
    ) -> list[Action]:
        if stalled == state.stalled:
            return []
        state.stalled = stalled
        record.dirty = True
        target, spec = state.target, record.spec
        actions: list[Action] = [SetStalled(target, spec.storage_class, stalled.phase if stalled else None)]
        if stalled is not None:
            usual = record.baseline.usual(target.kind, stalled.phase) or 0.0
            where = f" on node {target.node}" if target.node else ""
            actions.append(
                Emit(
                    record.key,
                    spec.uid,
                    "Warning",
                    "ProbeStalled",
                    f"{target.kind} probe{where} has been in phase {stalled.phase} for "
                    f"{now - stalled.since:.0f}s; it usually takes {usual:.1f}s",
                )
            )
        return actions

    def _judged_against_baseline(self, record: ProbeRecord, outcome: Outcome) -> Outcome:
        """A success with a phase far over its baseline is `slow`; every success teaches it."""
        if not outcome.passed:
            return outcome
        kind = outcome.target.kind
        over = record.baseline.slowest_over(kind, outcome.durations)
        usual = record.baseline.usual(kind, over[0]) if over else None
        record.baseline.learn(kind, outcome.durations)
        if over is None:
            return outcome
        phase, seconds, limit = over
        message = (
            f"phase {phase} took {seconds:.1f}s; it usually takes {usual or 0:.1f}s (slow after {limit:.0f}s)"
        )
        return replace(outcome, result=Result.SLOW, phase=phase, message=message)

    def _demoted(self, record: ProbeRecord, outcome: Outcome, world: World) -> Outcome:
        """A failure while the run's node (or, before it had one, every usable node) went unwell
        is a skip: see `demote_if_node_unwell`; so is one whose node was unwell at some time
        during the run (`unwell_since`)."""
        if outcome.node:
            node = world.nodes.get(outcome.node)
            reason = record.eligibility.skip(outcome.node, node, world.now)
            if reason is None and node is not None:
                reason = unwell_since(node, outcome.started)
            return demote_if_node_unwell(outcome, reason)
        record.eligibility.refresh(record.spec, world.nodes, world.now)
        return demote_if_node_unwell(outcome, self._readiness(record, outcome.target)[0])

    def _complete(
        self, state: TargetState, record: ProbeRecord, outcome: Outcome, now: float
    ) -> list[Action]:
        """Count a finished run and remember it for status and Events."""
        target, spec = state.target, record.spec
        actions: list[Action] = [Count(outcome, spec)]
        record.dirty = True
        if outcome.result is Result.SKIPPED:
            if target.node and state.skip != outcome.skip:
                state.skip = outcome.skip
                actions.append(SetSkipped(target.probe, target.node, outcome.skip))
            return actions
        previous, state.last = state.last, outcome
        if outcome.passed:
            record.last_success[target.kind] = outcome.finished
        where = f" on node {outcome.node}" if outcome.node else ""
        if not outcome.passed and (previous is None or previous.passed):
            actions.append(
                Emit(
                    record.key,
                    spec.uid,
                    "Warning",
                    "ProbeFailed",
                    f"{target.kind} probe{where} failed: {outcome.reason} in phase {outcome.phase}: "
                    f"{outcome.message}",
                )
            )
        elif outcome.passed and previous is not None and not previous.passed:
            actions.append(
                Emit(
                    record.key,
                    spec.uid,
                    "Normal",
                    "ProbeRecovered",
                    f"{target.kind} probe{where} passes again",
                )
            )
        elif outcome.result is Result.SLOW and (previous is None or previous.result is not Result.SLOW):
            message = f"{target.kind} probe{where} was slow: {outcome.message}"
            actions.append(Emit(record.key, spec.uid, "Warning", "ProbeSlow", message))
        return actions

    # -- status, gauges and leftovers ----------------------------------------------------------

    def view(self, record: ProbeRecord) -> ProbeView:
        """What the planner knows about one probe, for its resource's status document."""
        mine = sorted(
            (s for t, s in self.targets.items() if self._key(t) == record.key), key=lambda s: s.target
        )
        return ProbeView(
            spec=record.spec,
            kinds=tuple(
                kind
                for kind in self.kinds.values()
                if kind.resource == record.key[0] and record.spec.enables(kind.name)
            ),
            prerequisite=record.prerequisite,
            selected=record.selected,
            targets=tuple(
                TargetView(s.target, s.last, s.skip, s.stalled, s.queued is not None) for s in mine
            ),
            last_success=dict(record.last_success),
            baseline=record.baseline,
        )

    def _statuses(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for record in self.records.values():
            generation_changed = (record.status_written or {}).get(
                "observedGeneration"
            ) != record.spec.generation
            paced = now - record.status_written_at < self.status_interval and not generation_changed
            if not record.dirty or record.status_writing or paced:
                continue
            update = self.resources[record.key[0]].status(self.view(record), record.status_written, now)
            if update.node_counts is not None:
                actions.append(SetNodeCounts(record.spec.name, record.spec.storage_class, update.node_counts))
            record.dirty = False
            if update.document != record.status_written:
                record.status_writing = True
                actions.append(WriteStatus(record.key, update.document))
        return actions

    def _gauges(self) -> Publish:
        in_flight = dict.fromkeys(self._gauge_keys, 0)
        queued = dict.fromkeys(self._gauge_keys, 0)
        for target, state in self.targets.items():
            if state.run:
                in_flight[target.probe, target.kind] += 1
            if state.queued is not None:
                queued[target.probe, target.kind] += 1
        intervals = {r.spec.name: (r.spec.storage_class, r.spec.interval) for r in self.records.values()}
        return Publish(in_flight, queued, intervals)

    def _sweep(self, world: World) -> list[Action]:
        """Delete pods and claims nobody owns any more (a crash between create and record)."""
        if world.now - self._last_sweep < self.sweep_interval:
            return []
        self._last_sweep = world.now
        actions: list[Action] = []
        running = {s.run for s in self.targets.values() if s.run}
        for pod in world.pods:
            target = target_of(pod.meta.labels, pod.meta.annotations)
            if pod.meta.deleting or pod.name in running or target is None or not self._ours(target):
                continue
            if target not in self.targets or _older_than(pod.meta.created, world.now, LEFTOVER_AGE):
                log.info("deleting leftover pod %s", pod.name)
                actions.append(Delete("pods", pod.name))
        for claim in world.claims:
            target = target_of(claim.meta.labels, claim.meta.annotations)
            if claim.meta.deleting or target is None or not self._ours(target) or target in self.targets:
                continue
            if claim.name in self.kinds[target.kind].lasting_claims(target):
                log.info("deleting claim %s of a target that is gone", claim.name)
                actions.append(Delete("persistentvolumeclaims", claim.name))
        return actions


def _older_than(created: float | None, now: float, seconds: float) -> bool:
    return created is not None and now - created > seconds
