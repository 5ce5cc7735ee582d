"""The payload's content: regenerable from (seed, generation, block size). Pure logic.

Each run draws a random 16-byte seed. Block content is one random base block — SHAKE-256 of
the seed, as long as a block — with the first 16 bytes of every 4 KiB sector replaced by a
stamp: the generation and the sector's absolute number in the payload (two little-endian
u64). So:

* the reader regenerates exactly what must be there, and a mismatch is reported with the offset
  of the first differing byte, not only as "the checksum differs";
* data from an older run never matches (another seed, another generation), and a sector that
  lands in the wrong place — a misdirected write or read, within a block or across blocks —
  carries the wrong sector number;
* building a block costs a copy and 256 small stamps (~0.05 ms per MiB) instead of hashing a
  fresh MiB (~2 ms). The agent times syscalls, and CPU work between them is not free: on a busy
  node a thread that burns CPU between IOs waits longer to be scheduled when each IO completes,
  which inflates exactly the latencies it reports (measured: see docs/agent.md).

SHAKE-256 is used as a fast extendable-output function, not for secrecy.
"""

from __future__ import annotations

import hashlib
import struct

SECTOR = 4096
_STAMP = struct.Struct("<QQ")
_CHUNK = 4096


class Pattern:
    """The content of one generation's payload, written into caller-provided buffers."""

    def __init__(self, seed: bytes, generation: int, block: int) -> None:
        self.base = hashlib.shake_256(seed).digest(block)
        self.generation = generation
        self.block = block
        self.sectors = block // SECTOR

    def fill(self, view: memoryview | bytearray, index: int) -> None:
        """Write block `index` into `view` (exactly one block long)."""
        view[:] = self.base
        first = index * self.sectors
        for sector in range(self.sectors):
            _STAMP.pack_into(view, sector * SECTOR, self.generation, first + sector)


def first_difference(actual: bytes, expected: bytes) -> int | None:
    """Offset of the first byte where the two differ (None if equal).

    Compares 4 KiB chunks first so locating a flipped byte in a 1 MiB block costs little.
    """
    if actual == expected:
        return None
    for start in range(0, max(len(actual), len(expected)), _CHUNK):
        left, right = actual[start : start + _CHUNK], expected[start : start + _CHUNK]
        if left != right:
            for offset, (a, b) in enumerate(zip(left, right, strict=False)):
                if a != b:
                    return start + offset
            return start + min(len(left), len(right))
    return None
