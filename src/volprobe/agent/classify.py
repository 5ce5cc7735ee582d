"""Turning what went wrong into the controller's fixed reason set.

The controller exports the reason as a Prometheus label and alert rules match it exactly, so the
agent never reports an error string as a reason: every OSError maps to one `Reason`, and the
errno text only ever goes into the free-text `detail`.
"""

from __future__ import annotations

import errno

from volprobe.contract.reasons import Phase, Reason

ERRNO_REASONS: dict[int, Reason] = {
    errno.EROFS: Reason.READ_ONLY,
    errno.ENOSPC: Reason.NO_SPACE,
    errno.EDQUOT: Reason.NO_SPACE,
    errno.EIO: Reason.IO_ERROR,
    errno.ETIMEDOUT: Reason.TIMEOUT,
}
"""Errnos with a reason of their own; every other OSError is `io_error`.

ETIMEDOUT is what soft NFS mounts and some network block devices return when the server does
not answer: the storage timed out, which is the same finding as the watchdog firing.
"""


class CheckFailed(Exception):
    """The check found a problem with the data itself (not an OS error): lost or corrupt."""

    def __init__(self, reason: Reason, detail: str, phase: Phase | None = None) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.phase = phase
        """Set when the failure belongs to another phase than the one running (block size checks)."""


def reason_for(error: OSError) -> Reason:
    """The reason an OS error is reported under."""
    if error.errno is None:
        return Reason.IO_ERROR
    return ERRNO_REASONS.get(error.errno, Reason.IO_ERROR)


def describe(error: OSError, action: str) -> str:
    """`action: ENOSPC No space left on device` — the errno name survives translation."""
    name = errno.errorcode.get(error.errno, "E?") if error.errno is not None else "E?"
    return f"{action}: {name} {error.strerror or error}"
