"""Fixtures for the controller against the real local cluster.

Each test gets its own namespace for probe pods and its own label on the StorageProbes it
creates, and its controllers only handle probes with that label, so tests never see each
other's probes (StorageProbes are cluster-scoped).
"""

from __future__ import annotations

import shutil
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from localcluster import cluster as localcluster
from localcluster import images
from tests.conftest import FAILED_LOGS, REPO, Cluster, failed_test
from tests.support.controller import ControllerProcess
from tests.support.kubectl import Kubectl, eventually
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE

CRDS = REPO / "charts" / "volprobe" / "crds"
PROBE_IMAGE = DEFAULT_AGENT_IMAGE
TEST_LABEL = "volprobe.io/test"
REAL_NODES = {
    "nodeSelectorTerms": [
        {"matchExpressions": [{"key": "volprobe.io/node-type", "operator": "In", "values": ["real"]}]}
    ]
}


@pytest.fixture(scope="session")
def probe_image(cluster: Cluster) -> str:
    """The release image built from this tree's Containerfile, imported into the node's containerd."""
    archive = images.release_image(cluster.layout, PROBE_IMAGE, REPO)
    localcluster.import_image(cluster.layout, archive)
    return PROBE_IMAGE


@pytest.fixture(scope="session")
def crd(cluster: Cluster) -> None:
    cluster.kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CRDS))
    for name in ("storageprobes", "objectstoreprobes"):
        cluster.kubectl.run("wait", "--for=condition=Established", f"crd/{name}.volprobe.io", "--timeout=30s")


@pytest.fixture
def test_id() -> str:
    return uuid.uuid4().hex[:6]


ProbeFactory = Callable[..., str]


@pytest.fixture
def make_probe(cluster: Cluster, crd: None, test_id: str) -> Iterator[ProbeFactory]:
    """Create StorageProbes labelled for this test; delete them (and wait) afterwards."""
    created: list[str] = []

    def make(base: str, storage_class: str, **spec: Any) -> str:
        name = f"{base}-{test_id}"
        spec.setdefault("intervalSeconds", 10)
        spec.setdefault("nodeGracePeriodSeconds", 0)
        spec.setdefault("nodeSelector", REAL_NODES)
        probe = {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": name, "labels": {TEST_LABEL: test_id}},
            "spec": {"storageClassName": storage_class, **spec},
        }
        cluster.kubectl.apply(probe)
        created.append(name)
        return name

    yield make
    for name in created:
        cluster.kubectl.run("delete", "storageprobe", name, "--ignore-not-found", "--wait=true", timeout=60)


ControllerFactory = Callable[..., ControllerProcess]


@pytest.fixture
def start_controller(
    cluster: Cluster,
    crd: None,
    probe_image: str,
    namespace: str,
    test_id: str,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> Iterator[ControllerFactory]:
    """Start real `volprobe controller` processes for this test; stop them afterwards.

    When the test fails, their logs are kept under `.cluster/logs/failed-tests/` and their tails
    printed: a flaky failure must leave the controller's side of the story behind.
    """
    started: list[ControllerProcess] = []

    def start(*extra: str, leader_elect: bool = False, wait: bool = True) -> ControllerProcess:
        process = ControllerProcess(
            kubeconfig=cluster.kubeconfig,
            namespace=namespace,
            image=probe_image,
            log=tmp_path / f"controller-{len(started)}.log",
            leader_elect=leader_elect,
            extra=(f"--probe-selector={TEST_LABEL}={test_id}", *extra),
        ).start()
        started.append(process)
        if wait:
            process.wait_ready()
        return process

    yield start
    for process in started:
        process.stop()
    if failed_test(request.node):
        keep = FAILED_LOGS / f"{request.node.name}-{test_id}"
        keep.mkdir(parents=True, exist_ok=True)
        for process in started:
            shutil.copy(process.log, keep / process.log.name)
            print(f"--- {keep / process.log.name} (last 60 lines)", file=sys.stderr)
            print("\n".join(process.log_text().splitlines()[-60:]), file=sys.stderr)


def owned_items(kubectl: Kubectl, namespace: str, probe: str, kind: str) -> list[dict[str, Any]]:
    """The `kind` objects (pods, pvc) volprobe made for `probe` in `namespace`, whole."""
    items: list[dict[str, Any]] = kubectl.json(
        "get", kind, "-n", namespace, "-l", f"volprobe.io/probe={probe}"
    )["items"]
    return items


def owned_objects(kubectl: Kubectl, namespace: str, probe: str) -> dict[str, list[str]]:
    """Names of the pods and claims volprobe made for `probe` in `namespace`."""
    return {
        kind: [item["metadata"]["name"] for item in owned_items(kubectl, namespace, probe, kind)]
        for kind in ("pods", "pvc")
    }


def mount_volume(kubectl: Kubectl, namespace: str, probe: str) -> str:
    """The PersistentVolume bound to the (only) mount claim of `probe`."""
    volume: str = owned_items(kubectl, namespace, probe, "pvc")[0]["spec"]["volumeName"]
    return volume


def probe_status(kubectl: Kubectl, name: str) -> dict[str, Any]:
    obj = kubectl.get("storageprobe", name)
    return (obj or {}).get("status") or {}


def condition(kubectl: Kubectl, name: str, kind: str) -> dict[str, Any]:
    for item in probe_status(kubectl, name).get("conditions", []):
        if item["type"] == kind:
            return dict(item)
    return {}


__all__ = ["condition", "eventually", "mount_volume", "owned_items", "owned_objects", "probe_status"]
