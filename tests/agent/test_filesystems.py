"""The agent on real filesystems: ext4 and xfs on loop devices, tmpfs. Needs root."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

import pytest

from volprobe.contract.reasons import Phase, Reason, Result

from .conftest import LoopFilesystem, run_agent, sh

pytestmark = pytest.mark.root

SMALL = ("--payload-bytes", "1MiB", "--block-bytes", "64KiB")


def test_pass_then_verify_after_remount(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    first = run_agent("--path", str(loop_fs.mountpoint), result=result)
    report = first.report
    assert report.verdict is Result.SUCCESS, report
    assert report.fresh
    assert (report.previous_generation, report.written_generation) == (None, 1)
    assert report.direct
    assert f"fs={loop_fs.fstype}" in report.note
    assert report.payload_bytes == 4 << 20
    assert report.block_bytes == 1 << 20
    assert report.ops["write"].count == 4
    assert report.ops["read"].count == 4
    assert report.ops["fsync"].count >= 3
    assert report.throughput["write"] > 0
    assert report.throughput["read"] > 0
    assert first.stdout.startswith("volprobe: success mount gen fresh->1 4.0 MiB direct write p50 ")

    loop_fs.remount()
    second = run_agent(
        "--path",
        str(loop_fs.mountpoint),
        "--expect-generation",
        "1",
        result=result,
        env={"VOLPROBE_RUN_ID": "r2"},
    ).report
    assert second.verdict is Result.SUCCESS, second
    assert not second.fresh
    assert (second.previous_generation, second.written_generation) == (1, 2)
    assert second.run == "r2"
    assert second.ops["read"].count == 8  # the previous payload, then the fresh one
    state = loop_fs.mountpoint / ".volprobe"
    assert sorted(path.name for path in state.iterdir()) == ["payload-2", "state"]


def test_flipped_byte_on_disk_is_checksum_mismatch(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    loop_fs.corrupt_on_disk(".volprobe/payload-1", 777_777)

    report = run_agent(
        "--path", str(loop_fs.mountpoint), *SMALL, "--expect-generation", "1", result=result
    ).report
    assert (report.verdict, report.phase, report.reason) == (
        Result.FAILURE,
        Phase.VERIFY,
        Reason.CHECKSUM_MISMATCH,
    )
    assert "first differing byte at offset 777777" in report.detail
    assert report.previous_generation == 1
    assert report.written_generation == 2  # the run re-established a good baseline...

    again = run_agent("--path", str(loop_fs.mountpoint), *SMALL, "--expect-generation", "2", result=result)
    assert again.report.passed  # ...so the next run checks fresh data instead of failing forever


def test_deleted_payload_is_data_lost(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    (loop_fs.mountpoint / ".volprobe" / "payload-1").unlink()
    loop_fs.remount()
    report = run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.VERIFY, Reason.DATA_LOST)
    assert "payload-1 is missing" in report.detail


def test_truncated_payload_is_data_lost(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    os.truncate(loop_fs.mountpoint / ".volprobe" / "payload-1", 0)
    report = run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.DATA_LOST)
    assert "truncated" in report.detail


def test_damaged_marker_is_checksum_mismatch(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    marker = loop_fs.mountpoint / ".volprobe" / "state"
    marker.write_bytes(marker.read_bytes().replace(b"gen=1 ", b"gen=9 "))
    report = run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.CHECKSUM_MISMATCH)
    assert "damaged" in report.detail


def test_wiped_volume_with_expected_generation_is_data_lost(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    for generation in (None, "1", "2"):
        args = ("--expect-generation", generation) if generation else ()
        assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, *args, result=result).report.passed
    shutil.rmtree(loop_fs.mountpoint / ".volprobe")
    loop_fs.remount()
    report = run_agent(
        "--path", str(loop_fs.mountpoint), *SMALL, result=result, env={"VOLPROBE_EXPECT_GENERATION": "3"}
    )
    assert (report.report.phase, report.report.reason) == (Phase.VERIFY, Reason.DATA_LOST)
    assert not report.report.fresh
    assert report.report.written_generation == 4


def test_stale_generation_is_data_lost(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    report = run_agent(
        "--path", str(loop_fs.mountpoint), *SMALL, "--expect-generation", "5", result=result
    ).report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.DATA_LOST)
    assert "stale" in report.detail
    # a newer generation than expected is fine: the controller may have missed a run
    newer = run_agent(
        "--path", str(loop_fs.mountpoint), *SMALL, "--expect-generation", "2", result=result
    ).report
    assert newer.passed
    assert newer.previous_generation == 6


def test_read_only_remount(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    sh("mount", "-o", "remount,ro", str(loop_fs.mountpoint))
    report = run_agent(
        "--path", str(loop_fs.mountpoint), *SMALL, "--expect-generation", "1", result=result
    ).report
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.WRITE, Reason.READ_ONLY)
    assert report.previous_generation == 1  # the previous run's data was still verified
    assert report.ops["read"].count == 16
    assert "EROFS" in report.detail


def fill(directory: Path) -> None:
    """Allocate every last block (as root, reserved blocks included)."""
    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        stats = os.statvfs(directory)
        chunk, offset = stats.f_bfree * stats.f_frsize, 0
        while chunk >= 4096:
            try:
                os.posix_fallocate(fd, offset, chunk)
                offset += chunk
            except OSError as error:
                if error.errno != errno.ENOSPC:
                    raise
                chunk //= 2
        os.fsync(fd)
    finally:
        os.close(fd)


def test_full_filesystem_is_no_space(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    fill(loop_fs.mountpoint)
    report = run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.WRITE, Reason.NO_SPACE)
    assert "ENOSPC" in report.detail
    assert report.previous_generation == 1
    assert report.written_generation is None
    assert (loop_fs.mountpoint / ".volprobe" / "payload-1").exists()  # the old data is kept


def test_leftovers_of_an_interrupted_run_are_cleaned(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    state = loop_fs.mountpoint / ".volprobe"
    (state / "payload-7").write_bytes(b"half a payload")
    (state / "state.tmp").write_bytes(b"volprobe-state 1\n")
    (state / "notes.txt").write_text("not ours to delete")
    assert run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=result).report.passed
    assert sorted(path.name for path in state.iterdir()) == ["notes.txt", "payload-2", "state"]


def test_provision_kind_with_small_blocks(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    run = run_agent(
        "--path", str(loop_fs.mountpoint), "--payload-bytes", "256KiB", "--block-bytes", "4KiB",
        result=tmp_path / "result.json", kind="provision",
    )  # fmt: skip
    assert run.report.passed
    assert run.report.ops["write"].count == 64
    assert run.stdout.startswith("volprobe: success provision gen fresh->1 256 KiB direct")


def test_tmpfs_passes_buffered_with_the_fallback_noted(tmpfs: Path, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    first = run_agent("--path", str(tmpfs), *SMALL, result=result).report
    assert first.verdict is Result.SUCCESS
    assert not first.direct
    assert "fs=tmpfs" in first.note
    assert "memory-backed" in first.note
    second = run_agent("--path", str(tmpfs), *SMALL, "--expect-generation", "1", result=result)
    assert second.report.passed
    assert second.report.previous_generation == 1
    assert " buffered " in second.stdout
