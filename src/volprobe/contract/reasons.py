"""The fixed vocabulary of probe outcomes: results, phases, failure and skip reasons.

Every label value volprobe exports comes from here (and the `kind` label from the kind modules in
`volprobe.kinds`), never from an error string: a bounded set
keeps Prometheus series bounded, lets alert rules match exact values, and lets the docs list
every value an operator can see. The agent imports this module too, so it stays standard-library
only. `docs/reasons.md` is generated from the descriptions below (a test keeps them in step).
"""

from __future__ import annotations

from enum import StrEnum
from functools import cache


class Result(StrEnum):
    """How a run ended. `failure` and `timeout` both carry a phase and a reason."""

    SUCCESS = "success"
    """Every phase finished in time and the data checked out."""
    SLOW = "slow"
    """A success, but a phase (the run's `phase`) took far longer than this probe's recent
    successes usually do: storage got slow. Never a failure, never paged."""
    FAILURE = "failure"
    """Something went wrong before any deadline: an error, a corruption, a refusal."""
    TIMEOUT = "timeout"
    """A phase did not finish before its deadline; the run was stopped and its objects deleted."""
    SKIPPED = "skipped"
    """The node could not be probed for a reason outside storage (see skip reasons); not a failure."""


class Phase(StrEnum):
    """Where in a run's life something went wrong, in the order a run goes through them."""

    PROVISION = "provision"
    """From creating the claim to the claim being Bound."""
    SCHEDULE = "schedule"
    """From the claim being Bound (or pod creation) to the pod being bound to a node."""
    MOUNT = "mount"
    """From the pod being bound to a node to its container running: attach, mount, image."""
    IO = "io"
    """The agent's whole check, container start to report; a failure here means no finer phase is known."""
    VERIFY = "verify"
    """Reading back and checking what the previous run left on the volume."""
    WRITE = "write"
    """Writing this run's payload."""
    FSYNC = "fsync"
    """Flushing the payload and its directory to stable storage."""
    READ = "read"
    """Reading the payload back, bypassing the page cache, and comparing it."""
    REPORT = "report"
    """Getting the agent's result out of the pod."""
    CLEANUP = "cleanup"
    """Deleting the pod (and, for provision runs, the claim and its volume)."""
    CREDENTIALS = "credentials"
    """Object store: reading the key pair from the probe's Secret, before any request is made."""
    PUT = "put"
    """Object store: writing this run's object with a SHA-256 checksum the server must verify."""
    HEAD = "head"
    """Object store: reading back the new object's size and checksum (HEAD)."""
    GET = "get"
    """Object store: reading the new object back and comparing bytes and checksum."""
    CANARY = "canary"
    """Object store: reading and verifying the long-lived canary object an earlier run wrote."""
    LIST = "list"
    """Object store: waiting for the new object to be listed (LIST after PUT)."""
    LIST_PREFIX = "list_prefix"
    """Object store: listing a seeded prefix of many keys (slow here means a slow bucket index)."""
    CONDITIONAL_PUT = "conditional_put"
    """Object store: a PUT with If-None-Match: * on an existing key, which must be refused."""
    MULTIPART = "multipart"
    """Object store: starting a multipart upload, uploading two parts and aborting it."""
    DELETE = "delete"
    """Object store: deleting the new object, then checking that it is gone."""
    SWEEP = "sweep"
    """Object store: upkeep after the checks: earlier runs' leftovers deleted, canary and seeds written."""


class Reason(StrEnum):
    """Why a run failed. The only values the `reason` label ever takes."""

    STORAGE_CLASS_MISSING = "storage_class_missing"
    """The StorageClass the probe names does not exist."""
    PROVISIONING_TIMEOUT = "provisioning_timeout"
    """The claim did not become Bound within the provision timeout (no provisioner acted)."""
    PROVISIONING_FAILED = "provisioning_failed"
    """The provisioner reported an error (ProvisioningFailed event) and the claim stayed unbound."""
    CLAIM_LOST = "claim_lost"
    """The claim went to phase Lost: its volume disappeared."""
    UNSCHEDULABLE = "unschedulable"
    """The scheduler could not place the pod (FailedScheduling), e.g. volume node affinity conflict."""
    ATTACH_TIMEOUT = "attach_timeout"
    """The volume was not attached to the node in time (FailedAttachVolume or no progress)."""
    MOUNT_FAILED = "mount_failed"
    """The kubelet reported that mounting the volume failed (FailedMount)."""
    MOUNT_TIMEOUT = "mount_timeout"
    """The container did not start within the mount timeout, with no more specific cause."""
    IMAGE_UNAVAILABLE = "image_unavailable"
    """The probe image could not be pulled or is not present on the node."""
    POD_FAILED = "pod_failed"
    """The pod was rejected, evicted, preempted or deleted by someone else: ended from outside."""
    AGENT_FAILED = "agent_failed"
    """The agent itself crashed or was OOMKilled (non-zero exit), so the check was not completed."""
    BAD_REPORT = "bad_report"
    """The agent's report was missing, truncated, oversized or malformed."""
    IO_ERROR = "io_error"
    """A read, write or fsync returned EIO or another unexpected OS error."""
    READ_ONLY = "read_only"
    """The volume is mounted read-only or the filesystem turned read-only (EROFS)."""
    NO_SPACE = "no_space"
    """The volume is full (ENOSPC or EDQUOT)."""
    CHECKSUM_MISMATCH = "checksum_mismatch"
    """Data read back differs from what was written: silent corruption."""
    DATA_LOST = "data_lost"
    """Data the previous run wrote and fsynced is missing or older than expected."""
    TIMEOUT = "timeout"
    """An IO phase or an object-store operation did not finish before its deadline."""
    PV_NOT_DELETED = "pv_not_deleted"
    """After a provision run the claim's PersistentVolume was still there (Delete reclaim policy)."""
    CLEANUP_TIMEOUT = "cleanup_timeout"
    """The probe pod or claim was not gone within the cleanup timeout."""
    API_ERROR = "api_error"
    """The API server refused to create the probe's objects (quota, admission, RBAC)."""
    CONNECTION_FAILED = "connection_failed"
    """Object store: no connection to the endpoint (refused, unreachable, reset, name not resolved)."""
    TLS_ERROR = "tls_error"
    """Object store: the TLS handshake failed (untrusted or expired certificate, wrong name, protocol)."""
    CREDENTIALS_MISSING = "credentials_missing"
    """Object store: the credentials Secret, or one of its keys, is missing in the controller's namespace."""
    CREDENTIALS_INVALID = "credentials_invalid"
    """Object store: the server refuses the credentials (unknown key, bad signature, expired token)."""
    ACCESS_DENIED = "access_denied"
    """Object store: the credentials are valid but not allowed to do this operation (AccessDenied)."""
    NO_SUCH_BUCKET = "no_such_bucket"
    """Object store: the bucket the probe names does not exist."""
    NOT_VISIBLE = "not_visible"
    """Object store: an acknowledged object did not show up in a LIST before the deadline."""
    SLOW_DOWN = "slow_down"
    """Object store: the server throttled the request (SlowDown, 429, or 503 without an error code)."""
    SERVER_ERROR = "server_error"
    """Object store: the server failed the request (5xx, e.g. InternalError, ServiceUnavailable)."""
    CLOCK_SKEW = "clock_skew"
    """Object store: the server rejected the request time (RequestTimeTooSkewed): clocks disagree."""
    QUOTA_EXCEEDED = "quota_exceeded"
    """Object store: the bucket or account is out of quota or the server out of space."""
    DELETE_FAILED = "delete_failed"
    """Object store: a DELETE was refused, or the object was still there after it was acknowledged."""
    CONDITIONAL_WRITE_IGNORED = "conditional_write_ignored"
    """Object store: a PUT with If-None-Match: * overwrote an existing object instead of being refused."""
    UNEXPECTED_RESPONSE = "unexpected_response"
    """Object store: an error code or response volprobe does not know (kept out of the label, logged)."""


INTEGRITY_REASONS = frozenset({Reason.CHECKSUM_MISMATCH, Reason.DATA_LOST})
"""Findings about the data itself: always reported, whatever happened to the node meanwhile."""


class SkipReason(StrEnum):
    """Why a node was not probed. Skips are counted and shown, never failures."""

    NOT_READY = "not_ready"
    """The node's Ready condition is not True."""
    CORDONED = "cordoned"
    """The node is marked unschedulable."""
    TAINTED = "tainted"
    """The node has a NoSchedule/NoExecute taint the probe does not tolerate."""
    DELETING = "deleting"
    """The node is being deleted."""
    TOO_NEW = "too_new"
    """The node joined less than the grace period ago."""
    RECOVERING = "recovering"
    """The node became Ready less than the grace period ago (e.g. after a reboot)."""


def describe(member: StrEnum) -> str:
    """The one-line description of a vocabulary member (its docstring in this module)."""
    return _descriptions().get((type(member).__name__, member.value), "")


@cache
def _descriptions() -> dict[tuple[str, str], str]:
    """Attribute docstrings are not kept at run time, so read them from this file's source.

    Reading our own source keeps each description next to its value (one place for each fact)
    without a second table that could drift. Cached and lazy: the agent never pays for it.
    """
    import ast
    from pathlib import Path

    tree = ast.parse(Path(__file__).read_text())
    found: dict[tuple[str, str], str] = {}
    for cls in tree.body:
        if not isinstance(cls, ast.ClassDef):
            continue
        body = cls.body
        for index, node in enumerate(body[:-1]):
            following = body[index + 1]
            if (
                isinstance(node, ast.Assign)
                and isinstance(node.value, ast.Constant)
                and isinstance(following, ast.Expr)
                and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)
            ):
                found[(cls.name, str(node.value.value))] = " ".join(following.value.value.split())
    return found
