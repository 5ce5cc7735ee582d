"""The check itself, independent of where the data lives: verify, write, fsync, read.

`Store` is the storage-specific part (a directory on a mounted filesystem, or a region of a raw
block device); this module holds the sequence and the rules, so both modes behave alike.

A verify failure does not stop the run: it is reported (the first failure is the verdict), and
the run still writes, syncs and reads a fresh generation. One incident then gives one failed run
rather than a failure on every run until someone wipes the volume, and the fresh data is what
the next run checks.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Protocol

from volprobe.agent.classify import CheckFailed, describe, reason_for
from volprobe.agent.generations import judge, next_generation
from volprobe.agent.layout import LayoutError, Record
from volprobe.agent.progress import Progress
from volprobe.contract.reasons import Phase, Reason


class Store(Protocol):
    """Where the payload and the record of the last run live."""

    action: str
    """What the store is doing (for error details): "write payload-5", "fsync /dev/sdb"…"""

    def load(self) -> Record | None:
        """The last committed record; None if there is none; LayoutError if it is damaged."""

    def check_payload(self, record: Record) -> None:
        """Read the recorded payload back; CheckFailed if it is missing or differs."""

    def prepare(self, previous: Record | None) -> int:
        """Get ready to write (directories, stale files, space); return the payload offset."""

    def write(self, record: Record) -> bytes:
        """Write the payload described by `record`; return its sha256."""

    def sync(self) -> None:
        """Flush the payload (and what names it) to stable storage."""

    def commit(self, record: Record, previous: Record | None) -> None:
        """Durably replace the record of the previous run with `record`."""

    def read_back(self, record: Record) -> None:
        """Read the payload just written back past the page cache; CheckFailed if it differs."""

    def scratch(self) -> tuple[str, int]:
        """Where `--fio` may write: (file or device, byte offset), never over the newest data."""

    def drop_scratch(self) -> None:
        """Remove what `--fio` left in the scratch area, if anything needs removing."""


def run_check(
    store: Store, progress: Progress, expected: int | None, payload_bytes: int, block_bytes: int
) -> None:
    """Run the phases, recording every finding in `progress`. Returns normally on failures."""
    progress.begin()
    found = _verify(store, progress, expected)
    progress.enter(Phase.WRITE)
    try:
        record = Record(
            generation=next_generation(found.generation if found else None, expected),
            size=payload_bytes,
            block=block_bytes,
            seed=os.urandom(16),
            sha256=bytes(32),
        )
        record = replace(record, offset=store.prepare(found))
        record = replace(record, sha256=store.write(record))
        progress.enter(Phase.FSYNC)
        store.sync()
        store.commit(record, found)
        progress.written_generation = record.generation
        progress.enter(Phase.READ)
        store.read_back(record)
    except CheckFailed as failure:
        progress.fail(failure.reason, failure.detail, failure.phase)
    except OSError as error:
        progress.fail(reason_for(error), describe(error, store.action))


def _verify(store: Store, progress: Progress, expected: int | None) -> Record | None:
    """Phase verify: load the last record, apply the generation rules, check the payload."""
    found: Record | None = None
    try:
        try:
            found = store.load()
        except LayoutError as damage:
            raise CheckFailed(
                Reason.CHECKSUM_MISMATCH, f"record of the last run is damaged: {damage}"
            ) from None
        progress.previous_generation = found.generation if found else None
        progress.fresh = found is None and not expected
        problem = judge(found.generation if found else None, expected)
        if problem is not None:
            progress.fail(*problem)
        if found is not None:
            store.check_payload(found)
    except CheckFailed as failure:
        progress.fail(failure.reason, failure.detail, failure.phase)
    except OSError as error:
        progress.fail(reason_for(error), describe(error, store.action))
    return found
