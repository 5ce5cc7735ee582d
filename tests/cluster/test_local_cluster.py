"""The local cluster is a real one: real API server, scheduler, controllers, kubelet, containers,
dynamic provisioning, garbage collection and kwok nodes (issue 2's acceptance list)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from localcluster.components import NODE_TYPE_LABEL
from localcluster.config import read_versions
from tests.conftest import Cluster
from tests.support.kubectl import eventually

pytestmark = pytest.mark.integration

RESOURCES = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "64Mi"}}

WRITE_FSYNC_READ = """
import os
path = '/data/probe.txt'
with open(path, 'w') as handle:
    handle.write('written by a real container')
    handle.flush()
    os.fsync(handle.fileno())
directory = os.open('/data', os.O_RDONLY)
os.fsync(directory)
os.close(directory)
with open(path) as handle:
    content = handle.read()
assert content == 'written by a real container', content
print('read back:', content)
"""


def python_pod(
    name: str,
    script: str,
    *,
    volume: dict[str, Any] | None = None,
    node: str | None = None,
    resources: dict[str, Any] | None = None,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": read_versions()["BASE_IMAGE"],
        "imagePullPolicy": "Never",
        "command": ["python3", "-c", script],
        "resources": resources or RESOURCES,
    }
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": [container], "dnsPolicy": "Default"}
    if node:
        spec["nodeSelector"] = {NODE_TYPE_LABEL: node}
    if volume:
        container["volumeMounts"] = [{"name": "data", "mountPath": "/data"}]
        spec["volumes"] = [{"name": "data", **volume}]
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec}


def claim(name: str, storage_class: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": storage_class,
            "resources": {"requests": {"storage": "16Mi"}},
        },
    }


def pod_phase(cluster: Cluster, name: str, namespace: str) -> str | None:
    pod = cluster.kubectl.get("pod", name, namespace)
    return pod["status"].get("phase") if pod else None


def test_server_is_v1_34_and_every_node_is_ready(cluster: Cluster) -> None:
    version = cluster.kubectl.json("version")
    assert version["serverVersion"]["gitVersion"] == read_versions()["KUBERNETES_VERSION"]
    assert re.fullmatch(r"v1\.34\.\d+", version["serverVersion"]["gitVersion"])
    assert re.fullmatch(r"v1\.34\.\d+", version["clientVersion"]["gitVersion"])

    nodes = cluster.kubectl.json("get", "nodes")["items"]
    kinds = {node["metadata"]["name"]: node["metadata"]["labels"].get(NODE_TYPE_LABEL) for node in nodes}
    assert kinds[cluster.real_node] == "real"
    assert sum(1 for kind in kinds.values() if kind == "kwok") >= 3
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True", node["metadata"]["name"]
    real = next(n for n in nodes if n["metadata"]["name"] == cluster.real_node)
    assert real["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert real["status"]["nodeInfo"]["kubeletVersion"] == read_versions()["KUBERNETES_VERSION"]


def test_standard_claim_is_written_fsynced_read_and_deleted_with_its_volume(
    cluster: Cluster, namespace: str
) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(claim("data", "standard"), namespace=namespace)
    pod = python_pod(
        "writer", WRITE_FSYNC_READ, volume={"persistentVolumeClaim": {"claimName": "data"}}, node="real"
    )
    kubectl.apply(pod, namespace=namespace)

    eventually("writer pod to succeed", lambda: pod_phase(cluster, "writer", namespace) == "Succeeded", 90)
    assert "read back: written by a real container" in kubectl.run("logs", "writer", "-n", namespace)
    status = kubectl.get("pod", "writer", namespace)["status"]
    assert status["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0

    pv_name = kubectl.get("pvc", "data", namespace)["spec"]["volumeName"]
    pv = kubectl.get("pv", pv_name)
    host_dir = Path(pv["spec"]["hostPath"]["path"])
    assert host_dir.parent == cluster.layout.storage.resolve()
    assert (host_dir / "probe.txt").read_text() == "written by a real container"

    kubectl.delete("pod", "writer", namespace)
    kubectl.delete("pvc", "data", namespace)
    eventually("the PV to be deleted", lambda: kubectl.get("pv", pv_name) is None, 60)
    eventually("the host directory to be removed", lambda: not host_dir.exists(), 60)


def test_generic_ephemeral_volume_lives_and_dies_with_its_pod(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    template = {
        "volumeClaimTemplate": {
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "storageClassName": "standard",
                "resources": {"requests": {"storage": "16Mi"}},
            }
        }
    }
    # The pod sleeps so the claim can be observed while the pod exists.
    script = WRITE_FSYNC_READ + "\nimport time\ntime.sleep(600)\n"
    kubectl.apply(
        python_pod("ephemeral", script, volume={"ephemeral": template}, node="real"), namespace=namespace
    )
    eventually("ephemeral pod to run", lambda: pod_phase(cluster, "ephemeral", namespace) == "Running", 90)

    pvc = kubectl.get("pvc", "ephemeral-data", namespace)
    assert pvc is not None
    assert pvc["status"]["phase"] == "Bound"
    owner = pvc["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Pod", "ephemeral")
    pv_name = pvc["spec"]["volumeName"]

    kubectl.run("delete", "pod", "ephemeral", "-n", namespace, "--grace-period=1")
    eventually(
        "the ephemeral claim to be collected",
        lambda: kubectl.get("pvc", "ephemeral-data", namespace) is None,
        60,
    )
    eventually("its PV to be deleted", lambda: kubectl.get("pv", pv_name) is None, 60)


def test_broken_class_claim_stays_pending_with_a_provisioning_event(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(claim("stuck", "broken"), namespace=namespace)
    kubectl.apply(
        python_pod(
            "waiting", "print('never runs')", volume={"persistentVolumeClaim": {"claimName": "stuck"}}
        ),
        namespace=namespace,
    )

    def provisioning_event() -> dict[str, Any] | None:
        for event in kubectl.events(namespace, "stuck"):
            if event["reason"] == "ExternalProvisioning" and "volprobe.io/does-not-exist" in event["message"]:
                return event
        return None

    eventually("an ExternalProvisioning event for the claim", provisioning_event, 30)
    time.sleep(10)
    assert kubectl.get("pvc", "stuck", namespace)["status"]["phase"] == "Pending"
    pod = kubectl.get("pod", "waiting", namespace)
    assert pod["status"]["phase"] == "Pending"
    assert "nodeName" not in pod["spec"]
    scheduled = {c["type"]: c for c in pod["status"].get("conditions", [])}.get("PodScheduled")
    assert scheduled is not None
    assert scheduled["status"] == "False"


def test_garbage_collector_deletes_dependents(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    kubectl.apply(
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "owner"}}, namespace=namespace
    )
    owner_uid = kubectl.get("configmap", "owner", namespace)["metadata"]["uid"]
    kubectl.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "dependent",
                "ownerReferences": [
                    {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner_uid}
                ],
            },
        },
        namespace=namespace,
    )
    kubectl.delete("configmap", "owner", namespace)
    eventually(
        "the dependent to be garbage-collected",
        lambda: kubectl.get("configmap", "dependent", namespace) is None,
        60,
    )


def test_cronjob_creates_a_job_and_a_pod(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    pod_spec = python_pod("tick", "print('tick')", node="real")["spec"]
    kubectl.apply(
        {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": {"name": "tick"},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"spec": pod_spec}}}},
        },
        namespace=namespace,
    )
    jobs = eventually(
        "the CronJob to create a Job", lambda: kubectl.json("get", "jobs", "-n", namespace)["items"], 90
    )
    assert jobs[0]["metadata"]["ownerReferences"][0]["kind"] == "CronJob"
    job_name = jobs[0]["metadata"]["name"]

    def pod_succeeded() -> bool:
        pods = kubectl.json("get", "pods", "-n", namespace, "-l", f"job-name={job_name}")["items"]
        return any(p["status"].get("phase") == "Succeeded" for p in pods)

    eventually("the Job's pod to succeed", pod_succeeded, 60)


def test_memory_limit_is_enforced_by_oom_kill(cluster: Cluster, namespace: str) -> None:
    hog = "blocks = []\nwhile True:\n    blocks.append(bytearray(8 << 20))\n"
    limits = {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"cpu": "500m", "memory": "48Mi"}}
    cluster.kubectl.apply(python_pod("hog", hog, node="real", resources=limits), namespace=namespace)
    eventually("the hog to fail", lambda: pod_phase(cluster, "hog", namespace) == "Failed", 60)
    terminated = cluster.kubectl.get("pod", "hog", namespace)["status"]["containerStatuses"][0]["state"][
        "terminated"
    ]
    assert terminated["reason"] == "OOMKilled", json.dumps(terminated)
    assert terminated["exitCode"] == 137


def test_kwok_nodes_run_and_complete_pods(cluster: Cluster, namespace: str) -> None:
    pod = python_pod("simulated", "print('not really run')")
    pod["spec"]["nodeSelector"] = {NODE_TYPE_LABEL: "kwok"}
    pod["spec"]["tolerations"] = [{"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}]
    cluster.kubectl.apply(pod, namespace=namespace)
    eventually(
        "the simulated pod to succeed", lambda: pod_phase(cluster, "simulated", namespace) == "Succeeded", 30
    )
    node = cluster.kubectl.get("pod", "simulated", namespace)["spec"]["nodeName"]
    assert node.startswith("kwok-node-")


def test_untolerated_pods_never_land_on_kwok_nodes(cluster: Cluster) -> None:
    for node in cluster.kubectl.json("get", "nodes", "-l", f"{NODE_TYPE_LABEL}=kwok")["items"]:
        assert {"key": "kwok.x-k8s.io/node", "value": "fake", "effect": "NoSchedule"} in node["spec"][
            "taints"
        ]
