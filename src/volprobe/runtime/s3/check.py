"""One object-store run: every operation against the real endpoint, timed against its deadline.

The decisions (what an answer means, which reason, the run's verdict) are in
`volprobe.model.objectstore_checks`; this module only makes the requests, measures them and
hands the answers over.

One request at a time, in a fixed order: first the reads of what earlier runs wrote (canary,
seeded prefix), then the writes of this run's own objects, then the upkeep (sweep). Nothing
runs side by side, so each operation's time is the server's answer to it alone (what
bench/objectstore.py compares with the same requests made directly), and reads come first, so
"writes stall while reads pass" is seen as exactly that.

Deadlines: each operation gets `operationSeconds`, cut to what is left of `runSeconds`. After an
operation timed out, the rest of the run is not made (a stalled server would only stall it
too): a frozen server is reported one operation deadline after the request it did not answer.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx

from volprobe.contract.reasons import Phase, Reason
from volprobe.model.objectstore import ObjectStoreSpec, TLSSettings
from volprobe.model.objectstore_checks import (
    CANARY_SHA_METADATA,
    CanaryRecord,
    ObjectStoreRun,
    OperationResult,
    failed,
    judge,
    judge_canary,
    not_run,
    passed,
    reason_for_delete_error,
    reason_for_error,
    sha256_hex,
    verify_head,
    verify_read,
)
from volprobe.runtime.s3.client import ProtocolError, S3Client, S3Error, checksum_header
from volprobe.runtime.s3.sigv4 import Credentials

T = TypeVar("T")

LIST_POLL_SECONDS = 0.1
"""How often LIST is repeated while waiting for a new key to show up."""
SEED_CONCURRENCY = 8
MAX_SWEEP_KEYS = 1000
"""At most this many leftovers are deleted per run, so a huge backlog cannot eat the run's deadline."""


class Mismatch(Exception):
    """An answer that contradicts what was written: carries the reason to report."""

    def __init__(self, reason: Reason, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@functools.lru_cache(maxsize=64)
def tls_context(settings: TLSSettings) -> ssl.SSLContext:
    """The TLS context of every run with these settings: the CA bundle, the system store, or none.

    Built once and shared (contexts are immutable once set up): each run has a client of its own,
    and a context per client would load the trust store anew every run (~3 MiB each while runs of
    many probes overlap).
    """
    if settings.insecure_skip_verify:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if settings.ca_bundle:
        return ssl.create_default_context(cadata=settings.ca_bundle)
    return ssl.create_default_context()


def client_for(
    spec: ObjectStoreSpec, credentials: Credentials, transport: httpx.AsyncBaseTransport | None = None
) -> S3Client:
    return S3Client(
        spec.endpoint,
        spec.region,
        credentials,
        virtual_hosted=spec.virtual_hosted,
        verify=tls_context(spec.tls),
        timeout=spec.operation_timeout,
        transport=transport,
    )


def transport_reason(error: BaseException) -> Reason:
    """The reason for an exception that is not an S3 answer (no response, or not S3)."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, ssl.SSLError | ssl.CertificateError):
            return Reason.TLS_ERROR
        cause = cause.__cause__ or cause.__context__
    if isinstance(error, TimeoutError | httpx.TimeoutException):
        return Reason.TIMEOUT
    if isinstance(error, httpx.TransportError | OSError):
        return Reason.CONNECTION_FAILED
    return Reason.UNEXPECTED_RESPONSE


class Runner:
    """Carries out one run; created per run, holds its deadlines and findings."""

    def __init__(
        self,
        client: S3Client,
        spec: ObjectStoreSpec,
        run: str,
        canary: CanaryRecord | None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> None:
        self.client = client
        self.spec = spec
        self.layout = spec.layout
        self.run = run
        self.expected_canary = canary
        self.clock = clock
        self.monotonic = monotonic
        self.random_bytes = random_bytes
        self.run_deadline = monotonic() + spec.run_timeout
        self.results: dict[Phase, OperationResult] = {}
        self.canary_rewrite = False
        self.visibility: float | None = None
        self.seeded = 0
        self.leftovers = {"objects": 0, "uploads": 0}
        self.new_canary: CanaryRecord | None = canary
        self.stalled = ""
        """The operation that timed out: the rest of the run is not made."""
        self.deadlines: dict[Phase, float] = {}
        """When each operation must end (LIST's visibility wait stops short of it)."""

    # -- one operation -------------------------------------------------------------------------------

    async def attempt(self, operation: Phase, action: Callable[[], Awaitable[T]]) -> T | None:
        """Run `action` as `operation` under its deadline; record how it went; None if it failed."""
        if self.stalled:
            self.skip(operation, f"the server stopped answering ({self.stalled} timed out)")
            return None
        budget = min(self.spec.operation_timeout, self.run_deadline - self.monotonic())
        if budget <= 0:
            self.results[operation] = not_run(operation, "the run's deadline passed first")
            return None
        started = self.monotonic()
        self.deadlines[operation] = started + budget
        reason: Reason | None = None
        message = ""
        value: T | None = None
        try:
            async with asyncio.timeout(budget):
                value = await action()
        except TimeoutError:
            reason, message = Reason.TIMEOUT, f"{operation.value}: no answer within {budget:.1f}s"
            self.stalled = operation.value
        except Mismatch as mismatch:
            reason, message = mismatch.reason, str(mismatch)
        except S3Error as error:
            reason = (reason_for_delete_error if operation is Phase.DELETE else reason_for_error)(
                error.status, error.code
            )
            message = str(error)
        except ProtocolError as error:
            reason, message = Reason.UNEXPECTED_RESPONSE, str(error)
        except (httpx.HTTPError, OSError, ssl.SSLError) as error:
            reason = transport_reason(error)
            message = f"{operation.value}: {type(error).__name__}: {error}".strip()
        seconds = self.monotonic() - started
        if reason is None:
            self.results[operation] = passed(operation, seconds)
            return value
        self.results[operation] = failed(operation, reason, message[:300], seconds)
        return None

    def skip(self, operation: Phase, why: str) -> None:
        self.results[operation] = not_run(operation, why)

    # -- reads of what earlier runs wrote --------------------------------------------------------------

    async def reads(self) -> None:
        if self.spec.checks.canary:
            await self.attempt(Phase.CANARY, self.verify_canary)
        else:
            self.skip(Phase.CANARY, "disabled")
        if self.spec.checks.list_prefix_keys <= 0:
            self.skip(Phase.LIST_PREFIX, "disabled")
        else:
            await self.attempt(Phase.LIST_PREFIX, self.list_seeded_prefix)

    async def verify_canary(self) -> None:
        try:
            stored = await self.client.get_object(self.spec.bucket, self.layout.canary)
            body: bytes | None = stored.body
            metadata_sha = stored.info.metadata.get(CANARY_SHA_METADATA, "")
        except S3Error as error:
            if error.status != 404 or error.code not in ("NoSuchKey", "NotFound"):
                raise
            body, metadata_sha = None, ""
        verdict = judge_canary(self.expected_canary, body, metadata_sha)
        self.canary_rewrite = verdict.rewrite
        if verdict.reason is not None:
            raise Mismatch(verdict.reason, verdict.message)

    async def list_seeded_prefix(self) -> None:
        wanted = self.spec.checks.list_prefix_keys
        found, token = 0, ""
        while found < wanted:
            page = await self.client.list_objects(
                self.spec.bucket, self.layout.seed_prefix, max_keys=min(1000, wanted - found), token=token
            )
            found += len(page.keys)
            if not page.truncated or not page.next_token:
                break
            token = page.next_token
        self.seeded = found

    # -- writes of this run's own objects ------------------------------------------------------------

    async def writes(self, payload: bytes) -> None:
        key = self.layout.run_object(self.run)
        digest = sha256_hex(payload)
        checksum = checksum_header(payload)
        wrote = await self.attempt(
            Phase.PUT,
            lambda: self.client.put_object(
                self.spec.bucket, key, payload, metadata={CANARY_SHA_METADATA: digest}
            ),
        )
        dependent = [Phase.HEAD, Phase.GET]
        dependent += [Phase.LIST] if self.spec.checks.list else []
        dependent += [Phase.CONDITIONAL_PUT] if self.spec.checks.conditional_write else []
        dependent.append(Phase.DELETE)
        for operation in (Phase.LIST, Phase.CONDITIONAL_PUT):
            if operation not in dependent:
                self.skip(operation, "disabled")
        if wrote is None:
            for operation in dependent:
                self.skip(operation, "the PUT failed")
        else:
            steps: dict[Phase, Callable[[], Awaitable[object]]] = {
                Phase.HEAD: lambda: self.head(key, len(payload), checksum),
                Phase.GET: lambda: self.get(key, digest, checksum),
                Phase.LIST: lambda: self.wait_listed(key),
                Phase.CONDITIONAL_PUT: lambda: self.conditional_put(key, payload),
                Phase.DELETE: lambda: self.delete(key),
            }
            for operation in dependent:
                await self.attempt(operation, steps[operation])
        if not self.spec.checks.multipart:
            self.skip(Phase.MULTIPART, "disabled")
        else:
            await self.attempt(Phase.MULTIPART, self.multipart)

    async def head(self, key: str, size: int, checksum: str) -> None:
        try:
            info = await self.client.head_object(self.spec.bucket, key)
        except S3Error as error:
            if error.status == 404:
                raise Mismatch(Reason.DATA_LOST, f"HEAD: acknowledged object {key} not found") from None
            raise
        problem = verify_head(info.size, size, info.checksum_sha256, checksum)
        if problem:
            raise Mismatch(Reason.CHECKSUM_MISMATCH, problem)

    async def get(self, key: str, digest: str, checksum: str) -> None:
        try:
            stored = await self.client.get_object(self.spec.bucket, key)
        except S3Error as error:
            if error.status == 404 and error.code in ("NoSuchKey", "NotFound"):
                raise Mismatch(Reason.DATA_LOST, f"GET: acknowledged object {key} not found") from None
            raise
        problem = verify_read("GET", stored.body, digest, stored.info.checksum_sha256, checksum)
        if problem is not None:
            raise Mismatch(*problem)

    async def wait_listed(self, key: str) -> None:
        """LIST until the key shows up; a server that answers but never lists it is `not_visible`."""
        started = self.monotonic()
        while True:
            page = await self.client.list_objects(self.spec.bucket, key, max_keys=1)
            if key in page.keys:
                self.visibility = self.monotonic() - started
                return
            if self.monotonic() + 2 * LIST_POLL_SECONDS >= self.deadlines[Phase.LIST]:
                waited = self.monotonic() - started
                raise Mismatch(Reason.NOT_VISIBLE, f"LIST: {key} not listed after {waited:.1f}s")
            await asyncio.sleep(LIST_POLL_SECONDS)

    async def conditional_put(self, key: str, payload: bytes) -> None:
        try:
            await self.client.put_object(self.spec.bucket, key, payload, if_none_match=True)
        except S3Error as error:
            if error.status in (409, 412):
                return
            raise
        raise Mismatch(
            Reason.CONDITIONAL_WRITE_IGNORED, f"PUT {key} with If-None-Match: * replaced the existing object"
        )

    async def delete(self, key: str) -> None:
        await self.client.delete_object(self.spec.bucket, key)
        try:
            await self.client.head_object(self.spec.bucket, key)
        except S3Error as error:
            if error.status == 404:
                return
            raise
        raise Mismatch(Reason.DELETE_FAILED, f"{key} still exists after its DELETE was acknowledged")

    async def multipart(self) -> None:
        key = self.layout.upload(self.run)
        part = max(1, self.spec.payload_bytes // 2)
        upload_id = await self.client.create_multipart_upload(self.spec.bucket, key)
        for number in (1, 2):
            await self.client.upload_part(self.spec.bucket, key, upload_id, number, self.random_bytes(part))
        parts = await self.client.list_parts(self.spec.bucket, key, upload_id)
        if parts != 2:
            raise Mismatch(
                Reason.UNEXPECTED_RESPONSE, f"multipart upload lists {parts} parts, 2 were uploaded"
            )
        await self.client.abort_multipart_upload(self.spec.bucket, key, upload_id)
        try:
            await self.client.list_parts(self.spec.bucket, key, upload_id)
        except S3Error as error:
            if error.status == 404:
                return
            raise
        raise Mismatch(Reason.DELETE_FAILED, f"multipart upload {key} still exists after its abort")

    # -- upkeep ----------------------------------------------------------------------------------------

    async def sweep(self) -> None:
        bucket = self.spec.bucket
        page = await self.client.list_objects(bucket, self.layout.runs_prefix, max_keys=MAX_SWEEP_KEYS)
        for key in page.keys:
            await self.client.delete_object(bucket, key)
            self.leftovers["objects"] += 1
        if self.spec.checks.multipart:
            for upload in await self.client.list_multipart_uploads(bucket, self.layout.uploads_prefix):
                await self.client.abort_multipart_upload(bucket, upload.key, upload.upload_id)
                self.leftovers["uploads"] += 1
        if self.canary_rewrite:
            payload = self.random_bytes(self.spec.payload_bytes)
            digest = sha256_hex(payload)
            await self.client.put_object(
                bucket, self.layout.canary, payload, metadata={CANARY_SHA_METADATA: digest}
            )
            self.new_canary = CanaryRecord(self.layout.canary, digest, self.clock())
        elif self.new_canary is None and self.results.get(Phase.CANARY, not_run(Phase.CANARY)).passed:
            # Verified against the canary's own metadata (a new controller, or status lost).
            stored = await self.client.head_object(bucket, self.layout.canary)
            digest = stored.metadata.get(CANARY_SHA_METADATA, "")
            self.new_canary = CanaryRecord(self.layout.canary, digest, self.clock()) if digest else None
        missing = (
            self.spec.checks.list_prefix_keys - self.seeded
            if self.results.get(Phase.LIST_PREFIX, not_run(Phase.LIST_PREFIX)).passed
            else 0
        )
        if missing > 0:
            await self.seed()

    async def seed(self) -> None:
        """Write the seeded keys that are missing (empty objects; the listing is what is measured)."""
        bucket = self.spec.bucket
        existing: set[str] = set()
        token = ""
        while True:
            page = await self.client.list_objects(bucket, self.layout.seed_prefix, token=token)
            existing.update(page.keys)
            if not page.truncated or not page.next_token:
                break
            token = page.next_token
        wanted = [self.layout.seed(i) for i in range(self.spec.checks.list_prefix_keys)]
        missing = [key for key in wanted if key not in existing]
        limit = asyncio.Semaphore(SEED_CONCURRENCY)

        async def put(key: str) -> None:
            async with limit:
                await self.client.put_object(bucket, key, b"")

        try:
            async with asyncio.TaskGroup() as group:
                for key in missing:
                    group.create_task(put(key))
        except ExceptionGroup as errors:
            raise errors.exceptions[0] from None  # the first refusal names the reason for all

    # -- the whole run -------------------------------------------------------------------------------

    async def execute(self) -> ObjectStoreRun:
        started = self.clock()
        payload = self.random_bytes(self.spec.payload_bytes)
        await self.reads()
        await self.writes(payload)
        await self.attempt(Phase.SWEEP, self.sweep)
        results = tuple(self.results.values())
        return ObjectStoreRun(
            run=self.run,
            started=started,
            finished=self.clock(),
            operations=results,
            verdict=judge(results),
            canary=self.new_canary,
            certificate_not_after=self.client.certificate_not_after,
            leftovers=dict(self.leftovers),
            visibility_seconds=self.visibility,
            seeded_keys=self.seeded,
        )


def run_id(now: float, random_bytes: Callable[[int], bytes] = os.urandom) -> str:
    """Sortable by time, unique across replicas and restarts."""
    return f"{int(now):x}-{random_bytes(3).hex()}"


async def run_once(
    spec: ObjectStoreSpec,
    credentials: Credentials,
    canary: CanaryRecord | None,
    *,
    run: str = "",
    transport: httpx.AsyncBaseTransport | None = None,
    clock: Callable[[], float] = time.time,
) -> ObjectStoreRun:
    """One run with a client of its own (the controller and `volprobe check` call this)."""
    name = run or run_id(clock())
    try:
        client = client_for(spec, credentials, transport=transport)
    except ssl.SSLError as error:
        now = clock()
        message = f"the CA bundle is unusable: {error}"
        results = (failed(Phase.PUT, Reason.TLS_ERROR, message, 0.0),)
        return ObjectStoreRun(name, now, now, results, judge(results), canary)
    async with client:
        return await Runner(client, spec, name, canary, clock=clock).execute()


async def purge(client: S3Client, spec: ObjectStoreSpec) -> int:
    """Delete every object and multipart upload under the probe's prefix; returns how many.

    What a deleted probe (or a finished `volprobe check-objectstore`) leaves behind: the canary,
    the seeded keys, and whatever an interrupted run left.
    """
    base = spec.layout.base
    removed = 0
    for upload in await client.list_multipart_uploads(spec.bucket, base):
        await client.abort_multipart_upload(spec.bucket, upload.key, upload.upload_id)
        removed += 1
    while True:
        page = await client.list_objects(spec.bucket, base)
        for key in page.keys:
            await client.delete_object(spec.bucket, key)
        removed += len(page.keys)
        if not page.truncated or not page.keys:
            return removed
