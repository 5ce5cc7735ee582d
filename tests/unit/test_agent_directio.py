"""O_DIRECT fallback bookkeeping of DataFile (on the test's temporary directory)."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

from volprobe.agent.deadlines import plan
from volprobe.agent.directio import AlignedBuffer, DataFile, filesystem_type
from volprobe.agent.progress import Progress


def progress() -> Progress:
    now = time.monotonic()
    return Progress("r", now, plan(now, 30, fio=False), 4096, 4096)


def test_aligned_buffer_is_page_aligned_and_grows() -> None:
    buffer = AlignedBuffer(4096)
    assert len(buffer.view) == 4096
    grown = buffer.ensure(1 << 20)
    assert len(grown) == 1 << 20
    assert buffer.ensure(4096) is grown  # never shrinks


def test_einval_at_io_time_redoes_the_operation_buffered(tmp_path: Path) -> None:
    state = progress()
    path = tmp_path / "f"
    try:
        file = DataFile(str(path), os.O_RDWR | os.O_CREAT, state, direct=True, reading=True, label="f")
    except OSError as error:
        pytest.skip(f"O_DIRECT unavailable on the temporary directory: {error}")
    seen: list[bool] = []

    def operation(fd: int) -> str:
        seen.append(file.direct)
        if file.direct:
            raise OSError(errno.EINVAL, "Invalid argument")
        return "done"

    assert file.run(operation) == "done"
    file.close()
    assert seen == [True, False]
    report = state.report()
    assert not report.direct
    assert "O_DIRECT IO refused (EINVAL): buffered IO" in report.note
    assert "reads after posix_fadvise(DONTNEED)" in report.note


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    state = progress()
    file = DataFile(
        str(tmp_path / "f"), os.O_RDWR | os.O_CREAT, state, direct=False, reading=False, label="f"
    )

    def operation(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output"):
        file.run(operation)
    file.close()
    assert not state.report().direct


def test_filesystem_type_of_proc() -> None:
    assert filesystem_type("/proc") == "proc"
