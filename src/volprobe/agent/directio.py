"""Aligned buffers and data files opened with O_DIRECT where the filesystem allows it.

O_DIRECT needs the buffer, offset and length aligned to the device's logical block size. An
anonymous mmap is page aligned and every IO the agent issues is a multiple of 4 KiB at a
4 KiB-aligned offset, which satisfies any logical block size up to the page size.

Some filesystems refuse O_DIRECT (EINVAL at open or at the first IO: older tmpfs, many FUSE
filesystems). The agent then falls back to buffered IO, says so in the report (`direct: false`
and a `note`), and before reading drops the file's cached pages with
posix_fadvise(POSIX_FADV_DONTNEED) — after an fsync they are clean, so the next read has to go
to the storage on any filesystem that keeps a page cache in front of something.
"""

from __future__ import annotations

import errno
import mmap
import os
from collections.abc import Callable
from typing import TypeVar

from volprobe.agent.progress import Progress

T = TypeVar("T")

MEMORY_FILESYSTEMS = frozenset({"tmpfs", "ramfs"})
"""Filesystems whose page cache *is* the storage: O_DIRECT there (accepted by tmpfs since
Linux 6.6) would only be emulated, so claiming `direct` would mislead. Buffered IO is used."""


class AlignedBuffer:
    """A page-aligned scratch buffer, grown on demand (never shrunk)."""

    def __init__(self, size: int) -> None:
        self._map = mmap.mmap(-1, size)
        self.view = memoryview(self._map)

    def ensure(self, size: int) -> memoryview:
        if len(self.view) < size:
            self.view.release()
            self._map.close()
            self._map = mmap.mmap(-1, size)
            self.view = memoryview(self._map)
        return self.view


class DataFile:
    """A file (or device) for payload IO: O_DIRECT if possible, buffered and noted otherwise."""

    def __init__(
        self, path: str, flags: int, progress: Progress, *, direct: bool, reading: bool, label: str
    ) -> None:
        self.path = path
        self.flags = flags
        self.progress = progress
        self.reading = reading
        self.label = label
        self.fd = -1
        self.direct = False
        if direct:
            try:
                self.fd = os.open(path, flags | os.O_DIRECT, 0o644)
                self.direct = True
            except OSError as error:
                if error.errno != errno.EINVAL:
                    raise
                self._open_buffered("O_DIRECT refused at open (EINVAL): buffered IO")
                return
            progress.io_mode(direct=True)
        else:
            self._open_buffered("")

    def run(self, operation: Callable[[int], T]) -> T:
        """Run `operation(fd)`; if O_DIRECT IO is refused (EINVAL), redo it with buffered IO."""
        try:
            return operation(self.fd)
        except OSError as error:
            if error.errno != errno.EINVAL or not self.direct:
                raise
        os.close(self.fd)
        self._open_buffered("O_DIRECT IO refused (EINVAL): buffered IO")
        return operation(self.fd)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def _open_buffered(self, why: str) -> None:
        self.fd = os.open(self.path, self.flags, 0o644)
        self.direct = False
        self.progress.io_mode(direct=False, why=why)
        if self.reading:
            try:
                os.posix_fadvise(self.fd, 0, 0, os.POSIX_FADV_DONTNEED)
                self.progress.note("reads after posix_fadvise(DONTNEED)")
            except OSError as error:
                self.progress.note(f"page cache not dropped ({errno.errorcode.get(error.errno or 0, '?')})")


def filesystem_type(path: str) -> str:
    """The filesystem type of the mount holding `path`, from /proc/self/mountinfo ("" if unknown).

    Matched by device number (field 3, major:minor of st_dev), which is exact for the mount the
    volume is on, bind mounts included, without resolving paths through /proc.
    """
    device = os.stat(path).st_dev
    wanted = f"{os.major(device)}:{os.minor(device)}"
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="replace") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) > 2 and fields[2] == wanted and "-" in fields:
                    separator = fields.index("-")
                    if separator + 1 < len(fields):
                        return fields[separator + 1]
    except OSError:
        return ""
    return ""
