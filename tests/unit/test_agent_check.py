"""The check's sequence and rules against an in-memory store (no IO)."""

from __future__ import annotations

import errno
import time

import pytest

from volprobe.agent.classify import CheckFailed
from volprobe.agent.deadlines import plan
from volprobe.agent.iocheck import Store, run_check
from volprobe.agent.layout import LayoutError, Record
from volprobe.agent.progress import Progress
from volprobe.contract.reasons import Phase, Reason, Result


class MemoryStore:
    """A Store whose behaviour each test scripts."""

    def __init__(self) -> None:
        self.action = "idle"
        self.record: Record | None = None
        self.damaged = False
        self.lose_payload = False
        self.fail: dict[str, BaseException] = {}
        self.corrupt_on_read = False
        self.calls: list[str] = []

    def _step(self, name: str) -> None:
        self.calls.append(name)
        self.action = name
        if name in self.fail:
            raise self.fail[name]

    def load(self) -> Record | None:
        self._step("load")
        if self.damaged:
            raise LayoutError("marker checksum does not match its content")
        return self.record

    def check_payload(self, record: Record) -> None:
        self._step("check_payload")
        if self.lose_payload:
            raise CheckFailed(Reason.DATA_LOST, "payload gone")

    def prepare(self, previous: Record | None) -> int:
        self._step("prepare")
        return 8192

    def write(self, record: Record) -> bytes:
        self._step("write")
        return b"\x01" * 32

    def sync(self) -> None:
        self._step("sync")

    def commit(self, record: Record, previous: Record | None) -> None:
        self._step("commit")
        self.record = record

    def read_back(self, record: Record) -> None:
        self._step("read_back")
        if self.corrupt_on_read:
            raise CheckFailed(Reason.CHECKSUM_MISMATCH, "differs at 17")

    def scratch(self) -> tuple[str, int]:
        return "scratch", 0

    def drop_scratch(self) -> None:
        self._step("drop_scratch")


def run(store: MemoryStore, expected: int | None = None) -> Progress:
    now = time.monotonic()
    progress = Progress("r", now, plan(now, 30, fio=False), 8192, 4096)
    checked: Store = store  # the fake must satisfy the real protocol
    run_check(checked, progress, expected, 8192, 4096)
    return progress


def stored(generation: int) -> Record:
    return Record(generation=generation, size=8192, block=4096, seed=bytes(16), sha256=bytes(32))


def test_fresh_volume() -> None:
    store = MemoryStore()
    report = run(store).report()
    assert report.verdict is Result.SUCCESS
    assert report.fresh
    assert (report.previous_generation, report.written_generation) == (None, 1)
    assert store.calls == ["load", "prepare", "write", "sync", "commit", "read_back"]
    assert store.record is not None
    assert store.record.offset == 8192
    assert store.record.sha256 == b"\x01" * 32


def test_next_run_verifies_and_advances() -> None:
    store = MemoryStore()
    store.record = stored(4)
    report = run(store, expected=4).report()
    assert report.verdict is Result.SUCCESS
    assert not report.fresh
    assert (report.previous_generation, report.written_generation) == (4, 5)
    assert "check_payload" in store.calls


def test_expected_data_missing_is_data_lost_but_the_run_rewrites() -> None:
    store = MemoryStore()
    report = run(store, expected=3).report()
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.VERIFY, Reason.DATA_LOST)
    assert not report.fresh
    assert report.written_generation == 4  # numbering continues from what was expected
    assert store.calls[-1] == "read_back"


def test_damaged_marker_is_checksum_mismatch() -> None:
    store = MemoryStore()
    store.damaged = True
    report = run(store).report()
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.CHECKSUM_MISMATCH)
    assert "damaged" in report.detail
    assert not report.fresh
    assert report.previous_generation is None


def test_lost_payload() -> None:
    store = MemoryStore()
    store.record = stored(2)
    store.lose_payload = True
    report = run(store).report()
    assert (report.phase, report.reason) == (Phase.VERIFY, Reason.DATA_LOST)


def test_read_back_mismatch_is_reported_in_phase_read() -> None:
    store = MemoryStore()
    store.corrupt_on_read = True
    report = run(store).report()
    assert (report.phase, report.reason) == (Phase.READ, Reason.CHECKSUM_MISMATCH)
    assert report.written_generation == 1  # committed before the read-back


@pytest.mark.parametrize(
    ("step", "code", "phase", "reason"),
    [
        ("prepare", errno.EROFS, Phase.WRITE, Reason.READ_ONLY),
        ("write", errno.ENOSPC, Phase.WRITE, Reason.NO_SPACE),
        ("sync", errno.EIO, Phase.FSYNC, Reason.IO_ERROR),
        ("commit", errno.EDQUOT, Phase.FSYNC, Reason.NO_SPACE),
        ("read_back", errno.EIO, Phase.READ, Reason.IO_ERROR),
        ("load", errno.EIO, Phase.VERIFY, Reason.IO_ERROR),
    ],
)
def test_os_errors_are_classified_in_their_phase(step: str, code: int, phase: Phase, reason: Reason) -> None:
    store = MemoryStore()
    store.fail[step] = OSError(code, "boom")
    report = run(store).report()
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, phase, reason)
    assert report.detail.startswith(f"{step}: ")


def test_verify_failure_stays_the_verdict_when_writing_fails_too() -> None:
    store = MemoryStore()
    store.damaged = True
    store.fail["write"] = OSError(errno.ENOSPC, "full")
    report = run(store).report()
    assert report.reason is Reason.CHECKSUM_MISMATCH
    assert "then write: write: ENOSPC" in report.detail


def test_storage_timeout_errno_gives_a_timeout_verdict() -> None:
    store = MemoryStore()
    store.fail["sync"] = OSError(errno.ETIMEDOUT, "server not responding")
    report = run(store).report()
    assert (report.verdict, report.phase, report.reason) == (Result.TIMEOUT, Phase.FSYNC, Reason.TIMEOUT)
