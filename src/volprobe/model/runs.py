"""One run, from the pod's creation to its clean-up, as a pure state machine.

The engine feeds it what the caches show (pod, claim, volume) and the time; it answers with
what happened so far (milestones), when to look again (the next deadline), and, once the run
is decided, the outcome: result, the phase that failed and a reason from the fixed set.

Phases follow the order a run goes through: the claim is bound (provision), the pod bound to
a node (schedule), its container started (mount: attach, mount, image), the agent reports (io),
and everything is deleted again (cleanup). Each has its own deadline measured from the end of
the previous one, so a slow provisioner and a hung mount are told apart, and pie's mixing of
scheduling, image pulls and storage into one "start" time does not happen.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.contract.report import Report, ReportError, decode_report
from volprobe.model.outcome import Outcome, Verdict
from volprobe.model.probe import Probe
from volprobe.model.spec import Timeouts
from volprobe.model.targets import Target
from volprobe.model.views import ClaimView, EventView, PodView, VolumeView

IMAGE_WAITING_REASONS = frozenset(
    {"ErrImageNeverPull", "InvalidImageName", "ErrImagePull", "ImagePullBackOff"}
)
"""Container waiting reasons meaning "the probe image is not available on this node"."""
IMAGE_FATAL_REASONS = frozenset({"ErrImageNeverPull", "InvalidImageName"})
"""...of which these never resolve by waiting: fail at once instead of at the mount deadline."""
CONFIG_FATAL_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


@dataclass
class Milestones:
    """Unix times at which each step of the run was reached (None: not yet)."""

    created: float
    bound: float | None = None
    scheduled: float | None = None
    started: float | None = None
    finished: float | None = None
    delete_requested: float | None = None
    cleaned: float | None = None
    claim_preexisting: bool = False
    """The claim was bound before this run (a mount probe's volume): no provision phase to time."""

    def durations(self, report: Report | None) -> dict[Phase, float]:
        """Seconds spent in each phase that completed, never negative (clocks of two hosts)."""
        found: dict[Phase, float] = {}
        if self.bound is not None and not self.claim_preexisting:
            found[Phase.PROVISION] = self.bound - self.created
        if self.scheduled is not None:
            found[Phase.SCHEDULE] = self.scheduled - max(self.created, self.bound or self.created)
        if self.started is not None and self.scheduled is not None:
            found[Phase.MOUNT] = self.started - self.scheduled
        if report is not None and report.elapsed:
            found[Phase.IO] = report.elapsed
        elif self.finished is not None and self.started is not None:
            found[Phase.IO] = self.finished - self.started
        if self.cleaned is not None and self.delete_requested is not None:
            found[Phase.CLEANUP] = self.cleaned - self.delete_requested
        return {phase: max(0.0, seconds) for phase, seconds in found.items()}


@dataclass(frozen=True)
class RunProgress:
    """Where a run in flight is: its current phase and when that phase began."""

    phase: Phase
    since: float


@dataclass(frozen=True)
class RunRequest:
    """An order to run a target once: what the planner hands the executor (and `check` the engine)."""

    spec: Probe
    target: Target
    pod_name: str
    """The run's name: its pod's, for kinds that run pods."""
    avoid_nodes: tuple[str, ...] = ()
    slot: float | None = None
    """The slot the run belongs to (how late it starts is measured against it)."""
    previous: Outcome | None = None
    """The target's latest completed run: what a kind carries from run to run (a canary)."""
    status: Mapping[str, Any] | None = None
    """The probe's status as last written: what a new leader's first run carries over."""
    adopt: PodView | None = None
    """An existing pod of this run (after a restart or fail-over): follow it instead of creating."""


def classify_stuck(
    phase: Phase, pod: PodView | None, pod_events: Sequence[EventView], claim_events: Sequence[EventView]
) -> tuple[Reason, str]:
    """Why a run missed the deadline of `phase`, using what the cluster said about it.

    Events are fetched only for runs that are stuck, so healthy runs cost no extra requests.
    """
    pod_reasons = {e.reason: e for e in pod_events}
    claim_reasons = {e.reason: e for e in claim_events}
    if phase is Phase.PROVISION:
        if "ProvisioningFailed" in claim_reasons:
            return Reason.PROVISIONING_FAILED, claim_reasons["ProvisioningFailed"].message
        if "FailedScheduling" in pod_reasons and "ExternalProvisioning" not in claim_reasons:
            return Reason.UNSCHEDULABLE, pod_reasons["FailedScheduling"].message
        waiting = claim_reasons.get("ExternalProvisioning") or claim_reasons.get("WaitForFirstConsumer")
        return Reason.PROVISIONING_TIMEOUT, waiting.message if waiting else "the claim was not bound in time"
    if phase is Phase.SCHEDULE:
        scheduling = pod_reasons.get("FailedScheduling")
        message = scheduling.message if scheduling else (pod.unschedulable_message if pod else "")
        return Reason.UNSCHEDULABLE, message or "the pod was not scheduled in time"
    if phase is Phase.MOUNT:
        container = pod.container if pod else None
        if container and container.waiting_reason in IMAGE_WAITING_REASONS:
            return Reason.IMAGE_UNAVAILABLE, f"{container.waiting_reason}: {container.waiting_message}"
        if "FailedAttachVolume" in pod_reasons:
            return Reason.ATTACH_TIMEOUT, pod_reasons["FailedAttachVolume"].message
        for reason in ("FailedMount", "FailedMapVolume"):
            if reason in pod_reasons:
                return Reason.MOUNT_FAILED, pod_reasons[reason].message
        return Reason.MOUNT_TIMEOUT, "the container did not start in time"
    return Reason.TIMEOUT, "the agent did not report in time"


class RunTracker:
    """Follows one run. Pure: no I/O, time passed in."""

    def __init__(
        self,
        target: Target,
        pod_name: str,
        claim_name: str,
        timeouts: Timeouts,
        created: float,
        *,
        claim_preexisting: bool,
        keeps_claim: bool = False,
        adopted: bool = False,
    ) -> None:
        """`keeps_claim`: the claim outlives the run (a per-node kind's long-lived volume), so
        clean-up waits only for the pod, and a lost claim is a mount-side failure."""
        self.target = target
        self.pod_name = pod_name
        self.claim_name = claim_name
        self.timeouts = timeouts
        self.milestones = Milestones(created=created, claim_preexisting=claim_preexisting)
        self.verdict: Verdict | None = None
        self.report: Report | None = None
        self.node = target.node
        self.volume_name = ""
        self.require_volume_gone = False
        self.keeps_claim = keeps_claim
        self._claim_preexisting = claim_preexisting
        self._adopted = adopted
        self._abort: SkipReason | None = None
        self._claim_seen = False
        self._pod_seen = False

    # -- observing -----------------------------------------------------------------------------

    def observe(self, pod: PodView | None, claim: ClaimView | None, now: float) -> None:
        """Record milestones visible in the current pod and claim (first sighting wins)."""
        marks = self.milestones
        if claim is not None:
            self._claim_seen = True
            if claim.volume_name:
                self.volume_name = claim.volume_name
            if marks.bound is None and claim.phase == "Bound":
                marks.bound = marks.created if self._claim_preexisting else now
        if pod is None:
            return
        self._pod_seen = True
        if pod.node:
            self.node = pod.node
            if marks.scheduled is None:
                marks.scheduled = pod.scheduled_at if self._adopted and pod.scheduled_at else now
            if marks.bound is None and self._claim_preexisting:
                marks.bound = marks.created
        container = pod.container
        if marks.started is None and (container.running_since is not None or container.terminated):
            live = now if not container.terminated else None
            marks.started = (container.running_since if self._adopted else live) or container.started or now
        if marks.finished is None and container.terminated:
            marks.finished = container.finished or now

    # -- deciding ------------------------------------------------------------------------------

    def current_phase(self) -> Phase:
        marks = self.milestones
        if marks.bound is None:
            return Phase.PROVISION
        if marks.scheduled is None:
            return Phase.SCHEDULE
        if marks.started is None:
            return Phase.MOUNT
        return Phase.IO

    @property
    def stage(self) -> Phase:
        """Where the run is now, clean-up included (for progress displays)."""
        return Phase.CLEANUP if self.milestones.delete_requested is not None else self.current_phase()

    def progress(self) -> RunProgress:
        """The phase the run is in and since when (clean-up included), for stall detection."""
        marks = self.milestones
        if marks.delete_requested is not None:
            return RunProgress(Phase.CLEANUP, marks.delete_requested)
        phase = self.current_phase()
        since = {
            Phase.PROVISION: marks.created,
            Phase.SCHEDULE: marks.bound or marks.created,
            Phase.MOUNT: marks.scheduled or marks.created,
        }.get(phase, marks.started or marks.created)
        return RunProgress(phase, since)

    def phase_deadline(self) -> float:
        marks = self.milestones
        phase = self.current_phase()
        if phase is Phase.PROVISION:
            return marks.created + self.timeouts.provision
        if phase is Phase.SCHEDULE:
            return (marks.bound or marks.created) + self.timeouts.schedule
        if phase is Phase.MOUNT:
            return (marks.scheduled or marks.created) + self.timeouts.mount
        return (marks.started or marks.created) + self.timeouts.io

    def decide(self, pod: PodView | None, claim: ClaimView | None, now: float) -> Verdict | None:
        """The verdict once the run is decided (container done, fatal state, or deadline passed).

        Returns None while the run is still going; after a verdict, the run moves to clean-up.
        A deadline verdict has no reason yet when events could explain it: the engine then
        calls `explain()` with the events it fetched.
        """
        if self.verdict is not None:
            return self.verdict
        self.observe(pod, claim, now)
        verdict = self._aborted() or self._decide(pod, claim, now)
        if verdict is not None:
            self.verdict = verdict
        return verdict

    def abort(self, reason: SkipReason) -> None:
        """Give the run up as skipped, if it has not reached a node yet.

        A pod waiting for a node while every node it may use is cordoned or NotReady would
        otherwise sit out its provision or schedule deadline and then be demoted to a skip
        anyway, holding its slot for minutes; a pod already on a node runs to its end.
        """
        self._abort = reason

    def _aborted(self) -> Verdict | None:
        if self._abort is None or self.milestones.scheduled is not None:
            return None
        return Verdict(Result.SKIPPED, None, None, f"skipped: {self._abort.value}", skip=self._abort)

    def _decide(self, pod: PodView | None, claim: ClaimView | None, now: float) -> Verdict | None:
        phase = self.current_phase()
        if claim is not None and claim.phase == "Lost":
            where = Phase.MOUNT if self.keeps_claim else Phase.PROVISION
            return Verdict(Result.FAILURE, where, Reason.CLAIM_LOST, f"claim {claim.name} lost its volume")
        if pod is None:
            if self._pod_seen:
                return Verdict(
                    Result.FAILURE, phase, Reason.POD_FAILED, "the probe pod was deleted by someone else"
                )
            return self._deadline(phase, now)
        container = pod.container
        if pod.phase == "Failed" and pod.reason:
            # The kubelet or an eviction ended the pod: that, not the killed container's exit
            # code, is what happened (a Failed pod without a reason is the container's doing).
            if pod.reason == "DeadlineExceeded":
                return Verdict(Result.TIMEOUT, phase, None, "the pod exceeded activeDeadlineSeconds")
            return Verdict(
                Result.FAILURE, phase, Reason.POD_FAILED, f"pod failed: {pod.reason} {pod.message}".strip()
            )
        if container.terminated:
            return self._judge_container(pod)
        if container.waiting_reason in IMAGE_FATAL_REASONS:
            return Verdict(
                Result.FAILURE,
                Phase.MOUNT,
                Reason.IMAGE_UNAVAILABLE,
                f"{container.waiting_reason}: {container.waiting_message}",
            )
        if container.waiting_reason in CONFIG_FATAL_REASONS:
            return Verdict(
                Result.FAILURE,
                Phase.MOUNT,
                Reason.POD_FAILED,
                f"{container.waiting_reason}: {container.waiting_message}",
            )
        return self._deadline(phase, now)

    def _deadline(self, phase: Phase, now: float) -> Verdict | None:
        if now < self.phase_deadline():
            return None
        # Reason decided by explain(): the engine fetches events only for stuck runs.
        return Verdict(Result.TIMEOUT, phase, None, "")

    def _judge_container(self, pod: PodView) -> Verdict:
        container = pod.container
        if container.exit_code != 0:
            detail = container.terminated_reason or f"exit code {container.exit_code}"
            return Verdict(Result.FAILURE, Phase.IO, Reason.AGENT_FAILED, f"the agent failed: {detail}")
        try:
            report = decode_report(container.message)
        except ReportError as error:
            return Verdict(Result.FAILURE, Phase.REPORT, Reason.BAD_REPORT, str(error))
        if report.run != self.pod_name:
            return Verdict(
                Result.FAILURE,
                Phase.REPORT,
                Reason.BAD_REPORT,
                f"the report belongs to run {report.run!r}, not {self.pod_name!r}",
            )
        self.report = report
        if report.started:
            self.milestones.started = report.started
            self.milestones.finished = report.started + report.elapsed
        return Verdict(report.verdict, report.phase, report.reason, report.detail)

    def needs_explaining(self) -> bool:
        """A deadline verdict whose reason the events must tell (never a passed or skipped run)."""
        return (
            self.verdict is not None
            and self.verdict.result in (Result.FAILURE, Result.TIMEOUT)
            and self.verdict.reason is None
        )

    def explain(
        self, pod: PodView | None, pod_events: Sequence[EventView], claim_events: Sequence[EventView]
    ) -> None:
        """Fill in the reason of a deadline verdict from the events of the pod and the claim."""
        if not self.needs_explaining():
            return
        assert self.verdict is not None
        phase = self.verdict.phase or self.current_phase()
        reason, message = classify_stuck(phase, pod, pod_events, claim_events)
        prefix = self.verdict.message
        self.verdict = replace(
            self.verdict, reason=reason, message=f"{prefix}: {message}" if prefix else message
        )

    # -- cleaning up ---------------------------------------------------------------------------

    def cleanup_deadline(self) -> float:
        return (self.milestones.delete_requested or 0.0) + self.timeouts.cleanup

    def cleaned_up(self, pod: PodView | None, claim: ClaimView | None, volume: VolumeView | None) -> bool:
        """Everything this run created is gone (for provision runs: pod, claim and volume)."""
        if pod is not None:
            return False
        if self.keeps_claim:
            return True
        return claim is None and (volume is None or not self.require_volume_gone)

    def finish(
        self, now: float, pod: PodView | None, claim: ClaimView | None, volume: VolumeView | None
    ) -> Outcome:
        """The outcome, once clean-up finished or ran out of time."""
        assert self.verdict is not None, "finish() before a verdict"
        verdict = self.verdict
        if self.cleaned_up(pod, claim, volume):
            self.milestones.cleaned = now
        elif verdict.passed:
            if pod is None and claim is None and volume is not None:
                verdict = Verdict(
                    Result.FAILURE,
                    Phase.CLEANUP,
                    Reason.PV_NOT_DELETED,
                    f"volume {volume.name} still exists ({volume.phase}) after its claim was deleted",
                )
            else:
                left = [what for what, obj in (("pod", pod), ("claim", claim)) if obj is not None]
                verdict = Verdict(
                    Result.FAILURE,
                    Phase.CLEANUP,
                    Reason.CLEANUP_TIMEOUT,
                    f"{' and '.join(left)} still present after the clean-up timeout",
                )
        failed = verdict.result in (Result.FAILURE, Result.TIMEOUT)
        return Outcome(
            target=self.target,
            run=self.pod_name,
            result=verdict.result,
            phase=verdict.phase if failed else None,
            reason=(verdict.reason or Reason.TIMEOUT) if failed else None,
            message=verdict.message,
            node=self.node,
            started=self.milestones.created,
            finished=now,
            durations=self.milestones.durations(self.report),
            report=self.report,
            skip=verdict.skip,
        )
