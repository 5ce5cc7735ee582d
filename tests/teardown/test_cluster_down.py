"""`make cluster-down` leaves nothing behind (collected last: it stops the cluster)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import release
from localcluster import chaos, host, images, processes, registry
from localcluster.cluster import OWNER_FILE
from localcluster.config import Layout, read_versions
from tests.conftest import REPO, Cluster
from tests.support.chaos import ChaosDriver

pytestmark = pytest.mark.integration


def test_cluster_down_leaves_nothing_behind(cluster: Cluster) -> None:
    layout = cluster.layout
    before = host.Snapshot.load(layout.state / "host-snapshot.json")
    state = str(layout.state.resolve())
    assert processes.processes_mentioning(state), "the cluster should be running before the test"
    # A pod with a volume keeps mounts, a netns and a veth alive: the hardest case for `down`.
    cluster.kubectl.run(
        "run",
        "sleeper",
        "--image=localhost/volprobe-base:bookworm-1",
        "--image-pull-policy=Never",
        "--restart=Never",
        '--overrides={"spec":{"nodeSelector":{"volprobe.io/node-type":"real"}}}',
        "--command",
        "--",
        "sleep",
        "600",
    )
    cluster.kubectl.run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    assert host.mounts_under(layout.state), "a running pod should have mounts under the state directory"
    # The local S3 server: a pod on the real node, its data a hostPath under the state directory.
    assert versitygw_processes(), "the local S3 server should be running"
    # The local registry: a daemon on loopback with an image in its data under the state directory.
    push_to_registry(layout)
    assert registry.serving()
    assert registry_processes(state), "the local registry should be running"
    # The chaos CSI driver's volumes in use: loop devices, ext4 and FUSE mounts, bind mounts.
    for mode in ("Filesystem", "Block"):
        cluster.kubectl.apply(*chaos_volume_in_use(mode.lower(), mode))
    cluster.kubectl.run(
        "wait", "--for=condition=Ready", "pod/chaos-filesystem", "pod/chaos-block", "--timeout=90s"
    )
    assert len(ChaosDriver.of(layout).staged()) >= 2
    assert len(host.loops_under(layout.state)) >= 2
    assert fuse_mounts(), "the Filesystem volume is served through the driver's FUSE layer"
    sockets = [chaos.control_socket(layout), chaos.csi_socket(layout), registration_socket(cluster)]
    assert all(path.is_socket() for path in sockets)

    result = subprocess.run(
        [sys.executable, "-m", "localcluster", "down"],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "hack"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    assert host.leftovers(layout.state, before) == []
    assert host.loops_under(layout.state) == []
    assert fuse_mounts() == []
    assert not any(path.exists() for path in sockets)
    assert processes.processes_mentioning(state) == []
    assert versitygw_processes() == []
    assert registry_processes(state) == []
    assert not registry.serving()
    assert not registry.state_dir(layout).exists()
    assert host.mounts_under(layout.state) == []
    assert not OWNER_FILE.exists()
    assert sorted(p.name for p in layout.state.iterdir()) == ["logs"]
    for name, value in before.sysctls.items():
        assert host.read_sysctl(name) == value, name


def chaos_volume_in_use(name: str, mode: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """A claim of the chaos class and a pod that keeps it staged and published."""
    claim = {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": f"chaos-{name}", "namespace": "default"},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "storageClassName": chaos.STORAGE_CLASS,
            "volumeMode": mode,
            "resources": {"requests": {"storage": "16Mi"}},
        },
    }
    attach = (
        {"volumeDevices": [{"name": "data", "devicePath": "/dev/xvda"}]}
        if mode == "Block"
        else {"volumeMounts": [{"name": "data", "mountPath": "/data"}]}
    )
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": f"chaos-{name}", "namespace": "default"},
        "spec": {
            "nodeSelector": {"volprobe.io/node-type": "real"},
            "containers": [
                {
                    "name": "main",
                    "image": "localhost/volprobe-base:bookworm-1",
                    "imagePullPolicy": "Never",
                    "command": ["sleep", "600"],
                    **attach,
                }
            ],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": f"chaos-{name}"}}],
        },
    }
    return claim, pod


def fuse_mounts() -> list[str]:
    """Mount points of the chaos driver's FUSE filesystems, anywhere on the host."""
    lines = Path("/proc/self/mountinfo").read_text().splitlines()
    return [line.split()[4] for line in lines if " - fuse.chaoscsi " in line]


def registration_socket(cluster: Cluster) -> Path:
    return cluster.layout.kubelet_root / "plugins_registry" / f"{chaos.DRIVER}-reg.sock"


def push_to_registry(layout: Layout) -> None:
    """Put an image into the registry (its data), as the e2e tier and the demo do."""
    archive = images.helper_image(layout, read_versions()["HELPER_IMAGE"])
    release.push_image(archive, f"{registry.ADDRESS}/teardown/helper:1")
    assert any(registry.data_dir(layout).rglob("data")), "the pushed blobs should be on disk"


def registry_processes(state: str) -> list[int]:
    """The cluster's registry: Debian's docker-registry serving the configuration under `state`."""
    return [
        pid
        for pid in processes.processes_mentioning(state)
        if Path(f"/proc/{pid}/exe").resolve() == registry.BINARY
    ]


def versitygw_processes() -> list[int]:
    """The local S3 server's processes: they run in containers, so no host path is in their argv."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "versitygw":
                found.append(int(entry.name))
    return found
