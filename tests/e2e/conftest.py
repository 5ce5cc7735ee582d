"""Fixtures for end-to-end tests: volprobe installed with Helm on the local cluster."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from localcluster import cluster as localcluster
from localcluster import images
from localcluster.config import read_versions
from tests.conftest import REPO, Cluster
from tests.support.kubectl import eventually
from tests.support.prometheus import Prometheus
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE

CHART = REPO / "charts" / "volprobe"
RELEASE_NAMESPACE = "volprobe-e2e"
BROKEN_INTERVAL = 20
"""The interval of `e2e-broken`, whose time to page test_prometheus.py measures (issue 14's 20 s)."""
E2E_LABEL = "volprobe.io/e2e"


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
def image(cluster: Cluster) -> str:
    """The release image, built from the Containerfile and imported into the node."""
    localcluster.import_image(cluster.layout, images.release_image(cluster.layout, DEFAULT_AGENT_IMAGE, REPO))
    return DEFAULT_AGENT_IMAGE


@pytest.fixture(scope="package")
def installed(cluster: Cluster, helm: Helm, image: str) -> Iterator[str]:
    """volprobe installed from the chart, probing `standard` (chart value) and `broken` (kubectl).

    Its probeSelector keeps it to this release's probes: the uninstall test installs a second
    release in the same cluster, as operators sharing a cluster would.
    """
    values = {
        "image": {"pullPolicy": "Never"},
        "probeImage": {"pullPolicy": "Never"},
        "defaultProbe": {
            "enabled": True,
            "name": "e2e-standard",
            "storageClassName": "standard",
            "labels": {E2E_LABEL: "main"},
            "spec": {"intervalSeconds": 10, "nodeGracePeriodSeconds": 0},
        },
    }
    helm.run(
        "upgrade",
        "--install",
        "volprobe",
        str(CHART),
        "--namespace",
        RELEASE_NAMESPACE,
        "--create-namespace",
        "--set-json",
        f"image={json.dumps(values['image'])}",
        "--set-json",
        f"probeImage={json.dumps(values['probeImage'])}",
        "--set-json",
        f"defaultProbe={json.dumps(values['defaultProbe'])}",
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
