"""Block mode on a raw loop device: same checks, confined to the region volprobe owns."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from volprobe.agent.blockdev import region_bytes
from volprobe.agent.layout import HEADER_BYTES
from volprobe.contract.reasons import Phase, Reason, Result

from .conftest import MIB, LoopDevice, run_agent, sh

pytestmark = pytest.mark.root

PAYLOAD = MIB
SMALL = ("--payload-bytes", "1MiB", "--block-bytes", "64KiB")
REGION = region_bytes(PAYLOAD)


def tail_digest(loop: LoopDevice) -> str:
    """sha256 of every byte past the region, read from the image (what the device holds)."""
    sh("blockdev", "--flushbufs", loop.device)
    with open(loop.image, "rb") as image:
        image.seek(REGION)
        return hashlib.sha256(image.read()).hexdigest()


def flip(loop: LoopDevice, offset: int) -> None:
    with open(loop.image, "r+b") as image:
        image.seek(offset)
        value = image.read(1)[0]
        image.seek(offset)
        image.write(bytes([value ^ 0x40]))
    sh("blockdev", "--flushbufs", loop.device)


def test_runs_alternate_slots_and_stay_in_the_region(loop_device: LoopDevice, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    untouched = tail_digest(loop_device)
    first = run_agent("--device", loop_device.device, *SMALL, result=result).report
    assert first.verdict is Result.SUCCESS, first
    assert first.fresh
    assert first.direct
    assert first.written_generation == 1
    for generation in (2, 3, 4):
        report = run_agent(
            "--device", loop_device.device, *SMALL, "--expect-generation", str(generation - 1), result=result
        ).report
        assert report.verdict is Result.SUCCESS, report
        assert (report.previous_generation, report.written_generation) == (generation - 1, generation)
    assert tail_digest(loop_device) == untouched
    with open(loop_device.image, "rb") as image:
        headers = image.read(2 * HEADER_BYTES)
    assert headers[:8] == b"VOLPROBE"
    assert headers[HEADER_BYTES : HEADER_BYTES + 8] == b"VOLPROBE"


def test_flipped_byte_in_the_payload_is_checksum_mismatch(loop_device: LoopDevice, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    flip(loop_device, 2 * HEADER_BYTES + 300_000)  # generation 1 lives in slot 0
    report = run_agent("--device", loop_device.device, *SMALL, result=result).report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.CHECKSUM_MISMATCH)
    assert f"device offset {2 * HEADER_BYTES + 300_000}" in report.detail


def test_torn_newest_header_falls_back_to_the_previous_generation(
    loop_device: LoopDevice, tmp_path: Path
) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    flip(loop_device, HEADER_BYTES + 40)  # generation 2's header, in slot 1
    report = run_agent("--device", loop_device.device, *SMALL, result=result).report
    assert report.passed  # as after an interrupted commit: generation 1 is intact
    assert report.previous_generation == 1
    assert "damaged header" in report.note
    flip(loop_device, 40)  # now slot 0 (the new generation 2) is damaged as well...
    flip(loop_device, HEADER_BYTES + 40)  # ...and slot 1 (old generation 1) too
    both = run_agent("--device", loop_device.device, *SMALL, result=result).report
    assert both.passed is False
    assert (both.phase, both.reason) == (Phase.VERIFY, Reason.CHECKSUM_MISMATCH)


def test_expected_generation_catches_a_rolled_back_header(loop_device: LoopDevice, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    flip(loop_device, HEADER_BYTES + 40)
    report = run_agent(
        "--device", loop_device.device, *SMALL, "--expect-generation", "2", result=result
    ).report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.DATA_LOST)


def test_device_smaller_than_the_region_is_no_space(loop_device: LoopDevice, tmp_path: Path) -> None:
    report = run_agent(
        "--device", loop_device.device, "--payload-bytes", "16MiB", result=tmp_path / "result.json"
    ).report
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.WRITE, Reason.NO_SPACE)
    assert "needs" in report.detail
    with open(loop_device.image, "rb") as image:
        assert set(image.read(2 * MIB)) == {0xA5}  # nothing was written


def test_read_only_device(loop_device: LoopDevice, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--device", loop_device.device, *SMALL, result=result).report.passed
    sh("blockdev", "--setro", loop_device.device)
    report = run_agent(
        "--device", loop_device.device, *SMALL, "--expect-generation", "1", result=result
    ).report
    assert (report.phase, report.reason) == (Phase.WRITE, Reason.READ_ONLY)
    assert report.previous_generation == 1


def test_not_a_block_device(tmp_path: Path) -> None:
    report = run_agent("--device", str(tmp_path), result=tmp_path / "result.json").report
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.IO_ERROR)
    assert "ENOTBLK" in report.detail
