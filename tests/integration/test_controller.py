"""The controller against the real local cluster (issue 3's acceptance list)."""

from __future__ import annotations

import time

import pytest

from localcluster.components import kwok_node
from tests.conftest import Cluster
from tests.integration.conftest import (
    ControllerFactory,
    ProbeFactory,
    condition,
    mount_volume,
    owned_items,
    owned_objects,
    probe_status,
)
from tests.support.controller import ControllerProcess
from tests.support.kubectl import eventually

pytestmark = pytest.mark.integration

RUNS = "volprobe_probe_runs_total"
FAILURES = "volprobe_probe_failures_total"


def runs(controller: ControllerProcess, probe: str, kind: str, result: str, **labels: str) -> float:
    return controller.scrape().sum(RUNS, probe=probe, kind=kind, result=result, **labels)


def test_standard_class_passes_with_phase_timings_and_ready_status(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory
) -> None:
    probe = make_probe("std", "standard")
    controller = start_controller()

    # Two mount runs: the second finds and verifies what the first wrote, through a new pod.
    eventually("two successful mount runs", lambda: runs(controller, probe, "mount", "success") >= 2, 60)
    eventually("a successful provision run", lambda: runs(controller, probe, "provision", "success") >= 1, 60)
    scrape = controller.scrape()
    assert scrape.sum(FAILURES, probe=probe) == 0
    assert scrape.sum("volprobe_probe_success", probe=probe, kind="mount", node=cluster.real_node) == 1
    for phase in ("provision", "schedule", "mount", "io", "cleanup"):
        assert (
            scrape.sum(
                "volprobe_phase_duration_seconds_count",
                storage_class="standard",
                kind="provision",
                phase=phase,
            )
            >= 1
        ), phase
    for op in ("write", "fsync", "read"):
        assert scrape.sum("volprobe_io_latency_seconds_count", storage_class="standard", op=op) > 0, op

    def ready() -> bool:
        return condition(cluster.kubectl, probe, "Ready").get("status") == "True"

    eventually("status Ready", ready, 30)
    # Ready needs one passing target; the provision result may land in status a moment later.
    eventually("provision result in status", lambda: "provision" in probe_status(cluster.kubectl, probe), 30)
    status = probe_status(cluster.kubectl, probe)
    assert status["nodes"]["selected"] == 1
    assert status["nodes"]["passing"] == 1
    assert status["nodes"]["failing"] == 0
    assert status["provision"]["result"] == "success"
    assert condition(cluster.kubectl, probe, "Degraded")["status"] == "False"
    assert (
        status["observedGeneration"] == cluster.kubectl.get("storageprobe", probe)["metadata"]["generation"]
    )

    claim = cluster.kubectl.json("get", "pvc", "-n", controller.namespace, "-l", f"volprobe.io/probe={probe}")
    generation = int(claim["items"][0]["metadata"]["annotations"]["volprobe.io/generation"])
    assert generation >= 2, "each successful mount run writes the next generation"
    printed = cluster.kubectl.run("get", "storageprobe", probe)
    assert "standard" in printed
    assert "True" in printed


def test_broken_class_fails_with_provisioning_timeout_and_degraded_status(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory
) -> None:
    timeouts = {"provisionSeconds": 10}
    probe = make_probe("brk", "broken", timeouts=timeouts)
    started = time.monotonic()
    controller = start_controller()

    def failed_both() -> bool:
        scrape = controller.scrape()
        return all(
            scrape.sum(FAILURES, probe=probe, kind=kind, phase="provision", reason="provisioning_timeout")
            >= 1
            for kind in ("provision", "mount")
        )

    # interval (10 s) + provision timeout (10 s) + slack for the controller's start.
    eventually("provisioning_timeout failures for both kinds", failed_both, 40)
    assert time.monotonic() - started < 45
    scrape = controller.scrape()
    assert scrape.sum(RUNS, probe=probe, result="success") == 0
    assert scrape.sum(RUNS, probe=probe, kind="provision", result="timeout") >= 1

    def degraded() -> dict[str, str] | None:
        found = condition(cluster.kubectl, probe, "Degraded")
        return found if found.get("status") == "True" else None

    found = eventually("Degraded condition", degraded, 30)
    assert found["reason"] == "ProvisioningTimeout"
    assert "volprobe.io/does-not-exist" in found["message"]
    assert condition(cluster.kubectl, probe, "Ready")["status"] == "False"

    def failure_event() -> bool:
        events = cluster.kubectl.json(
            "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={probe}"
        )["items"]
        return any(e["reason"] == "ProbeFailed" and "provisioning_timeout" in e["message"] for e in events)

    eventually("a ProbeFailed event on the StorageProbe", failure_event, 30)


def test_cordoned_node_is_skipped_not_failed_and_resumes(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory
) -> None:
    probe = make_probe("cdn", "standard")
    controller = start_controller()
    eventually("a first success", lambda: runs(controller, probe, "mount", "success") >= 1, 60)
    node = cluster.real_node
    cluster.kubectl.run("cordon", node)
    try:
        # A run already on the node when it was cordoned goes on to its end (cordoning evicts
        # nothing); one still waiting for the node is given up as a skip. Wait for that first,
        # then for two slots (10 s each) to be skipped: the events this test is about.
        eventually(
            "no run in flight",
            lambda: controller.scrape().sum("volprobe_runs_in_flight", probe=probe) == 0,
            60,
        )
        skipped_before = runs(controller, probe, "mount", "skipped")
        eventually(
            "two skipped mount slots while cordoned",
            lambda: runs(controller, probe, "mount", "skipped") >= skipped_before + 2,
            2 * 10 + 10,
        )
        scrape = controller.scrape()
        assert scrape.sum("volprobe_node_skipped", probe=probe, node=node, reason="cordoned") == 1
        assert scrape.sum(FAILURES, probe=probe) == 0
        eventually(
            "a skipped provision slot", lambda: runs(controller, probe, "provision", "skipped") >= 1, 10 + 10
        )
        eventually(
            "status counts the skip",
            lambda: probe_status(cluster.kubectl, probe).get("nodes", {}).get("skipped") == 1,
            20,
        )
        assert probe_status(cluster.kubectl, probe)["skippedNodes"] == [{"node": node, "reason": "cordoned"}]
    finally:
        cluster.kubectl.run("uncordon", node)
    successes = runs(controller, probe, "mount", "success")
    eventually("success after uncordon", lambda: runs(controller, probe, "mount", "success") > successes, 40)
    scrape = controller.scrape()
    assert not scrape.has("volprobe_node_skipped", probe=probe, node=node)
    assert scrape.sum(FAILURES, probe=probe) == 0


def test_a_run_waiting_for_a_node_ends_as_a_skip_when_the_only_node_is_cordoned(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory, namespace: str
) -> None:
    """Issue 15's race, made deterministic: a provision pod created just before the only node
    was cordoned waits for a node. It used to sit out the 120 s provision deadline (the class
    binds on first consumer) before being demoted to a skip, holding the slot meanwhile."""
    # Requests no node can satisfy keep the pod Pending for as long as the test needs.
    unschedulable = {"requests": {"cpu": "512", "memory": "32Mi"}, "limits": {"cpu": "512", "memory": "64Mi"}}
    probe = make_probe("wai", "standard", mount={"enabled": False}, pod={"resources": unschedulable})
    controller = start_controller()

    def pending_pod() -> str | None:
        pods = owned_items(cluster.kubectl, namespace, probe, "pods")
        return pods[0]["metadata"]["name"] if pods and not pods[0]["spec"].get("nodeName") else None

    pod = eventually("a provision pod waiting for a node", pending_pod, 30)
    node = cluster.real_node
    cluster.kubectl.run("cordon", node)
    try:
        cordoned = time.monotonic()
        eventually(
            "the waiting run counted as skipped",
            lambda: runs(controller, probe, "provision", "skipped") >= 1,
            20,
        )
        assert time.monotonic() - cordoned < 20
        eventually("its pod deleted", lambda: cluster.kubectl.get("pod", pod, namespace) is None, 30)
        assert controller.scrape().sum(FAILURES, probe=probe) == 0
    finally:
        cluster.kubectl.run("uncordon", node)


def test_killed_controller_leaks_nothing_and_counts_each_run_once(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory, namespace: str
) -> None:
    # `broken` keeps each run in flight for the whole provision timeout: easy to kill mid-run.
    probe = make_probe("kil", "broken", timeouts={"provisionSeconds": 15}, mount={"enabled": False})
    first = start_controller()

    def in_flight_pod() -> str | None:
        pods = owned_objects(cluster.kubectl, namespace, probe)["pods"]
        return pods[0] if pods else None

    pod = eventually("a run in flight", in_flight_pod, 30)
    first.kill()
    assert pod not in first.log_text()

    second = start_controller()
    eventually("the adopted run to be counted", lambda: runs(second, probe, "provision", "timeout") >= 1, 40)
    assert second.log_text().count(f"run {pod} ") == 1
    assert f"adopting run {pod}" in second.log_text()
    eventually("more runs after the restart", lambda: runs(second, probe, "provision", "timeout") >= 2, 40)

    # Every run is counted by exactly one process, exactly once.
    logged = [
        line
        for text in (first.log_text(), second.log_text())
        for line in text.splitlines()
        if " timeout: provisioning_timeout" in line
    ]
    pods = [line.split(" run ", 1)[1].split()[0] for line in logged]
    assert len(pods) == len(set(pods)), pods
    assert runs(second, probe, "provision", "timeout") == len(pods)

    second.stop()
    leftover = owned_objects(cluster.kubectl, namespace, probe)
    assert len(leftover["pods"]) <= 1, "at most the run in flight when it stopped"


def test_deleting_a_probe_removes_everything_it_owned(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory, namespace: str
) -> None:
    probe = make_probe("del", "standard")
    controller = start_controller()
    eventually("a success", lambda: runs(controller, probe, "mount", "success") >= 1, 60)
    volume = mount_volume(cluster.kubectl, namespace, probe)

    cluster.kubectl.run("delete", "storageprobe", probe, "--wait=true")
    eventually(
        "pods and claims gone",
        lambda: owned_objects(cluster.kubectl, namespace, probe) == {"pods": [], "pvc": []},
        60,
    )
    eventually("the mount volume gone", lambda: cluster.kubectl.get("pv", volume) is None, 60)
    eventually("the probe's series gone", lambda: not controller.scrape().has(RUNS, probe=probe), 20)


def test_live_changes_converge(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory, namespace: str
) -> None:
    probe = make_probe("chg", "standard")
    controller = start_controller()
    eventually("a mount success", lambda: runs(controller, probe, "mount", "success") >= 1, 60)

    def patch(spec: dict[str, object]) -> None:
        import json

        cluster.kubectl.run("patch", "storageprobe", probe, "--type=merge", "-p", json.dumps({"spec": spec}))

    # Mount probes off: the node's claim (and its volume) go away, the provision probe goes on.
    patch({"mount": {"enabled": False}})
    eventually(
        "the mount claim deleted", lambda: owned_objects(cluster.kubectl, namespace, probe)["pvc"] == [], 40
    )
    eventually(
        "mount series dropped", lambda: not controller.scrape().has(RUNS, probe=probe, kind="mount"), 20
    )
    provisions = runs(controller, probe, "provision", "success")
    eventually("provision goes on", lambda: runs(controller, probe, "provision", "success") > provisions, 40)

    # Provision off too: nothing runs any more.
    patch({"provision": {"enabled": False}})
    eventually("paused", lambda: condition(cluster.kubectl, probe, "Ready").get("reason") == "Paused", 30)
    time.sleep(12)
    eventually("no pods left", lambda: owned_objects(cluster.kubectl, namespace, probe)["pods"] == [], 30)

    # Back on, with a node selector that matches nothing: no mount target, provision skipped.
    nothing = {
        "nodeSelectorTerms": [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["no-such-node"]}]}
        ]
    }
    patch({"mount": {"enabled": True}, "provision": {"enabled": True}, "nodeSelector": nothing})
    eventually(
        "zero nodes selected",
        lambda: probe_status(cluster.kubectl, probe).get("nodes", {}).get("selected") == 0,
        30,
    )
    assert owned_objects(cluster.kubectl, namespace, probe)["pvc"] == []

    # Select the real node again and slow down: the claim comes back and runs follow the new interval.
    patch(
        {
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {
                        "matchFields": [
                            {"key": "metadata.name", "operator": "In", "values": [cluster.real_node]}
                        ]
                    }
                ]
            },
            "intervalSeconds": 30,
        }
    )
    eventually("the claim recreated", lambda: owned_objects(cluster.kubectl, namespace, probe)["pvc"], 60)
    eventually("mount succeeds again", lambda: runs(controller, probe, "mount", "success") >= 1, 60)
    counted = runs(controller, probe, "mount", "success") + runs(controller, probe, "mount", "failure")
    time.sleep(31)
    later = runs(controller, probe, "mount", "success") + runs(controller, probe, "mount", "failure")
    assert later - counted in (1, 2), "one run per 30 s interval"
    assert controller.scrape().sum(FAILURES, probe=probe) == 0


def test_storage_class_created_later_starts_probing(
    cluster: Cluster, make_probe: ProbeFactory, start_controller: ControllerFactory, test_id: str
) -> None:
    storage_class = f"later-{test_id}"
    probe = make_probe("lat", storage_class)
    controller = start_controller()

    def not_found() -> bool:
        return condition(cluster.kubectl, probe, "Degraded").get("reason") == "StorageClassNotFound"

    eventually("Degraded: StorageClassNotFound", not_found, 30)
    eventually(
        "storage_class_missing counted",
        lambda: controller.scrape().sum(FAILURES, probe=probe, reason="storage_class_missing") >= 1,
        30,
    )
    events = cluster.kubectl.json(
        "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={probe}"
    )["items"]
    assert any(e["reason"] == "StorageClassNotFound" for e in events)

    cluster.kubectl.apply(
        {
            "apiVersion": "storage.k8s.io/v1",
            "kind": "StorageClass",
            "metadata": {"name": storage_class},
            "provisioner": "rancher.io/local-path",
            "volumeBindingMode": "WaitForFirstConsumer",
            "reclaimPolicy": "Delete",
        }
    )
    try:
        eventually("probing starts by itself", lambda: runs(controller, probe, "mount", "success") >= 1, 60)
        eventually("Ready", lambda: condition(cluster.kubectl, probe, "Ready").get("status") == "True", 30)
    finally:
        cluster.kubectl.run("delete", "storageprobe", probe, "--wait=true")
        cluster.kubectl.run("delete", "storageclass", storage_class, "--ignore-not-found")


def test_two_replicas_only_the_leader_probes_and_fails_over(
    make_probe: ProbeFactory, start_controller: ControllerFactory, test_id: str
) -> None:
    probe = make_probe("two", "standard")
    lease = f"--lease-name=volprobe-{test_id}"
    first = start_controller(lease, leader_elect=True, wait=False)
    second = start_controller(lease, leader_elect=True, wait=False)

    def one_leader() -> tuple[ControllerProcess, ControllerProcess] | None:
        ready = [c for c in (first, second) if c.get("/readyz")[0] == 200]
        if len(ready) != 1:
            return None
        leader = ready[0]
        return leader, second if leader is first else first

    leader, follower = eventually("exactly one ready leader", one_leader, 60)
    assert follower.get("/healthz")[0] == 200, "a follower is alive, just not ready"
    # Once its caches are synced (it may still be listing), a follower is unready for one reason.
    eventually("the follower synced", lambda: follower.get("/readyz") == (503, "not the leader\n"), 30)
    assert leader.scrape().sum("volprobe_leader") == 1
    assert follower.scrape().sum("volprobe_leader") == 0
    eventually("the leader probes", lambda: runs(leader, probe, "mount", "success") >= 1, 60)
    assert not follower.scrape().has(RUNS, probe=probe), "a follower never counts runs"

    leader.stop()  # graceful: releases the Lease, so the follower takes over at once
    started = time.monotonic()
    eventually("the follower leads", lambda: follower.get("/readyz")[0] == 200, 30)
    takeover = time.monotonic() - started
    eventually("probing continues", lambda: runs(follower, probe, "mount", "success") >= 1, 60)
    assert takeover < 15, f"takeover took {takeover:.1f}s"


def test_malformed_and_oversized_reports_are_bad_report_and_never_crash(
    make_probe: ProbeFactory, start_controller: ControllerFactory
) -> None:
    probe = make_probe("bad", "standard", provision={"enabled": False})
    garbage = "python3 -c \"import sys; open('/dev/termination-log', 'w').write('{not json' + 'x' * 5000)\""
    controller = start_controller(f"--agent-command={garbage}")

    def bad_reports() -> float:
        return controller.scrape().sum(FAILURES, probe=probe, phase="report", reason="bad_report")

    eventually("bad_report failures", lambda: bad_reports() >= 2, 60)
    assert controller.alive()
    assert controller.get("/healthz")[0] == 200


def test_hung_agent_times_out_and_does_not_block_later_runs(
    make_probe: ProbeFactory, start_controller: ControllerFactory, namespace: str, cluster: Cluster
) -> None:
    probe = make_probe("hng", "standard", provision={"enabled": False}, timeouts={"ioSeconds": 5})
    controller = start_controller('--agent-command=sh -c "sleep 3600"')

    def timeouts() -> float:
        return controller.scrape().sum(FAILURES, probe=probe, kind="mount", phase="io", reason="timeout")

    eventually("io timeouts, one per interval", lambda: timeouts() >= 2, 60)
    assert controller.scrape().sum(RUNS, probe=probe, kind="mount", result="timeout") >= 2
    eventually(
        "hung pods are deleted",
        lambda: len(owned_objects(cluster.kubectl, namespace, probe)["pods"]) <= 1,
        30,
    )


def test_new_node_is_probed_within_an_interval_and_a_removed_one_leaves_nothing(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    namespace: str,
    test_id: str,
) -> None:
    # A kwok node runs no containers (its stages fake the agent's report), which is enough to
    # see the controller follow nodes coming and going; the real provisioner still makes its volume.
    node = f"kwok-new-{test_id}"
    interval = 10
    probe = make_probe(
        "nod",
        "standard",
        intervalSeconds=interval,
        provision={"enabled": False},
        nodeSelector={
            "nodeSelectorTerms": [
                {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            ]
        },
        pod={"tolerations": [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]},
    )
    controller = start_controller()
    eventually(
        "no node selected yet",
        lambda: probe_status(cluster.kubectl, probe).get("nodes", {}).get("selected") == 0,
        30,
    )

    cluster.kubectl.apply(kwok_node(node))
    volume = ""
    try:
        added = time.monotonic()
        first_pod = eventually(
            "the new node's first probe pod",
            lambda: owned_items(cluster.kubectl, namespace, probe, "pods"),
            30,
        )[0]
        assert time.monotonic() - added <= interval + 3, "the first run starts within one interval"
        affinity = first_pod["spec"]["affinity"]["nodeAffinity"][
            "requiredDuringSchedulingIgnoredDuringExecution"
        ]
        assert affinity["nodeSelectorTerms"] == [
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
        ], "pinned by the node's name, not its hostname label"
        eventually(
            "a mount success on the new node",
            lambda: runs(controller, probe, "mount", "success", node=node) >= 1,
            60,
        )
        volume = mount_volume(cluster.kubectl, namespace, probe)
        cluster.kubectl.run("delete", "node", node, "--wait=true")

        eventually(
            "the node's claim and pods gone",
            lambda: owned_objects(cluster.kubectl, namespace, probe) == {"pods": [], "pvc": []},
            40,
        )
        eventually("the node's series gone", lambda: not controller.scrape().has(RUNS, node=node), 20)
        assert not controller.scrape().has("volprobe_probe_success", node=node)
        eventually(
            "status counts no node",
            lambda: probe_status(cluster.kubectl, probe).get("nodes", {}).get("selected") == 0,
            20,
        )
    finally:
        cluster.kubectl.run("delete", "node", node, "--ignore-not-found", "--wait=true")
        # The provisioner cannot clean a volume on a node that no longer exists; that volume is ours.
        if volume:
            cluster.kubectl.run("delete", "pv", volume, "--ignore-not-found", "--wait=false")
