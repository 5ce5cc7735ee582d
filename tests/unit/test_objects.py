"""The pods and claims volprobe creates: bounded, locked down, placed right, and findable again."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest

from tests.unit.factories import NAMESPACE, NOW, node_json
from volprobe.kinds import BY_NAME
from volprobe.model.manifests import (
    ANNOTATION_NODE,
    MAX_AVOIDED_NODES,
    AgentImage,
    labels,
    lasting_claim,
    node_claim_name,
    pod_name,
    probe_pod,
    target_of,
)
from volprobe.model.nodes import selected
from volprobe.model.slots import slot_id
from volprobe.model.spec import ProbeSpec, parse_probe
from volprobe.model.targets import Target
from volprobe.model.views import NodeView

AGENT = AgentImage("registry.example.com/volprobe:0.1.0")
SLOT = slot_id(NOW + 37.4)
LONG_PROBE = "p" * 40
LONG_NODE = ".".join(["ip-10-0-0-1"] + ["a" * 60] * 4)[:253]
DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
ZONE_TERM = {
    "matchExpressions": [{"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["eu-1a"]}]
}


def probe(name: str = "fast-ssd", **spec: Any) -> ProbeSpec:
    return parse_probe(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": name, "uid": "1d4a5b6c-7e8f-4a0b-9c1d-2e3f4a5b6c7d", "generation": 2},
            "spec": {"storageClassName": "fast-ssd", **spec},
        }
    )


def block_probe() -> ProbeSpec:
    return probe(volume={"volumeMode": "Block"})


def name_of(target: Target, slot: str = SLOT) -> str:
    return pod_name(target, BY_NAME[target.kind].short, slot)


def make_pod(spec: ProbeSpec, target: Target, **options: Any) -> dict[str, Any]:
    return probe_pod(spec, target, name=name_of(target), namespace=NAMESPACE, agent=AGENT, **options)


def provision_pod(spec: ProbeSpec | None = None, **options: Any) -> dict[str, Any]:
    spec = spec or probe()
    return make_pod(spec, Target(spec.name, "provision"), **options)


def mount_pod(spec: ProbeSpec | None = None, node: str = "worker-1", **options: Any) -> dict[str, Any]:
    spec = spec or probe()
    return make_pod(spec, Target(spec.name, "mount", node), claim=node_claim_name(spec.name, node), **options)


def all_pods() -> list[dict[str, Any]]:
    return [provision_pod(), mount_pod(), provision_pod(block_probe()), mount_pod(block_probe())]


def container(pod: dict[str, Any]) -> dict[str, Any]:
    found: dict[str, Any]
    (found,) = pod["spec"]["containers"]
    return found


def terms(pod: dict[str, Any]) -> list[dict[str, Any]]:
    affinity = pod["spec"]["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    found: list[dict[str, Any]] = affinity["nodeSelectorTerms"]
    return found


def env(pod: dict[str, Any]) -> dict[str, Any]:
    return {item["name"]: item.get("value", item.get("valueFrom")) for item in container(pod)["env"]}


def scheduler_accepts(pod: dict[str, Any], node: NodeView) -> bool:
    """Would the scheduler's required node affinity admit this node? (Kubernetes term semantics.)

    `nodes.selected` implements those semantics plus volprobe's own Linux-only rule; presenting
    the node as Linux to it leaves exactly the affinity check (the node's labels are unchanged).
    """
    return selected(terms(pod), dataclasses.replace(node, os="linux"))


# -- resources and security ------------------------------------------------------------------------


@pytest.mark.parametrize("pod", all_pods(), ids=["provision", "mount", "provision-block", "mount-block"])
def test_every_pod_has_cpu_and_memory_requests_and_limits(pod: dict[str, Any]) -> None:
    resources = container(pod)["resources"]
    assert set(resources["requests"]) >= {"cpu", "memory"}
    assert set(resources["limits"]) >= {"cpu", "memory"}


def test_pod_resources_come_from_the_probe() -> None:
    custom = {"requests": {"cpu": "50m", "memory": "48Mi"}, "limits": {"cpu": "1", "memory": "128Mi"}}
    assert container(mount_pod(probe(pod={"resources": custom})))["resources"] == custom


@pytest.mark.parametrize("pod", all_pods(), ids=["provision", "mount", "provision-block", "mount-block"])
def test_pod_gets_no_credentials_and_no_service_links(pod: dict[str, Any]) -> None:
    assert pod["spec"]["automountServiceAccountToken"] is False
    assert pod["spec"]["enableServiceLinks"] is False


@pytest.mark.parametrize("pod", all_pods(), ids=["provision", "mount", "provision-block", "mount-block"])
def test_pod_never_restarts_and_has_an_active_deadline(pod: dict[str, Any]) -> None:
    assert pod["spec"]["restartPolicy"] == "Never"
    assert isinstance(pod["spec"]["activeDeadlineSeconds"], int)
    assert pod["spec"]["activeDeadlineSeconds"] > 0


def test_active_deadline_outlasts_the_controller_deadlines_of_the_pod_phases() -> None:
    spec = probe(timeouts={"scheduleSeconds": 30, "mountSeconds": 90, "ioSeconds": 45})
    deadline = provision_pod(spec)["spec"]["activeDeadlineSeconds"]
    assert deadline > 30 + 90 + 45


@pytest.mark.parametrize("pod", all_pods(), ids=["provision", "mount", "provision-block", "mount-block"])
def test_container_is_locked_down(pod: dict[str, Any]) -> None:
    security = container(pod)["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    assert pod["spec"]["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}


@pytest.mark.parametrize("pod", [provision_pod(), mount_pod()], ids=["provision", "mount"])
def test_filesystem_pods_run_as_non_root(pod: dict[str, Any]) -> None:
    security = pod["spec"]["securityContext"]
    assert security["runAsNonRoot"] is True
    assert security["runAsUser"] != 0
    assert security["runAsGroup"] != 0


def test_report_goes_to_the_termination_message_file() -> None:
    agent = container(mount_pod())
    assert agent["terminationMessagePath"] == "/dev/termination-log"
    assert agent["terminationMessagePolicy"] == "File"


def test_agent_gets_the_agent_deadline_and_the_io_settings() -> None:
    spec = probe(timeouts={"ioSeconds": 50}, io={"payloadBytes": 8 << 20, "blockBytes": 65536})
    args = container(mount_pod(spec))["args"]
    assert args[args.index("--deadline") + 1] == "40"
    assert args[args.index("--payload-bytes") + 1] == str(8 << 20)
    assert args[args.index("--block-bytes") + 1] == "65536"


# -- volumes -----------------------------------------------------------------------------------------


def test_filesystem_mode_mounts_the_volume() -> None:
    agent = container(mount_pod())
    assert agent["volumeMounts"] == [{"name": "volume", "mountPath": "/volume"}]
    assert "volumeDevices" not in agent
    assert agent["args"][2:4] == ["--path", "/volume"]


def test_block_mode_uses_a_volume_device() -> None:
    agent = container(mount_pod(block_probe()))
    assert agent["volumeDevices"] == [{"name": "volume", "devicePath": "/dev/volprobe"}]
    assert "volumeMounts" not in agent
    assert agent["args"][2:4] == ["--device", "/dev/volprobe"]


def test_mount_pod_uses_the_node_claim() -> None:
    (volume,) = mount_pod(node="worker-9")["spec"]["volumes"]
    assert volume["persistentVolumeClaim"] == {"claimName": node_claim_name("fast-ssd", "worker-9")}


def test_provision_pod_gets_a_fresh_ephemeral_claim_of_the_class() -> None:
    (volume,) = provision_pod(block_probe())["spec"]["volumes"]
    claim = volume["ephemeral"]["volumeClaimTemplate"]
    assert claim["spec"] == {
        "storageClassName": "fast-ssd",
        "accessModes": ["ReadWriteOnce"],
        "volumeMode": "Block",
        "resources": {"requests": {"storage": "64Mi"}},
    }
    assert target_of(claim["metadata"]["labels"], {}) == Target("fast-ssd", "provision")


def test_mount_claim_requests_the_probe_volume() -> None:
    spec = probe(volume={"size": "1Gi", "accessMode": "ReadWriteOncePod"})
    name = node_claim_name("fast-ssd", "worker-9")
    claim = lasting_claim(spec, Target("fast-ssd", "mount", "worker-9"), name, NAMESPACE)
    assert claim["metadata"]["name"] == name
    assert claim["spec"]["resources"] == {"requests": {"storage": "1Gi"}}
    assert claim["spec"]["accessModes"] == ["ReadWriteOncePod"]


# -- placement ---------------------------------------------------------------------------------------


def test_mount_pod_is_pinned_by_node_name_with_match_fields() -> None:
    assert terms(mount_pod(node="ip-10-0-3-7.eu-west-1.compute.internal")) == [
        {
            "matchFields": [
                {
                    "key": "metadata.name",
                    "operator": "In",
                    "values": ["ip-10-0-3-7.eu-west-1.compute.internal"],
                }
            ]
        }
    ]


def test_mount_pod_lands_on_its_node_even_when_the_hostname_label_differs() -> None:
    name = "ip-10-0-3-7.eu-west-1.compute.internal"
    node = NodeView.of(node_json(name, labels={"kubernetes.io/hostname": "ip-10-0-3-7"}))
    other = NodeView.of(node_json("ip-10-0-3-8.eu-west-1.compute.internal"))
    pod = mount_pod(node=name)
    assert scheduler_accepts(pod, node)
    assert not scheduler_accepts(pod, other)


def test_mount_pod_ignores_avoided_nodes() -> None:
    assert terms(mount_pod(node="worker-1", avoid_nodes=["worker-2"])) == terms(mount_pod(node="worker-1"))


def test_provision_pod_without_selector_runs_on_any_linux_node() -> None:
    assert terms(provision_pod()) == [
        {"matchExpressions": [{"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}]}
    ]


def test_provision_pod_follows_the_probe_node_selector_terms() -> None:
    ssd_term = {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}]}
    spec = probe(nodeSelector={"nodeSelectorTerms": [ZONE_TERM, ssd_term]})
    linux = {"key": "kubernetes.io/os", "operator": "In", "values": ["linux"]}
    assert terms(provision_pod(spec)) == [
        {"matchExpressions": [*ZONE_TERM["matchExpressions"], linux]},
        {"matchExpressions": [*ssd_term["matchExpressions"], linux]},
    ]


def test_provision_pod_avoids_each_avoided_node_with_one_not_in_requirement() -> None:
    spec = probe(nodeSelector={"nodeSelectorTerms": [ZONE_TERM]})
    (term,) = terms(provision_pod(spec, avoid_nodes=["worker-3", "worker-1"]))
    assert term["matchExpressions"][: len(ZONE_TERM["matchExpressions"])] == ZONE_TERM["matchExpressions"]
    assert term["matchFields"] == [
        {"key": "metadata.name", "operator": "NotIn", "values": ["worker-1"]},
        {"key": "metadata.name", "operator": "NotIn", "values": ["worker-3"]},
    ]


def test_avoided_nodes_are_added_to_every_term() -> None:
    other = {"matchExpressions": [{"key": "disk", "operator": "Exists"}]}
    spec = probe(nodeSelector={"nodeSelectorTerms": [ZONE_TERM, other]})
    for term in terms(provision_pod(spec, avoid_nodes=["worker-1"])):
        assert {"key": "metadata.name", "operator": "NotIn", "values": ["worker-1"]} in term["matchFields"]


def test_avoided_nodes_are_kept_off_by_the_scheduler() -> None:
    pod = provision_pod(avoid_nodes=["worker-1"])
    assert not scheduler_accepts(pod, NodeView.of(node_json("worker-1")))
    assert scheduler_accepts(pod, NodeView.of(node_json("worker-2")))


def test_avoided_nodes_are_capped() -> None:
    avoid = [f"worker-{index:04d}" for index in range(MAX_AVOIDED_NODES + 50)]
    (term,) = terms(provision_pod(avoid_nodes=avoid))
    assert len(term["matchFields"]) == MAX_AVOIDED_NODES
    assert all(len(requirement["values"]) == 1 for requirement in term["matchFields"])


def test_probe_terms_are_not_modified_by_avoiding_nodes() -> None:
    spec = probe(nodeSelector={"nodeSelectorTerms": [ZONE_TERM]})
    provision_pod(spec, avoid_nodes=["worker-1"])
    assert spec.node_selector_terms == (ZONE_TERM,)
    assert "matchFields" not in ZONE_TERM


def test_provision_pod_with_selector_terms_stays_on_linux_nodes() -> None:
    spec = probe(nodeSelector={"nodeSelectorTerms": [ZONE_TERM]})
    windows = NodeView.of(node_json("win-1", os="windows", labels={"topology.kubernetes.io/zone": "eu-1a"}))
    assert not selected(spec.node_selector_terms, windows)
    assert not scheduler_accepts(provision_pod(spec), windows)


# -- names and labels --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["provision", "mount"])
def test_pod_names_fit_a_dns_label_with_the_longest_probe_and_node_names(kind: str) -> None:
    assert len(LONG_NODE) == 253
    target = Target(LONG_PROBE, kind, LONG_NODE if kind == "mount" else "")
    name = name_of(target)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)


def test_mount_claim_name_fits_a_dns_label_with_the_longest_names() -> None:
    name = node_claim_name(LONG_PROBE, LONG_NODE)
    assert len(name) <= 63
    assert DNS_LABEL.match(name)


def test_pod_names_differ_per_node_and_per_slot() -> None:
    names = {
        name_of(Target("fast-ssd", "mount", node), slot)
        for node in ("worker-1", "worker-2")
        for slot in (slot_id(NOW), slot_id(NOW + 60))
    }
    assert len(names) == 4


@pytest.mark.parametrize(
    "target",
    [
        Target("fast-ssd", "provision"),
        Target("fast-ssd", "mount", "worker-1"),
        Target(LONG_PROBE, "mount", LONG_NODE),
    ],
    ids=["provision", "mount", "longest"],
)
def test_target_is_recovered_from_the_pod_labels_and_annotations(target: Target) -> None:
    metadata = make_pod(probe(target.probe), target)["metadata"]
    assert target_of(metadata["labels"], metadata["annotations"]) == target


def test_target_is_recovered_from_the_mount_claim() -> None:
    target = Target("fast-ssd", "mount", LONG_NODE)
    metadata = lasting_claim(probe(), target, node_claim_name("fast-ssd", LONG_NODE), NAMESPACE)["metadata"]
    assert target_of(metadata["labels"], metadata["annotations"]) == Target("fast-ssd", "mount", LONG_NODE)


def test_label_values_stay_valid_with_the_longest_names() -> None:
    for value in labels(Target(LONG_PROBE, "mount", LONG_NODE)).values():
        assert len(value) <= 63


def test_objects_not_made_by_volprobe_have_no_target() -> None:
    assert target_of({"app": "web"}, {}) is None
    assert target_of({"app.kubernetes.io/managed-by": "helm", "volprobe.io/probe": "x"}, {}) is None


def test_mount_object_without_its_node_annotation_is_no_node_target() -> None:
    """A per-node kind without a node is no target the planner has: it is swept as a leftover."""
    metadata = mount_pod()["metadata"]
    annotations = {k: v for k, v in metadata["annotations"].items() if k != ANNOTATION_NODE}
    assert target_of(metadata["labels"], annotations) == Target("fast-ssd", "mount")


def test_user_pod_labels_cannot_hide_a_pod_from_volprobe() -> None:
    spec = probe(pod={"labels": {"team": "storage", "volprobe.io/probe": "other"}})
    metadata = mount_pod(spec)["metadata"]
    assert metadata["labels"]["team"] == "storage"
    assert target_of(metadata["labels"], metadata["annotations"]) == Target("fast-ssd", "mount", "worker-1")


def test_pod_records_its_run_and_probe_and_is_owned_by_the_probe() -> None:
    pod = mount_pod()
    annotations = pod["metadata"]["annotations"]
    assert annotations["volprobe.io/run"] == pod["metadata"]["name"]
    assert annotations["volprobe.io/probe-uid"] == "1d4a5b6c-7e8f-4a0b-9c1d-2e3f4a5b6c7d"
    (owner,) = pod["metadata"]["ownerReferences"]
    assert (owner["kind"], owner["name"], owner["controller"]) == ("StorageProbe", "fast-ssd", True)


# -- environment and pod settings ------------------------------------------------------------------


def test_expected_generation_is_absent_unless_given() -> None:
    assert "VOLPROBE_EXPECT_GENERATION" not in env(mount_pod())


@pytest.mark.parametrize("generation", [0, 7])
def test_expected_generation_is_passed_when_given(generation: int) -> None:
    assert env(mount_pod(expect_generation=generation))["VOLPROBE_EXPECT_GENERATION"] == str(generation)


def test_agent_knows_its_run_probe_kind_class_and_node() -> None:
    pod = mount_pod()
    variables = env(pod)
    assert variables["VOLPROBE_RUN_ID"] == pod["metadata"]["name"]
    assert (variables["VOLPROBE_PROBE"], variables["VOLPROBE_KIND"]) == ("fast-ssd", "mount")
    assert variables["VOLPROBE_STORAGE_CLASS"] == "fast-ssd"
    assert variables["VOLPROBE_NODE"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}


def test_pod_settings_of_the_probe_are_applied() -> None:
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}]
    spec = probe(
        pod={
            "tolerations": tolerations,
            "priorityClassName": "system-node-critical",
            "imagePullSecrets": [{"name": "regcred"}],
            "annotations": {"team": "storage"},
        }
    )
    pod = mount_pod(spec)
    assert pod["spec"]["tolerations"] == tolerations
    assert pod["spec"]["priorityClassName"] == "system-node-critical"
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["metadata"]["annotations"]["team"] == "storage"
