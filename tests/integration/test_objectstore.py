"""The object-store checks against the real S3 server of the local cluster (versitygw), fault by fault.

Each test works in a bucket of its own; faults are real (SIGSTOP, files changed on the server's
disk, directories made read-only, the Deployment scaled to zero, a certificate nobody trusts)
and undone afterwards. The rows refer to the acceptance list of the object-store issue.
"""

from __future__ import annotations

import asyncio
import json
import os
import ssl
import subprocess
import time
from collections.abc import Iterator
from dataclasses import replace

import pytest

from tests.conftest import REPO, Cluster
from tests.support.controller import VOLPROBE
from tests.support.objectstore import ObjectStore
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.model.objectstore import Checks, ObjectStoreSpec, SecretRef, TLSSettings
from volprobe.model.objectstore_checks import (
    CanaryRecord,
    ObjectStoreRun,
    OperationResult,
    writes_fail_reads_pass,
)
from volprobe.model.objectstore_tls import not_after
from volprobe.runtime.s3.check import run_once
from volprobe.runtime.s3.sigv4 import Credentials

pytestmark = pytest.mark.integration

OPERATION_SECONDS = 3.0
OBJECTSTORE_CRD = REPO / "charts" / "volprobe" / "crds" / "volprobe.io_objectstoreprobes.yaml"


@pytest.fixture(scope="module")
def store(cluster: Cluster) -> ObjectStore:
    store = ObjectStore(cluster)
    store.wait_ready()
    return store


@pytest.fixture
def bucket(store: ObjectStore) -> Iterator[str]:
    with store.bucket() as name:
        yield name


def spec_for(store: ObjectStore, bucket: str, **changes: object) -> ObjectStoreSpec:
    spec = ObjectStoreSpec(
        name="it",
        endpoint=store.endpoint,
        bucket=bucket,
        credentials=SecretRef("unused-here"),
        operation_timeout=OPERATION_SECONDS,
        run_timeout=30.0,
        payload_bytes=64 * 1024,
        checks=Checks(list_prefix_keys=20),
    )
    return replace(spec, **changes)  # type: ignore[arg-type]


def run(
    store: ObjectStore,
    spec: ObjectStoreSpec,
    canary: CanaryRecord | None = None,
    credentials: Credentials | None = None,
) -> ObjectStoreRun:
    return asyncio.run(run_once(spec, credentials or store.credentials, canary))


def operations(result: ObjectStoreRun) -> dict[Phase, OperationResult]:
    return {r.operation: r for r in result.operations}


def outcome(result: ObjectStoreRun) -> tuple[Result, Phase | None, Reason | None]:
    return result.verdict.result, result.verdict.phase, result.verdict.reason


def test_row1_a_healthy_server_passes_every_operation(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    first = run(store, spec)
    assert outcome(first) == (Result.SUCCESS, None, None), first.verdict.message
    second = run(store, spec, first.canary)
    assert outcome(second) == (Result.SUCCESS, None, None), second.verdict.message
    ran = operations(second)
    assert all(r.passed for r in ran.values()), ran
    assert second.seeded_keys == 20
    assert second.canary == first.canary
    assert 0 < ran[Phase.PUT].seconds < OPERATION_SECONDS


def test_row2_a_frozen_server_times_out_within_the_deadline_and_recovers(
    store: ObjectStore, bucket: str
) -> None:
    spec = spec_for(store, bucket)
    healthy = run(store, spec)
    with store.frozen():
        started = time.monotonic()
        frozen = run(store, spec, healthy.canary)
        signal_after = time.monotonic() - started
    assert frozen.verdict.result is Result.TIMEOUT
    assert frozen.verdict.reason is Reason.TIMEOUT
    assert frozen.verdict.phase in (Phase.CANARY, Phase.PUT)
    assert signal_after <= OPERATION_SECONDS + 5
    recovered = run(store, spec, healthy.canary)
    assert outcome(recovered) == (Result.SUCCESS, None, None), recovered.verdict.message


def test_row3_a_byte_flipped_on_disk_is_a_checksum_mismatch(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    first = run(store, spec)
    assert first.canary is not None
    store.flip_byte(bucket, first.canary.key, offset=1000)
    result = run(store, spec, first.canary)
    assert outcome(result) == (Result.FAILURE, Phase.CANARY, Reason.CHECKSUM_MISMATCH)
    assert operations(result)[Phase.PUT].passed


def test_row4_a_canary_deleted_behind_the_probes_back_is_data_lost(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    first = run(store, spec)
    assert first.canary is not None
    (store.data / bucket / first.canary.key).unlink()
    lost = run(store, spec, first.canary)
    assert outcome(lost) == (Result.FAILURE, Phase.CANARY, Reason.DATA_LOST)
    assert outcome(run(store, spec, lost.canary)) == (Result.SUCCESS, None, None)


def test_row5_writes_refused_while_reads_pass(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    first = run(store, spec)
    run(store, spec, first.canary)  # the seeded prefix is complete now
    with store.read_only(bucket):
        result = run(store, spec, first.canary)
    ops = operations(result)
    # versitygw answers a write its filesystem refuses (EACCES) with 500 InternalError.
    assert outcome(result) == (Result.FAILURE, Phase.PUT, Reason.SERVER_ERROR), result.verdict.message
    assert ops[Phase.MULTIPART].reason is Reason.SERVER_ERROR
    assert ops[Phase.CANARY].passed
    assert ops[Phase.LIST_PREFIX].passed
    # The shape rules/tests/objectstore_test.yaml feeds VolprobeObjectStoreWritesFailing.
    assert {op.value: r.passed for op, r in ops.items() if r.result is not None} == {
        "canary": True,
        "list_prefix": True,
        "put": False,
        "multipart": False,
        "sweep": True,
    }
    assert writes_fail_reads_pass(result.operations)
    assert outcome(run(store, spec, first.canary)) == (Result.SUCCESS, None, None)


def test_row6_wrong_keys_are_credentials_invalid(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    wrong_secret = run(
        store, spec, credentials=Credentials(store.credentials.access_key_id, "not-the-secret")
    )
    assert outcome(wrong_secret) == (Result.FAILURE, Phase.CANARY, Reason.CREDENTIALS_INVALID)
    unknown_key = run(store, spec, credentials=Credentials("nobody", "not-the-secret"))
    assert outcome(unknown_key) == (Result.FAILURE, Phase.CANARY, Reason.CREDENTIALS_INVALID)
    assert outcome(run(store, spec)) == (Result.SUCCESS, None, None)


def test_row7_a_deleted_bucket_is_no_such_bucket(store: ObjectStore) -> None:
    with store.bucket() as name:
        spec = spec_for(store, name)
        assert outcome(run(store, spec)) == (Result.SUCCESS, None, None)
    result = run(store, spec)
    assert outcome(result) == (Result.FAILURE, Phase.CANARY, Reason.NO_SUCH_BUCKET)
    assert operations(result)[Phase.PUT].reason is Reason.NO_SUCH_BUCKET


def test_row7_a_stopped_server_is_connection_failed(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket)
    with store.stopped():
        result = run(store, spec)
    assert outcome(result) == (Result.FAILURE, Phase.CANARY, Reason.CONNECTION_FAILED), result.verdict.message
    assert outcome(run(store, spec)) == (Result.SUCCESS, None, None)


def test_row7_an_untrusted_certificate_is_a_tls_error_and_the_ca_bundle_fixes_it(
    store: ObjectStore, bucket: str
) -> None:
    spec = spec_for(store, bucket, endpoint=store.tls_endpoint)
    untrusted = run(store, spec)
    assert outcome(untrusted) == (Result.FAILURE, Phase.CANARY, Reason.TLS_ERROR), untrusted.verdict.message
    trusted = run(store, replace(spec, tls=TLSSettings(ca_bundle=store.ca_bundle)))
    assert outcome(trusted) == (Result.SUCCESS, None, None), trusted.verdict.message
    expected = not_after(ssl.PEM_cert_to_DER_cert(store.ca_bundle))
    assert trusted.certificate_not_after == expected
    insecure = run(store, replace(spec, tls=TLSSettings(insecure_skip_verify=True)))
    assert outcome(insecure) == (Result.SUCCESS, None, None)
    assert insecure.certificate_not_after == expected, "the expiry is known even without verification"


def test_row8_no_leftovers_after_50_runs(store: ObjectStore, bucket: str) -> None:
    spec = spec_for(store, bucket, checks=Checks(list_prefix_keys=5))
    canary = None
    for _ in range(50):
        result = run(store, spec, canary)
        assert outcome(result) == (Result.SUCCESS, None, None), result.verdict.message
        canary = result.canary
    assert sorted(store.keys(bucket)) == [
        "volprobe/it/canary",
        *(f"volprobe/it/seed/{i:05d}" for i in range(5)),
    ]
    assert store.uploads(bucket) == []


def test_check_objectstore_runs_a_probes_checks_and_leaves_nothing(
    store: ObjectStore, bucket: str, namespace: str
) -> None:
    """`volprobe check-objectstore`: the probe and its Secret from the cluster, two runs, clean-up."""
    kubectl = store.cluster.kubectl
    kubectl.run("apply", "--server-side", "--force-conflicts", "-f", str(OBJECTSTORE_CRD))
    kubectl.run("wait", "--for=condition=Established", "crd/objectstoreprobes.volprobe.io", "--timeout=30s")
    key_id, secret_key = store.credentials.access_key_id, store.credentials.secret_access_key
    kubectl.run(
        "create",
        "secret",
        "generic",
        "s3-keys",
        "-n",
        namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}",
    )
    name = f"check-{bucket}"
    kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "ObjectStoreProbe",
            "metadata": {"name": name},
            "spec": {
                "endpoint": store.tls_endpoint,
                "bucket": bucket,
                "credentialsSecret": {"name": "s3-keys"},
                "tls": {"caBundle": store.ca_bundle},
                "checks": {"listPrefixKeys": 10},
            },
        }
    )
    try:
        result = subprocess.run(
            [str(VOLPROBE), "check-objectstore", name, "--namespace", namespace, "--output", "json"],
            env={**os.environ, "KUBECONFIG": str(store.cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        report = json.loads(result.stdout)
        assert report["passed"] is True
        assert [run["result"] for run in report["runs"]] == ["success", "success"]
        assert report["runs"][0]["certificateNotAfter"] is not None
        assert secret_key not in result.stdout + result.stderr
        assert store.keys(bucket) == [], "the check deletes everything under its prefix"
        kubectl.run("delete", "secret", "s3-keys", "-n", namespace)
        missing = subprocess.run(
            [str(VOLPROBE), "check-objectstore", name, "--namespace", namespace],
            env={**os.environ, "KUBECONFIG": str(store.cluster.kubeconfig)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert missing.returncode == 2
        assert "Secret s3-keys not found in the controller's namespace" in missing.stderr
    finally:
        kubectl.run("delete", "objectstoreprobe", name, "--ignore-not-found")
