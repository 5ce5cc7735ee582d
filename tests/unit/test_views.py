"""Projections of API objects: what they read from realistic objects, and that odd ones never crash."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from tests.unit.factories import (
    NOW,
    claim_json,
    event_json,
    node_json,
    pod_json,
    running,
    terminated,
    volume_json,
    waiting,
)
from volprobe.model.views import (
    ClaimView,
    ClassView,
    ContainerState,
    EventView,
    NodeView,
    PodView,
    Taint,
    VolumeView,
    timestamp,
)

PROJECTIONS = (NodeView, PodView, ClaimView, VolumeView, ClassView, EventView)


# -- timestamps ------------------------------------------------------------------------------------


def test_api_timestamp_parses_as_utc() -> None:
    assert timestamp("2026-11-22T03:00:00Z") == NOW


def test_timestamp_with_fraction_parses() -> None:
    assert timestamp("2026-11-22T03:00:00.250000Z") == NOW + 0.25


def test_timestamp_with_an_offset_parses() -> None:
    assert timestamp("2026-11-22T05:00:00+02:00") == NOW


def test_timestamp_round_trips_with_datetime() -> None:
    when = datetime(2025, 2, 28, 23, 59, 59, tzinfo=UTC)
    assert timestamp(when.strftime("%Y-%m-%dT%H:%M:%SZ")) == when.timestamp()


@pytest.mark.parametrize("value", [None, "", "yesterday", "2026-13-45T99:00:00Z", 1795316400, ["x"], {}])
def test_unparseable_timestamp_is_none(value: object) -> None:
    assert timestamp(value) is None


# -- realistic objects -------------------------------------------------------------------------------


def test_node_projection_reads_readiness_taints_and_labels() -> None:
    raw = node_json(
        "worker-3",
        ready="False",
        ready_since=NOW - 40,
        unschedulable=True,
        taints=[{"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}],
        deleting=True,
    )
    view = NodeView.of(raw)
    assert view.name == "worker-3"
    assert (view.ready, view.ready_since, view.unschedulable, view.meta.deleting) == (
        False,
        NOW - 40,
        True,
        True,
    )
    assert view.taints == (Taint("node.kubernetes.io/unschedulable", "", "NoSchedule"),)
    assert view.meta.labels["kubernetes.io/hostname"] == "worker-3"
    assert view.os == "linux"


def test_node_os_comes_from_its_os_label() -> None:
    assert NodeView.of(node_json("win-1", os="windows")).os == "windows"


def test_pending_pod_projection_reads_the_unschedulable_message() -> None:
    view = PodView.of(pod_json("p", created=NOW, unschedulable_message="0/3 nodes are available."))
    assert (view.node, view.phase, view.scheduled_at) == ("", "Pending", None)
    assert view.unschedulable_message == "0/3 nodes are available."
    assert view.container == ContainerState()


def test_running_pod_projection_reads_node_schedule_and_start() -> None:
    raw = pod_json("p", created=NOW, node="worker-1", scheduled=NOW + 2, state=running(NOW + 5), claim="c-1")
    view = PodView.of(raw)
    assert (view.node, view.scheduled_at, view.claim_names) == ("worker-1", NOW + 2, ("c-1",))
    assert view.container.running_since == NOW + 5
    assert view.container.started == NOW + 5
    assert not view.container.terminated


def test_terminated_container_projection_reads_exit_message_and_times() -> None:
    state = terminated(0, message='{"v":1}', started=NOW + 5, finished=NOW + 9)
    container = PodView.of(pod_json("p", created=NOW, node="n", state=state, phase="Succeeded")).container
    assert container.terminated
    assert (container.exit_code, container.terminated_reason, container.message) == (
        0,
        "Completed",
        '{"v":1}',
    )
    assert (container.started, container.finished) == (NOW + 5, NOW + 9)


def test_waiting_container_projection_reads_reason_and_caps_the_message() -> None:
    state = waiting("ImagePullBackOff", "x" * 1000)
    container = PodView.of(pod_json("p", created=NOW, node="n", state=state)).container
    assert container.waiting_reason == "ImagePullBackOff"
    assert len(container.waiting_message) == 300


def test_pod_messages_are_capped() -> None:
    view = PodView.of(pod_json("p", created=NOW, phase="Failed", reason="Evicted", message="m" * 1000))
    assert (view.reason, len(view.message)) == ("Evicted", 300)


def test_claim_projection_reads_phase_volume_class_and_owners() -> None:
    raw = claim_json("c-1", phase="Bound", volume="pvc-1")
    raw["metadata"]["annotations"] = {"volume.kubernetes.io/selected-node": "worker-2"}
    view = ClaimView.of(raw)
    assert (view.name, view.phase, view.volume_name, view.storage_class) == (
        "c-1",
        "Bound",
        "pvc-1",
        "fast-ssd",
    )
    assert view.owner_uids == ("uid-owner",)


def test_volume_projection_reads_claim_reference_and_policy() -> None:
    view = VolumeView.of(volume_json("pvc-1", "c-1", phase="Released", policy="Retain"))
    assert (view.name, view.claim_namespace, view.claim_name) == ("pvc-1", "volprobe", "c-1")
    assert (view.phase, view.reclaim_policy) == ("Released", "Retain")


def test_class_projection_defaults_like_the_api_server() -> None:
    view = ClassView.of({"metadata": {"name": "fast-ssd"}, "provisioner": "ebs.csi.aws.com"})
    assert (view.reclaim_policy, view.binding_mode) == ("Delete", "Immediate")
    wffc = ClassView.of({"metadata": {"name": "x"}, "volumeBindingMode": "WaitForFirstConsumer"})
    assert wffc.binding_mode == "WaitForFirstConsumer"


def test_event_projection_reads_core_events() -> None:
    view = EventView.of(event_json("FailedMount", "mount failed", count=4))
    assert (view.reason, view.message, view.type, view.count, view.last_seen) == (
        "FailedMount",
        "mount failed",
        "Warning",
        4,
        NOW,
    )


def test_event_projection_reads_events_api_note_and_event_time() -> None:
    raw = {"reason": "FailedScheduling", "note": "0/3 nodes", "eventTime": "2026-11-22T03:00:00.000000Z"}
    view = EventView.of(raw)
    assert (view.message, view.last_seen, view.count, view.type) == ("0/3 nodes", NOW, 1, "Normal")


# -- odd objects -------------------------------------------------------------------------------------

TOLERATED: dict[str, dict[str, Any]] = {
    "empty object": {},
    "null sections": {"metadata": None, "spec": None, "status": None},
    "empty sections": {"metadata": {}, "spec": {}, "status": {}},
    "empty lists as sections": {"metadata": [], "spec": [], "status": []},
    "odd metadata fields": {
        "metadata": {
            "name": 12,
            "labels": ["a", "b"],
            "annotations": "x",
            "creationTimestamp": 5,
            "deletionTimestamp": "",
            "ownerReferences": {"uid": "x"},
        }
    },
    "odd list items": {
        "metadata": {"ownerReferences": ["x", None, 3]},
        "spec": {"taints": [None, "x", 3], "volumes": [None, "x", {"persistentVolumeClaim": "x"}]},
        "status": {"conditions": [None, "x", 3], "containerStatuses": [None, "x"]},
    },
    "lists that are not lists": {
        "spec": {"taints": "x", "volumes": {"a": 1}},
        "status": {"conditions": {"type": "Ready"}, "containerStatuses": "x"},
    },
    "odd container state": {
        "status": {
            "containerStatuses": [
                {"state": {"terminated": {"exitCode": "1", "message": 7, "startedAt": "never"}}}
            ]
        }
    },
    "odd event fields": {"count": "3", "message": None, "lastTimestamp": 17},
    "null claim reference": {"spec": {"claimRef": None}},
}


@pytest.mark.parametrize("obj", TOLERATED.values(), ids=TOLERATED.keys())
def test_no_projection_raises_on_odd_fields(obj: dict[str, Any]) -> None:
    for projection in PROJECTIONS:
        assert isinstance(projection.of(obj), projection)


def test_empty_objects_project_to_defaults() -> None:
    assert NodeView.of({}).name == ""
    assert not NodeView.of({}).ready
    assert PodView.of({}).phase == "Pending"
    assert ClaimView.of({}).phase == "Pending"
    assert EventView.of({}).count == 1


def test_non_integer_exit_code_is_not_a_termination() -> None:
    view = PodView.of(TOLERATED["odd container state"])
    assert not view.container.terminated
    assert view.container.message is None


CRASHING: dict[str, dict[str, Any]] = {
    "metadata is a string": {"metadata": "fast-ssd"},
    "metadata is a list": {"metadata": ["fast-ssd"]},
    "spec is a string": {"spec": "x"},
    "status is a string": {"status": "Running"},
    "container state is a string": {"status": {"containerStatuses": [{"state": "running"}]}},
    "waiting state is a string": {"status": {"containerStatuses": [{"state": {"waiting": "x"}}]}},
    "claim reference is a list": {"spec": {"claimRef": ["c-1"]}},
}


@pytest.mark.parametrize("obj", CRASHING.values(), ids=CRASHING.keys())
def test_no_projection_raises_on_sections_of_the_wrong_type(obj: dict[str, Any]) -> None:
    for projection in PROJECTIONS:
        assert isinstance(projection.of(obj), projection)


def test_null_string_fields_project_to_empty_strings() -> None:
    node = NodeView.of({"metadata": {"name": None}, "spec": {"taints": [{"key": "k", "value": None}]}})
    pod = PodView.of(
        {"status": {"containerStatuses": [{"state": {"waiting": {"reason": "X", "message": None}}}]}}
    )
    assert node.name == ""
    assert node.taints[0].value == ""
    assert pod.container.waiting_message == ""
