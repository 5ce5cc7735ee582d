"""The stdout summary line and result delivery."""

from __future__ import annotations

from pathlib import Path

import pytest

from volprobe.agent.cli import Identity
from volprobe.agent.output import deliver, summary
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.contract.report import OpStats, Report, decode_report


def success() -> Report:
    return Report(
        run="r1",
        verdict=Result.SUCCESS,
        previous_generation=4,
        written_generation=5,
        direct=True,
        payload_bytes=4 << 20,
        block_bytes=1 << 20,
        ops={
            "write": OpStats.from_samples([0.0012, 0.0034]),
            "fsync": OpStats.from_samples([0.0021]),
            "read": OpStats.from_samples([0.0008, 0.0008]),
        },
        throughput={"write": 150e6, "read": 180e6},
    )


def test_success_line() -> None:
    line = summary(success(), "mount", Identity(run="r1", node="n1"))
    assert line == (
        "volprobe: success mount gen 4->5 4.0 MiB direct write p50 1.2ms p99 3.4ms 150 MB/s "
        "fsync p50 2.1ms max 2.1ms read p50 0.800ms p99 0.800ms 180 MB/s run=r1 node=n1"
    )


def test_failure_line_is_one_ascii_line() -> None:
    report = Report(
        run="r",
        verdict=Result.FAILURE,
        phase=Phase.VERIFY,
        reason=Reason.CHECKSUM_MISMATCH,
        detail="payload-4 differs\nat byte 17 ☃",
        fresh=True,
        written_generation=1,
        payload_bytes=64 << 10,
        note="fs=tmpfs",
    )
    line = summary(report, "provision", Identity())
    assert line.startswith(
        "volprobe: failure phase=verify reason=checksum_mismatch provision gen fresh->1 64 KiB"
    )
    assert "\n" not in line
    assert line.isascii()


def test_explicit_result_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "result.json"
    assert deliver(success(), "volprobe: line", str(target), explicit=True) == 0
    assert decode_report(target.read_bytes()).written_generation == 5
    assert capsys.readouterr().out == "volprobe: line\n"


def test_unwritable_explicit_result_file_is_an_agent_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    status = deliver(success(), "volprobe: line", str(tmp_path / "missing" / "r.json"), explicit=True)
    assert status == 1
    captured = capsys.readouterr()
    assert "cannot write the result file" in captured.err
    assert captured.out == "volprobe: line\n"


def test_missing_default_result_file_falls_back_to_stdout(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    absent = tmp_path / "termination-log"
    assert deliver(success(), "volprobe: line", str(absent), explicit=False) == 0
    assert not absent.exists()  # never created: outside a pod that would litter /dev
    captured = capsys.readouterr()
    line, report, *rest = captured.out.splitlines()
    assert line == "volprobe: line"
    assert decode_report(report).verdict is Result.SUCCESS
    assert rest == []
    assert "report on stdout only" in captured.err


def test_existing_default_result_file_is_overwritten(tmp_path: Path) -> None:
    existing = tmp_path / "termination-log"
    existing.write_text("x" * 10000)
    assert deliver(success(), "l", str(existing), explicit=False) == 0
    assert decode_report(existing.read_bytes()).verdict is Result.SUCCESS
