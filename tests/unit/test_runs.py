"""One run as a state machine: milestones, per-phase deadlines, verdicts, explanations, clean-up.

Every pod and claim is realistic API JSON projected through `volprobe.views`, and time is passed
in explicitly, exactly as the engine drives a `RunTracker`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from tests.unit.factories import (
    NOW,
    PROBE,
    claim_json,
    event_json,
    pod_json,
    running,
    terminated,
    volume_json,
    waiting,
)
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.contract.report import MAX_REPORT_BYTES, OpStats, Report, encode
from volprobe.model.outcome import Outcome, Verdict
from volprobe.model.runs import RunTracker, classify_stuck
from volprobe.model.spec import Timeouts
from volprobe.model.targets import Target
from volprobe.model.views import ClaimView, EventView, PodView, VolumeView

T0 = NOW
"""When the run's pod (and, for provision runs, its claim) was created."""
TIMEOUTS = Timeouts(provision=100, schedule=50, mount=200, io=40, cleanup=30)
"""Distinct values, so a deadline measured from the wrong milestone shows."""
NODE = "worker-2"

PROVISION = Target(PROBE, "provision")
PROVISION_POD = "vp-fast-ssd-p-6a0f2c30"
PROVISION_CLAIM = f"{PROVISION_POD}-volume"
PV = "pvc-3f5d1c8e-2b0a-4e8e-9d55-0c1f2a3b4c5d"

MOUNT = Target(PROBE, "mount", NODE)
MOUNT_POD = "vp-fast-ssd-m-1a2b3c4d-6a0f2c30"
MOUNT_CLAIM = "vp-fast-ssd-1a2b3c4d5e"


# -- builders ------------------------------------------------------------------------------------


def provision_run() -> RunTracker:
    return RunTracker(PROVISION, PROVISION_POD, PROVISION_CLAIM, TIMEOUTS, T0, claim_preexisting=False)


def mount_run(*, adopted: bool = False) -> RunTracker:
    return RunTracker(
        MOUNT, MOUNT_POD, MOUNT_CLAIM, TIMEOUTS, T0, claim_preexisting=True, keeps_claim=True, adopted=adopted
    )


def provision_pod(**fields: Any) -> PodView:
    return PodView.of(pod_json(PROVISION_POD, created=T0, **fields))


def mount_pod(**fields: Any) -> PodView:
    return PodView.of(pod_json(MOUNT_POD, created=T0, claim=MOUNT_CLAIM, **fields))


def scheduled_pod(at: float, **fields: Any) -> PodView:
    return provision_pod(node=NODE, scheduled=at, **fields)


def running_pod(scheduled: float, started: float) -> PodView:
    return scheduled_pod(scheduled, phase="Running", state=running(started))


def finished_pod(
    scheduled: float,
    started: float,
    finished: float,
    *,
    message: str | None,
    exit_code: int = 0,
    reason: str = "Completed",
    pod: str = PROVISION_POD,
) -> PodView:
    phase = "Succeeded" if exit_code == 0 else "Failed"
    state = terminated(exit_code, reason=reason, message=message, started=started, finished=finished)
    raw = pod_json(pod, created=T0, node=NODE, scheduled=scheduled, phase=phase, state=state)
    return PodView.of(raw)


def provision_claim(phase: str = "Pending") -> ClaimView:
    return ClaimView.of(claim_json(PROVISION_CLAIM, phase=phase, volume=PV if phase != "Pending" else ""))


def mount_claim(phase: str = "Bound") -> ClaimView:
    return ClaimView.of(claim_json(MOUNT_CLAIM, phase=phase, volume=PV, created=T0 - 86400))


def report(
    *,
    run: str = PROVISION_POD,
    verdict: Result = Result.SUCCESS,
    phase: Phase | None = None,
    reason: Reason | None = None,
    detail: str = "",
    started: float = T0 + 21,
    elapsed: float = 4.5,
) -> str:
    """The termination message a real agent writes (volprobe.reports.encode)."""
    return encode(
        Report(
            run=run,
            verdict=verdict,
            phase=phase,
            reason=reason,
            detail=detail,
            previous_generation=6,
            written_generation=7 if verdict is Result.SUCCESS else None,
            direct=True,
            note="fs=ext4",
            payload_bytes=4 << 20,
            block_bytes=1 << 20,
            started=started,
            elapsed=elapsed,
            ops={"write": OpStats.from_samples([0.0012] * 4), "fsync": OpStats.from_samples([0.002])},
            throughput={"write": 8.7e8},
        )
    )


def events(*pairs: tuple[str, str]) -> list[EventView]:
    return [EventView.of(event_json(reason, message)) for reason, message in pairs]


def drive_to_success(tracker: RunTracker) -> Verdict | None:
    """A healthy provision run: bound at +12, scheduled at +15, running at +20, done at +26."""
    tracker.decide(provision_pod(), provision_claim(), T0 + 1)
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 15)
    tracker.decide(running_pod(T0 + 15, T0 + 20), provision_claim("Bound"), T0 + 20)
    done = finished_pod(T0 + 15, T0 + 20, T0 + 26, message=report())
    return tracker.decide(done, provision_claim("Bound"), T0 + 26)


def timed_out_at(tracker: RunTracker, now: float, pod: PodView | None, claim: ClaimView | None) -> Verdict:
    verdict = tracker.decide(pod, claim, now)
    assert verdict is not None
    return verdict


# -- milestones and durations ----------------------------------------------------------------------


def test_milestones_are_recorded_when_first_seen() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim(), T0 + 1)
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 15)
    tracker.decide(running_pod(T0 + 15, T0 + 20), provision_claim("Bound"), T0 + 20)
    marks = tracker.milestones
    assert (marks.created, marks.bound, marks.scheduled, marks.started) == (T0, T0 + 12, T0 + 15, T0 + 20)
    assert marks.finished is None


def test_later_sightings_do_not_move_a_milestone() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 15)
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 18)
    assert tracker.milestones.bound == T0 + 12
    assert tracker.milestones.scheduled == T0 + 15


def test_the_node_and_volume_come_from_the_pod_and_claim() -> None:
    tracker = provision_run()
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 15)
    assert tracker.node == NODE
    assert tracker.volume_name == PV


def test_successful_provision_run_has_every_phase_duration() -> None:
    tracker = provision_run()
    verdict = drive_to_success(tracker)
    assert verdict == Verdict(Result.SUCCESS, None, None, "")
    durations = tracker.milestones.durations(tracker.report)
    assert durations == {
        Phase.PROVISION: 12.0,
        Phase.SCHEDULE: 3.0,
        Phase.MOUNT: 6.0,
        Phase.IO: 4.5,
    }


def test_report_start_and_elapsed_become_the_io_timing() -> None:
    tracker = provision_run()
    drive_to_success(tracker)
    assert tracker.milestones.started == T0 + 21
    assert tracker.milestones.finished == T0 + 25.5
    assert tracker.report is not None
    assert tracker.report.run == PROVISION_POD


def test_mount_run_with_prebound_claim_has_no_provision_phase() -> None:
    tracker = mount_run()
    tracker.decide(mount_pod(), mount_claim(), T0 + 1)
    assert tracker.milestones.bound == T0
    tracker.decide(mount_pod(node=NODE, scheduled=T0 + 2), mount_claim(), T0 + 2)
    tracker.decide(mount_pod(node=NODE, scheduled=T0 + 2, state=running(T0 + 9)), mount_claim(), T0 + 9)
    done = PodView.of(
        pod_json(
            MOUNT_POD,
            created=T0,
            claim=MOUNT_CLAIM,
            node=NODE,
            scheduled=T0 + 2,
            phase="Succeeded",
            state=terminated(
                0, message=report(run=MOUNT_POD, started=T0 + 10), started=T0 + 9, finished=T0 + 15
            ),
        )
    )
    assert tracker.decide(done, mount_claim(), T0 + 15) == Verdict(Result.SUCCESS)
    durations = tracker.milestones.durations(tracker.report)
    assert Phase.PROVISION not in durations
    assert durations == {Phase.SCHEDULE: 2.0, Phase.MOUNT: 8.0, Phase.IO: 4.5}


def test_mount_run_counts_as_bound_once_its_pod_is_scheduled_even_without_the_claim() -> None:
    tracker = mount_run()
    tracker.decide(mount_pod(node=NODE, scheduled=T0 + 2), None, T0 + 2)
    assert tracker.milestones.bound == T0
    assert tracker.current_phase() is Phase.MOUNT


def test_durations_are_never_negative_when_clocks_disagree() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(scheduled_pod(T0 + 15), provision_claim("Bound"), T0 + 15)
    # The node's clock is 30 s behind: the agent says it started before the pod was scheduled.
    skewed = finished_pod(T0 + 15, T0 + 20, T0 + 26, message=report(started=T0 - 15))
    tracker.decide(skewed, provision_claim("Bound"), T0 + 26)
    assert tracker.milestones.durations(tracker.report)[Phase.MOUNT] == 0.0


def test_adopted_run_takes_its_milestones_from_the_pod_status() -> None:
    tracker = mount_run(adopted=True)
    pod = mount_pod(node=NODE, scheduled=T0 + 3, phase="Running", state=running(T0 + 7))
    tracker.decide(pod, mount_claim(), T0 + 25)
    assert tracker.milestones.scheduled == T0 + 3
    assert tracker.milestones.started == T0 + 7


def test_non_adopted_run_times_milestones_when_it_sees_them() -> None:
    tracker = mount_run()
    pod = mount_pod(node=NODE, scheduled=T0 + 3, phase="Running", state=running(T0 + 7))
    tracker.decide(pod, mount_claim(), T0 + 8)
    assert tracker.milestones.scheduled == T0 + 8
    assert tracker.milestones.started == T0 + 8


# -- deadlines -------------------------------------------------------------------------------------


def test_provision_deadline_counts_from_creation() -> None:
    tracker = provision_run()
    assert tracker.decide(provision_pod(), provision_claim(), T0 + 99.9) is None
    assert tracker.phase_deadline() == T0 + TIMEOUTS.provision
    verdict = timed_out_at(tracker, T0 + 100, provision_pod(), provision_claim())
    assert (verdict.result, verdict.phase) == (Result.TIMEOUT, Phase.PROVISION)


def test_schedule_deadline_counts_from_binding() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 90)
    assert tracker.phase_deadline() == T0 + 90 + TIMEOUTS.schedule
    assert tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 139) is None
    verdict = timed_out_at(tracker, T0 + 140, provision_pod(), provision_claim("Bound"))
    assert (verdict.result, verdict.phase) == (Result.TIMEOUT, Phase.SCHEDULE)


def test_schedule_deadline_of_a_mount_run_counts_from_creation() -> None:
    tracker = mount_run()
    tracker.decide(mount_pod(), mount_claim(), T0 + 1)
    assert tracker.phase_deadline() == T0 + TIMEOUTS.schedule
    verdict = timed_out_at(tracker, T0 + 50, mount_pod(), mount_claim())
    assert (verdict.result, verdict.phase) == (Result.TIMEOUT, Phase.SCHEDULE)


def test_mount_deadline_counts_from_scheduling() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 90)
    pod = scheduled_pod(T0 + 130, state=waiting("ContainerCreating"))
    tracker.decide(pod, provision_claim("Bound"), T0 + 130)
    assert tracker.phase_deadline() == T0 + 130 + TIMEOUTS.mount
    assert tracker.decide(pod, provision_claim("Bound"), T0 + 329) is None
    verdict = timed_out_at(tracker, T0 + 330, pod, provision_claim("Bound"))
    assert (verdict.result, verdict.phase) == (Result.TIMEOUT, Phase.MOUNT)


def test_io_deadline_counts_from_container_start() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 90)
    tracker.decide(scheduled_pod(T0 + 130), provision_claim("Bound"), T0 + 130)
    pod = running_pod(T0 + 130, T0 + 300)
    tracker.decide(pod, provision_claim("Bound"), T0 + 300)
    assert tracker.phase_deadline() == T0 + 300 + TIMEOUTS.io
    assert tracker.decide(pod, provision_claim("Bound"), T0 + 339) is None
    verdict = timed_out_at(tracker, T0 + 340, pod, provision_claim("Bound"))
    assert (verdict.result, verdict.phase) == (Result.TIMEOUT, Phase.IO)


def test_a_slow_phase_does_not_eat_into_the_next_phase_deadline() -> None:
    """Binding took 99 of 100 s; the pod still gets its full 50 s to be scheduled."""
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 99)
    assert tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 148) is None


def test_deadline_verdict_is_a_timeout_that_needs_explaining() -> None:
    tracker = provision_run()
    verdict = timed_out_at(tracker, T0 + 100, provision_pod(), provision_claim())
    assert verdict.result is Result.TIMEOUT
    assert verdict.reason is None
    assert not verdict.passed
    assert tracker.needs_explaining()


def test_run_still_going_needs_no_explaining() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim(), T0 + 1)
    assert not tracker.needs_explaining()


def test_pod_not_yet_in_the_cache_is_not_a_failure_before_the_deadline() -> None:
    tracker = provision_run()
    assert tracker.decide(None, None, T0 + 2) is None


def test_pod_never_seen_times_out_at_the_provision_deadline() -> None:
    tracker = provision_run()
    verdict = timed_out_at(tracker, T0 + 100, None, None)
    assert (verdict.result, verdict.phase, verdict.reason) == (Result.TIMEOUT, Phase.PROVISION, None)


def test_verdict_is_final() -> None:
    tracker = provision_run()
    first = timed_out_at(tracker, T0 + 100, provision_pod(), provision_claim())
    later = finished_pod(T0 + 101, T0 + 102, T0 + 103, message=report())
    assert tracker.decide(later, provision_claim("Bound"), T0 + 104) is first


# -- classify_stuck --------------------------------------------------------------------------------

FAILED_SCHEDULING = (
    "FailedScheduling",
    "0/4 nodes are available: 1 node(s) had volume node affinity conflict, 3 node(s) didn't match "
    "Pod's node affinity/selector.",
)
EXTERNAL_PROVISIONING = (
    "ExternalProvisioning",
    "Waiting for a volume to be created either by the external provisioner 'ebs.csi.aws.com' or "
    "manually by the system administrator.",
)
PROVISIONING_FAILED = (
    "ProvisioningFailed",
    'failed to provision volume with StorageClass "fast-ssd": rpc error: code = ResourceExhausted',
)
WAIT_FOR_FIRST_CONSUMER = (
    "WaitForFirstConsumer",
    "waiting for first consumer to be created before binding",
)
FAILED_ATTACH = (
    "FailedAttachVolume",
    f'AttachVolume.Attach failed for volume "{PV}" : rpc error: code = DeadlineExceeded',
)
FAILED_MOUNT = (
    "FailedMount",
    'MountVolume.MountDevice failed for volume "pvc-3f5d" : rpc error: code = Internal desc = '
    "mount failed: exit status 32",
)


def classify(
    phase: Phase,
    pod: PodView | None = None,
    *,
    pod_events: Sequence[tuple[str, str]] = (),
    claim_events: Sequence[tuple[str, str]] = (),
) -> Reason:
    return classify_stuck(phase, pod, events(*pod_events), events(*claim_events))[0]


def test_provision_stuck_with_failed_scheduling_is_unschedulable() -> None:
    reason, message = classify_stuck(Phase.PROVISION, provision_pod(), events(FAILED_SCHEDULING), [])
    assert reason is Reason.UNSCHEDULABLE
    assert message == FAILED_SCHEDULING[1]


def test_provision_stuck_with_provisioning_failed_is_provisioning_failed() -> None:
    reason, message = classify_stuck(
        Phase.PROVISION, provision_pod(), [], events(EXTERNAL_PROVISIONING, PROVISIONING_FAILED)
    )
    assert reason is Reason.PROVISIONING_FAILED
    assert message == PROVISIONING_FAILED[1]


def test_provision_stuck_waiting_on_the_external_provisioner_is_provisioning_timeout() -> None:
    reason, message = classify_stuck(Phase.PROVISION, provision_pod(), [], events(EXTERNAL_PROVISIONING))
    assert reason is Reason.PROVISIONING_TIMEOUT
    assert message == EXTERNAL_PROVISIONING[1]


def test_failed_scheduling_while_the_provisioner_works_is_provisioning_timeout() -> None:
    """The scheduler waits on the provisioner: the provisioner is the one that is slow."""
    reason = classify(Phase.PROVISION, pod_events=[FAILED_SCHEDULING], claim_events=[EXTERNAL_PROVISIONING])
    assert reason is Reason.PROVISIONING_TIMEOUT


def test_provisioning_failed_wins_over_failed_scheduling_with_an_external_provisioner() -> None:
    reason = classify(
        Phase.PROVISION,
        pod_events=[FAILED_SCHEDULING],
        claim_events=[EXTERNAL_PROVISIONING, PROVISIONING_FAILED],
    )
    assert reason is Reason.PROVISIONING_FAILED


def test_provisioning_failed_wins_over_failed_scheduling_without_external_provisioning() -> None:
    reason = classify(Phase.PROVISION, pod_events=[FAILED_SCHEDULING], claim_events=[PROVISIONING_FAILED])
    assert reason is Reason.PROVISIONING_FAILED


def test_provision_stuck_without_events_is_provisioning_timeout() -> None:
    reason, message = classify_stuck(Phase.PROVISION, None, [], [])
    assert reason is Reason.PROVISIONING_TIMEOUT
    assert message


def test_provision_stuck_waiting_for_first_consumer_is_provisioning_timeout() -> None:
    assert classify(Phase.PROVISION, claim_events=[WAIT_FOR_FIRST_CONSUMER]) is Reason.PROVISIONING_TIMEOUT


def test_schedule_stuck_with_failed_scheduling_is_unschedulable_with_the_event_message() -> None:
    reason, message = classify_stuck(Phase.SCHEDULE, provision_pod(), events(FAILED_SCHEDULING), [])
    assert (reason, message) == (Reason.UNSCHEDULABLE, FAILED_SCHEDULING[1])


def test_schedule_stuck_without_events_uses_the_pod_condition_message() -> None:
    pod = provision_pod(unschedulable_message="0/3 nodes are available: 3 Insufficient memory.")
    reason, message = classify_stuck(Phase.SCHEDULE, pod, [], [])
    assert (reason, message) == (Reason.UNSCHEDULABLE, "0/3 nodes are available: 3 Insufficient memory.")


@pytest.mark.parametrize(
    "image_reason", ["ErrImagePull", "ImagePullBackOff", "ErrImageNeverPull", "InvalidImageName"]
)
def test_mount_stuck_on_the_image_is_image_unavailable(image_reason: str) -> None:
    pod = scheduled_pod(T0 + 5, state=waiting(image_reason, 'Back-off pulling image "volprobe:dev"'))
    reason, message = classify_stuck(Phase.MOUNT, pod, [], [])
    assert reason is Reason.IMAGE_UNAVAILABLE
    assert message.startswith(f"{image_reason}: ")


def test_mount_stuck_on_attach_is_attach_timeout() -> None:
    pod = scheduled_pod(T0 + 5, state=waiting("ContainerCreating"))
    assert classify(Phase.MOUNT, pod, pod_events=[FAILED_ATTACH]) is Reason.ATTACH_TIMEOUT


@pytest.mark.parametrize("event", ["FailedMount", "FailedMapVolume"])
def test_mount_stuck_on_a_failed_mount_is_mount_failed(event: str) -> None:
    pod = scheduled_pod(T0 + 5, state=waiting("ContainerCreating"))
    reason, message = classify_stuck(Phase.MOUNT, pod, events((event, FAILED_MOUNT[1])), [])
    assert (reason, message) == (Reason.MOUNT_FAILED, FAILED_MOUNT[1])


def test_mount_stuck_without_a_cause_is_mount_timeout() -> None:
    pod = scheduled_pod(T0 + 5, state=waiting("ContainerCreating"))
    assert classify(Phase.MOUNT, pod) is Reason.MOUNT_TIMEOUT


def test_io_stuck_is_a_timeout() -> None:
    assert classify(Phase.IO, running_pod(T0 + 5, T0 + 9), pod_events=[FAILED_MOUNT]) is Reason.TIMEOUT


# -- explain ---------------------------------------------------------------------------------------


def stuck_mounting() -> tuple[RunTracker, PodView]:
    """A provision run whose pod was scheduled at +12 and never started: mount deadline at +212."""
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 10)
    pod = scheduled_pod(T0 + 12, state=waiting("ContainerCreating"))
    assert tracker.decide(pod, provision_claim("Bound"), T0 + 12) is None
    timed_out_at(tracker, T0 + 212, pod, provision_claim("Bound"))
    return tracker, pod


def test_explain_fills_in_the_reason_of_a_deadline_verdict() -> None:
    tracker, pod = stuck_mounting()
    tracker.explain(pod, events(FAILED_MOUNT), [])
    assert tracker.verdict == Verdict(Result.TIMEOUT, Phase.MOUNT, Reason.MOUNT_FAILED, FAILED_MOUNT[1])
    assert not tracker.needs_explaining()


def test_explain_leaves_a_verdict_with_a_reason_alone() -> None:
    tracker = provision_run()
    tracker.decide(
        finished_pod(T0 + 15, T0 + 20, T0 + 26, message="garbage"), provision_claim("Bound"), T0 + 26
    )
    before = tracker.verdict
    tracker.explain(None, events(FAILED_MOUNT), [])
    assert tracker.verdict is before


def test_successful_run_needs_no_explaining() -> None:
    tracker = provision_run()
    drive_to_success(tracker)
    assert not tracker.needs_explaining()


def test_explain_leaves_a_success_verdict_alone() -> None:
    tracker = provision_run()
    drive_to_success(tracker)
    before = tracker.verdict
    tracker.explain(None, [], [])
    assert tracker.verdict is before


def test_success_outcome_carries_no_failure_message_after_the_engine_flow() -> None:
    """The engine's sequence: decide, explain if needs_explaining(), clean up, finish."""
    tracker = provision_run()
    drive_to_success(tracker)
    if tracker.needs_explaining():
        tracker.explain(None, [], [])
    tracker.milestones.delete_requested = T0 + 27
    outcome = tracker.finish(T0 + 35, None, None, None)
    assert outcome.passed
    assert outcome.message == ""


def test_explain_keeps_the_verdict_message_as_a_prefix() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 10)
    tracker.decide(running_pod(T0 + 11, T0 + 12), provision_claim("Bound"), T0 + 12)
    killed = scheduled_pod(
        T0 + 11,
        phase="Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        state=running(T0 + 12),
    )
    tracker.decide(killed, provision_claim("Bound"), T0 + 30)
    tracker.explain(killed, [], [])
    assert tracker.verdict is not None
    assert tracker.verdict.reason is Reason.TIMEOUT
    assert (
        tracker.verdict.message == "the pod exceeded activeDeadlineSeconds: the agent did not report in time"
    )


# -- the container's end ---------------------------------------------------------------------------


def decide_finished(message: str | None, *, exit_code: int = 0, reason: str = "Completed") -> Verdict | None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(running_pod(T0 + 15, T0 + 20), provision_claim("Bound"), T0 + 20)
    pod = finished_pod(T0 + 15, T0 + 20, T0 + 26, message=message, exit_code=exit_code, reason=reason)
    return tracker.decide(pod, provision_claim("Bound"), T0 + 26)


def test_failure_report_gives_its_verdict_phase_and_reason() -> None:
    message = report(
        verdict=Result.FAILURE,
        phase=Phase.READ,
        reason=Reason.CHECKSUM_MISMATCH,
        detail="payload block 3 differs at byte 1048577",
    )
    verdict = decide_finished(message)
    assert verdict == Verdict(
        Result.FAILURE, Phase.READ, Reason.CHECKSUM_MISMATCH, "payload block 3 differs at byte 1048577"
    )


def test_agent_timeout_report_is_a_timeout_that_needs_no_explaining() -> None:
    message = report(verdict=Result.TIMEOUT, phase=Phase.FSYNC, reason=Reason.TIMEOUT, detail="fsync hung")
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    pod = finished_pod(T0 + 15, T0 + 20, T0 + 60, message=message)
    verdict = tracker.decide(pod, provision_claim("Bound"), T0 + 60)
    assert verdict == Verdict(Result.TIMEOUT, Phase.FSYNC, Reason.TIMEOUT, "fsync hung")
    assert not tracker.needs_explaining()


def test_report_of_another_run_is_a_bad_report() -> None:
    verdict = decide_finished(report(run="vp-fast-ssd-p-6a0f2bf4"))
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (
        Result.FAILURE,
        Phase.REPORT,
        Reason.BAD_REPORT,
    )
    assert "vp-fast-ssd-p-6a0f2bf4" in verdict.message


@pytest.mark.parametrize(
    "message",
    [
        None,
        "",
        "Segmentation fault (core dumped)",
        report()[:200],
        '{"v": 2, "run": "vp-fast-ssd-p-6a0f2c30", "verdict": "success"}',
        '{"v": 1, "run": "vp-fast-ssd-p-6a0f2c30", "verdict": "failure", "reason": null}',
        " " * (MAX_REPORT_BYTES - len(report())) + report() + " ",
    ],
    ids=["missing", "empty", "garbage", "truncated", "wrong-version", "failure-without-reason", "oversized"],
)
def test_unusable_report_is_a_bad_report(message: str | None) -> None:
    verdict = decide_finished(message)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (
        Result.FAILURE,
        Phase.REPORT,
        Reason.BAD_REPORT,
    )


def test_bad_report_keeps_no_report() -> None:
    tracker = provision_run()
    tracker.decide(
        finished_pod(T0 + 15, T0 + 20, T0 + 26, message="garbage"), provision_claim("Bound"), T0 + 26
    )
    assert tracker.report is None


@pytest.mark.parametrize(
    ("exit_code", "reason"), [(1, "Error"), (2, "Error"), (137, "OOMKilled"), (139, "Error")]
)
def test_agent_exiting_non_zero_is_agent_failed(exit_code: int, reason: str) -> None:
    verdict = decide_finished(report(), exit_code=exit_code, reason=reason)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (Result.FAILURE, Phase.IO, Reason.AGENT_FAILED)
    assert reason in verdict.message


# -- fatal states ----------------------------------------------------------------------------------


def test_lost_claim_of_a_mount_run_fails_in_the_mount_phase() -> None:
    tracker = mount_run()
    tracker.decide(mount_pod(), mount_claim(), T0 + 1)
    verdict = tracker.decide(mount_pod(node=NODE, scheduled=T0 + 2), mount_claim("Lost"), T0 + 3)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (Result.FAILURE, Phase.MOUNT, Reason.CLAIM_LOST)
    assert MOUNT_CLAIM in verdict.message


def test_lost_claim_of_a_provision_run_fails_in_the_provision_phase() -> None:
    tracker = provision_run()
    verdict = tracker.decide(scheduled_pod(T0 + 15), provision_claim("Lost"), T0 + 16)
    assert verdict is not None
    assert (verdict.phase, verdict.reason) == (Phase.PROVISION, Reason.CLAIM_LOST)


def test_pod_disappearing_after_being_seen_is_pod_failed_in_the_current_phase() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(
        scheduled_pod(T0 + 15, state=waiting("ContainerCreating")), provision_claim("Bound"), T0 + 15
    )
    verdict = tracker.decide(None, provision_claim("Bound"), T0 + 17)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (Result.FAILURE, Phase.MOUNT, Reason.POD_FAILED)


@pytest.mark.parametrize("image_reason", ["ErrImageNeverPull", "InvalidImageName"])
def test_image_that_can_never_be_pulled_fails_at_once(image_reason: str) -> None:
    tracker = mount_run()
    pod = mount_pod(
        node=NODE, scheduled=T0 + 2, state=waiting(image_reason, 'image "volprobe:dev" not present')
    )
    verdict = tracker.decide(pod, mount_claim(), T0 + 3)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (
        Result.FAILURE,
        Phase.MOUNT,
        Reason.IMAGE_UNAVAILABLE,
    )
    assert verdict.message.startswith(f"{image_reason}: ")


@pytest.mark.parametrize("image_reason", ["ErrImagePull", "ImagePullBackOff"])
def test_image_pull_that_may_still_succeed_waits_for_the_mount_deadline(image_reason: str) -> None:
    tracker = mount_run()
    pod = mount_pod(node=NODE, scheduled=T0 + 2, state=waiting(image_reason, "i/o timeout"))
    assert tracker.decide(pod, mount_claim(), T0 + 2) is None
    assert tracker.decide(pod, mount_claim(), T0 + 2 + TIMEOUTS.mount - 1) is None
    verdict = timed_out_at(tracker, T0 + 2 + TIMEOUTS.mount, pod, mount_claim())
    tracker.explain(pod, [], [])
    assert tracker.verdict is not None
    assert (verdict.result, tracker.verdict.reason) == (Result.TIMEOUT, Reason.IMAGE_UNAVAILABLE)


def test_container_config_error_fails_at_once_as_pod_failed() -> None:
    tracker = mount_run()
    pod = mount_pod(
        node=NODE, scheduled=T0 + 2, state=waiting("CreateContainerConfigError", 'secret "x" not found')
    )
    verdict = tracker.decide(pod, mount_claim(), T0 + 3)
    assert verdict is not None
    assert (verdict.phase, verdict.reason) == (Phase.MOUNT, Reason.POD_FAILED)


def test_pod_failed_with_deadline_exceeded_is_a_timeout() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    tracker.decide(running_pod(T0 + 15, T0 + 20), provision_claim("Bound"), T0 + 20)
    killed = scheduled_pod(
        T0 + 15,
        phase="Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        state=running(T0 + 20),
    )
    verdict = tracker.decide(killed, provision_claim("Bound"), T0 + 25)
    assert verdict is not None
    assert (verdict.result, verdict.phase, verdict.reason) == (Result.TIMEOUT, Phase.IO, None)
    assert tracker.needs_explaining()


def test_pod_killed_at_its_active_deadline_is_a_timeout_not_an_agent_failure() -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    killed = scheduled_pod(
        T0 + 15,
        phase="Failed",
        reason="DeadlineExceeded",
        message="Pod was active on the node longer than the specified deadline",
        state=terminated(137, reason="Error", started=T0 + 20, finished=T0 + 250),
    )
    verdict = tracker.decide(killed, provision_claim("Bound"), T0 + 251)
    assert verdict is not None
    assert verdict.result is Result.TIMEOUT


@pytest.mark.parametrize(
    "container",
    [running(T0 + 20), terminated(137, reason="Error", started=T0 + 20, finished=T0 + 24)],
    ids=["container still running", "container killed"],
)
def test_an_evicted_pod_is_pod_failed_whatever_its_container_shows(container: dict[str, Any]) -> None:
    tracker = provision_run()
    tracker.decide(provision_pod(), provision_claim("Bound"), T0 + 12)
    evicted = scheduled_pod(
        T0 + 15,
        phase="Failed",
        reason="Evicted",
        message="The node was low on resource: ephemeral-storage.",
        state=container,
    )
    verdict = tracker.decide(evicted, provision_claim("Bound"), T0 + 25)
    assert verdict is not None
    assert (verdict.result, verdict.reason) == (Result.FAILURE, Reason.POD_FAILED)
    assert "Evicted" in verdict.message


# -- clean-up --------------------------------------------------------------------------------------


def finished_run() -> RunTracker:
    tracker = provision_run()
    drive_to_success(tracker)
    tracker.milestones.delete_requested = T0 + 27
    tracker.require_volume_gone = True
    return tracker


def volume(policy: str = "Delete") -> VolumeView:
    return VolumeView.of(volume_json(PV, PROVISION_CLAIM, policy=policy))


def test_provision_run_is_not_cleaned_up_while_its_pod_remains() -> None:
    done = finished_pod(T0 + 15, T0 + 20, T0 + 26, message=report())
    assert not finished_run().cleaned_up(done, None, None)


def test_provision_run_is_not_cleaned_up_while_its_claim_remains() -> None:
    assert not finished_run().cleaned_up(None, provision_claim("Bound"), None)


def test_provision_run_is_not_cleaned_up_while_its_volume_remains_under_delete_policy() -> None:
    assert not finished_run().cleaned_up(None, None, volume())


def test_provision_run_may_leave_its_volume_when_the_class_retains_volumes() -> None:
    tracker = finished_run()
    tracker.require_volume_gone = False
    assert tracker.cleaned_up(None, None, volume("Retain"))


def test_mount_run_is_cleaned_up_once_its_pod_is_gone_and_keeps_its_claim() -> None:
    tracker = mount_run()
    assert tracker.cleaned_up(None, mount_claim(), None)
    assert not tracker.cleaned_up(mount_pod(node=NODE, scheduled=T0 + 2), mount_claim(), None)


def test_successful_run_with_everything_gone_stays_a_success() -> None:
    outcome = finished_run().finish(T0 + 35, None, None, None)
    assert outcome.passed
    assert (outcome.result, outcome.phase, outcome.reason) == (Result.SUCCESS, None, None)


def test_finished_outcome_carries_run_node_times_report_and_durations() -> None:
    outcome = finished_run().finish(T0 + 35, None, None, None)
    assert isinstance(outcome, Outcome)
    assert (outcome.target, outcome.run, outcome.node) == (PROVISION, PROVISION_POD, NODE)
    assert (outcome.started, outcome.finished, outcome.seconds) == (T0, T0 + 35, 35.0)
    assert outcome.report is not None
    assert outcome.report.written_generation == 7
    assert outcome.durations == {
        Phase.PROVISION: 12.0,
        Phase.SCHEDULE: 3.0,
        Phase.MOUNT: 6.0,
        Phase.IO: 4.5,
        Phase.CLEANUP: 8.0,
    }


def test_volume_left_after_its_claim_is_pv_not_deleted() -> None:
    outcome = finished_run().finish(T0 + 57, None, None, volume())
    assert (outcome.result, outcome.phase, outcome.reason) == (
        Result.FAILURE,
        Phase.CLEANUP,
        Reason.PV_NOT_DELETED,
    )
    assert PV in outcome.message
    assert Phase.CLEANUP not in outcome.durations


@pytest.mark.parametrize(
    ("left", "expected"),
    [
        ({"pod": True, "claim": False}, "pod still present"),
        ({"pod": False, "claim": True}, "claim still present"),
        ({"pod": True, "claim": True}, "pod and claim still present"),
    ],
)
def test_pod_or_claim_left_after_the_clean_up_timeout_is_cleanup_timeout(
    left: dict[str, bool], expected: str
) -> None:
    pod = finished_pod(T0 + 15, T0 + 20, T0 + 26, message=report()) if left["pod"] else None
    claim = provision_claim("Bound") if left["claim"] else None
    outcome = finished_run().finish(T0 + 57, pod, claim, volume())
    assert (outcome.result, outcome.phase, outcome.reason) == (
        Result.FAILURE,
        Phase.CLEANUP,
        Reason.CLEANUP_TIMEOUT,
    )
    assert expected in outcome.message


def test_failed_run_keeps_its_own_reason_through_a_failed_clean_up() -> None:
    tracker, pod = stuck_mounting()
    tracker.explain(pod, events(FAILED_MOUNT), [])
    tracker.milestones.delete_requested = T0 + 213
    tracker.require_volume_gone = True
    outcome = tracker.finish(T0 + 243, pod, provision_claim("Bound"), volume())
    assert (outcome.result, outcome.phase, outcome.reason) == (
        Result.TIMEOUT,
        Phase.MOUNT,
        Reason.MOUNT_FAILED,
    )


def test_unexplained_deadline_verdict_finishes_as_reason_timeout() -> None:
    tracker = provision_run()
    timed_out_at(tracker, T0 + 100, provision_pod(), provision_claim())
    outcome = tracker.finish(T0 + 101, None, None, None)
    assert (outcome.result, outcome.phase, outcome.reason) == (
        Result.TIMEOUT,
        Phase.PROVISION,
        Reason.TIMEOUT,
    )


# -- giving up a run that waits for an unwell node -----------------------------------------------


def test_an_aborted_run_without_a_node_ends_as_a_skip_after_clean_up() -> None:
    tracker = provision_run()
    waiting = provision_pod(unschedulable_message="0/1 nodes are available")
    assert tracker.decide(waiting, None, T0 + 5) is None
    tracker.abort(SkipReason.CORDONED)
    verdict = tracker.decide(provision_pod(), None, T0 + 6)
    assert verdict is not None
    assert (verdict.result, verdict.skip) == (Result.SKIPPED, SkipReason.CORDONED)
    assert not tracker.needs_explaining(), "a skip fetches no events"
    outcome = tracker.finish(T0 + 9, None, None, None)
    assert (outcome.result, outcome.skip, outcome.phase, outcome.reason) == (
        Result.SKIPPED,
        SkipReason.CORDONED,
        None,
        None,
    )


def test_an_abort_is_ignored_once_the_pod_has_a_node() -> None:
    tracker = provision_run()
    tracker.decide(scheduled_pod(T0 + 2), None, T0 + 3)
    tracker.abort(SkipReason.NOT_READY)
    assert tracker.decide(scheduled_pod(T0 + 2), None, T0 + 4) is None
