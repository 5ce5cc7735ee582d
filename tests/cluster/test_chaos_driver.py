"""The chaos CSI driver's mechanics, through the real kubelet and sidecars, without faults.

Registration with the kubelet, a written Filesystem volume snapshotted, restored and cloned
with its data verified (groundwork for snapshot and clone probes), and a raw Block volume
written by one pod and verified by another. Faults are tests/integration/test_chaos.py's job.
"""

from __future__ import annotations

import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as localcluster
from localcluster import host
from localcluster.components import NODE_TYPE_LABEL
from localcluster.config import read_versions
from tests.cluster.test_local_cluster import RESOURCES, claim, pod_phase, python_pod
from tests.conftest import Cluster
from tests.support.chaos import DRIVER, SNAPSHOT_CLASS, STORAGE_CLASS, ChaosDriver
from tests.support.kubectl import eventually

pytestmark = pytest.mark.integration

TOPOLOGY_KEY = f"topology.{DRIVER}/node"
PAYLOAD_MIB = 4

WRITE = f"""
import hashlib, os
data = os.urandom({PAYLOAD_MIB} << 20)
with open('/data/payload', 'wb') as handle:
    handle.write(data)
    handle.flush()
    os.fsync(handle.fileno())
digest = hashlib.sha256(data).hexdigest()
with open('/data/payload.sha256', 'w') as handle:
    handle.write(digest)
    handle.flush()
    os.fsync(handle.fileno())
print('wrote', digest)
"""

VERIFY = """
import hashlib
expected = open('/data/payload.sha256').read()
actual = hashlib.sha256(open('/data/payload', 'rb').read()).hexdigest()
assert actual == expected, (actual, expected)
print('verified', actual)
"""

OVERWRITE = """
import os
with open('/data/payload', 'r+b') as handle:
    handle.write(b'overwritten after the snapshot')
    handle.flush()
    os.fsync(handle.fileno())
print('overwrote')
"""


def run_pod(cluster: Cluster, namespace: str, name: str, script: str, claim_name: str) -> str:
    """Run `script` in a pod on the real node with the claim at /data; returns its output."""
    volume = {"persistentVolumeClaim": {"claimName": claim_name}}
    cluster.kubectl.apply(python_pod(name, script, volume=volume, node="real"), namespace=namespace)
    return finished_logs(cluster, namespace, name)


def finished_logs(cluster: Cluster, namespace: str, name: str) -> str:
    """Wait for the pod to succeed, delete it and return its output."""
    eventually(
        f"pod {name} to finish",
        lambda: pod_phase(cluster, name, namespace) in ("Succeeded", "Failed"),
        120,
    )
    logs = cluster.kubectl.run("logs", name, "-n", namespace)
    assert pod_phase(cluster, name, namespace) == "Succeeded", logs
    cluster.kubectl.delete("pod", name, namespace)
    return logs


def claim_from(name: str, source: dict[str, Any], mode: str = "Filesystem") -> dict[str, Any]:
    manifest = claim(name, STORAGE_CLASS)
    manifest["spec"]["resources"]["requests"]["storage"] = "64Mi"
    manifest["spec"]["volumeMode"] = mode
    if source:
        manifest["spec"]["dataSource"] = source
    return manifest


def test_driver_is_registered_with_the_kubelet(cluster: Cluster) -> None:
    kubectl = cluster.kubectl
    csinode = kubectl.get("csinode", cluster.real_node)
    ours = [d for d in csinode["spec"]["drivers"] if d["name"] == DRIVER]
    assert ours, csinode["spec"]["drivers"]
    assert ours[0]["nodeID"] == cluster.real_node
    assert ours[0]["topologyKeys"] == [TOPOLOGY_KEY]
    node = kubectl.get("node", cluster.real_node)
    assert node["metadata"]["labels"][TOPOLOGY_KEY] == cluster.real_node
    assert ChaosDriver.of(cluster.layout).healthz()["registered"] is True

    csidriver = kubectl.get("csidriver", DRIVER)
    assert csidriver["spec"]["attachRequired"] is True
    storage_class = kubectl.get("storageclass", STORAGE_CLASS)
    assert storage_class["provisioner"] == DRIVER
    annotations = storage_class["metadata"].get("annotations") or {}
    assert annotations.get("storageclass.kubernetes.io/is-default-class") != "true"
    assert kubectl.get("volumesnapshotclass", SNAPSHOT_CLASS)["driver"] == DRIVER


def test_driver_passes_csi_sanity(cluster: Cluster, tmp_path: Path) -> None:
    """The CSI spec's conformance suite against a second driver instance of its own.

    Its own sockets and state directory, no kubelet registration: the cluster's driver and
    volumes are untouched. Stopping it must leave no mount or loop device behind.
    """
    built = localcluster.binaries(cluster.layout).chaos
    socket, state = tmp_path / "csi.sock", tmp_path / "state"
    log = (tmp_path / "driver.log").open("wb")
    driver = subprocess.Popen(
        [
            str(built["chaoscsi"] / "chaoscsi"),
            "--node-id=sanity-node",
            f"--csi-socket={socket}",
            f"--control-socket={tmp_path / 'control.sock'}",
            f"--state-dir={state}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        eventually("the driver's socket", socket.exists, 10)
        sanity = subprocess.run(
            [
                str(built["csi-sanity"] / "csi-sanity"),
                f"--csi.endpoint={socket}",
                f"--csi.mountdir={tmp_path / 'mount'}",
                f"--csi.stagingdir={tmp_path / 'staging'}",
                f"--csi.testvolumesize={32 << 20}",
                "--ginkgo.no-color",
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        summary = sanity.stdout.strip().splitlines()[-5:]
        assert sanity.returncode == 0, sanity.stdout[-6000:] + sanity.stderr[-2000:]
        assert any("0 Failed" in line for line in summary), summary
    finally:
        driver.send_signal(signal.SIGTERM)
        driver.wait(30)
        log.close()
    assert driver.returncode == 0
    assert host.mounts_under(tmp_path) == []
    assert host.loops_under(tmp_path) == []


def test_written_volume_snapshot_restore_and_clone_hold_its_data(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    driver = ChaosDriver.of(cluster.layout)
    kubectl.apply(claim_from("source", {}), namespace=namespace)
    digest = run_pod(cluster, namespace, "writer", WRITE, "source").split()[-1]
    source_volume = kubectl.get("pvc", "source", namespace)["spec"]["volumeName"]

    snapshot = {
        "apiVersion": "snapshot.storage.k8s.io/v1",
        "kind": "VolumeSnapshot",
        "metadata": {"name": "snap"},
        "spec": {
            "volumeSnapshotClassName": SNAPSHOT_CLASS,
            "source": {"persistentVolumeClaimName": "source"},
        },
    }
    kubectl.apply(snapshot, namespace=namespace)

    def ready() -> bool:
        found = kubectl.get("volumesnapshot", "snap", namespace) or {}
        return bool((found.get("status") or {}).get("readyToUse"))

    eventually("the snapshot ready to use", ready, 60)
    content = kubectl.get("volumesnapshot", "snap", namespace)["status"]["boundVolumeSnapshotContentName"]
    handle = kubectl.get("volumesnapshotcontent", content)["status"]["snapshotHandle"]
    snapshots = {s["id"]: s for s in driver.state()["snapshots"]}
    assert snapshots[handle]["sourceVolume"] == source_volume

    # A clone of the volume as it is now, read by its own pod.
    kubectl.apply(
        claim_from("clone", {"kind": "PersistentVolumeClaim", "name": "source"}), namespace=namespace
    )
    assert f"verified {digest}" in run_pod(cluster, namespace, "clone-reader", VERIFY, "clone")

    # The source changes; a volume restored from the snapshot still holds the data as it was.
    run_pod(cluster, namespace, "overwriter", OVERWRITE, "source")
    source_check = python_pod(
        "source-reader", VERIFY, volume={"persistentVolumeClaim": {"claimName": "source"}}, node="real"
    )
    kubectl.apply(source_check, namespace=namespace)
    eventually(
        "the changed source to fail verification",
        lambda: pod_phase(cluster, "source-reader", namespace) == "Failed",
        120,
    )
    restored = {"apiGroup": "snapshot.storage.k8s.io", "kind": "VolumeSnapshot", "name": "snap"}
    kubectl.apply(claim_from("restored", restored), namespace=namespace)
    assert f"verified {digest}" in run_pod(cluster, namespace, "restored-reader", VERIFY, "restored")

    volumes = {v["id"]: v for v in driver.volumes(namespace)}
    clone = volumes[kubectl.get("pvc", "clone", namespace)["spec"]["volumeName"]]
    assert clone["sourceVolume"] == source_volume
    restored_volume = volumes[kubectl.get("pvc", "restored", namespace)["spec"]["volumeName"]]
    assert restored_volume["sourceSnapshot"] == handle

    kubectl.delete("pod", "source-reader", namespace)
    kubectl.delete("volumesnapshot", "snap", namespace)
    for name in ("clone", "restored", "source"):
        kubectl.delete("pvc", name, namespace)
    eventually("the driver's volumes of the namespace deleted", lambda: not driver.volumes(namespace), 90)
    eventually(
        "the snapshot deleted in the driver",
        lambda: handle not in {s["id"] for s in driver.state()["snapshots"]},
        60,
    )


def block_pod(name: str, script: str, claim_name: str) -> dict[str, Any]:
    """A pod with the claim as a raw device at /dev/xvda (root: the device node is root's)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "dnsPolicy": "Default",
            "nodeSelector": {NODE_TYPE_LABEL: "real"},
            "containers": [
                {
                    "name": "main",
                    "image": read_versions()["BASE_IMAGE"],
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                    "resources": RESOURCES,
                    "volumeDevices": [{"name": "data", "devicePath": "/dev/xvda"}],
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim_name}}],
        },
    }


BLOCK_WRITE = """
import hashlib, os
data = os.urandom(1 << 20)
fd = os.open('/dev/xvda', os.O_WRONLY)
os.pwrite(fd, data, 1 << 20)
os.fsync(fd)
os.close(fd)
print('wrote', hashlib.sha256(data).hexdigest())
"""

BLOCK_READ = """
import hashlib, os
fd = os.open('/dev/xvda', os.O_RDONLY)
print('size', os.lseek(fd, 0, os.SEEK_END))
print('read', hashlib.sha256(os.pread(fd, 1 << 20, 1 << 20)).hexdigest())
"""


def test_block_volume_is_written_by_one_pod_and_read_by_the_next(cluster: Cluster, namespace: str) -> None:
    kubectl = cluster.kubectl
    driver = ChaosDriver.of(cluster.layout)
    kubectl.apply(claim_from("raw", {}, mode="Block"), namespace=namespace)
    outputs = []
    for name, script in (("block-writer", BLOCK_WRITE), ("block-reader", BLOCK_READ)):
        kubectl.apply(block_pod(name, script, "raw"), namespace=namespace)
        outputs.append(finished_logs(cluster, namespace, name))
    written = outputs[0].split()[-1]
    assert f"read {written}" in outputs[1]
    assert "size 67108864" in outputs[1]
    volume = kubectl.get("pvc", "raw", namespace)["spec"]["volumeName"]
    assert next(v for v in driver.volumes(namespace) if v["id"] == volume)["block"] is True

    kubectl.delete("pvc", "raw", namespace)
    eventually("the block volume deleted in the driver", lambda: not driver.volumes(namespace), 90)
    assert volume not in {s["volume"] for s in driver.staged()}
