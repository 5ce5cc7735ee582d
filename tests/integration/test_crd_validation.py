"""The API server itself rejects invalid StorageProbes, with a message a person understands."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.support.kubectl import KubectlError

pytestmark = pytest.mark.integration

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no class", {}, "spec.storageClassName: Required value"),
    (
        "interval too short",
        {"intervalSeconds": 5},
        "spec.intervalSeconds in body should be greater than or equal to 10",
    ),
    (
        "timeout too short",
        {"timeouts": {"ioSeconds": 1}},
        "spec.timeouts.ioSeconds in body should be greater than",
    ),
    ("volume too small", {"volume": {"size": "1Mi"}}, "volume.size must be at least 16Mi"),
    ("volume size not a quantity", {"volume": {"size": "lots"}}, "spec.volume.size in body should match"),
    ("unknown volume mode", {"volume": {"volumeMode": "Tape"}}, 'Unsupported value: "Tape"'),
    (
        "request above limit",
        {"pod": {"resources": {"requests": {"memory": "1Gi"}, "limits": {"memory": "64Mi"}}}},
        "each request must not exceed its limit",
    ),
    (
        "no memory limit",
        {"pod": {"resources": {"requests": {"cpu": "10m"}, "limits": {"cpu": "1"}}}},
        "pod.resources.limits.memory is required",
    ),
    (
        "In without values",
        {"nodeSelector": {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In"}]}]}},
        "operators In and NotIn need at least one value",
    ),
    (
        "matchFields on a label",
        {
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.labels", "operator": "In", "values": ["x"]}]}
                ]
            }
        },
        "matchFields supports only the key",
    ),
    (
        "payload not a multiple of the block",
        {"io": {"payloadBytes": 5000}},
        "must be a multiple of io.blockBytes",
    ),
    (
        "reserved pod label",
        {"pod": {"labels": {"volprobe.io/probe": "x"}}},
        "pod.labels must not set volprobe.io/*",
    ),
    (
        "bad toleration",
        {"pod": {"tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}},
        "a toleration with operator Exists must not have a value",
    ),
]


def dry_run(cluster: Cluster, name: str, spec: dict[str, Any]) -> str:
    probe = {
        "apiVersion": "volprobe.io/v1alpha1",
        "kind": "StorageProbe",
        "metadata": {"name": name},
        "spec": spec,
    }
    return cluster.kubectl.run("apply", "--dry-run=server", "-f", "-", stdin=yaml.safe_dump(probe))


@pytest.mark.parametrize(("case", "spec", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_spec_is_rejected_with_a_clear_message(
    cluster: Cluster, crd: None, case: str, spec: dict[str, Any], message: str
) -> None:
    full = {"storageClassName": "standard", **spec} if case != "no class" else spec
    with pytest.raises(KubectlError) as error:
        dry_run(cluster, "invalid", full)
    assert message in str(error.value)


def test_overlong_name_is_rejected(cluster: Cluster, crd: None) -> None:
    with pytest.raises(KubectlError, match="must be at most 40 characters"):
        dry_run(cluster, "x" * 41, {"storageClassName": "standard"})


def test_storage_class_and_volume_are_immutable(cluster: Cluster, crd: None) -> None:
    name = "immutable-check"
    cluster.kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": name},
            "spec": {
                "storageClassName": "standard",
                "mount": {"enabled": False},
                "provision": {"enabled": False},
            },
        }
    )
    try:
        for patch, message in (
            ('{"spec":{"storageClassName":"broken"}}', "storageClassName is immutable"),
            ('{"spec":{"volume":{"size":"128Mi"}}}', "volume settings are immutable"),
        ):
            with pytest.raises(KubectlError, match=message):
                cluster.kubectl.run("patch", "storageprobe", name, "--type=merge", "-p", patch)
        # The switches, the interval and the selector are meant to change on a live probe.
        cluster.kubectl.run(
            "patch",
            "storageprobe",
            name,
            "--type=merge",
            "-p",
            '{"spec":{"intervalSeconds":30,"mount":{"enabled":true}}}',
        )
    finally:
        cluster.kubectl.run("delete", "storageprobe", name, "--ignore-not-found")


def test_a_minimal_spec_is_valid_and_fully_defaulted(cluster: Cluster, crd: None) -> None:
    out = yaml.safe_load(
        cluster.kubectl.run(
            "apply",
            "--dry-run=server",
            "-o",
            "yaml",
            "-f",
            "-",
            stdin=yaml.safe_dump(
                {
                    "apiVersion": "volprobe.io/v1alpha1",
                    "kind": "StorageProbe",
                    "metadata": {"name": "minimal"},
                    "spec": {"storageClassName": "standard"},
                }
            ),
        )
    )
    spec = out["spec"]
    assert spec["intervalSeconds"] == 60
    assert spec["timeouts"]["provisionSeconds"] > 0
    assert spec["pod"]["resources"]["limits"]["memory"]
    assert spec["pod"]["resources"]["requests"]["memory"]
    assert spec["provision"]["enabled"] is True
    assert spec["mount"]["enabled"] is True
