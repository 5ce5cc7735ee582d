"""The timed payload IO loops shared by the filesystem and block-device checks.

One block per syscall, timed tightly around the syscall only (see measure.py); building,
hashing and comparing the content happen outside the timed region, and are kept cheap (see
payload.py) because CPU spent between IOs still shows up in IO latency on a busy node.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time

from volprobe.agent.layout import Record
from volprobe.agent.measure import Recorder
from volprobe.agent.payload import Pattern, first_difference


def write_payload(fd: int, buffer: memoryview, record: Record, recorder: Recorder) -> bytes:
    """Write the record's payload at `record.offset`; return its sha256 digest."""
    digest = hashlib.sha256()
    block = record.block
    pattern = Pattern(record.seed, record.generation, block)
    view = buffer[:block]
    for index in range(record.size // block):
        pattern.fill(view, index)
        digest.update(view)
        offset = record.offset + index * block
        done = 0
        while done < block:
            started = time.perf_counter()
            count = os.pwritev(fd, [view[done:]], offset + done)
            recorder.add("write", time.perf_counter() - started, count)
            if count <= 0:
                raise OSError(errno.EIO, f"write returned {count} at offset {offset + done}")
            done += count
    return digest.digest()


def read_payload(fd: int, buffer: memoryview, record: Record, recorder: Recorder) -> tuple[bytes, int | None]:
    """Read the record's payload back; return its sha256 and the first differing byte (or None).

    The offset is relative to the payload's start. A short payload (end of file or device)
    counts as differing where the data ends.
    """
    digest = hashlib.sha256()
    block = record.block
    pattern = Pattern(record.seed, record.generation, block)
    expected = bytearray(block)
    view = buffer[:block]
    first_bad: int | None = None
    for index in range(record.size // block):
        offset = record.offset + index * block
        done = 0
        while done < block:
            started = time.perf_counter()
            count = os.preadv(fd, [view[done:]], offset + done)
            recorder.add("read", time.perf_counter() - started, count)
            if count <= 0:
                break
            done += count
        actual = bytes(view[:done])
        digest.update(actual)
        if first_bad is None:
            pattern.fill(expected, index)
            difference = first_difference(actual, bytes(expected)) if actual != expected else None
            if difference is not None:
                first_bad = index * block + difference
        if done < block:
            break
    return digest.digest(), first_bad
