"""`volprobe.agent.main` in-process on a temporary directory: exit codes and the result file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from volprobe.agent import main
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.contract.report import decode_report


def run(tmp_path: Path, *extra: str) -> int:
    return main(
        ["mount", "--path", str(tmp_path), "--result-file", str(tmp_path / "r.json"),
         "--payload-bytes", "64KiB", "--block-bytes", "16KiB", *extra]
    )  # fmt: skip


def test_two_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(tmp_path) == 0
    first = decode_report((tmp_path / "r.json").read_bytes())
    assert first.verdict is Result.SUCCESS
    assert first.fresh
    assert first.written_generation == 1
    assert run(tmp_path, "--expect-generation", "1") == 0
    second = decode_report((tmp_path / "r.json").read_bytes())
    assert second.verdict is Result.SUCCESS
    assert (second.previous_generation, second.written_generation) == (1, 2)
    assert sorted(p.name for p in (tmp_path / ".volprobe").iterdir()) == ["payload-2", "state"]
    lines = capsys.readouterr().out.splitlines()
    assert lines[1].startswith("volprobe: success mount gen 1->2 64 KiB")


def test_missing_directory_is_a_reported_failure(tmp_path: Path) -> None:
    status = main(["mount", "--path", str(tmp_path / "nope"), "--result-file", str(tmp_path / "r.json")])
    assert status == 0
    report = decode_report((tmp_path / "r.json").read_bytes())
    assert (report.verdict, report.phase, report.reason) == (Result.FAILURE, Phase.VERIFY, Reason.IO_ERROR)
    assert "ENOENT" in report.detail


def test_usage_errors_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["mount"]) == 2
    assert main(["mount", "--path", str(tmp_path), "--block-bytes", "3"]) == 2
    assert "volprobe probe:" in capsys.readouterr().err
    assert not (tmp_path / ".volprobe").exists()


def test_fio_mode_without_fio_is_a_usage_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["mount", "--path", str(tmp_path), "--fio"]) == 2
    assert "--fio needs fio" in capsys.readouterr().err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "--expect-generation" in capsys.readouterr().out


def test_the_agent_path_imports_no_third_party_modules() -> None:
    """The probe image has python3 and nothing else: the agent must not even import them."""
    code = (
        "import sys, volprobe.cli, volprobe.agent, volprobe.agent.blockdev, volprobe.agent.volume, "
        "volprobe.agent.fio; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'httpx', 'yaml', 'prometheus_client', 'anyio', 'certifi', 'h11', 'httpcore'}); "
        "print(','.join(bad))"
    )
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""
