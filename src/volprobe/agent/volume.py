"""The check on a mounted filesystem: everything lives in `DIR/.volprobe/`.

Layout::

    DIR/.volprobe/state         the marker: generation, size, block, seed, sha256 (layout.py)
    DIR/.volprobe/payload-<N>   generation N's payload; only the committed one is kept

Order of a run: write `payload-<N+1>` (O_DIRECT), fsync it and the directory, write the marker
to `state.tmp`, fsync, rename over `state`, fsync the directory, and only then delete
`payload-<N>`. Whenever the agent is killed, `state` names a complete, fsynced payload; files
left behind by an interrupted run are removed at the start of the next run's write phase, so the
volume never holds more than two payloads.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import time

from volprobe.agent.classify import CheckFailed
from volprobe.agent.directio import MEMORY_FILESYSTEMS, AlignedBuffer, DataFile, filesystem_type
from volprobe.agent.layout import Record, decode_marker, encode_marker
from volprobe.agent.progress import Progress
from volprobe.agent.transfer import read_payload, write_payload
from volprobe.contract.reasons import Reason

STATE_DIR = ".volprobe"
MARKER = "state"
MARKER_TEMP = "state.tmp"
FIO_SCRATCH = "fio.dat"
PAYLOAD_PREFIX = "payload-"
MAX_MARKER_BYTES = 4096


def payload_name(generation: int) -> str:
    return f"{PAYLOAD_PREFIX}{generation}"


class VolumeStore:
    """`check.Store` for a directory on a mounted filesystem."""

    def __init__(self, root: str, progress: Progress, buffer: AlignedBuffer) -> None:
        self.root = root
        self.directory = os.path.join(root, STATE_DIR)
        self.progress = progress
        self.buffer = buffer
        self.direct = True
        self.action = f"stat {root}"
        self._pending: DataFile | None = None
        self._pending_name = ""

    def load(self) -> Record | None:
        self.action = f"stat {self.root}"
        if not stat.S_ISDIR(os.stat(self.root).st_mode):
            raise NotADirectoryError(errno.ENOTDIR, "not a directory", self.root)
        kind = filesystem_type(self.root)
        self.progress.note(f"fs={kind or 'unknown'}")
        if kind in MEMORY_FILESYSTEMS:
            self.direct = False
            self.progress.note(f"{kind} is memory-backed: buffered IO (O_DIRECT would be emulated)")
        self.action = f"read {STATE_DIR}/{MARKER}"
        try:
            fd = os.open(os.path.join(self.directory, MARKER), os.O_RDONLY)
        except FileNotFoundError:
            return None
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            data = os.read(fd, MAX_MARKER_BYTES + 1)
        finally:
            os.close(fd)
        return decode_marker(data)

    def check_payload(self, record: Record) -> None:
        name = payload_name(record.generation)
        self.action = f"open {name}"
        try:
            file = self._open(name, os.O_RDONLY, reading=True)
        except FileNotFoundError:
            raise CheckFailed(
                Reason.DATA_LOST, f"{name} is missing; the marker says generation {record.generation}"
            ) from None
        try:
            self.action = f"stat {name}"
            size = os.fstat(file.fd).st_size
            if size < record.size:
                raise CheckFailed(
                    Reason.DATA_LOST, f"{name} is {size} bytes but {record.size} were written: truncated"
                )
            if size > record.size:
                raise CheckFailed(
                    Reason.CHECKSUM_MISMATCH, f"{name} is {size} bytes but {record.size} were written"
                )
            self._compare(file, name, record)
        finally:
            file.close()

    def prepare(self, previous: Record | None) -> int:
        self.action = f"create {STATE_DIR}"
        try:
            os.mkdir(self.directory, 0o755)
            self._fsync_directory(self.root)
        except FileExistsError:
            pass
        keep = {MARKER, payload_name(previous.generation) if previous else ""}
        self.action = f"remove stale files in {STATE_DIR}"
        for name in os.listdir(self.directory):
            if name not in keep and (name.startswith(PAYLOAD_PREFIX) or name in (MARKER_TEMP, FIO_SCRATCH)):
                os.unlink(os.path.join(self.directory, name))
        return 0

    def write(self, record: Record) -> bytes:
        name = payload_name(record.generation)
        self.action = f"write {name}"
        file = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, reading=False)
        self._pending, self._pending_name = file, name
        view = self.buffer.ensure(record.block)
        return file.run(lambda fd: write_payload(fd, view, record, self.progress.recorder))

    def sync(self) -> None:
        file = self._pending
        if file is None:
            raise RuntimeError("sync before write")
        self.action = f"fsync {self._pending_name}"
        self._timed_fsync(file.fd)
        file.close()
        self._pending = None
        self.action = f"fsync {STATE_DIR}/"
        self._fsync_directory(self.directory)

    def commit(self, record: Record, previous: Record | None) -> None:
        self.action = f"write {STATE_DIR}/{MARKER}"
        temporary = os.path.join(self.directory, MARKER_TEMP)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            data = memoryview(encode_marker(record))
            while data:
                data = data[os.write(fd, data) :]
            self._timed_fsync(fd)
        finally:
            os.close(fd)
        os.replace(temporary, os.path.join(self.directory, MARKER))
        self.action = f"fsync {STATE_DIR}/ after renaming the marker"
        self._fsync_directory(self.directory)
        if previous is not None and previous.generation != record.generation:
            self.action = f"remove {payload_name(previous.generation)}"
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.directory, payload_name(previous.generation)))

    def read_back(self, record: Record) -> None:
        name = payload_name(record.generation)
        self.action = f"read {name}"
        file = self._open(name, os.O_RDONLY, reading=True)
        try:
            self._compare(file, name, record)
        finally:
            file.close()

    def scratch(self) -> tuple[str, int]:
        return os.path.join(self.directory, FIO_SCRATCH), 0

    def drop_scratch(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.scratch()[0])

    def _open(self, name: str, flags: int, reading: bool) -> DataFile:
        return DataFile(
            os.path.join(self.directory, name),
            flags,
            self.progress,
            direct=self.direct,
            reading=reading,
            label=name,
        )

    def _compare(self, file: DataFile, name: str, record: Record) -> None:
        self.action = f"read {name}"
        view = self.buffer.ensure(record.block)
        digest, first_bad = file.run(lambda fd: read_payload(fd, view, record, self.progress.recorder))
        if digest != record.sha256 or first_bad is not None:
            where = f"; first differing byte at offset {first_bad}" if first_bad is not None else ""
            raise CheckFailed(
                Reason.CHECKSUM_MISMATCH,
                f"{name} (generation {record.generation}) does not match its sha256{where}",
            )

    def _timed_fsync(self, fd: int) -> None:
        started = time.perf_counter()
        os.fsync(fd)
        self.progress.recorder.add("fsync", time.perf_counter() - started)

    def _fsync_directory(self, path: str) -> None:
        """fsync a directory, so the names in it are as durable as the data they point to.

        A few filesystems refuse fsync on directories (EINVAL) because they make names durable
        by themselves; that is noted, not failed.
        """
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            self._timed_fsync(fd)
        except OSError as error:
            if error.errno != errno.EINVAL:
                raise
            self.progress.note("directory fsync refused (EINVAL)")
        finally:
            os.close(fd)
