"""Payload content is regenerable, differs per run and per sector, and differences are located."""

from __future__ import annotations

import pytest

from volprobe.agent.payload import SECTOR, Pattern, first_difference

MIB = 1 << 20


def block(seed: bytes, generation: int, index: int, size: int = 64 * 1024) -> bytes:
    content = bytearray(size)
    Pattern(seed, generation, size).fill(content, index)
    return bytes(content)


def test_content_is_regenerable() -> None:
    seed = bytes(range(16))
    assert block(seed, 1, 3) == block(seed, 1, 3)
    buffer = memoryview(bytearray(64 * 1024))
    Pattern(seed, 1, 64 * 1024).fill(buffer, 3)
    assert bytes(buffer) == block(seed, 1, 3)


def test_content_differs_across_runs_generations_and_blocks() -> None:
    seed = bytes(range(16))
    reference = block(seed, 1, 0)
    assert reference != block(bytes(16), 1, 0)  # another run (seed)
    assert reference != block(seed, 2, 0)  # another generation
    assert reference != block(seed, 1, 1)  # another block


def test_every_sector_is_unique_within_and_across_blocks() -> None:
    seed = b"s" * 16
    sectors = {
        content[offset : offset + SECTOR]
        for index in range(4)
        for content in [block(seed, 9, index)]
        for offset in range(0, len(content), SECTOR)
    }
    assert len(sectors) == 4 * (64 * 1024 // SECTOR)


def test_a_misplaced_sector_is_caught() -> None:
    seed = b"s" * 16
    blocks = [block(seed, 2, index) for index in range(2)]
    misdirected = bytearray(blocks[1])
    misdirected[SECTOR : 2 * SECTOR] = blocks[0][SECTOR : 2 * SECTOR]  # sector 1 of block 0
    assert first_difference(bytes(misdirected), blocks[1]) == SECTOR + 8  # the stamp's sector number


@pytest.mark.parametrize("offset", [0, 1, 4095, 4096, 123457, MIB - 1])
def test_first_difference_finds_a_flipped_byte(offset: int) -> None:
    expected = block(b"s" * 16, 3, 0, MIB)
    actual = bytearray(expected)
    actual[offset] ^= 0x04
    assert first_difference(bytes(actual), expected) == offset


def test_first_difference_of_equal_and_short_data() -> None:
    expected = block(b"s" * 16, 3, 0, 8192)
    assert first_difference(expected, expected) is None
    assert first_difference(expected[:5000], expected) == 5000
    assert first_difference(b"", expected) == 0
