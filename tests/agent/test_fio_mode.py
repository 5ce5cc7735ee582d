"""`--fio`: the verified check, then fio's pinned jobs supply the latency figures."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from volprobe.agent.blockdev import region_bytes
from volprobe.contract.reasons import Result

from .conftest import MIB, LoopDevice, LoopFilesystem, require, run_agent, sh

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def fio_installed() -> None:
    require("fio")


SMALL = ("--payload-bytes", "1MiB", "--block-bytes", "64KiB", "--fio")


def test_fio_mode_on_a_filesystem(loop_fs: LoopFilesystem, tmp_path: Path) -> None:
    run = run_agent("--path", str(loop_fs.mountpoint), *SMALL, result=tmp_path / "result.json")
    report = run.report
    assert report.verdict is Result.SUCCESS, report
    assert "latency by fio-" in report.note
    assert "direct=1" in report.note
    assert report.ops["write"].count == 16  # fio's job: 1 MiB in 64 KiB writes
    assert report.ops["read"].count == 16
    assert report.ops["fsync"].count >= 3  # still the agent's own
    assert report.throughput["write"] > 0
    assert report.ops["write"].buckets[-1] == 16
    assert sorted(path.name for path in (loop_fs.mountpoint / ".volprobe").iterdir()) == [
        "payload-1",
        "state",
    ]


def test_fio_mode_on_a_block_device_stays_in_the_region(loop_device: LoopDevice, tmp_path: Path) -> None:
    def tail() -> str:
        sh("blockdev", "--flushbufs", loop_device.device)
        with open(loop_device.image, "rb") as image:
            image.seek(region_bytes(MIB))
            return hashlib.sha256(image.read()).hexdigest()

    before = tail()
    result = tmp_path / "result.json"
    for _ in range(2):
        report = run_agent("--device", loop_device.device, *SMALL, result=result).report
        assert report.verdict is Result.SUCCESS, report
        assert "latency by fio-" in report.note
    assert report.previous_generation == 1  # fio wrote the idle slot, not the newest generation
    assert tail() == before
