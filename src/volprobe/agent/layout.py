"""On-volume records: the filesystem marker file and the block-mode header. Pure encoding.

A record says which generation the last run committed and how to check its payload: size,
block size, the seed its content derives from and its sha256. The record carries a checksum of
its own, so a damaged record is told apart from a missing one: damage is `checksum_mismatch`,
absence is "no data".

Filesystem marker (`DIR/.volprobe/state`, written atomically), three ASCII lines::

    volprobe-state 1
    gen=5 size=4194304 block=1048576 seed=<32 hex> sha256=<64 hex>
    check=<sha256 hex of the second line>

Block-mode header (one 4096-byte block, zero-padded), little-endian::

    magic "VOLPROBE" | version u32 | slot u32 | gen u64 | offset u64 | size u64 | block u32 |
    pad u32 | seed 16 B | sha256 32 B | sha256 of all preceding bytes 32 B
"""

from __future__ import annotations

import hashlib
import re
import struct
from dataclasses import dataclass

from volprobe.contract.pod import MAX_BLOCK_BYTES, MAX_PAYLOAD_BYTES, MIN_BLOCK_BYTES

SEED_BYTES = 16
HEADER_BYTES = 4096

MARKER_MAGIC = "volprobe-state 1"
_MARKER_LINE = re.compile(
    r"gen=([1-9][0-9]{0,17}) size=([1-9][0-9]{0,11}) block=([1-9][0-9]{0,7}) "
    r"seed=([0-9a-f]{32}) sha256=([0-9a-f]{64})"
)
_MARKER_CHECK = re.compile(r"check=([0-9a-f]{64})")

HEADER_MAGIC = b"VOLPROBE"
HEADER_VERSION = 1
_HEADER = struct.Struct("<8sIIQQQII16s32s")


class LayoutError(ValueError):
    """A record exists but cannot be trusted (damaged, truncated or nonsensical)."""


@dataclass(frozen=True)
class Record:
    """What a run committed: enough to find and check its payload."""

    generation: int
    size: int
    block: int
    seed: bytes
    sha256: bytes
    offset: int = 0
    """Byte offset of the payload on a block device (0 for the filesystem layout)."""

    def validate(self) -> Record:
        """Refuse records no agent would write, so damage that still parses is caught too."""
        if not MIN_BLOCK_BYTES <= self.block <= MAX_BLOCK_BYTES or self.block & (self.block - 1):
            raise LayoutError(f"block size {self.block} is not a power of two in 4 KiB..1 MiB")
        if not 0 < self.size <= MAX_PAYLOAD_BYTES or self.size % self.block:
            raise LayoutError(f"payload size {self.size} is not a multiple of the block size")
        if self.generation < 1 or len(self.seed) != SEED_BYTES or len(self.sha256) != 32:
            raise LayoutError("generation, seed or digest out of range")
        if self.offset % MIN_BLOCK_BYTES:
            raise LayoutError(f"payload offset {self.offset} is not 4 KiB aligned")
        return self


def encode_marker(record: Record) -> bytes:
    body = (
        f"gen={record.generation} size={record.size} block={record.block} "
        f"seed={record.seed.hex()} sha256={record.sha256.hex()}"
    )
    check = hashlib.sha256(body.encode()).hexdigest()
    return f"{MARKER_MAGIC}\n{body}\ncheck={check}\n".encode()


def decode_marker(data: bytes) -> Record:
    """Parse a marker file; LayoutError if it is anything but a marker this agent wrote."""
    try:
        text = data.decode("ascii")
    except UnicodeDecodeError:
        raise LayoutError("marker is not ASCII") from None
    lines = text.split("\n")
    if len(lines) != 4 or lines[0] != MARKER_MAGIC or lines[3] != "":
        raise LayoutError("marker is not a volprobe-state 1 file (truncated or damaged)")
    body = _MARKER_LINE.fullmatch(lines[1])
    check = _MARKER_CHECK.fullmatch(lines[2])
    if body is None or check is None:
        raise LayoutError("marker fields are damaged")
    if hashlib.sha256(lines[1].encode()).hexdigest() != check.group(1):
        raise LayoutError("marker checksum does not match its content")
    generation, size, block, seed, digest = body.groups()
    return Record(
        generation=int(generation),
        size=int(size),
        block=int(block),
        seed=bytes.fromhex(seed),
        sha256=bytes.fromhex(digest),
    ).validate()


def encode_header(record: Record, slot: int) -> bytes:
    fields = _HEADER.pack(
        HEADER_MAGIC,
        HEADER_VERSION,
        slot,
        record.generation,
        record.offset,
        record.size,
        record.block,
        0,
        record.seed,
        record.sha256,
    )
    sealed = fields + hashlib.sha256(fields).digest()
    return sealed.ljust(HEADER_BYTES, b"\0")


def decode_header(data: bytes, slot: int) -> Record | None:
    """Parse a block-mode header; None when the block holds no header at all (no magic).

    Anything that starts with the magic but does not check out is damage, not absence.
    """
    if len(data) < _HEADER.size + 32 or not data.startswith(HEADER_MAGIC):
        return None
    fields = data[: _HEADER.size]
    if hashlib.sha256(fields).digest() != data[_HEADER.size : _HEADER.size + 32]:
        raise LayoutError(f"header {slot} checksum does not match its content")
    _, version, stored_slot, generation, offset, size, block, _, seed, digest = _HEADER.unpack(fields)
    if version != HEADER_VERSION or stored_slot != slot:
        raise LayoutError(f"header {slot} has version {version} / slot {stored_slot}")
    return Record(
        generation=generation, size=size, block=block, seed=seed, sha256=digest, offset=offset
    ).validate()
