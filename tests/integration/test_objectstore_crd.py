"""The API server itself rejects invalid ObjectStoreProbes, with a message a person understands."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.conftest import REPO, Cluster
from tests.support.kubectl import KubectlError
from volprobe.model.objectstore import DEFAULT_CHECKS, DEFAULT_TIMEOUTS, parse

pytestmark = pytest.mark.integration

CRD = REPO / "charts" / "volprobe" / "crds" / "volprobe.io_objectstoreprobes.yaml"
VALID: dict[str, Any] = {
    "endpoint": "https://s3.example.com:9000",
    "bucket": "volprobe-canary",
    "credentialsSecret": {"name": "s3-keys"},
}
PEM = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"

INVALID: list[tuple[str, dict[str, Any], str]] = [
    ("no endpoint", {"endpoint": None}, "spec.endpoint: Required value"),
    ("no bucket", {"bucket": None}, "spec.bucket: Required value"),
    ("no credentials", {"credentialsSecret": None}, "spec.credentialsSecret: Required value"),
    ("endpoint without scheme", {"endpoint": "s3.example.com"}, "endpoint must be http(s)://host[:port]"),
    (
        "endpoint with a path",
        {"endpoint": "https://s3.example.com/bucket"},
        "without a path, query or credentials",
    ),
    ("endpoint with credentials", {"endpoint": "https://key:secret@s3.example.com"}, "without a path, query"),
    ("bucket with capitals", {"bucket": "Canary"}, "bucket must be an S3 bucket name"),
    ("bucket too short", {"bucket": "ab"}, "spec.bucket in body should be at least 3 chars long"),
    ("bucket like an address", {"bucket": "10.0.0.1"}, "not an IP address"),
    ("secret name with capitals", {"credentialsSecret": {"name": "S3Keys"}}, "must be a valid Secret name"),
    (
        "interval too short",
        {"intervalSeconds": 5},
        "spec.intervalSeconds in body should be greater than or equal to 10",
    ),
    (
        "run deadline shorter than an operation's",
        {"timeouts": {"operationSeconds": 30, "runSeconds": 10}},
        "runSeconds must be at least",
    ),
    (
        "insecure on http",
        {"endpoint": "http://10.96.0.80:7070", "tls": {"insecureSkipVerify": True}},
        "insecureSkipVerify needs an https:// endpoint",
    ),
    (
        "CA bundle on http",
        {"endpoint": "http://10.96.0.80:7070", "tls": {"caBundle": PEM}},
        "caBundle needs an https:// endpoint",
    ),
    (
        "CA bundle and insecure",
        {"tls": {"caBundle": PEM, "insecureSkipVerify": True}},
        "set tls.caBundle or tls.insecureSkipVerify, not both",
    ),
    (
        "CA bundle not PEM",
        {"tls": {"caBundle": "not a certificate"}},
        "tls.caBundle must hold PEM certificates",
    ),
    (
        "virtual-hosted with an IP",
        {"endpoint": "http://10.96.0.80:7070", "addressingStyle": "VirtualHosted"},
        "VirtualHosted needs a DNS name",
    ),
    ("unknown addressing style", {"addressingStyle": "Subdomain"}, 'Unsupported value: "Subdomain"'),
    (
        "key prefix with a leading slash",
        {"keyPrefix": "/volprobe/"},
        "keyPrefix must be empty or path segments",
    ),
    (
        "payload too big",
        {"payloadBytes": 1 << 30},
        "spec.payloadBytes in body should be less than or equal to 16777216",
    ),
    (
        "too many seeded keys",
        {"checks": {"listPrefixKeys": 100000}},
        "spec.checks.listPrefixKeys in body should be less than or equal to 10000",
    ),
]


@pytest.fixture(scope="module")
def crd(cluster: Cluster) -> None:
    cluster.kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl.run(
        "wait", "--for=condition=Established", "crd/objectstoreprobes.volprobe.io", "--timeout=30s"
    )


def dry_run(cluster: Cluster, name: str, spec: dict[str, Any], *args: str) -> str:
    probe = {"apiVersion": "volprobe.io/v1alpha1", "kind": "ObjectStoreProbe", "metadata": {"name": name}}
    probe["spec"] = {key: value for key, value in spec.items() if value is not None}
    return cluster.kubectl.run("apply", "--dry-run=server", *args, "-f", "-", stdin=yaml.safe_dump(probe))


@pytest.mark.parametrize(("case", "changes", "message"), INVALID, ids=[case for case, _, _ in INVALID])
def test_invalid_spec_is_rejected_with_a_clear_message(
    cluster: Cluster, crd: None, case: str, changes: dict[str, Any], message: str
) -> None:
    with pytest.raises(KubectlError) as error:
        dry_run(cluster, "invalid", {**VALID, **changes})
    assert message in str(error.value)


def test_overlong_name_is_rejected(cluster: Cluster, crd: None) -> None:
    with pytest.raises(KubectlError, match="must be at most 63 characters"):
        dry_run(cluster, "x" * 64, VALID)


def test_a_minimal_spec_is_valid_and_defaulted_as_the_model_expects(cluster: Cluster, crd: None) -> None:
    stored = yaml.safe_load(dry_run(cluster, "minimal", VALID, "-o", "yaml"))
    spec = stored["spec"]
    assert spec["timeouts"] == DEFAULT_TIMEOUTS
    assert spec["checks"] == DEFAULT_CHECKS
    assert spec["credentialsSecret"]["accessKeyIdKey"] == "AWS_ACCESS_KEY_ID"
    assert parse(stored).bucket == "volprobe-canary"
