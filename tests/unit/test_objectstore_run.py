"""One object-store run against an in-memory S3 (tests/support/fakes3.py): every fault, every reason.

The real server (versitygw in the local cluster) is exercised by tests/integration/test_objectstore.py;
here the faults no real server shows on demand: ignored conditions, silent corruption,
unlisted keys, hangs of one operation, throttling, clock skew.
"""

from __future__ import annotations

import hashlib
import ssl
import time
from dataclasses import replace

import httpx
import pytest

from tests.support.fakes3 import FakeS3
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.model.objectstore import Checks, ObjectStoreSpec, SecretRef
from volprobe.model.objectstore_checks import (
    OPERATIONS,
    CanaryRecord,
    ObjectStoreRun,
    OperationResult,
    writes_fail_reads_pass,
)
from volprobe.runtime.s3.check import client_for, purge, run_once
from volprobe.runtime.s3.sigv4 import Credentials

SPEC = ObjectStoreSpec(
    name="unit",
    endpoint="http://s3.test:7070",
    bucket="bucket",
    credentials=SecretRef("creds"),
    operation_timeout=0.5,
    run_timeout=5.0,
    payload_bytes=1000,
    checks=Checks(list_prefix_keys=5),
)
KEYS = Credentials("AKID", "secret")


async def run(s3: FakeS3, canary: CanaryRecord | None = None, spec: ObjectStoreSpec = SPEC) -> ObjectStoreRun:
    return await run_once(spec, KEYS, canary, transport=s3.transport())


def by_op(result: ObjectStoreRun) -> dict[Phase, OperationResult]:
    return {r.operation: r for r in result.operations}


def results(result: ObjectStoreRun) -> dict[str, str | None]:
    return {
        r.operation.value: (r.reason.value if r.reason else r.result and r.result.value)
        for r in result.operations
    }


async def test_a_healthy_store_passes_every_operation_and_keeps_only_canary_and_seeds() -> None:
    s3 = FakeS3()
    first = await run(s3)
    assert first.verdict.result is Result.SUCCESS, first.verdict
    assert set(results(first).values()) == {"success"}
    assert set(by_op(first)) == set(OPERATIONS) - {Phase.CREDENTIALS}, "every operation runs"
    assert first.canary is not None
    assert first.canary.key == "volprobe/unit/canary"
    assert first.visibility_seconds is not None
    second = await run(s3, first.canary)
    assert second.verdict.result is Result.SUCCESS
    assert second.canary == first.canary, "a verified canary is not rewritten"
    assert second.seeded_keys == 5
    assert sorted(k for _, k in s3.objects) == [
        "volprobe/unit/canary",
        *(f"volprobe/unit/seed/0000{i}" for i in range(5)),
    ]
    assert s3.uploads == {}
    assert second.leftovers == {"objects": 0, "uploads": 0}


async def test_a_canary_deleted_behind_the_probes_back_is_data_lost_then_rewritten() -> None:
    s3 = FakeS3()
    first = await run(s3)
    del s3.objects[("bucket", "volprobe/unit/canary")]
    lost = await run(s3, first.canary)
    assert (lost.verdict.result, lost.verdict.phase, lost.verdict.reason) == (
        Result.FAILURE,
        Phase.CANARY,
        Reason.DATA_LOST,
    )
    assert lost.canary is not None
    assert lost.canary != first.canary
    assert (await run(s3, lost.canary)).verdict.result is Result.SUCCESS


async def test_a_changed_canary_is_a_checksum_mismatch_even_with_matching_metadata() -> None:
    s3 = FakeS3()
    first = await run(s3)
    stored = s3.objects[("bucket", "volprobe/unit/canary")]
    stored.body = b"x" + stored.body[1:]
    stored.metadata["volprobe-sha256"] = hashlib.sha256(stored.body).hexdigest()
    changed = await run(s3, first.canary)
    assert (changed.verdict.phase, changed.verdict.reason) == (Phase.CANARY, Reason.CHECKSUM_MISMATCH)


async def test_without_a_record_the_canary_is_checked_against_its_own_metadata() -> None:
    s3 = FakeS3()
    await run(s3)
    s3.corrupt = lambda key, body: body[::-1] if key.endswith("canary") else body
    result = await run(s3, None)
    assert (result.verdict.phase, result.verdict.reason) == (Phase.CANARY, Reason.CHECKSUM_MISMATCH)


async def test_corruption_on_read_of_the_new_object_is_a_checksum_mismatch_in_get() -> None:
    s3 = FakeS3(corrupt=lambda key, body: body[:-1] + b"?" if "/runs/" in key else body)
    result = await run(s3)
    assert (result.verdict.phase, result.verdict.reason) == (Phase.GET, Reason.CHECKSUM_MISMATCH)
    assert by_op(result)[Phase.DELETE].passed, "the object is still deleted after a bad read"


async def test_writes_refused_while_reads_pass_is_reported_per_operation() -> None:
    s3 = FakeS3()
    first = await run(s3)
    s3.faults = {op: (403, "AccessDenied") for op in ("PutObject", "CreateMultipartUpload")}
    result = await run(s3, first.canary)
    assert (result.verdict.phase, result.verdict.reason) == (Phase.PUT, Reason.ACCESS_DENIED)
    ops = results(result)
    assert ops["canary"] == "success"
    assert ops["list_prefix"] == "success"
    assert ops["multipart"] == "access_denied"
    assert ops["head"] is None
    assert ops["get"] is None
    assert writes_fail_reads_pass(result.operations)


async def test_a_hung_put_times_out_within_its_deadline_while_reads_pass() -> None:
    s3 = FakeS3()
    first = await run(s3)
    s3.hang = {"PutObject"}
    started = time.monotonic()
    result = await run(s3, first.canary)
    elapsed = time.monotonic() - started
    assert (result.verdict.result, result.verdict.phase, result.verdict.reason) == (
        Result.TIMEOUT,
        Phase.PUT,
        Reason.TIMEOUT,
    )
    assert elapsed < SPEC.operation_timeout + 0.4
    assert by_op(result)[Phase.CANARY].passed
    assert by_op(result)[Phase.MULTIPART].result is None, "the write track stops after a stall"
    assert by_op(result)[Phase.SWEEP].result is None


async def test_a_frozen_server_is_reported_one_operation_deadline_later() -> None:
    s3 = FakeS3(hang={"GetObject", "PutObject", "ListObjectsV2", "HeadObject"})
    started = time.monotonic()
    result = await run(s3)
    assert time.monotonic() - started < SPEC.operation_timeout + 0.4
    assert result.verdict.reason is Reason.TIMEOUT
    assert [r.operation for r in result.operations if r.result is not None] == [Phase.CANARY]
    assert by_op(result)[Phase.PUT].message == "the server stopped answering (canary timed out)"


async def test_a_conditional_put_that_overwrites_is_reported() -> None:
    result = await run(FakeS3(ignore_conditions=True))
    assert (result.verdict.phase, result.verdict.reason) == (
        Phase.CONDITIONAL_PUT,
        Reason.CONDITIONAL_WRITE_IGNORED,
    )


async def test_an_object_never_listed_is_not_visible_not_a_timeout() -> None:
    result = await run(FakeS3(unlisted=True))
    assert (result.verdict.phase, result.verdict.reason) == (Phase.LIST, Reason.NOT_VISIBLE)
    assert result.visibility_seconds is None


async def test_an_object_still_there_after_delete_is_delete_failed_and_swept_later() -> None:
    s3 = FakeS3(keep_deleted=True)
    result = await run(s3)
    assert (result.verdict.phase, result.verdict.reason) == (Phase.DELETE, Reason.DELETE_FAILED)
    s3.keep_deleted = False
    later = await run(s3, result.canary)
    assert later.verdict.result is Result.SUCCESS
    assert later.leftovers["objects"] == 1


async def test_leftovers_of_earlier_runs_are_deleted_and_counted() -> None:
    s3 = FakeS3()
    first = await run(s3)
    s3.faults = {"DeleteObject": (500, "InternalError"), "AbortMultipartUpload": (500, "InternalError")}
    broken = await run(s3, first.canary)
    assert (broken.verdict.phase, broken.verdict.reason) == (Phase.DELETE, Reason.SERVER_ERROR)
    s3.faults = {}
    cleaned = await run(s3, first.canary)
    assert cleaned.leftovers == {"objects": 1, "uploads": 1}
    assert not [k for _, k in s3.objects if "/runs/" in k]
    assert s3.uploads == {}


@pytest.mark.parametrize(
    ("fault", "reason"),
    [
        ((403, "SignatureDoesNotMatch"), Reason.CREDENTIALS_INVALID),
        ((403, "InvalidAccessKeyId"), Reason.CREDENTIALS_INVALID),
        ((404, "XAdminUserNotFound"), Reason.CREDENTIALS_INVALID),
        ((403, "RequestTimeTooSkewed"), Reason.CLOCK_SKEW),
        ((503, "SlowDown"), Reason.SLOW_DOWN),
        ((500, "InternalError"), Reason.SERVER_ERROR),
        ((403, "QuotaExceeded"), Reason.QUOTA_EXCEEDED),
        ((400, "SomethingNew"), Reason.UNEXPECTED_RESPONSE),
    ],
)
async def test_server_errors_get_their_reason(fault: tuple[int, str], reason: Reason) -> None:
    s3 = FakeS3(faults={"GetObject": fault, "PutObject": fault})
    result = await run(s3)
    assert (result.verdict.phase, result.verdict.reason) == (Phase.CANARY, reason)
    assert by_op(result)[Phase.PUT].reason is reason


async def test_a_missing_bucket_is_no_such_bucket() -> None:
    result = await run(FakeS3(buckets=set()))
    assert (result.verdict.phase, result.verdict.reason) == (Phase.CANARY, Reason.NO_SUCH_BUCKET)


def failing_transport(error: Exception) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return httpx.MockTransport(handler)


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (httpx.ConnectError("[Errno 111] Connection refused"), Reason.CONNECTION_FAILED),
        (httpx.ReadError("connection reset"), Reason.CONNECTION_FAILED),
        (httpx.ReadTimeout("timed out"), Reason.TIMEOUT),
        (httpx.RemoteProtocolError("server disconnected"), Reason.CONNECTION_FAILED),
    ],
)
async def test_transport_failures_get_their_reason(error: Exception, reason: Reason) -> None:
    result = await run_once(SPEC, KEYS, None, transport=failing_transport(error))
    assert result.verdict.reason is reason
    assert by_op(result)[Phase.PUT].reason is reason


async def test_an_untrusted_certificate_is_a_tls_error() -> None:
    error = httpx.ConnectError("handshake failed")
    error.__cause__ = ssl.SSLCertVerificationError(1, "certificate verify failed: self-signed certificate")
    result = await run_once(SPEC, KEYS, None, transport=failing_transport(error))
    assert result.verdict.reason is Reason.TLS_ERROR


async def test_disabled_checks_are_not_run() -> None:
    spec = replace(
        SPEC,
        checks=Checks(canary=False, list=False, list_prefix_keys=0, conditional_write=False, multipart=False),
    )
    s3 = FakeS3()
    result = await run(s3, spec=spec)
    assert result.verdict.result is Result.SUCCESS
    ran = {r.operation for r in result.operations if r.result is not None}
    assert ran == {Phase.PUT, Phase.HEAD, Phase.GET, Phase.DELETE, Phase.SWEEP}
    assert "CreateMultipartUpload" not in s3.requests
    assert result.canary is None


async def test_operations_left_when_the_run_deadline_passes_are_not_run() -> None:
    spec = replace(SPEC, operation_timeout=0.3, run_timeout=0.3)
    s3 = FakeS3(hang={"HeadObject"})
    result = await run(s3, spec=spec)
    assert by_op(result)[Phase.HEAD].reason is Reason.TIMEOUT
    assert by_op(result)[Phase.GET].result is None


async def test_purge_removes_everything_under_the_probes_prefix_only() -> None:
    s3 = FakeS3()
    first = await run(s3)
    s3.faults = {"DeleteObject": (500, "InternalError"), "AbortMultipartUpload": (500, "InternalError")}
    await run(s3, first.canary)
    s3.faults = {}
    s3.objects[("bucket", "someone-else/object")] = s3.objects[("bucket", "volprobe/unit/canary")]
    async with client_for(SPEC, KEYS, transport=s3.transport()) as client:
        removed = await purge(client, SPEC)
    assert removed == 1 + 5 + 1 + 1  # canary, seeds, the object and the upload the broken run left
    assert list(s3.objects) == [("bucket", "someone-else/object")]
    assert s3.uploads == {}
