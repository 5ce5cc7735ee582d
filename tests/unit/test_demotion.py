"""A run that failed on a node that went unwell meanwhile counts as a skip, not a storage failure."""

from __future__ import annotations

import pytest

from tests.unit.factories import NOW, mount_outcome, skipped_outcome
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.model.outcome import Outcome, demote_if_node_unwell


def failure() -> Outcome:
    return mount_outcome(
        "worker-1",
        result=Result.FAILURE,
        phase=Phase.MOUNT,
        reason=Reason.POD_FAILED,
        message="the probe pod was deleted by someone else",
        finished=NOW + 30,
    )


@pytest.mark.parametrize("reason", list(SkipReason))
def test_failure_on_a_node_that_became_unwell_is_skipped_with_that_reason(reason: SkipReason) -> None:
    original = failure()
    demoted = demote_if_node_unwell(original, reason)
    assert demoted.result is Result.SKIPPED
    assert demoted.skip is reason
    assert (demoted.phase, demoted.reason) == (None, None)


def test_demoted_run_keeps_its_target_run_and_finish_time() -> None:
    original = mount_outcome(
        "worker-1", result=Result.TIMEOUT, phase=Phase.IO, reason=Reason.TIMEOUT, finished=NOW + 30
    )
    demoted = demote_if_node_unwell(original, SkipReason.NOT_READY)
    assert (demoted.target, demoted.run, demoted.node) == (original.target, original.run, "worker-1")
    assert demoted.finished == NOW + 30
    assert demoted.message == "skipped: not_ready"


def test_timeout_on_a_node_that_became_unwell_is_skipped() -> None:
    original = mount_outcome(
        "worker-1", result=Result.TIMEOUT, phase=Phase.MOUNT, reason=Reason.MOUNT_TIMEOUT
    )
    assert demote_if_node_unwell(original, SkipReason.CORDONED).result is Result.SKIPPED


def test_success_is_never_demoted() -> None:
    success = mount_outcome("worker-1")
    assert demote_if_node_unwell(success, SkipReason.NOT_READY) is success


def test_failure_on_a_healthy_node_is_unchanged() -> None:
    original = failure()
    assert demote_if_node_unwell(original, None) is original


def test_a_skip_stays_the_same_skip() -> None:
    skip = skipped_outcome("worker-1", SkipReason.TAINTED)
    assert demote_if_node_unwell(skip, SkipReason.NOT_READY) is skip


@pytest.mark.parametrize("reason", [Reason.CHECKSUM_MISMATCH, Reason.DATA_LOST])
def test_integrity_failures_are_never_demoted(reason: Reason) -> None:
    corrupted = mount_outcome(
        "worker-1", result=Result.FAILURE, phase=Phase.VERIFY, reason=reason, finished=NOW + 30
    )
    assert demote_if_node_unwell(corrupted, SkipReason.CORDONED) is corrupted
