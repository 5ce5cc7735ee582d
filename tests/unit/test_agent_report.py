"""The agent's report against the shared schema: size guarantee, round trip, hostile input.

The controller side of the contract is `volprobe.reports.parse`; these tests hold the agent's
output to it, and hold `parse` to "raises ReportError and nothing else" for any input.
"""

from __future__ import annotations

import contextlib
import json
import random
import time
from typing import Any

import pytest

from volprobe.agent.deadlines import plan
from volprobe.agent.progress import Progress
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.contract.report import (
    IO_OPS,
    MAX_REPORT_BYTES,
    OpStats,
    Report,
    ReportError,
    decode_report,
    encode,
)


def worst_case_report(detail_char: str = "é") -> Report:
    """Every field at its largest: long non-ASCII text (escaped to six bytes a char), all ops."""
    now = time.monotonic()
    progress = Progress(detail_char * 500, now, plan(now, 30, fio=False), 1 << 30, 1 << 20)
    progress.begin()
    progress.previous_generation = 2**53
    progress.written_generation = 2**53
    for op in IO_OPS:
        for index in range(20000):
            progress.recorder.add(op, (index % 997) * 1e-5 + 1e-7, 4096)
    for _ in range(5):
        progress.note(detail_char * 300 + str(_))
    progress.fail(Reason.CHECKSUM_MISMATCH, detail_char * 1000)
    progress.fail(Reason.IO_ERROR, detail_char * 1000, Phase.READ)
    return progress.report(timed_out=True)


@pytest.mark.parametrize("char", ["x", "é", "\u2603", "\U0001f4be", '"', "\\", "\n", "\x00"])
def test_worst_case_fits_and_round_trips(char: str) -> None:
    report = worst_case_report(char)
    text = encode(report)
    assert len(text.encode()) <= MAX_REPORT_BYTES
    parsed = decode_report(text)
    assert parsed.verdict is report.verdict
    assert parsed.reason is report.reason
    assert parsed.phase is report.phase


def test_typical_reports_round_trip_completely() -> None:
    now = time.monotonic()
    progress = Progress("run-7", now, plan(now, 30, fio=False), 4 << 20, 1 << 20)
    progress.begin()
    progress.previous_generation, progress.written_generation = 6, 7
    progress.io_mode(direct=True)
    progress.note("fs=ext4")
    for op, seconds in (("write", 0.0012), ("fsync", 0.002), ("read", 0.0008)):
        for _ in range(4):
            progress.recorder.add(op, seconds, 0 if op == "fsync" else 1 << 20)
    report = progress.report()
    parsed = decode_report(encode(report))
    assert parsed.verdict is Result.SUCCESS
    assert (parsed.previous_generation, parsed.written_generation) == (6, 7)
    assert parsed.direct
    assert parsed.note == "fs=ext4"
    assert parsed.ops["write"].count == 4
    assert parsed.ops["read"].buckets == report.ops["read"].buckets
    assert parsed.throughput["read"] == pytest.approx(report.throughput["read"], rel=1e-5)
    assert parsed.started == pytest.approx(report.started, abs=1e-3)


def test_ops_without_histogram_round_trip() -> None:
    """fio-measured ops may carry no histogram; the encoder must not emit an empty one."""
    report = Report(run="r", verdict=Result.SUCCESS, ops={"write": OpStats(count=3, p50=0.001, p99=0.002)})
    assert decode_report(encode(report)).ops["write"].buckets == ()


# -- decode_report() against garbage: ReportError and nothing else ---------------------------------------


def valid_body() -> dict[str, Any]:
    body: dict[str, Any] = json.loads(encode(worst_case_report("x")))
    return body


def assert_rejected_cleanly(text: str | bytes | None) -> None:
    with contextlib.suppress(ReportError):
        decode_report(text)


def test_random_bytes() -> None:
    rng = random.Random(20240601)
    for _ in range(3000):
        assert_rejected_cleanly(rng.randbytes(rng.randrange(0, 300)))
    for _ in range(300):
        assert_rejected_cleanly(rng.randbytes(rng.randrange(3000, 5000)))


def test_every_truncation_of_a_valid_report() -> None:
    text = encode(worst_case_report("é")).encode()
    for end in range(len(text)):
        with pytest.raises(ReportError):
            decode_report(text[:end])


def test_byte_flips_of_a_valid_report() -> None:
    rng = random.Random(7)
    text = bytearray(encode(worst_case_report("x")).encode())
    for _ in range(3000):
        damaged = bytearray(text)
        for _ in range(rng.randrange(1, 4)):
            damaged[rng.randrange(len(damaged))] = rng.randrange(256)
        assert_rejected_cleanly(bytes(damaged))


WRONG_VALUES: list[Any] = [
    None, True, False, -1, 0, 1, 2**53 + 1, 10**300, -(10**300), 1e308, -1e308, 1.5, -0.0,
    "", "x" * 3000, "\ud800", [], [1, 2, 3], {}, {"n": -1}, [[[[[]]]]],
]  # fmt: skip


KEYS = ["v", "run", "verdict", "phase", "reason", "detail", "fresh", "gen",
        "direct", "note", "bytes", "block", "start", "elapsed", "ops", "tput"]  # fmt: skip


@pytest.mark.parametrize("key", KEYS)
def test_wrong_types_for_every_key(key: str) -> None:
    for value in WRONG_VALUES:
        body = valid_body()
        body[key] = value
        assert_rejected_cleanly(json.dumps(body))
        del body[key]
        assert_rejected_cleanly(json.dumps(body))


@pytest.mark.parametrize("field", ["n", "sum", "max", "p50", "p99", "b"])
def test_wrong_types_inside_ops(field: str) -> None:
    for value in [*WRONG_VALUES, [0] * 16, [5] * 16, list(range(16, 0, -1)), [1.0] * 16, [True] * 16]:
        body = valid_body()
        body["ops"]["write"][field] = value
        assert_rejected_cleanly(json.dumps(body))


def test_huge_numbers_and_special_floats() -> None:
    for literal in ["1e400", "-1e400", "NaN", "Infinity", "-Infinity", "9" * 3000, "-" + "9" * 3000]:
        for key in ("bytes", "start", "elapsed", "v"):
            body = valid_body()
            body[key] = 0
            text = json.dumps({k: body[k] for k in ("v", "run", "verdict", "phase", "reason", key)})
            text = text.replace(f'"{key}": 0', f'"{key}": {literal}')
            assert_rejected_cleanly(text)


def test_deep_nesting() -> None:
    for depth in (10, 100, 1000, 2000):
        for opener, closer in (("[", "]"), ('{"a":', "}")):
            assert_rejected_cleanly(opener * depth + closer * depth)
            assert_rejected_cleanly('{"v":1,"ops":' + opener * depth + closer * depth + "}")
            assert_rejected_cleanly(opener * depth)


def test_non_objects_and_odd_inputs() -> None:
    for text in [None, "", b"", "null", "[]", '"report"', "1", "true", "\ufeff{}", b"\xff\xfe{", "{" * 5000]:
        with pytest.raises(ReportError):
            decode_report(text)
