"""The watchdog: a hung phase still yields a timeout report, on time, from what was recorded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from volprobe.agent.deadlines import Step
from volprobe.agent.progress import Progress
from volprobe.agent.watchdog import supervise
from volprobe.contract.reasons import Phase, Reason, Result


def progress_with(*durations: float) -> Progress:
    now = time.monotonic()
    phases = (Phase.VERIFY, Phase.WRITE, Phase.FSYNC, Phase.READ)
    steps, end = [], now
    for phase, duration in zip(phases, durations, strict=False):
        end += duration
        steps.append(Step(phase, end))
    return Progress("run-1", now, tuple(steps), 8192, 4096)


@pytest.fixture
def gate() -> Iterator[threading.Event]:
    """Blocks a fake hung phase; always released, so no thread outlives the test."""
    event = threading.Event()
    yield event
    event.set()


def test_completed_check_returns_its_report() -> None:
    progress = progress_with(5, 5, 5, 5)

    def check() -> None:
        progress.begin()
        progress.recorder.add("write", 0.001, 4096)
        for phase in (Phase.WRITE, Phase.FSYNC, Phase.READ):
            progress.enter(phase)

    outcome = supervise(check, progress)
    assert not outcome.abandoned
    assert outcome.report.verdict is Result.SUCCESS
    assert outcome.report.ops["write"].count == 1


def test_hang_in_write_times_out_at_the_write_deadline(gate: threading.Event) -> None:
    progress = progress_with(0.2, 0.3, 5, 5)

    def check() -> None:
        progress.begin()
        progress.previous_generation = 4
        progress.recorder.add("read", 0.002, 4096)
        progress.enter(Phase.WRITE)
        gate.wait()

    started = time.monotonic()
    outcome = supervise(check, progress)
    waited = time.monotonic() - started
    assert outcome.abandoned
    report = outcome.report
    assert report.verdict is Result.TIMEOUT
    assert report.phase is Phase.WRITE
    assert report.reason is Reason.TIMEOUT
    assert report.previous_generation == 4
    assert report.ops["read"].count == 1
    assert 0.45 <= waited < 1.5


def test_phase_progress_extends_the_wait(gate: threading.Event) -> None:
    progress = progress_with(0.3, 0.3, 0.3, 0.3)

    def check() -> None:
        for phase in (Phase.WRITE, Phase.FSYNC):
            time.sleep(0.2)
            progress.enter(phase)
        gate.wait()

    outcome = supervise(check, progress)
    assert outcome.report.phase is Phase.FSYNC


def test_a_recorded_failure_stays_the_verdict_when_a_later_phase_hangs(gate: threading.Event) -> None:
    progress = progress_with(0.1, 0.2, 5, 5)

    def check() -> None:
        progress.fail(Reason.CHECKSUM_MISMATCH, "payload-3 differs")
        progress.enter(Phase.WRITE)
        gate.wait()

    report = supervise(check, progress).report
    assert report.verdict is Result.FAILURE
    assert report.reason is Reason.CHECKSUM_MISMATCH
    assert report.phase is Phase.VERIFY
    assert "then write: write did not finish" in report.detail


def test_agent_bugs_propagate() -> None:
    progress = progress_with(5, 5, 5, 5)

    def check() -> None:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        supervise(check, progress)
