"""The agent against a FUSE filesystem the test controls: hangs, EIO, no O_DIRECT. Needs root.

A hang here is the real thing: the server reads the request and never answers, so the agent's
IO thread sits in uninterruptible sleep (D state) where no signal reaches it — what IO on a
dead network volume looks like. The agent must still deliver a `timeout` report on time.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest

from volprobe.contract.reasons import Phase, Reason, Result

from .conftest import FuseFs, agent_command, run_agent, thread_states, wait_for_report

pytestmark = [pytest.mark.root, pytest.mark.timeout(120)]

SMALL = ("--payload-bytes", "1MiB", "--block-bytes", "64KiB")
DEADLINE = 3.0


def test_passes_on_fuse(fusefs: FuseFs, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    assert run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result).report.passed
    second = run_agent("--path", str(fusefs.mountpoint), *SMALL, "--expect-generation", "1", result=result)
    assert second.report.passed
    assert "fs=fuse" in second.report.note


@pytest.mark.parametrize(
    ("hang", "phase", "prepared"),
    [
        ("write", Phase.WRITE, False),
        ("fsync", Phase.FSYNC, False),
        ("read", Phase.VERIFY, True),
        ("lookup", Phase.VERIFY, False),
    ],
)
def test_hang_is_reported_as_timeout_within_the_deadline(
    fusefs: FuseFs, tmp_path: Path, hang: str, phase: Phase, prepared: bool
) -> None:
    result = tmp_path / "result.json"
    if prepared:
        assert run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result).report.passed
        result.unlink()
    fusefs.control(f"hang {hang}")

    agent = subprocess.Popen(
        agent_command("mount", "--path", str(fusefs.mountpoint), *SMALL, "--deadline", str(DEADLINE),
                      "--result-file", str(result)),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    fusefs.agents.append(agent)
    report, waited = wait_for_report(result, limit=DEADLINE + 5)

    assert waited < DEADLINE, f"report after {waited:.2f}s, deadline {DEADLINE}s"
    assert (report.verdict, report.phase, report.reason) == (Result.TIMEOUT, phase, Reason.TIMEOUT)
    assert "did not finish by its deadline" in report.detail
    time.sleep(0.2)
    assert agent.poll() is None, "the hang should hold the IO thread in the kernel"
    assert "D" in thread_states(agent.pid), thread_states(agent.pid)

    fusefs.control("release")
    stdout, stderr = agent.communicate(timeout=30)
    assert agent.returncode == 0, stderr
    assert stdout.startswith(f"volprobe: timeout phase={phase.value} reason=timeout mount")


@pytest.mark.parametrize(
    ("failing", "phase", "prepared"),
    [("write", Phase.WRITE, False), ("fsync", Phase.FSYNC, False), ("read", Phase.VERIFY, True)],
)
def test_eio_is_io_error(fusefs: FuseFs, tmp_path: Path, failing: str, phase: Phase, prepared: bool) -> None:
    result = tmp_path / "result.json"
    if prepared:
        assert run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result).report.passed
    fusefs.control(f"eio {failing}")
    report = run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result).report
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, phase, Reason.IO_ERROR)
    assert "EIO" in report.detail


def test_eio_on_read_back_is_io_error_in_phase_read(fusefs: FuseFs, tmp_path: Path) -> None:
    """Writes succeed, then reading anything fails: the fresh volume has nothing to verify."""
    fusefs.control("hang")  # no-op, proves an empty set is accepted
    fusefs.control("eio read")
    report = run_agent("--path", str(fusefs.mountpoint), *SMALL, result=tmp_path / "r.json").report
    assert (report.phase, report.reason) == (Phase.READ, Reason.IO_ERROR)
    assert report.written_generation == 1


def test_refused_o_direct_falls_back_to_buffered_io(fusefs: FuseFs, tmp_path: Path) -> None:
    result = tmp_path / "result.json"
    fusefs.control("nodirect")
    first = run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result)
    assert first.report.passed
    assert not first.report.direct
    assert "O_DIRECT refused at open (EINVAL): buffered IO" in first.report.note
    assert "posix_fadvise(DONTNEED)" in first.report.note
    assert " buffered " in first.stdout
    second = run_agent("--path", str(fusefs.mountpoint), *SMALL, "--expect-generation", "1", result=result)
    assert second.report.passed
    assert second.report.previous_generation == 1


def test_o_direct_refused_at_io_time_falls_back_to_buffered_io(fusefs: FuseFs, tmp_path: Path) -> None:
    """Some filesystems accept O_DIRECT at open and refuse the IO: the agent redoes it buffered."""
    result = tmp_path / "result.json"
    assert run_agent("--path", str(fusefs.mountpoint), *SMALL, result=result).report.passed
    fusefs.control("nodirectio")
    report = run_agent(
        "--path", str(fusefs.mountpoint), *SMALL, "--expect-generation", "1", result=result
    ).report
    assert report.passed, report
    assert report.previous_generation == 1
    assert not report.direct
    assert "O_DIRECT IO refused (EINVAL): buffered IO" in report.note
    assert "posix_fadvise(DONTNEED)" in report.note
