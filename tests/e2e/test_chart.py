"""The Helm chart: lint, template, install on the local cluster, probes work, uninstall is clean."""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.e2e.conftest import CHART, Helm, leading_controller_pod
from tests.support.controller import Samples
from tests.support.kubectl import eventually
from tests.support.prometheus import Prometheus

pytestmark = pytest.mark.e2e

MONITORING = ("monitoring.coreos.com/v1/ServiceMonitor", "monitoring.coreos.com/v1/PrometheusRule")


def volume_gone(cluster: Cluster, volume: str) -> bool:
    return cluster.kubectl.get("pv", volume) is None


def render(helm: Helm, *args: str) -> list[dict[str, Any]]:
    out = helm.run(
        "template", "volprobe", str(CHART), "--namespace", "volprobe", "--kube-version", "1.34.4", *args
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def kinds(documents: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in documents)


def test_chart_lints_cleanly(helm: Helm) -> None:
    result = helm.run(
        "lint",
        "--strict",
        str(CHART),
        "--set",
        "defaultProbe.enabled=true",
        "--set",
        "defaultProbe.storageClassName=standard",
    )
    assert "0 chart(s) failed" in result.stdout


def test_monitoring_objects_only_with_the_prometheus_operator_api(helm: Helm) -> None:
    without = kinds(render(helm))
    assert "ServiceMonitor" not in without
    assert "PrometheusRule" not in without
    api_versions = [arg for version in MONITORING for arg in ("--api-versions", version)]
    documents = render(helm, *api_versions)
    assert {"ServiceMonitor", "PrometheusRule"} <= set(kinds(documents))
    rule = next(d for d in documents if d["kind"] == "PrometheusRule")
    alerts = [r["alert"] for group in rule["spec"]["groups"] for r in group["rules"] if "alert" in r]
    assert "VolprobeProvisioningFailing" in alerts


def test_default_probe_is_off_unless_asked_for(helm: Helm) -> None:
    assert "StorageProbe" not in kinds(render(helm))
    documents = render(
        helm,
        "--set",
        "defaultProbe.enabled=true",
        "--set",
        "defaultProbe.storageClassName=fast",
        "--set-json",
        'defaultProbe.spec={"intervalSeconds":30}',
    )
    probe = next(d for d in documents if d["kind"] == "StorageProbe")
    assert probe["spec"] == {"storageClassName": "fast", "intervalSeconds": 30}
    failed = helm.run(
        "template",
        "volprobe",
        str(CHART),
        "--kube-version",
        "1.34.4",
        "--set",
        "defaultProbe.enabled=true",
        check=False,
    )
    assert failed.returncode != 0
    assert "defaultProbe.storageClassName is required" in failed.stderr


def test_every_container_is_bounded_and_hardened(helm: Helm) -> None:
    documents = render(helm)
    workloads = [d for d in documents if d["kind"] in ("Deployment", "Job")]
    assert {d["kind"] for d in workloads} == {"Deployment", "Job"}
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        for container in pod["containers"]:
            assert container["resources"]["requests"], container["name"]
            assert container["resources"]["limits"]["memory"], container["name"]
            security = container["securityContext"]
            assert security["allowPrivilegeEscalation"] is False
            assert security["readOnlyRootFilesystem"] is True
            assert security["capabilities"] == {"drop": ["ALL"]}
    controller = next(d for d in workloads if d["kind"] == "Deployment")["spec"]["template"]["spec"][
        "containers"
    ][0]
    assert controller["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert controller["readinessProbe"]["httpGet"]["path"] == "/readyz"


def test_rbac_is_least_privilege(helm: Helm) -> None:
    rules = [
        rule for d in render(helm) if d["kind"] in ("ClusterRole", "Role") for rule in d.get("rules", [])
    ]
    for rule in rules:
        assert "*" not in rule["verbs"]
        assert "*" not in rule["resources"]
        assert "*" not in rule.get("apiGroups", [])
    writable = {
        (r, v)
        for rule in rules
        for r in rule["resources"]
        for v in rule["verbs"]
        if v in ("create", "update", "patch", "delete")
    }
    assert ("nodes", "update") not in writable
    assert ("nodes", "patch") not in writable
    assert ("storageprobes", "update") not in writable, "only status is written"
    assert ("storageprobes/status", "patch") in writable


def test_secrets_are_readable_only_in_the_release_namespace(helm: Helm) -> None:
    """ObjectStoreProbes name a Secret; the controller may read Secrets of its own namespace only."""
    documents = render(helm)
    granting = [
        (d["kind"], d["metadata"].get("namespace"), rule["verbs"])
        for d in documents
        if d["kind"] in ("ClusterRole", "Role")
        for rule in d.get("rules", [])
        if "secrets" in rule["resources"]
    ]
    release_namespace = next(d for d in documents if d["kind"] == "Deployment")["metadata"]["namespace"]
    assert granting == [("Role", release_namespace, ["get"])]


def test_installed_chart_probes_standard_and_broken(
    cluster: Cluster, installed: str, prometheus: Prometheus
) -> None:
    def state(name: str) -> dict[str, str]:
        probe = cluster.kubectl.get("storageprobe", name) or {}
        return {
            c["type"]: f"{c['status']}/{c['reason']}"
            for c in (probe.get("status") or {}).get("conditions", [])
        }

    eventually("standard Ready", lambda: state("e2e-standard").get("Ready", "").startswith("True/"), 90)
    eventually(
        "broken Degraded with a reason",
        lambda: state("e2e-broken").get("Degraded") == "True/ProvisioningTimeout",
        90,
    )

    leader = leading_controller_pod(cluster, installed)
    text = cluster.kubectl.run(
        "get",
        "--raw",
        f"/api/v1/namespaces/{installed}/pods/{leader}:8080/proxy/metrics",
    )
    samples = Samples.parse(text)
    assert samples.sum("volprobe_probe_runs_total", probe="e2e-standard", result="success") >= 1
    assert (
        samples.sum("volprobe_probe_failures_total", probe="e2e-broken", reason="provisioning_timeout") >= 1
    )
    assert samples.sum("volprobe_leader") == 1


def test_uninstall_leaves_no_probe_pods_or_claims(cluster: Cluster, helm: Helm, chart: list[str]) -> None:
    namespace, selector = "volprobe-uninstall", "volprobe.io/e2e=uninstall"
    probe = {
        "enabled": True,
        "name": "e2e-uninstall",
        "storageClassName": "standard",
        "labels": {"volprobe.io/e2e": "uninstall"},
        "spec": {"intervalSeconds": 10, "nodeGracePeriodSeconds": 0},
    }
    helm.run(
        "install",
        "volprobe-u",
        *chart,
        "--namespace",
        namespace,
        "--create-namespace",
        "--set",
        f"probeSelector={selector}",
        "--set-json",
        f"defaultProbe={json.dumps(probe)}",
        "--wait",
        "--timeout",
        "180s",
    )
    # A probe made by hand (not by the chart) too: its pods and claims must go as well.
    cluster.kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": "e2e-by-hand", "labels": {"volprobe.io/e2e": "uninstall"}},
            "spec": {"storageClassName": "standard", "intervalSeconds": 10, "nodeGracePeriodSeconds": 0},
        }
    )
    try:

        def ours() -> list[str]:
            found = []
            for kind in ("pods", "pvc"):
                items = cluster.kubectl.json(
                    "get", kind, "-n", namespace, "-l", "app.kubernetes.io/managed-by=volprobe"
                )
                found += [f"{kind}/{item['metadata']['name']}" for item in items["items"]]
            return found

        eventually(
            "probe claims for both probes", lambda: len([o for o in ours() if o.startswith("pvc/")]) >= 2, 60
        )
        volumes = [
            c["spec"].get("volumeName")
            for c in cluster.kubectl.json(
                "get", "pvc", "-n", namespace, "-l", "app.kubernetes.io/managed-by=volprobe"
            )["items"]
        ]
        helm.run("uninstall", "volprobe-u", "--namespace", namespace, "--wait")

        assert ours() == []
        for volume in filter(None, volumes):
            eventually(f"volume {volume} deleted", partial(volume_gone, cluster, volume), 60)
        leftover = cluster.kubectl.json("get", "all,serviceaccounts,roles,rolebindings", "-n", namespace)[
            "items"
        ]
        assert [i["metadata"]["name"] for i in leftover if i["metadata"]["name"] != "default"] == []
        cluster_wide = cluster.kubectl.json(
            "get", "clusterroles,clusterrolebindings", "-l", "app.kubernetes.io/instance=volprobe-u"
        )["items"]
        assert cluster_wide == []
    finally:
        cluster.kubectl.run("delete", "storageprobe", "e2e-by-hand", "--ignore-not-found")
        helm.run("uninstall", "volprobe-u", "--namespace", namespace, check=False)
        cluster.kubectl.run("delete", "namespace", namespace, "--wait=false", "--ignore-not-found")
