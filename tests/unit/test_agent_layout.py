"""On-volume records: marker file and block header round-trip; damage is detected, never trusted."""

from __future__ import annotations

import random

import pytest

from volprobe.agent.layout import (
    HEADER_BYTES,
    LayoutError,
    Record,
    decode_header,
    decode_marker,
    encode_header,
    encode_marker,
)

RECORD = Record(
    generation=42, size=4 << 20, block=1 << 20, seed=bytes(range(16)), sha256=bytes(range(32, 64)), offset=0
)


def test_marker_round_trip() -> None:
    data = encode_marker(RECORD)
    assert data.startswith(b"volprobe-state 1\n")
    assert decode_marker(data) == RECORD
    assert len(data) < 512


def test_every_single_byte_change_of_the_marker_is_detected() -> None:
    data = encode_marker(RECORD)
    for index in range(len(data)):
        for flip in (0x01, 0x20, 0x80):
            damaged = bytearray(data)
            damaged[index] ^= flip
            with pytest.raises(LayoutError):
                decode_marker(bytes(damaged))


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"volprobe-state 1\n",
        b"\xff\xfe",
        b"volprobe-state 2\ngen=1\ncheck=0\n",
        encode_marker(RECORD)[:-1],
        encode_marker(RECORD) + b"x",
        encode_marker(RECORD).replace(b"\n", b"\r\n"),
    ],
)
def test_malformed_markers(data: bytes) -> None:
    with pytest.raises(LayoutError):
        decode_marker(data)


@pytest.mark.parametrize(
    "record",
    [
        Record(generation=1, size=4096, block=3000, seed=bytes(16), sha256=bytes(32)),
        Record(generation=1, size=4096, block=2 << 20, seed=bytes(16), sha256=bytes(32)),
        Record(generation=1, size=6000, block=4096, seed=bytes(16), sha256=bytes(32)),
        Record(generation=0, size=4096, block=4096, seed=bytes(16), sha256=bytes(32)),
    ],
)
def test_nonsensical_records_are_refused_even_with_a_valid_checksum(record: Record) -> None:
    with pytest.raises(LayoutError):
        decode_marker(encode_marker(record))


def test_header_round_trip_and_slot() -> None:
    record = Record(
        generation=7, size=1 << 20, block=65536, seed=bytes(16), sha256=bytes(range(32)), offset=8192
    )
    block = encode_header(record, slot=1)
    assert len(block) == HEADER_BYTES
    assert decode_header(block, slot=1) == record
    with pytest.raises(LayoutError):
        decode_header(block, slot=0)  # a header copied into the wrong slot is damage


def test_blank_or_foreign_blocks_are_no_header() -> None:
    assert decode_header(bytes(HEADER_BYTES), 0) is None
    assert decode_header(random.Random(1).randbytes(HEADER_BYTES), 0) is None
    assert decode_header(b"", 0) is None


def test_damaged_header_is_damage_not_absence() -> None:
    record = Record(generation=3, size=8192, block=4096, seed=bytes(16), sha256=bytes(32), offset=8192)
    block = bytearray(encode_header(record, 0))
    for index in range(8, 128):  # everything after the magic, up to and including the checksum
        damaged = bytearray(block)
        damaged[index] ^= 0x10
        with pytest.raises(LayoutError):
            decode_header(bytes(damaged), 0)
