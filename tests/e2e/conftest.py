"""Fixtures for end-to-end tests: volprobe installed with Helm on the local cluster.

The way a user gets it: the image is built and pushed to a registry (the cluster's own, on
loopback), the chart is packaged and pushed there as an OCI artifact, and `helm install
oci://…` installs it with the chart's default pull policy, so the node pulls the image.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import release
from localcluster import components, registry
from localcluster.config import read_versions
from tests.conftest import REPO, Cluster
from tests.support.kubectl import eventually
from tests.support.prometheus import Prometheus

CHART = REPO / "charts" / "volprobe"
RELEASE_NAMESPACE = "volprobe-e2e"
BROKEN_INTERVAL = 20
"""The interval of `e2e-broken`, whose time to page test_prometheus.py measures (issue 14's 20 s)."""
E2E_LABEL = "volprobe.io/e2e"
PROJECT = release.Project.read()
REVISION = release.revision()
"""The commit checked out when the session started: the image's revision label."""
REGISTRY = f"{registry.ADDRESS}/e2e"
"""A path of the e2e tier's own in the local registry: nothing else (the demo) uses its image."""
IMAGE = release.image_ref(REGISTRY, PROJECT.version)
"""The image as the node pulls it: `127.0.0.1:5001/e2e/volprobe:<version>`."""
CHART_REF = release.chart_ref(REGISTRY)
"""The chart as users install it: `helm install volprobe oci://127.0.0.1:5001/e2e/charts/volprobe`."""


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path

    def run(self, *args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
        return result


@pytest.fixture(scope="session")
def helm(cluster: Cluster) -> Helm:
    versions = read_versions()
    binary = cluster.layout.bin / f"helm-{versions['HELM_VERSION']}" / "helm"
    return Helm(binary, cluster.kubeconfig)


@pytest.fixture(scope="session")
def image(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The release image, built from the Containerfile and pushed to the cluster's registry."""
    dist = tmp_path_factory.mktemp("dist")
    release.push_image(release.build_image(cluster.layout, PROJECT, REGISTRY, dist, REVISION), IMAGE)
    return IMAGE


def forget_on_node(cluster: Cluster, image: str) -> None:
    """Remove the image from the node's containerd, so the next pod that needs it pulls it.

    Running containers keep their snapshots; an image that is not there is fine (ctr exits 1).
    """
    socket = components.containerd_socket(cluster.layout)
    subprocess.run(
        ["ctr", f"--address={socket}", "-n", "k8s.io", "images", "rm", image],
        capture_output=True,
        check=False,
    )


@pytest.fixture(scope="session")
def chart(helm: Helm, image: str, tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """The chart packaged for the local registry and pushed there: `helm install` arguments."""
    dist = tmp_path_factory.mktemp("dist")
    package = release.package_chart(helm.binary, PROJECT, REGISTRY, dist)
    release.push_chart(helm.binary, package, REGISTRY)
    return [CHART_REF, "--version", PROJECT.version, "--plain-http"]


@pytest.fixture(scope="package")
def installed(cluster: Cluster, helm: Helm, image: str, chart: list[str]) -> Iterator[str]:
    """volprobe installed from the chart in the registry, probing `standard` (chart value) and
    `broken` (kubectl), with the chart's own image and pull policy. The node has no copy of the
    image before, so its controller pod's kubelet pulls it (test_release.py checks that).

    Its probeSelector keeps it to this release's probes: the uninstall test installs a second
    release in the same cluster, as operators sharing a cluster would.
    """
    default_probe = {
        "enabled": True,
        "name": "e2e-standard",
        "storageClassName": "standard",
        "labels": {E2E_LABEL: "main"},
        "spec": {"intervalSeconds": 10, "nodeGracePeriodSeconds": 0},
    }
    forget_on_node(cluster, image)
    helm.run(
        "upgrade",
        "--install",
        "volprobe",
        *chart,
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set-json",
        f"defaultProbe={json.dumps(default_probe)}",
        "--set",
        f"probeSelector={E2E_LABEL}=main",
        "--wait",
        "--timeout",
        "180s",
    )
    cluster.kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": "e2e-broken", "labels": {E2E_LABEL: "main"}},
            "spec": {
                "storageClassName": "broken",
                "intervalSeconds": BROKEN_INTERVAL,
                "nodeGracePeriodSeconds": 0,
                "timeouts": {"provisionSeconds": 10},
            },
        }
    )
    yield RELEASE_NAMESPACE
    cluster.kubectl.run("delete", "storageprobe", "e2e-broken", "--ignore-not-found")
    helm.run("uninstall", "volprobe", "--namespace", RELEASE_NAMESPACE, "--wait", check=False)


@pytest.fixture(scope="package")
def prometheus(
    cluster: Cluster, installed: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Package-scoped, like `installed`: both end with the e2e tier, before the teardown tier
    stops the cluster.

    A real Prometheus scraping the chart's metrics Service and evaluating the shipped rules,
    unmodified. The Service's endpoints are its Ready pods, i.e. the leader, and kube-proxy
    routes the host's traffic to its ClusterIP. (Debian's Prometheus is built without Kubernetes
    service discovery.) Started with the release, so alerts' `for:` clocks start early."""
    service = cluster.kubectl.get("service", "volprobe-metrics", installed)
    target = f"{service['spec']['clusterIP']}:8080"
    config = {
        "global": {"scrape_interval": "5s", "evaluation_interval": "5s"},
        "rule_files": [str(REPO / "rules" / "volprobe.rules.yaml")],
        "scrape_configs": [{"job_name": "volprobe", "static_configs": [{"targets": [target]}]}],
    }
    server = Prometheus(tmp_path_factory.mktemp("prometheus"), config).start()
    yield server
    server.stop()


def leading_controller_pod(cluster: Cluster, namespace: str) -> str:
    """The name of the Ready controller pod: the leader (only the leader is Ready)."""

    def ready() -> str | None:
        pods = cluster.kubectl.json(
            "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=controller"
        )
        for pod in pods["items"]:
            conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
            if conditions.get("Ready") == "True":
                return str(pod["metadata"]["name"])
        return None

    return eventually("a ready controller pod", ready, 90)
