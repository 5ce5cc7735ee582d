"""The pure decisions of the object-store probe: reasons for answers, verdicts, the canary, certificates."""

from __future__ import annotations

import hashlib
import ssl
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import pytest

from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.model.objectstore_checks import (
    OPERATIONS,
    READ_OPERATIONS,
    WRITE_OPERATIONS,
    CanaryRecord,
    OperationResult,
    failed,
    judge,
    judge_canary,
    not_run,
    passed,
    reason_for_delete_error,
    reason_for_error,
    reasons_table,
    verify_head,
    verify_read,
    writes_fail_reads_pass,
)
from volprobe.model.objectstore_tls import CertificateError, not_after


@pytest.mark.parametrize(
    ("status", "code", "reason"),
    [
        (403, "AccessDenied", Reason.ACCESS_DENIED),
        (403, "", Reason.ACCESS_DENIED),
        (403, "InvalidAccessKeyId", Reason.CREDENTIALS_INVALID),
        (403, "SignatureDoesNotMatch", Reason.CREDENTIALS_INVALID),
        (400, "ExpiredToken", Reason.CREDENTIALS_INVALID),
        (404, "XAdminUserNotFound", Reason.CREDENTIALS_INVALID),
        (403, "RequestTimeTooSkewed", Reason.CLOCK_SKEW),
        (404, "NoSuchBucket", Reason.NO_SUCH_BUCKET),
        (503, "SlowDown", Reason.SLOW_DOWN),
        (429, "", Reason.SLOW_DOWN),
        (503, "", Reason.SLOW_DOWN),
        (503, "ServiceUnavailable", Reason.SERVER_ERROR),
        (500, "InternalError", Reason.SERVER_ERROR),
        (502, "", Reason.SERVER_ERROR),
        (403, "QuotaExceeded", Reason.QUOTA_EXCEEDED),
        (507, "", Reason.QUOTA_EXCEEDED),
        (400, "BadDigest", Reason.CHECKSUM_MISMATCH),
        (400, "XAmzContentSHA256Mismatch", Reason.CHECKSUM_MISMATCH),
        (400, "InvalidRequest", Reason.UNEXPECTED_RESPONSE),
        (301, "PermanentRedirect", Reason.UNEXPECTED_RESPONSE),
    ],
)
def test_error_responses_map_to_reasons(status: int, code: str, reason: Reason) -> None:
    assert reason_for_error(status, code) is reason


def test_a_refused_delete_keeps_known_reasons_and_is_delete_failed_otherwise() -> None:
    assert reason_for_delete_error(403, "AccessDenied") is Reason.ACCESS_DENIED
    assert reason_for_delete_error(500, "InternalError") is Reason.SERVER_ERROR
    assert reason_for_delete_error(409, "ObjectLocked") is Reason.DELETE_FAILED


def test_every_known_code_is_in_the_documented_table() -> None:
    table = reasons_table()
    assert table["SlowDown"] is Reason.SLOW_DOWN
    assert table["NoSuchBucket"] is Reason.NO_SUCH_BUCKET
    assert all(reason is not Reason.UNEXPECTED_RESPONSE for reason in table.values())
    documented = (Path(__file__).parents[2] / "docs" / "objectstore.md").read_text()
    assert [code for code in table if f"`{code}`" not in documented] == []


def test_operations_are_split_into_reads_and_writes_once() -> None:
    assert set(READ_OPERATIONS).isdisjoint(WRITE_OPERATIONS)
    assert len(OPERATIONS) == len(set(OPERATIONS))


def test_a_run_without_failures_succeeds_even_with_operations_not_run() -> None:
    verdict = judge([passed(Phase.PUT, 0.1), not_run(Phase.MULTIPART, "disabled")])
    assert verdict.result is Result.SUCCESS
    assert verdict.phase is None


def test_the_first_failure_in_operation_order_is_the_verdict_and_others_are_named() -> None:
    verdict = judge(
        [
            failed(Phase.MULTIPART, Reason.ACCESS_DENIED, "multipart refused", 0.1),
            failed(Phase.PUT, Reason.ACCESS_DENIED, "put refused", 0.1),
            passed(Phase.CANARY, 0.1),
        ]
    )
    assert (verdict.result, verdict.phase, verdict.reason) == (
        Result.FAILURE,
        Phase.PUT,
        Reason.ACCESS_DENIED,
    )
    assert verdict.message == "put refused (also failed: multipart: access_denied)"


def test_integrity_findings_outrank_earlier_failures() -> None:
    verdict = judge(
        [
            failed(Phase.CANARY, Reason.TIMEOUT, "slow", 10.0),
            failed(Phase.GET, Reason.CHECKSUM_MISMATCH, "bytes differ", 0.1),
        ]
    )
    assert (verdict.phase, verdict.reason) == (Phase.GET, Reason.CHECKSUM_MISMATCH)


def test_a_timeout_is_a_timeout_result() -> None:
    verdict = judge([failed(Phase.PUT, Reason.TIMEOUT, "no answer", 10.0)])
    assert verdict.result is Result.TIMEOUT


@pytest.mark.parametrize(
    ("ops", "shape"),
    [
        (
            [
                passed(Phase.CANARY, 0),
                passed(Phase.LIST_PREFIX, 0),
                failed(Phase.PUT, Reason.ACCESS_DENIED, "", 0),
            ],
            True,
        ),
        ([passed(Phase.CANARY, 0), failed(Phase.PUT, Reason.TIMEOUT, "", 0)], True),
        ([failed(Phase.CANARY, Reason.TIMEOUT, "", 0), failed(Phase.PUT, Reason.TIMEOUT, "", 0)], False),
        ([passed(Phase.CANARY, 0), passed(Phase.PUT, 0)], False),
        ([not_run(Phase.CANARY), failed(Phase.PUT, Reason.ACCESS_DENIED, "", 0)], False),
    ],
)
def test_the_write_stall_shape(ops: list[OperationResult], shape: bool) -> None:
    assert writes_fail_reads_pass(ops) is shape


DATA = b"canary bytes"
DIGEST = hashlib.sha256(DATA).hexdigest()
RECORD = CanaryRecord("p/canary", DIGEST, 1000.0)


def test_first_run_writes_a_canary() -> None:
    verdict = judge_canary(None, None, "")
    assert verdict.reason is None
    assert verdict.rewrite


def test_an_acknowledged_canary_that_is_gone_is_data_lost() -> None:
    verdict = judge_canary(RECORD, None, "")
    assert verdict.reason is Reason.DATA_LOST
    assert verdict.rewrite
    assert "p/canary" in verdict.message


def test_changed_bytes_are_a_checksum_mismatch_whatever_the_metadata_says() -> None:
    other = b"other bytes"
    verdict = judge_canary(RECORD, other, hashlib.sha256(other).hexdigest())
    assert verdict.reason is Reason.CHECKSUM_MISMATCH


def test_without_a_record_the_metadata_is_the_reference() -> None:
    assert judge_canary(None, DATA, DIGEST).reason is None
    assert not judge_canary(None, DATA, DIGEST).rewrite
    assert judge_canary(None, b"flipped", DIGEST).reason is Reason.CHECKSUM_MISMATCH
    assert judge_canary(None, DATA, "").rewrite


def test_an_intact_canary_is_left_alone() -> None:
    verdict = judge_canary(RECORD, DATA, DIGEST)
    assert verdict.reason is None
    assert not verdict.rewrite


def test_canary_record_round_trips_through_status_and_rejects_garbage() -> None:
    assert CanaryRecord.from_status(RECORD.to_status()) == RECORD
    assert CanaryRecord.from_status(None) is None
    assert CanaryRecord.from_status({"key": "k", "sha256": 5, "written": 1}) is None


def test_read_back_verification() -> None:
    checksum = "c2hh"
    assert verify_read("GET", DATA, DIGEST, "", checksum) is None
    assert verify_read("GET", DATA, DIGEST, checksum, checksum) is None
    reason, message = verify_read("GET", DATA + b"!", DIGEST, "", checksum) or (None, "")
    assert reason is Reason.CHECKSUM_MISMATCH
    assert "13 bytes" in message
    stored = verify_read("GET", DATA, DIGEST, "b3RoZXI=", checksum)
    assert stored is not None
    assert stored[0] is Reason.CHECKSUM_MISMATCH


def test_head_verification() -> None:
    assert verify_head(10, 10, "", "x") == ""
    assert "9 bytes" in verify_head(9, 10, "", "x")
    assert "checksum" in verify_head(10, 10, "y", "x")


def certificate(tmp_path: Path, *extra: str) -> bytes:
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(tmp_path / "key.pem"),
            "-out",
            str(tmp_path / "cert.pem"),
            "-subj",
            "/CN=volprobe-test",
            *extra,
        ],
        check=True,
        capture_output=True,
    )
    return ssl.PEM_cert_to_DER_cert((tmp_path / "cert.pem").read_text())


def openssl_end(tmp_path: Path) -> float:
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-enddate", "-in", str(tmp_path / "cert.pem")],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return datetime.strptime(text.split("=", 1)[1], "%b %d %H:%M:%S %Y GMT").replace(tzinfo=UTC).timestamp()


def test_certificate_expiry_in_utctime(tmp_path: Path) -> None:
    der = certificate(tmp_path, "-days", "30")
    assert not_after(der) == openssl_end(tmp_path)


def test_certificate_expiry_after_2049_is_generalized_time(tmp_path: Path) -> None:
    der = certificate(tmp_path, "-days", "36500")
    assert not_after(der) == openssl_end(tmp_path)
    assert datetime.fromtimestamp(not_after(der), UTC).year > 2100


@pytest.mark.parametrize(
    "der", [b"", b"\x30", b"\x02\x01\x00", b"\x30\x03\x30\x01\x00", b"\x30\x85" + b"\x00" * 8]
)
def test_garbage_is_not_a_certificate(der: bytes) -> None:
    with pytest.raises(CertificateError):
        not_after(der)
