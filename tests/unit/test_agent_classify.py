"""errno → Reason mapping: the reason set is fixed, every OS error lands in it."""

from __future__ import annotations

import errno

import pytest

from volprobe.agent.classify import describe, reason_for
from volprobe.contract.reasons import Reason


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (errno.EROFS, Reason.READ_ONLY),
        (errno.ENOSPC, Reason.NO_SPACE),
        (errno.EDQUOT, Reason.NO_SPACE),
        (errno.EIO, Reason.IO_ERROR),
        (errno.ETIMEDOUT, Reason.TIMEOUT),
        (errno.ENOTCONN, Reason.IO_ERROR),
        (errno.ESTALE, Reason.IO_ERROR),
        (errno.EACCES, Reason.IO_ERROR),
        (errno.ENOENT, Reason.IO_ERROR),
    ],
)
def test_errno_reasons(code: int, reason: Reason) -> None:
    assert reason_for(OSError(code, "x")) is reason


def test_oserror_without_errno_is_io_error() -> None:
    assert reason_for(OSError("weird")) is Reason.IO_ERROR


def test_describe_names_the_errno() -> None:
    text = describe(OSError(errno.ENOSPC, "No space left on device"), "write payload-3")
    assert text == "write payload-3: ENOSPC No space left on device"
    assert describe(OSError("odd"), "x").startswith("x: E? ")
