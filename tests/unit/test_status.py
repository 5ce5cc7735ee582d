"""The StorageProbe status document: conditions, their transition times, node counts and lists."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.unit.factories import NOW, mount_outcome, provision_outcome, rfc3339
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.model.outcome import Outcome
from volprobe.model.status import LIST_LIMIT, KindState, ProbeState, build, camel, node_counts

NODES = frozenset(f"worker-{index}" for index in range(1, 6))
LATER = NOW + 300


def passing(node: str) -> Outcome:
    return mount_outcome(node)


def failing(node: str, reason: Reason = Reason.MOUNT_FAILED, phase: Phase = Phase.MOUNT) -> Outcome:
    return mount_outcome(node, result=Result.FAILURE, phase=phase, reason=reason, message="exit status 32")


def state(
    *,
    provision_enabled: bool = True,
    mount_enabled: bool = True,
    provision: Outcome | None = None,
    mounts: dict[str, Outcome] | None = None,
    last_provision_success: float | None = None,
    last_mount_success: float | None = None,
    **fields: Any,
) -> ProbeState:
    """A probe with the two built-in kinds, described the way the tests think of them."""
    kinds = []
    if provision_enabled:
        latest = {"": provision} if provision is not None else {}
        kinds.append(KindState("provision", False, latest, last_provision_success))
    if mount_enabled:
        kinds.append(KindState("mount", True, dict(mounts or {}), last_mount_success))
    defaults: dict[str, Any] = {"generation": 3, "class_exists": True, "selected_nodes": NODES}
    return ProbeState(kinds=tuple(kinds), **{**defaults, **fields})


def healthy(**fields: Any) -> ProbeState:
    return state(mounts={n: passing(n) for n in NODES}, provision=provision_outcome(), **fields)


def condition(status: dict[str, Any], kind: str) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = [c for c in status["conditions"] if c["type"] == kind]
    return found


def summary(status: dict[str, Any], kind: str) -> tuple[str, str]:
    found = condition(status, kind)
    return found["status"], found["reason"]


# -- conditions ----------------------------------------------------------------------------------


def test_missing_storage_class_is_not_ready_and_degraded() -> None:
    status = build(state(class_exists=False), None, NOW)
    assert summary(status, "Ready") == ("False", "StorageClassNotFound")
    assert summary(status, "Degraded") == ("True", "StorageClassNotFound")


def test_missing_storage_class_wins_over_old_failures() -> None:
    status = build(state(class_exists=False, mounts={"worker-1": failing("worker-1")}), None, NOW)
    assert summary(status, "Degraded") == ("True", "StorageClassNotFound")


def test_both_probes_disabled_is_paused_and_not_degraded() -> None:
    status = build(state(provision_enabled=False, mount_enabled=False), None, NOW)
    assert summary(status, "Ready") == ("False", "Paused")
    assert summary(status, "Degraded") == ("False", "Paused")


def test_failing_provision_probe_is_degraded_with_its_reason() -> None:
    provision = provision_outcome(
        result=Result.TIMEOUT,
        phase=Phase.PROVISION,
        reason=Reason.PROVISIONING_TIMEOUT,
        message="waiting for the external provisioner",
    )
    status = build(state(provision=provision, mounts={n: passing(n) for n in NODES}), None, NOW)
    assert summary(status, "Ready") == ("False", "ProbesFailing")
    assert summary(status, "Degraded") == ("True", "ProvisioningTimeout")
    message = condition(status, "Degraded")["message"]
    assert "provision probe: provisioning_timeout in phase provision" in message
    assert "waiting for the external provisioner" in message


def test_failing_provision_probe_is_ignored_when_provision_is_disabled() -> None:
    provision = provision_outcome(result=Result.FAILURE, phase=Phase.IO, reason=Reason.IO_ERROR)
    status = build(
        state(provision_enabled=False, provision=provision, mounts={n: passing(n) for n in NODES}), None, NOW
    )
    assert summary(status, "Ready") == ("True", "ProbesPassing")
    assert "provision" not in status


def test_failing_nodes_make_the_probe_degraded_with_the_most_common_reason() -> None:
    mounts = {n: passing(n) for n in NODES}
    mounts["worker-1"] = failing("worker-1", Reason.IO_ERROR, Phase.WRITE)
    mounts["worker-2"] = failing("worker-2", Reason.MOUNT_FAILED)
    mounts["worker-3"] = failing("worker-3", Reason.MOUNT_FAILED)
    status = build(state(mounts=mounts, provision=provision_outcome()), None, NOW)
    assert summary(status, "Ready") == ("False", "ProbesFailing")
    assert summary(status, "Degraded") == ("True", "MountFailed")
    assert "mount probe failing on 3 node(s)" in condition(status, "Degraded")["message"]


def test_degraded_message_names_five_failing_nodes_and_counts_the_rest() -> None:
    nodes = frozenset(f"node-{index:02d}" for index in range(8))
    status = build(state(selected_nodes=nodes, mounts={n: failing(n) for n in nodes}), None, NOW)
    message = condition(status, "Degraded")["message"]
    assert "node-04 (mount_failed)" in message
    assert "node-05" not in message
    assert "and 3 more" in message


def test_failure_of_a_skipped_node_does_not_degrade_the_probe() -> None:
    mounts = {n: passing(n) for n in NODES}
    mounts["worker-1"] = failing("worker-1")
    status = build(
        state(mounts=mounts, skipped={"worker-1": SkipReason.NOT_READY}, provision=provision_outcome()),
        None,
        NOW,
    )
    assert summary(status, "Degraded") == ("False", "ProbesPassing")
    assert status["failingNodes"] == []


def test_all_passing_is_ready_and_not_degraded() -> None:
    status = build(healthy(), None, NOW)
    assert summary(status, "Ready") == ("True", "ProbesPassing")
    assert summary(status, "Degraded") == ("False", "ProbesPassing")
    assert condition(status, "Ready")["message"] == "5/5 nodes passing; provision probe passes"


def test_passing_message_mentions_skipped_nodes_and_a_pending_provision_probe() -> None:
    mounts = {n: passing(n) for n in NODES if n != "worker-5"}
    status = build(state(mounts=mounts, skipped={"worker-5": SkipReason.CORDONED}), None, NOW)
    assert condition(status, "Ready")["message"] == "4/5 nodes passing, 1 skipped; provision probe pending"


def test_passing_provision_probe_alone_is_ready() -> None:
    status = build(state(mount_enabled=False, provision=provision_outcome()), None, NOW)
    assert summary(status, "Ready") == ("True", "ProbesPassing")


def test_no_results_yet_is_pending() -> None:
    status = build(state(), None, NOW)
    assert summary(status, "Ready") == ("False", "Pending")
    assert summary(status, "Degraded") == ("False", "Pending")
    assert condition(status, "Ready")["message"] == "waiting for the first runs"


def test_every_selected_node_skipped_is_pending_and_says_so() -> None:
    skipped = dict.fromkeys(NODES, SkipReason.NOT_READY)
    status = build(state(provision_enabled=False, skipped=skipped), None, NOW)
    assert summary(status, "Ready") == ("False", "Pending")
    assert condition(status, "Ready")["message"] == "all 5 selected nodes are skipped"


def test_conditions_carry_the_generation_and_status_the_observed_generation() -> None:
    status = build(state(generation=7), None, NOW)
    assert status["observedGeneration"] == 7
    assert all(c["observedGeneration"] == 7 for c in status["conditions"])


def test_condition_message_is_capped() -> None:
    long = "x" * 5000
    provision = provision_outcome(
        result=Result.FAILURE, phase=Phase.PROVISION, reason=Reason.PROVISIONING_FAILED, message=long
    )
    status = build(state(provision=provision), None, NOW)
    assert len(condition(status, "Degraded")["message"]) == 1000


# -- transition times ------------------------------------------------------------------------------


def test_first_status_sets_transition_times_to_now() -> None:
    status = build(healthy(), None, NOW)
    assert all(c["lastTransitionTime"] == rfc3339(NOW) for c in status["conditions"])


def test_transition_time_is_kept_while_a_condition_status_does_not_change() -> None:
    first = build(healthy(), None, NOW)
    again = build(healthy(), first, LATER)
    assert condition(again, "Ready")["lastTransitionTime"] == rfc3339(NOW)
    assert condition(again, "Degraded")["lastTransitionTime"] == rfc3339(NOW)


def test_transition_time_is_kept_when_only_the_reason_changes() -> None:
    first = build(state(class_exists=False), None, NOW)
    failing_provision = provision_outcome(
        result=Result.FAILURE, phase=Phase.PROVISION, reason=Reason.PROVISIONING_FAILED
    )
    again = build(state(provision=failing_provision), first, LATER)
    assert summary(again, "Degraded") == ("True", "ProvisioningFailed")
    assert condition(again, "Degraded")["lastTransitionTime"] == rfc3339(NOW)


def test_transition_time_moves_when_the_status_flips() -> None:
    first = build(healthy(), None, NOW)
    mounts = {**{n: passing(n) for n in NODES}, "worker-1": failing("worker-1")}
    again = build(state(mounts=mounts, provision=provision_outcome()), first, LATER)
    assert condition(again, "Ready")["lastTransitionTime"] == rfc3339(LATER)
    assert condition(again, "Degraded")["lastTransitionTime"] == rfc3339(LATER)


def test_previous_status_without_conditions_is_handled() -> None:
    status = build(healthy(), {"observedGeneration": 2}, LATER)
    assert condition(status, "Ready")["lastTransitionTime"] == rfc3339(LATER)


# -- node counts and lists ---------------------------------------------------------------------------


def test_node_counts_add_up() -> None:
    mounts = {
        "worker-1": passing("worker-1"),
        "worker-2": passing("worker-2"),
        "worker-3": failing("worker-3"),
    }
    counts = node_counts(state(mounts=mounts, skipped={"worker-4": SkipReason.TAINTED}))
    assert counts == {"selected": 5, "passing": 2, "failing": 1, "skipped": 1, "pending": 1}


def test_timeout_counts_as_failing() -> None:
    timeout = mount_outcome("worker-1", result=Result.TIMEOUT, phase=Phase.IO, reason=Reason.TIMEOUT)
    assert node_counts(state(mounts={"worker-1": timeout}))["failing"] == 1


def test_skipped_node_counts_as_skipped_even_with_an_old_result() -> None:
    counts = node_counts(
        state(mounts={"worker-1": passing("worker-1")}, skipped={"worker-1": SkipReason.NOT_READY})
    )
    assert (counts["passing"], counts["skipped"], counts["pending"]) == (0, 1, 4)


def test_results_of_nodes_no_longer_selected_are_not_counted() -> None:
    counts = node_counts(state(mounts={"gone-node": failing("gone-node")}))
    assert counts["failing"] == 0
    assert counts["pending"] == 5


def test_disabled_mount_probe_has_nothing_passing_failing_or_pending() -> None:
    counts = node_counts(state(mount_enabled=False, mounts={"worker-1": failing("worker-1")}))
    assert (counts["selected"], counts["passing"], counts["failing"], counts["pending"]) == (5, 0, 0, 0)


def test_status_exposes_the_node_counts() -> None:
    assert build(healthy(), None, NOW)["nodes"] == {
        "selected": 5,
        "passing": 5,
        "failing": 0,
        "skipped": 0,
        "pending": 0,
    }


def test_failing_nodes_list_is_sorted_detailed_and_capped() -> None:
    nodes = frozenset(f"node-{index:03d}" for index in range(45))
    status = build(state(selected_nodes=nodes, mounts={n: failing(n) for n in nodes}), None, NOW)
    assert len(status["failingNodes"]) == LIST_LIMIT == 20
    assert status["failingNodes"][0] == {
        "node": "node-000",
        "phase": "mount",
        "reason": "mount_failed",
        "time": rfc3339(NOW),
    }
    assert [entry["node"] for entry in status["failingNodes"]] == sorted(nodes)[:20]
    assert status["nodes"]["failing"] == 45


def test_skipped_nodes_list_is_sorted_and_capped() -> None:
    nodes = frozenset(f"node-{index:03d}" for index in range(30))
    status = build(state(selected_nodes=nodes, skipped=dict.fromkeys(nodes, SkipReason.TOO_NEW)), None, NOW)
    assert len(status["skippedNodes"]) == 20
    assert status["skippedNodes"][0] == {"node": "node-000", "reason": "too_new"}
    assert status["nodes"]["skipped"] == 30


# -- latest runs ------------------------------------------------------------------------------------


def test_latest_provision_run_is_summarised() -> None:
    provision = provision_outcome(
        result=Result.FAILURE,
        phase=Phase.CLEANUP,
        reason=Reason.PV_NOT_DELETED,
        message="volume pvc-1 still exists",
        finished=NOW,
        seconds=42.5,
    )
    status = build(state(provision=provision, last_provision_success=NOW - 600), None, NOW)
    assert status["provision"] == {
        "result": "failure",
        "time": rfc3339(NOW),
        "durationSeconds": 42.5,
        "node": "worker-1",
        "phase": "cleanup",
        "reason": "pv_not_deleted",
        "message": "volume pvc-1 still exists",
        "lastSuccessTime": rfc3339(NOW - 600),
    }


def test_latest_mount_run_is_the_most_recent_of_any_node() -> None:
    mounts = {
        "worker-1": mount_outcome("worker-1", finished=NOW - 30),
        "worker-2": mount_outcome("worker-2", finished=NOW),
        "worker-3": mount_outcome("worker-3", finished=NOW - 10),
    }
    status = build(state(mounts=mounts), None, NOW)
    assert status["mount"]["node"] == "worker-2"
    assert status["mount"]["time"] == rfc3339(NOW)


def test_no_runs_yet_means_no_latest_run_sections() -> None:
    status = build(state(), None, NOW)
    assert "provision" not in status
    assert "mount" not in status


# -- camel ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("provisioning_timeout", "ProvisioningTimeout"),
        ("pv_not_deleted", "PvNotDeleted"),
        ("timeout", "Timeout"),
        ("io_error", "IoError"),
        ("", ""),
    ],
)
def test_camel_turns_snake_case_into_a_condition_reason(value: str, expected: str) -> None:
    assert camel(value) == expected


def test_every_failure_reason_gives_a_valid_condition_reason() -> None:
    """Condition reasons must match ^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$ (API conventions)."""
    pattern = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    assert all(pattern.match(camel(reason.value)) for reason in Reason)


def test_degraded_message_carries_the_first_failing_nodes_cause() -> None:
    cause = "Waiting for a volume to be created by the external provisioner 'x.example.com'"
    broken = mount_outcome(
        "worker-1",
        result=Result.TIMEOUT,
        phase=Phase.PROVISION,
        reason=Reason.PROVISIONING_TIMEOUT,
        message=cause,
        finished=NOW,
    )
    status = build(state(mounts={"worker-1": broken, "worker-2": passing("worker-2")}), None, NOW)
    assert summary(status, "Degraded") == ("True", "ProvisioningTimeout")
    assert f"worker-1: {cause}" in condition(status, "Degraded")["message"]
