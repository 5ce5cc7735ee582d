"""The leader's policies, decided by the pure planner: plain data and a fake clock in, actions out.

Each section is one policy of docs/design.md: launch timing and jitter, one run in flight per
target, skips and demotion, runs stranded on unwell nodes, drops when a probe or node changes,
adoption after a restart, the sweep of leftovers, status pacing, Events on transitions.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any, TypeVar

import pytest

from tests.unit.factories import NOW, node_json, our_claim, pod_json
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.kinds import REGISTRY, RESOURCES
from volprobe.kinds.storageprobe import probe_state
from volprobe.model.baseline import FLOOR, MIN_SAMPLES
from volprobe.model.manifests import labels, node_claim_name
from volprobe.model.objectstore import PLURAL as OBJECTSTORE_PLURAL
from volprobe.model.objectstore import ObjectStoreSpec
from volprobe.model.objectstore import parse as parse_objectstore
from volprobe.model.outcome import Outcome
from volprobe.model.pacing import CONGESTED_AFTER, INITIAL
from volprobe.model.pacing import FLOOR as PACING_FLOOR
from volprobe.model.planner import (
    LEFTOVER_AGE,
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
from volprobe.model.runs import RunProgress
from volprobe.model.slots import next_slot, offset
from volprobe.model.spec import PLURAL, ProbeSpec, parse_probe
from volprobe.model.targets import Target
from volprobe.model.views import ClaimView, ClassView, NodeView, PodView

PROBE = "fast"
UID = "0b7c3d9e-51aa-4f3e-9a55-7d2c1e0f4b6a"
CLASS = "fast-ssd"
KEY = (PLURAL, PROBE)
INTERVAL = 60.0
A = TypeVar("A", bound=Action)


def spec(name: str = PROBE, *, generation: int = 1, **fields: Any) -> ProbeSpec:
    return parse_probe(
        {
            "metadata": {"name": name, "uid": f"{UID}-{name}", "generation": generation},
            "spec": {"storageClassName": CLASS, "intervalSeconds": INTERVAL, **fields},
        }
    )


def node(name: str, **fields: Any) -> NodeView:
    return NodeView.of(node_json(name, **fields))


def world(
    now: float,
    probes: Sequence[ProbeSpec] = (),
    nodes: Sequence[NodeView] = (),
    *,
    pods: Sequence[PodView] = (),
    claims: Sequence[ClaimView] = (),
    classes: Iterable[str] = (CLASS,),
    statuses: dict[str, dict[str, Any]] | None = None,
) -> World:
    return World(
        now=now,
        probes={(PLURAL, p.name): p for p in probes},
        classes={c: ClassView(c, "example.com/csi") for c in classes},
        nodes={n.name: n for n in nodes},
        pods=pods,
        claims=claims,
        statuses={(PLURAL, name): status for name, status in (statuses or {}).items()},
    )


def our_pod(
    name: str, target: Target, *, created: float = NOW, node_name: str | None = None, **fields: Any
) -> PodView:
    raw = pod_json(name, created=created, node=node_name, **fields)
    raw["metadata"]["labels"] = labels(target)
    raw["metadata"]["annotations"] = {"volprobe.io/node": target.node} if target.node else {}
    return PodView.of(raw)


def of_type(actions: Iterable[Action], kind: type[A]) -> list[A]:
    return [action for action in actions if isinstance(action, kind)]


def launched(actions: Iterable[Action]) -> dict[Target, Launch]:
    return {a.request.target: a for a in of_type(actions, Launch)}


def counted(actions: Iterable[Action]) -> list[Outcome]:
    return [a.outcome for a in of_type(actions, Count)]


def outcome(
    target: Target, run: str, result: Result = Result.SUCCESS, *, at: float, **fields: Any
) -> Outcome:
    failed = result is not Result.SUCCESS
    return Outcome(
        target=target,
        run=run,
        result=result,
        phase=fields.pop("phase", Phase.MOUNT if failed else None),
        reason=fields.pop("reason", Reason.MOUNT_FAILED if failed else None),
        message=fields.pop("message", "exit status 32" if failed else ""),
        node=fields.pop("node", target.node),
        started=at - 5,
        finished=at,
        **fields,
    )


MOUNT_W1 = Target(PROBE, "mount", "worker-1")
MOUNT_W2 = Target(PROBE, "mount", "worker-2")
PROVISION = Target(PROBE, "provision")


def planner(**options: Any) -> Planner:
    return Planner(REGISTRY, list(RESOURCES.values()), **options)


def run_until_launched(
    plan: Planner, probes: Sequence[ProbeSpec], nodes: Sequence[NodeView], *, start: float = NOW
) -> dict[Target, Launch]:
    """Tick once per second for one interval from `start`: every free target launches once."""
    found: dict[Target, Launch] = {}
    for second in range(int(INTERVAL) + 2):
        found.update(launched(plan.tick(world(start + second, probes, nodes))))
    return found


# -- launch timing and jitter --------------------------------------------------------------------


def test_each_target_launches_once_per_interval_at_its_own_slot() -> None:
    plan = planner()
    probes, nodes = [spec()], [node("worker-1"), node("worker-2")]
    assert plan.start(world(NOW, probes, nodes)) == []
    assert launched(plan.tick(world(NOW, probes, nodes))) == {}, "nothing is due at the very start"

    found = run_until_launched(plan, probes, nodes)
    assert set(found) == {PROVISION, MOUNT_W1, MOUNT_W2}
    for target in found:
        slot = next_slot(NOW, INTERVAL, offset(probes[0].uid, target, INTERVAL))
        assert plan.targets[target].next_due == slot + INTERVAL, target


def test_slots_are_spread_over_the_interval_and_the_same_after_a_restart() -> None:
    probes = [spec()]
    nodes = [node(f"worker-{i}") for i in range(40)]
    first, second = planner(), planner()
    first.tick(world(NOW, probes, nodes))
    second.tick(world(NOW + 1234.5, probes, nodes))
    offsets = sorted(state.slot_offset for state in first.targets.values())
    assert offsets == sorted(state.slot_offset for state in second.targets.values())
    assert len(set(offsets)) == len(offsets)
    assert offsets[-1] - offsets[0] > INTERVAL / 2, "not all at the same second"
    quarters = {int(o // (INTERVAL / 4)) for o in offsets}
    assert quarters == {0, 1, 2, 3}, "40 targets land in every quarter of the interval"


def test_the_run_name_carries_the_slot_and_the_node() -> None:
    plan = planner()
    found = run_until_launched(plan, [spec()], [node("worker-1")])
    assert found[PROVISION].request.pod_name.startswith(f"vp-{PROBE}-p-")
    assert found[MOUNT_W1].request.pod_name.startswith(f"vp-{PROBE}-m-")
    assert found[MOUNT_W1].request.spec == spec()


def test_wake_at_is_the_next_slot_or_the_status_interval() -> None:
    plan = planner(status_interval=5.0)
    plan.tick(world(NOW, [spec()], [node("worker-1")]))
    due = min(state.next_due for state in plan.targets.values())
    assert plan.wake_at(NOW) == min(due, NOW + 5.0)
    assert planner().wake_at(NOW) == NOW + 1.0, "no targets: look again soon"


def test_a_changed_interval_moves_the_slots() -> None:
    plan = planner()
    plan.tick(world(NOW, [spec()], [node("worker-1")]))
    plan.tick(world(NOW + 1, [spec(generation=2, intervalSeconds=20)], [node("worker-1")]))
    state = plan.targets[MOUNT_W1]
    assert state.interval == 20
    assert NOW + 1 < state.next_due <= NOW + 21


# -- one run in flight ---------------------------------------------------------------------------


def test_a_slot_that_arrives_during_a_run_is_folded_into_it() -> None:
    plan = planner()
    probes, nodes = [spec()], [node("worker-1")]
    first = run_until_launched(plan, probes, nodes)[MOUNT_W1]
    later = NOW + INTERVAL + 2
    relaunched: list[Launch] = []
    for second in range(int(INTERVAL) + 1):
        relaunched += [
            a
            for a in of_type(plan.tick(world(later + second, probes, nodes)), Launch)
            if a.request.target == MOUNT_W1
        ]
    assert relaunched == [], "the hung run keeps the slot; nothing queues behind it"
    assert plan.targets[MOUNT_W1].run == first.request.pod_name

    done = outcome(MOUNT_W1, first.request.pod_name, at=later + INTERVAL)
    assert counted(
        plan.finished(MOUNT_W1, first.request.pod_name, done, world(later + INTERVAL, probes, nodes))
    ) == [done]
    again = run_until_launched(plan, probes, nodes, start=later + INTERVAL)
    assert MOUNT_W1 in again, "the next slot after the run ended launches again"


def test_in_flight_runs_are_published() -> None:
    plan = planner()
    run_until_launched(plan, [spec()], [node("worker-1"), node("worker-2")])
    (gauges,) = of_type(
        plan.tick(world(NOW + INTERVAL + 3, [spec()], [node("worker-1"), node("worker-2")])), Publish
    )
    assert gauges.in_flight == {(PROBE, "provision"): 1, (PROBE, "mount"): 2}
    assert gauges.intervals == {PROBE: (CLASS, INTERVAL)}


def test_the_end_of_a_run_the_planner_no_longer_follows_is_not_counted() -> None:
    plan = planner()
    first = run_until_launched(plan, [spec()], [node("worker-1")])[MOUNT_W1].request.pod_name
    done = outcome(MOUNT_W1, "some-other-run", at=NOW + 70)
    assert (
        plan.finished(MOUNT_W1, "some-other-run", done, world(NOW + 70, [spec()], [node("worker-1")])) == []
    )
    assert plan.targets[MOUNT_W1].run == first


def test_a_broken_run_is_an_api_error_failure() -> None:
    plan = planner()
    run = run_until_launched(plan, [spec()], [node("worker-1")])[MOUNT_W1].request.pod_name
    (found,) = counted(
        plan.broke(MOUNT_W1, run, "KeyError('x')", world(NOW + 70, [spec()], [node("worker-1")]))
    )
    assert (found.result, found.reason) == (Result.FAILURE, Reason.API_ERROR)
    assert "KeyError" in found.message


# -- skips and demotion --------------------------------------------------------------------------


def test_a_cordoned_node_is_skipped_with_its_reason_and_no_pod() -> None:
    plan = planner()
    nodes = [node("worker-1", unschedulable=True), node("worker-2")]
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world(NOW + second, [spec()], nodes))
    assert MOUNT_W1 not in launched(actions)
    skips = [o for o in counted(actions) if o.target == MOUNT_W1]
    assert [(o.result, o.skip) for o in skips] == [(Result.SKIPPED, SkipReason.CORDONED)]
    assert SetSkipped(PROBE, "worker-1", SkipReason.CORDONED) in actions
    assert launched(actions)[PROVISION].request.avoid_nodes == ("worker-1",)


def test_a_skipped_node_is_probed_again_when_it_recovers() -> None:
    plan = planner()
    run_until_launched(plan, [spec()], [node("worker-1", unschedulable=True)])
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world(NOW + INTERVAL + 2 + second, [spec()], [node("worker-1")]))
    assert MOUNT_W1 in launched(actions)
    assert SetSkipped(PROBE, "worker-1", None) in actions


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"ready": "False"}, SkipReason.NOT_READY),
        ({"taints": [{"key": "maintenance", "effect": "NoSchedule"}]}, SkipReason.TAINTED),
        ({"created": NOW - 10}, SkipReason.TOO_NEW),
        ({"ready_since": NOW - 10}, SkipReason.RECOVERING),
        ({"deleting": True}, SkipReason.DELETING),
    ],
)
def test_every_unwell_state_is_a_skip(fields: dict[str, Any], reason: SkipReason) -> None:
    plan = planner()
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world(NOW + second, [spec()], [node("worker-1", **fields)]))
    assert {(o.target, o.skip) for o in counted(actions)} == {(MOUNT_W1, reason), (PROVISION, reason)}
    assert launched(actions) == {}


def test_provision_is_skipped_only_when_every_selected_node_is_unwell() -> None:
    plan = planner()
    nodes = [
        node("worker-1", unschedulable=True),
        node("worker-2", ready="False"),
        node("worker-3", unschedulable=True),
    ]
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world(NOW + second, [spec()], nodes))
    (provision,) = [o for o in counted(actions) if o.target == PROVISION]
    assert provision.skip is SkipReason.CORDONED, "the most common reason among the nodes"


def test_a_failure_on_a_node_that_went_unwell_meanwhile_is_a_skip() -> None:
    plan = planner()
    run = run_until_launched(plan, [spec()], [node("worker-1")])[MOUNT_W1].request.pod_name
    failure = outcome(MOUNT_W1, run, Result.TIMEOUT, at=NOW + 80, phase=Phase.IO, reason=Reason.TIMEOUT)
    (found,) = counted(
        plan.finished(MOUNT_W1, run, failure, world(NOW + 80, [spec()], [node("worker-1", ready="False")]))
    )
    assert (found.result, found.skip) == (Result.SKIPPED, SkipReason.NOT_READY)
    assert found.run == run


@pytest.mark.parametrize(
    ("ready_since", "result"),
    [
        # Ready again at the verdict, for longer than the grace period: it flapped mid-run.
        (NOW + 100, Result.SKIPPED),
        (NOW + 60, Result.TIMEOUT),
    ],
)
def test_a_failure_on_a_node_that_was_not_ready_during_the_run_is_a_skip(
    ready_since: float, result: Result
) -> None:
    plan = planner()
    run = run_until_launched(plan, [spec()], [node("worker-1")])[MOUNT_W1].request.pod_name
    timeout = replace(
        outcome(
            MOUNT_W1,
            run,
            Result.TIMEOUT,
            at=NOW + 400,
            phase=Phase.PROVISION,
            reason=Reason.PROVISIONING_TIMEOUT,
        ),
        started=NOW + 70,
    )
    verdict = world(NOW + 400, [spec()], [node("worker-1", ready_since=ready_since)])
    (found,) = counted(plan.finished(MOUNT_W1, run, timeout, verdict))
    assert found.result is result
    assert found.skip is (SkipReason.NOT_READY if result is Result.SKIPPED else None)


def test_corruption_is_reported_even_while_the_node_goes_unwell() -> None:
    plan = planner()
    run = run_until_launched(plan, [spec()], [node("worker-1")])[MOUNT_W1].request.pod_name
    corrupt = outcome(
        MOUNT_W1, run, Result.FAILURE, at=NOW + 80, phase=Phase.VERIFY, reason=Reason.CHECKSUM_MISMATCH
    )
    (found,) = counted(
        plan.finished(MOUNT_W1, run, corrupt, world(NOW + 80, [spec()], [node("worker-1", ready="False")]))
    )
    assert found.reason is Reason.CHECKSUM_MISMATCH


def test_a_provision_failure_without_a_node_is_a_skip_when_no_node_is_usable() -> None:
    plan = planner()
    run = run_until_launched(plan, [spec()], [node("worker-1")])[PROVISION].request.pod_name
    stuck = outcome(
        PROVISION,
        run,
        Result.TIMEOUT,
        at=NOW + 200,
        phase=Phase.SCHEDULE,
        reason=Reason.UNSCHEDULABLE,
        node="",
    )
    unwell = world(NOW + 200, [spec()], [node("worker-1", unschedulable=True)])
    (found,) = counted(plan.finished(PROVISION, run, stuck, unwell))
    assert found.skip is SkipReason.CORDONED
    (still,) = counted(
        planner_with_run(PROVISION).finished(
            PROVISION, "r", replace(stuck, run="r"), world(NOW + 200, [spec()], [node("worker-1")])
        )
    )
    assert still.reason is Reason.UNSCHEDULABLE, "with a usable node it is a real failure"


def planner_with_run(target: Target, run: str = "r") -> Planner:
    plan = planner()
    plan.tick(world(NOW, [spec()], [node("worker-1")]))
    plan.targets[target].run = run
    return plan


# -- runs stranded on unwell nodes ---------------------------------------------------------------


def test_a_run_waiting_for_a_node_is_aborted_when_every_usable_node_goes_unwell() -> None:
    plan = planner_with_run(PROVISION, "vp-fast-p-1")
    pending = our_pod("vp-fast-p-1", PROVISION)
    cordoned = [node("worker-1", unschedulable=True)]
    actions = plan.tick(world(NOW + 1, [spec()], cordoned, pods=[pending]))
    assert of_type(actions, Abort) == [Abort(PROVISION, SkipReason.CORDONED)]
    assert of_type(plan.tick(world(NOW + 2, [spec()], cordoned, pods=[pending])), Abort) == [], "asked once"


def test_a_mount_run_waiting_for_its_cordoned_node_is_aborted() -> None:
    plan = planner_with_run(MOUNT_W1, "vp-fast-m-1")
    pending = our_pod("vp-fast-m-1", MOUNT_W1)
    actions = plan.tick(world(NOW + 1, [spec()], [node("worker-1", unschedulable=True)], pods=[pending]))
    assert of_type(actions, Abort) == [Abort(MOUNT_W1, SkipReason.CORDONED)]


def test_a_run_already_on_a_node_is_not_aborted() -> None:
    plan = planner_with_run(PROVISION, "vp-fast-p-1")
    running = our_pod("vp-fast-p-1", PROVISION, node_name="worker-1", scheduled=NOW)
    actions = plan.tick(world(NOW + 1, [spec()], [node("worker-1", unschedulable=True)], pods=[running]))
    assert of_type(actions, Abort) == []


def test_a_run_waiting_while_a_usable_node_remains_is_not_aborted() -> None:
    plan = planner()
    plan.tick(world(NOW, [spec()], [node("worker-1"), node("worker-2")]))
    plan.targets[PROVISION].run = "vp-fast-p-1"
    pending = our_pod("vp-fast-p-1", PROVISION)
    nodes = [node("worker-1", unschedulable=True), node("worker-2")]
    assert of_type(plan.tick(world(NOW + 1, [spec()], nodes, pods=[pending])), Abort) == []


# -- drops on spec and node changes --------------------------------------------------------------


def test_a_removed_node_loses_its_run_claim_and_series() -> None:
    plan = planner()
    nodes = [node("worker-1"), node("worker-2")]
    run = run_until_launched(plan, [spec()], nodes)[MOUNT_W2].request.pod_name
    actions = plan.tick(world(NOW + 65, [spec()], [node("worker-1")]))
    claim = node_claim_name(PROBE, "worker-2")
    assert [
        Stop(MOUNT_W2),
        Delete("pods", run),
        Delete("persistentvolumeclaims", claim),
        Forget(PROBE, "worker-2"),
    ] == [a for a in actions if isinstance(a, Stop | Delete | Forget)]
    assert MOUNT_W2 not in plan.targets
    late = outcome(MOUNT_W2, run, at=NOW + 70)
    assert plan.finished(MOUNT_W2, run, late, world(NOW + 70, [spec()], [node("worker-1")])) == []


def test_a_node_outside_the_selector_is_not_probed() -> None:
    plan = planner()
    only_ssd = {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}]
    }
    nodes = [node("worker-1", labels={"disk": "ssd"}), node("worker-2")]
    plan.tick(world(NOW, [spec(nodeSelector=only_ssd)], nodes))
    assert set(plan.targets) == {PROVISION, MOUNT_W1}


def test_disabling_a_kind_drops_its_targets() -> None:
    plan = planner()
    run_until_launched(plan, [spec()], [node("worker-1")])
    actions = plan.tick(world(NOW + 65, [spec(generation=2, mount={"enabled": False})], [node("worker-1")]))
    assert set(plan.targets) == {PROVISION}
    assert Delete("persistentvolumeclaims", node_claim_name(PROBE, "worker-1")) in actions


def test_a_deleted_probe_forgets_everything() -> None:
    plan = planner()
    run_until_launched(plan, [spec(), spec("other")], [node("worker-1")])
    actions = plan.tick(world(NOW + 65, [spec("other")], [node("worker-1")]))
    assert Forget(PROBE) in actions
    assert {t.probe for t in plan.targets} == {"other"}
    assert KEY not in plan.records


# -- a missing StorageClass ----------------------------------------------------------------------


def test_a_missing_class_fails_every_slot_and_is_announced_once() -> None:
    plan = planner()
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world(NOW + second, [spec()], [node("worker-1")], classes=()))
    assert {(o.target, o.reason) for o in counted(actions)} == {
        (PROVISION, Reason.STORAGE_CLASS_MISSING),
        (MOUNT_W1, Reason.STORAGE_CLASS_MISSING),
    }
    assert [e.reason for e in of_type(actions, Emit) if e.reason.startswith("StorageClass")] == [
        "StorageClassNotFound"
    ]
    assert launched(actions) == {}
    later = plan.tick(world(NOW + 100, [spec()], [node("worker-1")]))
    assert [e.reason for e in of_type(later, Emit)] == ["StorageClassFound"]


# -- adoption after a restart --------------------------------------------------------------------


def test_a_new_leader_follows_the_runs_in_flight() -> None:
    pods = [
        our_pod("vp-fast-m-aaaa-1", MOUNT_W1, node_name="worker-1", scheduled=NOW - 5),
        our_pod("vp-fast-p-1", PROVISION),
    ]
    plan = planner()
    actions = plan.start(world(NOW, [spec()], [node("worker-1")], pods=pods))
    found = launched(actions)
    assert {t: a.request.adopt for t, a in found.items()} == {MOUNT_W1: pods[0], PROVISION: pods[1]}
    assert plan.targets[MOUNT_W1].run == "vp-fast-m-aaaa-1"
    assert of_type(actions, Delete) == []


def test_a_second_pod_of_the_same_target_is_deleted_not_adopted() -> None:
    pods = [our_pod("vp-fast-p-1", PROVISION), our_pod("vp-fast-p-2", PROVISION)]
    actions = planner().start(world(NOW, [spec()], [node("worker-1")], pods=pods))
    assert len(of_type(actions, Launch)) == 1
    assert of_type(actions, Delete) == [Delete("pods", "vp-fast-p-2")]


def test_pods_of_other_controllers_and_pods_being_deleted_are_left_alone() -> None:
    pods = [
        our_pod("vp-other-p-1", Target("other", "provision")),
        our_pod("vp-fast-p-1", PROVISION, deleting=True),
        our_pod("vp-fast-x-1", Target(PROBE, "snapshot")),
    ]
    assert planner().start(world(NOW, [spec()], [node("worker-1")], pods=pods)) == []


def test_a_pod_of_a_node_that_is_gone_is_deleted_at_start() -> None:
    pods = [our_pod("vp-fast-m-dead-1", Target(PROBE, "mount", "gone"))]
    actions = planner().start(world(NOW, [spec()], [node("worker-1")], pods=pods))
    assert of_type(actions, Delete) == [Delete("pods", "vp-fast-m-dead-1")]


def test_the_status_on_the_server_seeds_condition_times() -> None:
    plan = planner()
    previous = {
        "observedGeneration": 1,
        "conditions": [{"type": "Ready", "status": "False", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
    }
    plan.start(world(NOW, [spec()], [node("worker-1")], statuses={PROBE: previous}))
    assert plan.records[KEY].status_written == previous


# -- the sweep -----------------------------------------------------------------------------------


def test_the_sweep_deletes_leftovers_and_keeps_what_is_in_use() -> None:
    plan = planner(sweep_interval=30)
    plan.tick(world(NOW, [spec()], [node("worker-1")]))
    plan.targets[MOUNT_W1].run = "vp-fast-m-run"
    pods = [
        our_pod("vp-fast-m-run", MOUNT_W1, created=NOW - 600),  # followed: kept, however old
        our_pod("vp-fast-m-old", MOUNT_W1, created=NOW - LEFTOVER_AGE - 1),  # nobody follows it
        our_pod("vp-fast-m-new", MOUNT_W1, created=NOW),  # young: maybe just created
        our_pod("vp-fast-m-gone", Target(PROBE, "mount", "gone"), created=NOW),  # target gone
    ]
    claims = [
        our_claim(node_claim_name(PROBE, "worker-1"), MOUNT_W1),
        our_claim(node_claim_name(PROBE, "gone"), Target(PROBE, "mount", "gone")),
        our_claim("vp-fast-p-1-volume", PROVISION),  # ephemeral: follows its pod
    ]
    actions = plan.tick(world(NOW + 31, [spec()], [node("worker-1")], pods=pods, claims=claims))
    assert sorted((d.resource, d.name) for d in of_type(actions, Delete)) == [
        ("persistentvolumeclaims", node_claim_name(PROBE, "gone")),
        ("pods", "vp-fast-m-gone"),
        ("pods", "vp-fast-m-old"),
    ]
    assert (
        of_type(plan.tick(world(NOW + 40, [spec()], [node("worker-1")], pods=pods, claims=claims)), Delete)
        == []
    ), "paced by the sweep interval"


# -- status pacing -------------------------------------------------------------------------------


def test_status_is_written_at_most_every_status_interval() -> None:
    plan = planner(status_interval=5)
    probes, nodes = [spec()], [node("worker-1")]
    (first,) = of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus)
    assert first.probe == KEY
    assert of_type(plan.tick(world(NOW + 1, probes, nodes)), WriteStatus) == [], "a write is in flight"
    plan.status_written(KEY, first.document, NOW + 1)
    plan.records[KEY].dirty = True
    assert of_type(plan.tick(world(NOW + 3, probes, nodes)), WriteStatus) == [], "paced"
    assert of_type(plan.tick(world(NOW + 7, probes, nodes)), SetNodeCounts), "counts follow each status"


def test_an_unchanged_status_is_not_written_again() -> None:
    plan = planner(status_interval=5)
    probes, nodes = [spec()], [node("worker-1")]
    (first,) = of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus)
    plan.status_written(KEY, first.document, NOW)
    plan.records[KEY].dirty = True
    assert of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus) == []


def test_a_new_generation_is_written_at_once() -> None:
    plan = planner(status_interval=5)
    probes, nodes = [spec()], [node("worker-1")]
    (first,) = of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus)
    plan.status_written(KEY, first.document, NOW)
    (second,) = of_type(plan.tick(world(NOW + 1, [spec(generation=2)], nodes)), WriteStatus)
    assert second.document["observedGeneration"] == 2


def test_a_failed_status_write_is_retried_unless_the_probe_is_gone() -> None:
    plan = planner(status_interval=5)
    probes, nodes = [spec()], [node("worker-1")]
    of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus)
    plan.status_failed(KEY, retry=True)
    assert of_type(plan.tick(world(NOW + 1, probes, nodes)), WriteStatus)
    plan.status_failed(KEY, retry=False)
    assert of_type(plan.tick(world(NOW + 2, probes, nodes)), WriteStatus) == []


def test_status_reports_a_failing_node_and_its_reason() -> None:
    plan = planner(status_interval=0)
    probes, nodes = [spec()], [node("worker-1")]
    run = run_until_launched(plan, probes, nodes)[MOUNT_W1].request.pod_name
    plan.finished(
        MOUNT_W1, run, outcome(MOUNT_W1, run, Result.FAILURE, at=NOW + 70), world(NOW + 70, probes, nodes)
    )
    for record in plan.records.values():
        record.status_writing = False
    (written,) = of_type(plan.tick(world(NOW + 71, probes, nodes)), WriteStatus)
    assert written.document["failingNodes"][0]["reason"] == "mount_failed"
    assert written.document["mount"]["result"] == "failure"


# -- Events on transitions -----------------------------------------------------------------------


def test_events_mark_the_start_and_the_end_of_a_failure_only() -> None:
    plan = planner()
    probes, nodes = [spec()], [node("worker-1")]
    results = [Result.FAILURE, Result.FAILURE, Result.SUCCESS, Result.SUCCESS]
    emitted: list[str] = []
    plan.tick(world(NOW, probes, nodes))
    for index, result in enumerate(results):
        run = f"run-{index}"
        plan.targets[MOUNT_W1].run = run
        actions = plan.finished(
            MOUNT_W1, run, outcome(MOUNT_W1, run, result, at=NOW + index), world(NOW + index, probes, nodes)
        )
        emitted += [e.reason for e in of_type(actions, Emit)]
    assert emitted == ["ProbeFailed", "ProbeRecovered"]


# -- learned baselines: stalled runs and slow results --------------------------------------------


def teach(plan: Planner, target: Target, durations: dict[Phase, float], times: int = MIN_SAMPLES) -> None:
    """Finish `times` successful runs of `target` with these phase durations."""
    probes, nodes = [spec()], [node("worker-1")]
    for write in of_type(plan.tick(world(NOW, probes, nodes)), WriteStatus):
        plan.status_written(write.probe, write.document, NOW)
    for index in range(times):
        run = f"learn-{index}"
        plan.targets[target].run = run
        done = outcome(target, run, at=NOW + index, durations=dict(durations))
        assert counted(plan.finished(target, run, done, world(NOW + index, probes, nodes)))[0].passed


def test_a_run_far_over_its_usual_phase_time_is_stalled_long_before_the_deadline() -> None:
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 3.0, Phase.MOUNT: 1.0})
    plan.targets[PROVISION].run = "slow-run"
    probes, nodes = [spec()], [node("worker-1")]
    progress = {"slow-run": RunProgress(Phase.PROVISION, NOW + 100)}

    quiet = plan.tick(replace(world(NOW + 109, probes, nodes), progress=progress))
    assert of_type(quiet, SetStalled) == []
    assert plan.wake_at(NOW + 109) <= NOW + 100 + FLOOR, "the planner wakes up when the threshold passes"

    stalled = plan.tick(replace(world(NOW + 111, probes, nodes), progress=progress))
    assert of_type(stalled, SetStalled) == [SetStalled(PROVISION, CLASS, Phase.PROVISION)]
    assert [e.reason for e in of_type(stalled, Emit)] == ["ProbeStalled"]
    assert of_type(plan.tick(replace(world(NOW + 112, probes, nodes), progress=progress)), SetStalled) == []

    state = probe_state(plan.view(plan.records[KEY]))
    assert [(s.kind, s.phase) for s in state.stalled] == [("provision", Phase.PROVISION)]

    moved_on = {"slow-run": RunProgress(Phase.SCHEDULE, NOW + 113)}
    cleared = plan.tick(replace(world(NOW + 114, probes, nodes), progress=moved_on))
    assert of_type(cleared, SetStalled) == [SetStalled(PROVISION, CLASS, None)]


def test_a_new_probe_without_a_baseline_is_never_stalled() -> None:
    plan = planner()
    probes, nodes = [spec()], [node("worker-1")]
    plan.tick(world(NOW, probes, nodes))
    plan.targets[PROVISION].run = "first-run"
    progress = {"first-run": RunProgress(Phase.PROVISION, NOW)}
    assert of_type(plan.tick(replace(world(NOW + 100, probes, nodes), progress=progress)), SetStalled) == []


def test_the_end_of_a_stalled_run_clears_the_signal_and_a_late_success_is_slow() -> None:
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 3.0})
    probes, nodes = [spec()], [node("worker-1")]
    plan.targets[PROVISION].run = "late"
    plan.tick(replace(world(NOW + 50, probes, nodes), progress={"late": RunProgress(Phase.PROVISION, NOW)}))
    done = outcome(PROVISION, "late", at=NOW + 60, durations={Phase.PROVISION: 45.0})
    actions = plan.finished(PROVISION, "late", done, world(NOW + 60, probes, nodes))
    assert SetStalled(PROVISION, CLASS, None) in actions
    (found,) = counted(actions)
    assert (found.result, found.phase, found.reason) == (Result.SLOW, Phase.PROVISION, None)
    assert found.passed, "slow is a success"
    assert "45.0s" in found.message
    assert [e.reason for e in of_type(actions, Emit)] == ["ProbeSlow"]


def test_slow_runs_move_the_baseline_so_a_slower_normal_stops_being_slow() -> None:
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 3.0}, times=5)
    probes, nodes = [spec()], [node("worker-1")]
    results = []
    for index in range(30):
        run = f"r{index}"
        plan.targets[PROVISION].run = run
        done = outcome(PROVISION, run, at=NOW + 100 + index, durations={Phase.PROVISION: 20.0})
        results += [
            o.result for o in counted(plan.finished(PROVISION, run, done, world(NOW + 100, probes, nodes)))
        ]
    assert results[0] is Result.SLOW
    assert results[-1] is Result.SUCCESS, "20 s became the new normal"


def test_failures_do_not_teach_the_baseline() -> None:
    plan = planner()
    teach(plan, MOUNT_W1, {Phase.MOUNT: 1.0}, times=MIN_SAMPLES - 1)
    probes, nodes = [spec()], [node("worker-1")]
    plan.targets[MOUNT_W1].run = "bad"
    failure = outcome(MOUNT_W1, "bad", Result.FAILURE, at=NOW + 50, durations={Phase.MOUNT: 1.0})
    plan.finished(MOUNT_W1, "bad", failure, world(NOW + 50, probes, nodes))
    assert plan.records[KEY].baseline.threshold("mount", Phase.MOUNT) is None


def test_the_baseline_travels_in_the_status_to_the_next_leader() -> None:
    first = planner(status_interval=0)
    teach(first, PROVISION, {Phase.PROVISION: 3.0})
    (written,) = of_type(first.tick(world(NOW + 10, [spec()], [node("worker-1")])), WriteStatus)
    assert written.document["baselines"] == {"provision/provision": [3.0] * MIN_SAMPLES}

    second = planner()
    second.start(world(NOW + 20, [spec()], [node("worker-1")], statuses={PROBE: dict(written.document)}))
    assert second.records[KEY].baseline.threshold("provision", Phase.PROVISION) == FLOOR


def test_nothing_is_stalled_while_the_caches_are_not_current() -> None:
    """An API outage freezes what the controller sees; that is not the storage stalling."""
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 3.0})
    plan.targets[PROVISION].run = "r"
    probes, nodes = [spec()], [node("worker-1")]
    progress = {"r": RunProgress(Phase.PROVISION, NOW)}
    stalled = plan.tick(replace(world(NOW + 50, probes, nodes), progress=progress))
    assert of_type(stalled, SetStalled) == [SetStalled(PROVISION, CLASS, Phase.PROVISION)]
    blind = plan.tick(replace(world(NOW + 51, probes, nodes), progress=progress, live=False))
    assert of_type(blind, SetStalled) == [SetStalled(PROVISION, CLASS, None)]


# -- pacing new volumes --------------------------------------------------------------------------


def test_first_runs_on_many_new_nodes_queue_behind_the_window_and_never_fail() -> None:
    plan = planner()
    probes = [spec(provision={"enabled": False})]
    nodes = [node(f"worker-{i:03}") for i in range(50)]
    started: dict[Target, Launch] = {}
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        tick = plan.tick(world(NOW + second, probes, nodes))
        actions += tick
        started.update(launched(tick))
    assert len(started) == INITIAL, "only as many new volumes as the window allows"
    assert counted(actions) == [], "a queued run is neither a failure nor a skip"
    (gauges,) = of_type(plan.tick(world(NOW + INTERVAL + 3, probes, nodes)), Publish)
    assert gauges.queued == {(PROBE, "mount"): 50 - INITIAL}
    assert probe_state(plan.view(plan.records[KEY])).queued == 50 - INITIAL


def test_a_bound_volume_makes_room_and_widens_the_window() -> None:
    plan = planner()
    probes = [spec(provision={"enabled": False})]
    nodes = [node(f"worker-{i:03}") for i in range(20)]
    first = run_until_launched(plan, probes, nodes)
    now = NOW + INTERVAL + 5
    claims = []
    for target, launch in first.items():
        run = launch.request.pod_name
        claims.append(our_claim(node_claim_name(PROBE, target.node), target))
        done = outcome(target, run, at=now, durations={Phase.PROVISION: 2.0, Phase.MOUNT: 1.0})
        plan.finished(target, run, done, world(now, probes, nodes, claims=claims))
    assert plan.windows[CLASS].allowed() == INITIAL * 2
    later = launched(plan.tick(world(now + 1, probes, nodes, claims=claims)))
    waited = [t for t in later if t not in first]
    assert len(waited) == INITIAL * 2, "queued runs start as soon as there is room"
    slots = [later[t].request.slot for t in waited]
    assert all(slot is not None and slot < now for slot in slots), "with the slot they waited with"


def test_runs_whose_node_volume_is_bound_need_no_room() -> None:
    plan = planner()
    probes = [spec(provision={"enabled": False})]
    nodes = [node(f"worker-{i:03}") for i in range(12)]
    claims = [our_claim(node_claim_name(PROBE, n.name), Target(PROBE, "mount", n.name)) for n in nodes]
    started: dict[Target, Launch] = {}
    for second in range(int(INTERVAL) + 2):
        started.update(launched(plan.tick(world(NOW + second, probes, nodes, claims=claims))))
    assert len(started) == 12


def test_a_volume_that_takes_too_long_halves_the_window() -> None:
    plan = planner()
    probes = [spec(provision={"enabled": False})]
    nodes = [node(f"worker-{i:03}") for i in range(8)]
    first = run_until_launched(plan, probes, nodes)
    making = {launch.request.pod_name: RunProgress(Phase.PROVISION, NOW) for launch in first.values()}
    plan.tick(replace(world(NOW + CONGESTED_AFTER + 1, probes, nodes), progress=making))
    assert plan.windows[CLASS].allowed() == INITIAL // 2
    target, launch = next(iter(first.items()))
    timeout = outcome(
        target,
        launch.request.pod_name,
        Result.TIMEOUT,
        at=NOW + CONGESTED_AFTER + 10,
        phase=Phase.PROVISION,
        reason=Reason.PROVISIONING_TIMEOUT,
    )
    plan.finished(target, launch.request.pod_name, timeout, world(NOW + CONGESTED_AFTER + 10, probes, nodes))
    assert plan.windows[CLASS].allowed() == INITIAL // 2, "halved at most once per period"


def test_volumes_that_waited_behind_our_own_claims_do_not_make_waiting_normal() -> None:
    """During a rollout every volume also waits behind volprobe's earlier claims, and the baseline
    learns those times; judged by them, the window would grow until volumes wait past their
    deadline. Congestion is judged against the fastest volumes instead."""
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 2.0})
    teach(plan, PROVISION, {Phase.PROVISION: 60.0})
    probes, nodes = [spec()], [node(f"worker-{i:03}") for i in range(8)]
    first = run_until_launched(plan, probes, nodes, start=NOW + 100)
    assert len(first) == INITIAL
    now = NOW + 200
    since = now - PACING_FLOOR - 1
    making = {launch.request.pod_name: RunProgress(Phase.PROVISION, since) for launch in first.values()}
    plan.tick(replace(world(now, probes, nodes), progress=making))
    assert plan.windows[CLASS].allowed() == INITIAL // 2


def test_after_a_restart_the_fastest_volume_seen_overrules_a_baseline_learned_in_a_queue() -> None:
    plan = planner()
    teach(plan, PROVISION, {Phase.PROVISION: 60.0})  # the status of a leader that ended mid-rollout
    probes, nodes = [spec()], [node(f"worker-{i:03}") for i in range(8)]
    first = run_until_launched(plan, probes, nodes, start=NOW + 100)
    now = NOW + 200
    (target, launch), *rest = first.items()
    claims = [our_claim(node_claim_name(PROBE, t.node), t) for t in first if t.node]
    done = outcome(target, launch.request.pod_name, at=now, durations={Phase.PROVISION: 2.0})
    plan.finished(target, launch.request.pod_name, done, world(now, probes, nodes, claims=claims))
    assert plan.windows[CLASS].fastest == 2.0
    widened = plan.windows[CLASS].allowed()
    since = now - PACING_FLOOR - 1
    making = {launch.request.pod_name: RunProgress(Phase.PROVISION, since) for _, launch in rest}
    plan.tick(replace(world(now + 1, probes, nodes, claims=claims), progress=making))
    assert plan.windows[CLASS].allowed() == widened // 2


def test_a_queued_target_whose_node_goes_unwell_is_skipped_not_kept() -> None:
    plan = planner()
    probes = [spec(provision={"enabled": False})]
    nodes = [node(f"worker-{i:03}") for i in range(6)]
    run_until_launched(plan, probes, nodes)
    queued = next(t for t, s in plan.targets.items() if s.queued is not None)
    unwell = [n if n.name != queued.node else node(queued.node, unschedulable=True) for n in nodes]
    actions = plan.tick(world(NOW + INTERVAL + 3, probes, unwell))
    assert [(o.target, o.skip) for o in counted(actions)] == [(queued, SkipReason.CORDONED)]
    assert plan.targets[queued].queued is None


# -- another probe resource: ObjectStoreProbes, run by the controller ----------------------------

S3_KEY = (OBJECTSTORE_PLURAL, "s3")
S3_TARGET = Target("s3", "objectstore")


def store(generation: int = 1, **fields: Any) -> ObjectStoreSpec:
    return parse_objectstore(
        {
            "metadata": {"name": "s3", "uid": "uid-s3", "generation": generation},
            "spec": {
                "endpoint": "https://s3.example.com",
                "bucket": "volprobe",
                "credentialsSecret": {"name": "s3-keys"},
                "intervalSeconds": INTERVAL,
                **fields,
            },
        }
    )


def world_with_store(now: float, *stores: ObjectStoreSpec, statuses: dict[str, Any] | None = None) -> World:
    return replace(
        world(now, [spec()], [node("worker-1")]),
        probes={(PLURAL, PROBE): spec(), **{(OBJECTSTORE_PLURAL, s.name): s for s in stores}},
        statuses={(OBJECTSTORE_PLURAL, "s3"): statuses} if statuses else {},
    )


def test_an_object_store_probe_has_one_target_run_by_the_controller_without_nodes_or_pacing() -> None:
    plan = planner()
    actions: list[Action] = []
    for second in range(int(INTERVAL) + 2):
        actions += plan.tick(world_with_store(NOW + second, store()))
    launch = launched(actions)[S3_TARGET]
    assert launch.request.spec == store()
    assert launch.request.avoid_nodes == ()
    assert {t for t in plan.targets if t.probe == "s3"} == {S3_TARGET}, "no node targets, no other kinds"
    assert plan.records[S3_KEY].selected == frozenset()


def test_an_object_store_run_carries_its_previous_outcome_and_status_to_the_next() -> None:
    previous_status = {"canary": {"key": "probes/s3/canary", "sha256": "ab" * 32}}
    plan = planner()
    found: dict[Target, Launch] = {}
    for second in range(int(INTERVAL) + 2):
        found.update(launched(plan.tick(world_with_store(NOW + second, store(), statuses=previous_status))))
    assert found[S3_TARGET].request.status == previous_status, "a new leader's first run sees the status"
    run = found[S3_TARGET].request.pod_name
    done = outcome(S3_TARGET, run, at=NOW + 70, node="")
    plan.finished(S3_TARGET, run, done, world_with_store(NOW + 70, store()))
    later: dict[Target, Launch] = {}
    for second in range(int(INTERVAL) + 2):
        later.update(launched(plan.tick(world_with_store(NOW + 71 + second, store()))))
    assert later[S3_TARGET].request.previous == done


def test_an_object_store_probe_has_its_own_status_and_events() -> None:
    plan = planner(status_interval=0)
    run = next(iter(launched_store_run(plan)))
    failure = outcome(
        S3_TARGET, run, Result.FAILURE, at=NOW + 70, node="", phase=Phase.PUT, reason=Reason.ACCESS_DENIED
    )
    actions = plan.finished(S3_TARGET, run, failure, world_with_store(NOW + 70, store()))
    (event,) = of_type(actions, Emit)
    assert (event.probe, event.reason) == (S3_KEY, "ProbeFailed")
    for record in plan.records.values():
        record.status_writing = False
    writes = {w.probe: w for w in of_type(plan.tick(world_with_store(NOW + 71, store())), WriteStatus)}
    document = writes[S3_KEY].document
    assert {c["type"]: c["status"] for c in document["conditions"]} == {"Ready": "False", "Degraded": "True"}
    assert document["lastRun"]["reason"] == "access_denied"
    assert "nodes" not in document


def test_a_deleted_object_store_probe_is_retired_with_its_last_spec() -> None:
    plan = planner()
    plan.tick(world_with_store(NOW, store(generation=3)))
    actions = plan.tick(world_with_store(NOW + 1))
    assert Retire(S3_TARGET, store(generation=3)) in actions
    assert Forget("s3") in actions
    assert S3_KEY not in plan.records


def launched_store_run(plan: Planner) -> dict[str, Launch]:
    found: dict[str, Launch] = {}
    for second in range(int(INTERVAL) + 2):
        for launch in of_type(plan.tick(world_with_store(NOW + second, store())), Launch):
            if launch.request.target == S3_TARGET:
                found[launch.request.pod_name] = launch
    return found
