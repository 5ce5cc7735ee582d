"""The object-store checks against the real S3 server of the local cluster (versitygw), fault by fault.

Each test works in a bucket of its own; faults are real (SIGSTOP, files changed on the server's
disk, directories made read-only, the Deployment scaled to zero, a certificate nobody trusts)
and undone afterwards. The rows refer to the acceptance list of the object-store issue.
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest

from tests.conftest import REPO, Cluster
from tests.integration.conftest import TEST_LABEL, ControllerFactory
from tests.support.controller import VOLPROBE, ControllerProcess
from tests.support.kubectl import eventually
from tests.support.objectstore import ObjectStore
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.model.objectstore import Checks, ObjectStoreSpec, SecretRef, TLSSettings
from volprobe.model.objectstore_checks import (
    OPERATIONS,
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


# -- through the controller ---------------------------------------------------------------------------
#
# The same faults, seen the way an operator sees them: a real `volprobe controller` runs an
# ObjectStoreProbe every INTERVAL seconds; the test reads its status and scrapes its metrics.
# Each test prints its time to signal: from the fault to the controller exporting it.

INTERVAL = 10
CONTROLLER_OPERATION_SECONDS = 3


@pytest.fixture
def keys(store: ObjectStore, namespace: str) -> str:
    """The credentials Secret in the controller's namespace."""
    store.cluster.kubectl.run(
        "create",
        "secret",
        "generic",
        "s3-keys",
        "-n",
        namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={store.credentials.access_key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={store.credentials.secret_access_key}",
    )
    return "s3-keys"


@pytest.fixture
def object_store_probe(store: ObjectStore, bucket: str, keys: str, crd: None, test_id: str) -> Iterator[str]:
    name = f"os-{test_id}"
    store.cluster.kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "ObjectStoreProbe",
            "metadata": {"name": name, "labels": {TEST_LABEL: test_id}},
            "spec": {
                "endpoint": store.endpoint,
                "bucket": bucket,
                "credentialsSecret": {"name": keys},
                "intervalSeconds": INTERVAL,
                "timeouts": {"operationSeconds": CONTROLLER_OPERATION_SECONDS, "runSeconds": 30},
                "checks": {"listPrefixKeys": 20},
            },
        }
    )
    yield name
    store.cluster.kubectl.run(
        "delete", "objectstoreprobe", name, "--ignore-not-found", "--wait=true", timeout=60
    )


def probe_object(store: ObjectStore, name: str) -> dict[str, Any]:
    return store.cluster.kubectl.get("objectstoreprobe", name) or {}


def ready(store: ObjectStore, name: str) -> str:
    conditions = (probe_object(store, name).get("status") or {}).get("conditions", [])
    return next((f"{c['status']}/{c['reason']}" for c in conditions if c["type"] == "Ready"), "")


def failures(controller: ControllerProcess, probe: str, **labels: str) -> float:
    return controller.scrape().sum("volprobe_probe_failures_total", probe=probe, kind="objectstore", **labels)


def successes(controller: ControllerProcess, probe: str) -> float:
    return controller.scrape().sum(
        "volprobe_probe_runs_total", probe=probe, kind="objectstore", result="success"
    )


def time_to(what: str, probe: Callable[[], bool], started: float, timeout: float) -> float:
    eventually(what, probe, timeout, interval=0.25)
    seconds = time.monotonic() - started
    print(f"time to signal, {what}: {seconds:.1f} s")
    return seconds


def operation_results(controller: ControllerProcess, probe: str) -> dict[str, float]:
    return {
        labels["operation"]: value
        for labels, value in controller.scrape().matching(
            "volprobe_objectstore_operation_success", probe=probe
        )
    }


def test_controller_row1_a_healthy_store_is_ready_with_every_operations_latency(
    store: ObjectStore, start_controller: ControllerFactory, object_store_probe: str
) -> None:
    controller = start_controller()
    eventually("Ready", lambda: ready(store, object_store_probe) == "True/Passing", 3 * INTERVAL)
    samples = controller.scrape()
    timed = {
        labels["operation"]
        for labels, value in samples.matching(
            "volprobe_objectstore_operation_duration_seconds_count", probe=object_store_probe
        )
        if value >= 1
    }
    assert timed == {op.value for op in OPERATIONS} - {"credentials"}
    assert set(operation_results(controller, object_store_probe).values()) == {1.0}
    assert samples.sum("volprobe_probe_success", probe=object_store_probe, kind="objectstore") == 1
    status = probe_object(store, object_store_probe)["status"]
    assert status["canary"]["key"] == f"volprobe/{object_store_probe}/canary"
    assert {op["name"] for op in status["operations"]} >= {"put", "get", "canary"}
    assert store.credentials.secret_access_key not in json.dumps(status) + controller.log_text()


def test_controller_row2_a_frozen_server_is_a_timeout_within_its_deadline_and_recovers(
    store: ObjectStore, start_controller: ControllerFactory, object_store_probe: str
) -> None:
    controller = start_controller()
    eventually("a first success", lambda: successes(controller, object_store_probe) >= 1, 3 * INTERVAL)
    with store.frozen():
        frozen_at = time.monotonic()
        seconds = time_to(
            "frozen server -> timeout",
            lambda: failures(controller, object_store_probe, reason="timeout") >= 1,
            frozen_at,
            INTERVAL + CONTROLLER_OPERATION_SECONDS + 5 + 5,
        )
        # The next run starts within one interval; its first request times out at its deadline.
        assert seconds <= INTERVAL + CONTROLLER_OPERATION_SECONDS + 5
        timed_out = controller.scrape().matching(
            "volprobe_objectstore_operation_success", probe=object_store_probe
        )
        assert [labels["operation"] for labels, value in timed_out if value == 0] == ["canary"]
    pid = controller.process.pid if controller.process else None
    before = successes(controller, object_store_probe)
    time_to(
        "thawed server -> success",
        lambda: successes(controller, object_store_probe) > before,
        time.monotonic(),
        2 * INTERVAL + 10,
    )
    assert controller.alive()
    assert controller.process is not None
    assert controller.process.pid == pid, "recovered without a restart"


def test_controller_row3_and_4_corrupted_or_deleted_canary(
    store: ObjectStore, start_controller: ControllerFactory, object_store_probe: str, bucket: str
) -> None:
    controller = start_controller()
    eventually("a first success", lambda: successes(controller, object_store_probe) >= 1, 3 * INTERVAL)
    canary = f"volprobe/{object_store_probe}/canary"
    store.flip_byte(bucket, canary, offset=100)
    time_to(
        "flipped byte -> checksum_mismatch",
        lambda: failures(controller, object_store_probe, phase="canary", reason="checksum_mismatch") >= 1,
        time.monotonic(),
        2 * INTERVAL + 10,
    )
    # The failed run wrote a new canary; the next one passes, then the canary disappears.
    before = successes(controller, object_store_probe)
    eventually("a success after the rewrite", lambda: successes(controller, object_store_probe) > before, 30)
    (store.data / bucket / canary).unlink()
    time_to(
        "deleted canary -> data_lost",
        lambda: failures(controller, object_store_probe, phase="canary", reason="data_lost") >= 1,
        time.monotonic(),
        2 * INTERVAL + 10,
    )


def test_controller_row5_writes_refused_while_reads_pass(
    store: ObjectStore, start_controller: ControllerFactory, object_store_probe: str, bucket: str
) -> None:
    controller = start_controller()
    # Two successes: the second run finds the seeded prefix complete (the first seeds it).
    eventually("two successes", lambda: successes(controller, object_store_probe) >= 2, 4 * INTERVAL)
    with store.read_only(bucket):
        started = time.monotonic()
        time_to(
            "read-only bucket -> put fails",
            lambda: operation_results(controller, object_store_probe).get("put") == 0,
            started,
            2 * INTERVAL + 10,
        )
        # Exactly the shape rules/tests/objectstore_test.yaml feeds VolprobeObjectStoreWritesFailing.
        assert operation_results(controller, object_store_probe) == {
            "canary": 1.0,
            "list_prefix": 1.0,
            "put": 0.0,
            "multipart": 0.0,
            "sweep": 1.0,
        }

        def degraded() -> dict[str, Any]:
            conditions = (probe_object(store, object_store_probe).get("status") or {}).get("conditions", [])
            return next((c for c in conditions if c["type"] == "Degraded"), {})

        # Status is written a moment after the metrics (at most every --status-interval).
        found = eventually("Degraded", lambda: degraded() if degraded().get("status") == "True" else None, 15)
        assert "writes fail while reads pass" in found["message"]


def test_controller_row6_a_wrong_key_then_a_fixed_one_recovers_without_restart(
    store: ObjectStore,
    start_controller: ControllerFactory,
    object_store_probe: str,
    keys: str,
    namespace: str,
) -> None:
    controller = start_controller()
    eventually("a first success", lambda: successes(controller, object_store_probe) >= 1, 3 * INTERVAL)
    kubectl = store.cluster.kubectl

    def set_secret(secret: str) -> None:
        value = base64.b64encode(secret.encode()).decode()
        kubectl.run(
            "patch",
            "secret",
            keys,
            "-n",
            namespace,
            "-p",
            json.dumps({"data": {"AWS_SECRET_ACCESS_KEY": value}}),
        )

    set_secret("not-the-secret")
    time_to(
        "wrong key -> credentials_invalid",
        lambda: failures(controller, object_store_probe, reason="credentials_invalid") >= 1,
        time.monotonic(),
        2 * INTERVAL + 10,
    )
    set_secret(store.credentials.secret_access_key)
    before = successes(controller, object_store_probe)
    seconds = time_to(
        "fixed key -> success",
        lambda: successes(controller, object_store_probe) > before,
        time.monotonic(),
        2 * INTERVAL + 10,
    )
    assert seconds <= INTERVAL + CONTROLLER_OPERATION_SECONDS + 5, "recovers within one interval"
    assert "not-the-secret" not in controller.log_text()
    assert "not-the-secret" not in json.dumps(probe_object(store, object_store_probe))


def test_controller_row8_deleting_the_probe_deletes_its_objects(
    store: ObjectStore, start_controller: ControllerFactory, object_store_probe: str, bucket: str
) -> None:
    controller = start_controller()
    eventually("two successes", lambda: successes(controller, object_store_probe) >= 2, 4 * INTERVAL)
    prefix = f"volprobe/{object_store_probe}/"
    assert f"{prefix}canary" in store.keys(bucket)
    store.cluster.kubectl.run("delete", "objectstoreprobe", object_store_probe, "--wait=true")
    eventually("the probe's objects gone", lambda: store.keys(bucket, prefix) == [], 30)
    assert store.uploads(bucket) == []
    assert controller.alive()
