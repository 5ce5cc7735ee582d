"""What an object-store run's answers mean: the reason for each error, the verdict of each operation,
the canary's state, and the run's outcome. Pure: plain values in, decisions out.

A run is, in this order (runtime/s3/check.py makes one request at a time):

* reads of what earlier runs wrote: verify the long-lived canary, list the seeded prefix;
* writes of this run's own objects: PUT → HEAD → GET → LIST → conditional PUT → DELETE, multipart;
* the upkeep (sweep).

Every operation has its own result, so "writes stall while reads pass" — the RGW resharding
outage that motivated this probe — shows as exactly that instead of as one failed run.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from volprobe.contract.reasons import INTEGRITY_REASONS, Phase, Reason, Result
from volprobe.model.outcome import Outcome, Verdict
from volprobe.model.targets import Target

READ_OPERATIONS: tuple[Phase, ...] = (Phase.CANARY, Phase.LIST_PREFIX)
"""Operations that only read what earlier runs wrote: they pass while writes fail in a write stall."""
WRITE_OPERATIONS: tuple[Phase, ...] = (
    Phase.PUT,
    Phase.HEAD,
    Phase.GET,
    Phase.LIST,
    Phase.CONDITIONAL_PUT,
    Phase.DELETE,
    Phase.MULTIPART,
    Phase.SWEEP,
)
"""Operations on this run's own objects, in the order they run (HEAD, GET, LIST need the PUT)."""
OPERATIONS: tuple[Phase, ...] = (Phase.CREDENTIALS, *READ_OPERATIONS, *WRITE_OPERATIONS)
"""Every operation, in the order a failure is reported when several fail (credentials: none ran)."""

CREDENTIAL_CODES = frozenset(
    {
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "InvalidSecurity",
        "AuthorizationHeaderMalformed",
        "MissingSecurityHeader",
        "XAdminUserNotFound",  # versitygw: unknown access key id
    }
)
ACCESS_CODES = frozenset({"AccessDenied", "AllAccessDisabled", "AccountProblem", "Forbidden"})
THROTTLE_CODES = frozenset({"SlowDown", "TooManyRequests", "RequestLimitExceeded", "Throttling"})
QUOTA_CODES = frozenset(
    {"QuotaExceeded", "XAmzQuotaExceeded", "InsufficientStorage", "StorageFull", "XMinioStorageFull"}
)
DIGEST_CODES = frozenset({"BadDigest", "InvalidDigest", "XAmzContentSHA256Mismatch", "InvalidChecksum"})
CLOCK_CODES = frozenset({"RequestTimeTooSkewed", "RequestExpired"})
MISSING_BUCKET_CODES = frozenset({"NoSuchBucket"})


def reason_for_error(status: int, code: str) -> Reason:
    """The reason for an S3 error response, from its code first and its status second.

    Codes are what S3 and its imitations agree on; statuses differ (a throttle is 503 SlowDown on
    AWS, 429 on others). An unknown code never becomes a label value: it is `unexpected_response`
    (the code itself goes to the message and the log).
    """
    if code in CLOCK_CODES:
        return Reason.CLOCK_SKEW
    if code in CREDENTIAL_CODES:
        return Reason.CREDENTIALS_INVALID
    if code in ACCESS_CODES:
        return Reason.ACCESS_DENIED
    if code in MISSING_BUCKET_CODES:
        return Reason.NO_SUCH_BUCKET
    if code in THROTTLE_CODES or status == 429:
        return Reason.SLOW_DOWN
    if code in QUOTA_CODES or status == 507:
        return Reason.QUOTA_EXCEEDED
    if code in DIGEST_CODES:
        return Reason.CHECKSUM_MISMATCH
    if status == 503 and not code:
        return Reason.SLOW_DOWN  # AWS's throttle answer to a HEAD, which has no body to name it
    if status >= 500:
        return Reason.SERVER_ERROR
    if status == 403:
        return Reason.ACCESS_DENIED
    return Reason.UNEXPECTED_RESPONSE


def reason_for_delete_error(status: int, code: str) -> Reason:
    """A refused DELETE: credentials, access, throttling and outages keep their own reason."""
    reason = reason_for_error(status, code)
    return Reason.DELETE_FAILED if reason is Reason.UNEXPECTED_RESPONSE else reason


@dataclass(frozen=True)
class OperationResult:
    """How one operation of a run went. `result` None: not run (disabled, or what it needs failed)."""

    operation: Phase
    result: Result | None
    reason: Reason | None = None
    message: str = ""
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.result is Result.SUCCESS

    @property
    def failed(self) -> bool:
        return self.result in (Result.FAILURE, Result.TIMEOUT)


def passed(operation: Phase, seconds: float) -> OperationResult:
    return OperationResult(operation, Result.SUCCESS, seconds=seconds)


def failed(operation: Phase, reason: Reason, message: str, seconds: float) -> OperationResult:
    result = Result.TIMEOUT if reason is Reason.TIMEOUT else Result.FAILURE
    return OperationResult(operation, result, reason, message, seconds)


def not_run(operation: Phase, why: str = "") -> OperationResult:
    return OperationResult(operation, None, message=why)


def judge(results: Iterable[OperationResult]) -> Verdict:
    """The run's verdict: the first failed operation in `OPERATIONS` order, integrity findings first.

    Data that was acknowledged and then lost or changed outranks everything else: it is what the
    probe exists to catch, and an outage in another operation must not hide it.
    """
    by_operation = {r.operation: r for r in results}
    ordered = [by_operation[op] for op in OPERATIONS if op in by_operation]
    failures = [r for r in ordered if r.failed]
    if not failures:
        return Verdict(Result.SUCCESS)
    integrity = [r for r in failures if r.reason in INTEGRITY_REASONS]
    first = (integrity or failures)[0]
    assert first.result is not None
    assert first.reason is not None
    others = [
        f"{r.operation.value}: {r.reason.value if r.reason else ''}" for r in failures if r is not first
    ]
    message = first.message + (f" (also failed: {', '.join(others)})" if others else "")
    return Verdict(first.result, first.operation, first.reason, message)


def writes_fail_reads_pass(results: Sequence[OperationResult]) -> bool:
    """The write-stall shape: every read that ran passed, and some write failed."""
    reads = [r for r in results if r.operation in READ_OPERATIONS and r.result is not None]
    writes = [r for r in results if r.operation in WRITE_OPERATIONS]
    return bool(reads) and all(r.passed for r in reads) and any(r.failed for r in writes)


@dataclass(frozen=True)
class ObjectStoreRun:
    """What one run found, beyond its verdict: everything metrics and status show."""

    run: str
    started: float
    finished: float
    operations: tuple[OperationResult, ...]
    verdict: Verdict
    canary: CanaryRecord | None
    """The canary record after this run (a new one if this run wrote it)."""
    certificate_not_after: float | None = None
    leftovers: dict[str, int] = field(default_factory=dict)
    """Leftovers of earlier runs removed by this run's sweep: objects and multipart uploads."""
    visibility_seconds: float | None = None
    """How long the new key took to show up in a LIST."""
    seeded_keys: int = 0
    """Keys found under the seeded prefix (before this run topped it up)."""


# -- verifying what was read back ---------------------------------------------------------------------


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def verify_read(
    what: str, body: bytes, expected_sha256: str, stored_checksum: str, expected_checksum: str
) -> tuple[Reason, str] | None:
    """None if `body` is what was written; else (checksum_mismatch, what differs).

    `stored_checksum` is the base64 SHA-256 the server returned with the object (empty when it
    keeps none); it must equal ours too, or the server stored something other than it confirmed.
    """
    actual = sha256_hex(body)
    if actual != expected_sha256:
        return (
            Reason.CHECKSUM_MISMATCH,
            f"{what}: read {len(body)} bytes with sha256 {actual[:16]}…, "
            f"wrote sha256 {expected_sha256[:16]}…",
        )
    if stored_checksum and stored_checksum != expected_checksum:
        return (
            Reason.CHECKSUM_MISMATCH,
            f"{what}: the server's stored checksum {stored_checksum} is not {expected_checksum}",
        )
    return None


def verify_head(size: int, expected_size: int, stored_checksum: str, expected_checksum: str) -> str:
    """What HEAD shows wrong about the new object ("" when nothing)."""
    if size != expected_size:
        return f"HEAD reports {size} bytes, {expected_size} were written"
    if stored_checksum and stored_checksum != expected_checksum:
        return f"HEAD reports checksum {stored_checksum}, {expected_checksum} was written"
    return ""


# -- the canary ---------------------------------------------------------------------------------------

CANARY_SHA_METADATA = "volprobe-sha256"
"""User metadata on the canary: its own SHA-256, so a canary is checkable even by a new controller."""


@dataclass(frozen=True)
class CanaryRecord:
    """The canary a run wrote and the server acknowledged; kept in the probe's status."""

    key: str
    sha256: str
    written: float

    def to_status(self) -> dict[str, str | float]:
        return {"key": self.key, "sha256": self.sha256, "written": self.written}

    @classmethod
    def from_status(cls, value: object) -> CanaryRecord | None:
        if not isinstance(value, Mapping):
            return None
        key, digest, written = value.get("key"), value.get("sha256"), value.get("written")
        if not isinstance(key, str) or not isinstance(digest, str) or not isinstance(written, int | float):
            return None
        return cls(key, digest, float(written))


@dataclass(frozen=True)
class CanaryVerdict:
    reason: Reason | None
    message: str
    rewrite: bool
    """Write a new canary (first run, or after reporting a loss so the next run can pass)."""


def judge_canary(expected: CanaryRecord | None, body: bytes | None, metadata_sha256: str) -> CanaryVerdict:
    """Is the canary what was written? `body` None: the server says it does not exist.

    `expected` is what this probe recorded writing. Without a record (first run, or a status
    lost with the probe), the canary's own metadata is the reference; with one, a canary that
    is gone is `data_lost`, and one whose bytes changed is `checksum_mismatch` even if someone
    rewrote its metadata to match.
    """
    if body is None:
        if expected is None:
            return CanaryVerdict(None, "no canary yet: writing one", rewrite=True)
        return CanaryVerdict(
            Reason.DATA_LOST,
            f"canary {expected.key} (sha256 {expected.sha256[:16]}…) was acknowledged and is gone",
            rewrite=True,
        )
    actual = sha256_hex(body)
    reference = expected.sha256 if expected is not None else metadata_sha256
    if not reference:
        return CanaryVerdict(None, "canary without a recorded checksum: replacing it", rewrite=True)
    if actual != reference:
        return CanaryVerdict(
            Reason.CHECKSUM_MISMATCH,
            f"canary read back with sha256 {actual[:16]}…, written with {reference[:16]}…",
            rewrite=True,
        )
    return CanaryVerdict(None, "", rewrite=False)


def outcome_durations(results: Iterable[OperationResult]) -> dict[Phase, float]:
    """Seconds each operation took (failed ones too: a timeout's duration is its deadline)."""
    return {r.operation: max(0.0, r.seconds) for r in results if r.result is not None}


def to_outcome(target: Target, run: ObjectStoreRun) -> Outcome:
    """The run as volprobe's common `Outcome`: phase = the failed operation, durations per operation."""
    verdict = run.verdict
    return Outcome(
        target=target,
        run=run.run,
        result=verdict.result,
        phase=verdict.phase,
        reason=verdict.reason,
        message=verdict.message,
        node="",
        started=run.started,
        finished=run.finished,
        durations=outcome_durations(run.operations),
        details=run,
    )


def reasons_table() -> Mapping[str, Reason]:
    """Every S3 error code this module knows, with its reason (docs/objectstore.md lists it)."""
    table: dict[str, Reason] = {}
    for codes in (
        CLOCK_CODES,
        CREDENTIAL_CODES,
        ACCESS_CODES,
        MISSING_BUCKET_CODES,
        THROTTLE_CODES,
        QUOTA_CODES,
        DIGEST_CODES,
    ):
        for code in sorted(codes):
            table[code] = reason_for_error(400, code)
    return table
