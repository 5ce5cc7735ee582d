"""The check on a raw block device, confined to the region volprobe owns at its start.

Region (P = payload bytes of the run)::

    [0, 4 KiB)              header slot 0
    [4 KiB, 8 KiB)          header slot 1
    [8 KiB, 8 KiB + P)      payload slot 0
    [8 KiB + P, 8 KiB + 2P) payload slot 1

Generations alternate between the two slots: generation N+1 goes into the slot that does not
hold N, payload first, then its header, each followed by a device flush. A run killed half-way
(payload or header half-written) therefore leaves generation N intact, just as the rename does
on a filesystem; the newest header that checks out wins. No byte past 8 KiB + 2P is ever read
or written. A device smaller than the region fails the run with `no_space` (phase write) before
anything is written — the volume is too small for the configured check.

If the payload size changes between runs the slots move; the previous generation is verified
before anything is written, so only a run that fails half-way after such a change can leave a
header pointing at overwritten data (reported as `checksum_mismatch` by the next run).
"""

from __future__ import annotations

import errno
import os
import stat
import time

from volprobe.agent.classify import CheckFailed
from volprobe.agent.directio import AlignedBuffer, DataFile
from volprobe.agent.layout import HEADER_BYTES, LayoutError, Record, decode_header, encode_header
from volprobe.agent.progress import Progress
from volprobe.agent.transfer import read_payload, write_payload
from volprobe.contract.reasons import Phase, Reason

SLOTS = 2
PAYLOAD_START = SLOTS * HEADER_BYTES


def region_bytes(payload_bytes: int) -> int:
    """How much of the device the check owns."""
    return PAYLOAD_START + SLOTS * payload_bytes


def payload_offset(slot: int, payload_bytes: int) -> int:
    return PAYLOAD_START + slot * payload_bytes


def choose(records: list[tuple[int, Record]], damaged: list[str]) -> tuple[int, Record] | None:
    """Which header to trust: the newest valid one; all-damaged is damage; none is no data."""
    if records:
        return max(records, key=lambda pair: pair[1].generation)
    if damaged:
        raise LayoutError("; ".join(damaged))
    return None


class BlockStore:
    """`check.Store` for a raw block device."""

    def __init__(self, device: str, progress: Progress, buffer: AlignedBuffer, payload_bytes: int) -> None:
        self.device = device
        self.progress = progress
        self.buffer = buffer
        self.payload_bytes = payload_bytes
        self.action = f"open {device}"
        self.found_slot: int | None = None
        self.slot = 0
        self._pending: DataFile | None = None

    def load(self) -> Record | None:
        self.action = f"open {self.device}"
        if not stat.S_ISBLK(os.stat(self.device).st_mode):
            raise OSError(errno.ENOTBLK, "not a block device", self.device)
        file = self._open(os.O_RDONLY, reading=True)
        try:
            size = os.lseek(file.fd, 0, os.SEEK_END)
            if size < PAYLOAD_START:
                return None
            self.action = f"read headers of {self.device}"
            view = self.buffer.ensure(PAYLOAD_START)
            data = file.run(lambda fd: _read_exactly(fd, view[:PAYLOAD_START], 0))
        finally:
            file.close()
        records: list[tuple[int, Record]] = []
        damaged: list[str] = []
        for slot in range(SLOTS):
            try:
                record = decode_header(data[slot * HEADER_BYTES : (slot + 1) * HEADER_BYTES], slot)
            except LayoutError as damage:
                damaged.append(str(damage))
                continue
            if record is None:
                continue
            if record.offset < PAYLOAD_START or record.offset + record.size > size:
                damaged.append(f"header {slot} points outside the device")
                continue
            records.append((slot, record))
        chosen = choose(records, damaged)
        if chosen is None:
            return None
        if damaged:
            self.progress.note(f"ignored a damaged header (interrupted run?): {damaged[0]}")
        self.found_slot = chosen[0]
        return chosen[1]

    def check_payload(self, record: Record) -> None:
        self._compare(record)

    def prepare(self, previous: Record | None) -> int:
        self.action = f"size of {self.device}"
        fd = os.open(self.device, os.O_RDONLY)
        try:
            size = os.lseek(fd, 0, os.SEEK_END)
        finally:
            os.close(fd)
        needed = region_bytes(self.payload_bytes)
        if size < needed:
            raise CheckFailed(
                Reason.NO_SPACE,
                f"{self.device} is {size} bytes; the check's region needs {needed}",
                Phase.WRITE,
            )
        self.slot = 1 - self.found_slot if previous is not None and self.found_slot is not None else 0
        return payload_offset(self.slot, self.payload_bytes)

    def write(self, record: Record) -> bytes:
        """Write the payload into the free slot.

        The kernel refuses writes to a read-only block device with EPERM (at open or at the
        first write, depending on the version), not EROFS; the sysfs `ro` flag tells the two
        apart from a genuine permission problem.
        """
        self.action = f"write {self.device} slot {self.slot}"
        try:
            file = self._open(os.O_RDWR, reading=False)
            self._pending = file
            view = self.buffer.ensure(record.block)
            return file.run(lambda fd: write_payload(fd, view, record, self.progress.recorder))
        except PermissionError as error:
            if _read_only(self.device):
                raise OSError(errno.EROFS, "block device is read-only", self.device) from error
            raise

    def sync(self) -> None:
        if self._pending is None:
            raise RuntimeError("sync before write")
        self.action = f"fsync {self.device}"
        self._timed_fsync(self._pending.fd)

    def commit(self, record: Record, previous: Record | None) -> None:
        file = self._pending
        if file is None:
            raise RuntimeError("commit before write")
        self.action = f"write header {self.slot} of {self.device}"
        view = self.buffer.ensure(HEADER_BYTES)[:HEADER_BYTES]
        view[:] = encode_header(record, self.slot)
        file.run(lambda fd: _write_exactly(fd, view, self.slot * HEADER_BYTES))
        self.action = f"fsync {self.device} after the header"
        self._timed_fsync(file.fd)
        file.close()
        self._pending = None

    def read_back(self, record: Record) -> None:
        self._compare(record)

    def scratch(self) -> tuple[str, int]:
        """The payload slot this run did not write: inside the region, and not the newest data."""
        return self.device, payload_offset(1 - self.slot, self.payload_bytes)

    def drop_scratch(self) -> None:
        """Nothing to remove: the slot is simply overwritten by a later generation."""

    def _open(self, flags: int, reading: bool) -> DataFile:
        return DataFile(self.device, flags, self.progress, direct=True, reading=reading, label=self.device)

    def _compare(self, record: Record) -> None:
        self.action = f"read {self.device} at {record.offset}"
        file = self._open(os.O_RDONLY, reading=True)
        try:
            view = self.buffer.ensure(record.block)
            digest, first_bad = file.run(lambda fd: read_payload(fd, view, record, self.progress.recorder))
        finally:
            file.close()
        if digest != record.sha256 or first_bad is not None:
            where = ""
            if first_bad is not None:
                where = f"; first differing byte at device offset {record.offset + first_bad}"
            raise CheckFailed(
                Reason.CHECKSUM_MISMATCH,
                f"generation {record.generation} payload does not match its sha256{where}",
            )

    def _timed_fsync(self, fd: int) -> None:
        started = time.perf_counter()
        os.fsync(fd)
        self.progress.recorder.add("fsync", time.perf_counter() - started)


def _read_only(device: str) -> bool:
    """Whether the kernel marks the device read-only (opening it for writing gives EACCES)."""
    rdev = os.stat(device).st_rdev
    try:
        with open(f"/sys/dev/block/{os.major(rdev)}:{os.minor(rdev)}/ro", encoding="ascii") as flag:
            return flag.read().strip() == "1"
    except OSError:
        return False


def _read_exactly(fd: int, view: memoryview, offset: int) -> bytes:
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done:]], offset + done)
        if count <= 0:
            raise OSError(errno.EIO, f"short read at offset {offset + done}")
        done += count
    return bytes(view)


def _write_exactly(fd: int, view: memoryview, offset: int) -> None:
    done = 0
    while done < len(view):
        count = os.pwritev(fd, [view[done:]], offset + done)
        if count <= 0:
            raise OSError(errno.EIO, f"short write at offset {offset + done}")
        done += count
