"""The API server itself rejects invalid StorageProbes, with a message a person understands."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.support.crd import NAME_FIELDS, NameField, examples, probe_spec
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
    (
        "toleration without key or Exists",
        {"pod": {"tolerations": [{"operator": "Equal", "value": "v"}]}},
        "a toleration without a key must have operator Exists",
    ),
    (
        "tolerationSeconds without NoExecute",
        {"pod": {"tolerations": [{"key": "k", "operator": "Exists", "tolerationSeconds": 5}]}},
        "tolerationSeconds is allowed only with effect NoExecute",
    ),
    (
        "two node names in one matchFields requirement",
        {
            "nodeSelector": {
                "nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["a", "b"]}]}
                ]
            }
        },
        "matchFields requirements take exactly one node name",
    ),
    (
        "class name with capitals",
        {"storageClassName": "Fast-SSD"},
        "storageClassName must be a valid StorageClass name: lowercase letters, digits, '-' and '.'",
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
    full = spec if case == "no class" else {"storageClassName": "standard", **spec}
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


# -- names: the CRD accepts exactly the names Kubernetes accepts for the object they name ------------


def _pod(index: int, **spec: Any) -> dict[str, Any]:
    metadata = {"name": f"name-check-{index}", **spec.pop("metadata", {})}
    containers = [{"name": "c", "image": "volprobe.invalid/none"}]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {"containers": containers, **spec},
    }


def _affinity(requirement: dict[str, Any], fields: bool = False) -> dict[str, Any]:
    term = {"matchFields" if fields else "matchExpressions": [requirement]}
    return {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [term]}}}


NATIVE: dict[str, Callable[[str, int], dict[str, Any]]] = {
    "storageClassName": lambda name, _: {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": name},
        "provisioner": "example.com/none",
    },
    "pod.priorityClassName": lambda name, _: {
        "apiVersion": "scheduling.k8s.io/v1",
        "kind": "PriorityClass",
        "metadata": {"name": name},
        "value": 1000,
    },
    "pod.imagePullSecrets[].name": lambda name, _: {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name},
    },
    "nodeSelector.nodeSelectorTerms[].matchFields[].values[]": lambda name, i: _pod(
        i, affinity=_affinity({"key": "metadata.name", "operator": "In", "values": [name]}, fields=True)
    ),
    "nodeSelector.nodeSelectorTerms[].matchExpressions[].key": lambda name, i: _pod(
        i, affinity=_affinity({"key": name, "operator": "Exists"})
    ),
    "pod.tolerations[].key": lambda name, i: _pod(i, tolerations=[{"key": name, "operator": "Exists"}]),
    "pod.tolerations[].value": lambda name, i: _pod(
        i, tolerations=[{"key": "dedicated", "operator": "Equal", "value": name}]
    ),
    "pod.labels (keys)": lambda name, i: _pod(i, metadata={"labels": {name: "x"}}),
    "pod.labels (values)": lambda name, i: _pod(i, metadata={"labels": {"team": name}}),
    "pod.annotations (keys)": lambda name, i: _pod(i, metadata={"annotations": {name: "x"}}),
}
"""For each name field, the Kubernetes object whose own validation decides what the field may hold
(the example is that object's name, or it sits in a pod where the field would put it)."""


def _dry_run(cluster: Cluster, objects: list[dict[str, Any]]) -> tuple[set[str], list[str]]:
    """Create every object with a server-side dry run: the names created, and the error lines."""
    listing = {"apiVersion": "v1", "kind": "List", "items": objects}
    result = subprocess.run(
        [
            *(str(cluster.kubectl.binary), f"--kubeconfig={cluster.kubeconfig}"),
            *("create", "--dry-run=server", "-n", "default", "-o", "name", "-f", "-"),
        ],
        input=json.dumps(listing),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    created = {line.split("/", 1)[1] for line in result.stdout.splitlines() if "/" in line}
    return created, result.stderr.splitlines()


def test_every_name_field_has_a_native_counterpart() -> None:
    assert set(NATIVE) == {field.field for field in NAME_FIELDS}


@pytest.mark.parametrize("field", NAME_FIELDS, ids=[field.field for field in NAME_FIELDS])
def test_name_fields_accept_exactly_what_kubernetes_accepts(
    cluster: Cluster, crd: None, field: NameField
) -> None:
    cases = [(name, accepted) for f, name, accepted in examples() if f is field]
    natives = [NATIVE[field.field](name, index) for index, (name, _) in enumerate(cases)]
    probes = [
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": f"name-check-{index}"},
            "spec": probe_spec(field, name),
        }
        for index, (name, _) in enumerate(cases)
    ]
    native_created, _ = _dry_run(cluster, natives)
    probes_created, errors = _dry_run(cluster, probes)
    problems = []
    for index, (name, accepted) in enumerate(cases):
        if (natives[index]["metadata"]["name"] in native_created) != accepted:
            problems.append(f"{name!r}: Kubernetes {'rejects' if accepted else 'accepts'} it")
        probe = f"name-check-{index}"
        if (probe in probes_created) != accepted:
            problems.append(f"{name!r}: the CRD {'rejects' if accepted else 'accepts'} it")
        elif not accepted:
            (error,) = [line for line in errors if f'"{probe}"' in line]
            if field.message not in error and "Too long" not in error:
                problems.append(f"{name!r}: rejected without saying why: {error}")
    assert len(native_created) == len(probes_created) == sum(accepted for _, accepted in cases)
    assert problems == []
