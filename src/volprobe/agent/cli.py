"""The `volprobe probe` command line and the run's identity. Pure: argv and environment in.

Every flag, variable, path and limit comes from `volprobe.contract.pod`, the definition the
controller writes pods with. Identity and per-run settings arrive through the environment
(downward API); flags exist for people running the agent by hand and override the environment
where both exist.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from volprobe.contract.pod import (
    DEFAULT_BLOCK_BYTES,
    DEFAULT_DEADLINE,
    DEFAULT_PAYLOAD_BYTES,
    KIND_PATTERN,
    MAX_BLOCK_BYTES,
    MAX_DEADLINE,
    MAX_PAYLOAD_BYTES,
    MIN_BLOCK_BYTES,
    MIN_DEADLINE,
    RESULT_FILE,
    Env,
    Flag,
)

_SIZE = re.compile(r"([0-9]{1,15})\s*(?:([KMG])(?:i|iB|B)?|B)?", re.IGNORECASE)
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


class UsageError(Exception):
    """Bad command line or environment: exit status 2, nothing written."""


class HelpRequested(Exception):
    """`--help`: the text is the exception's message."""


@dataclass(frozen=True)
class Identity:
    """Who this run is, as the controller told it (empty when run by hand)."""

    run: str = ""
    probe: str = ""
    node: str = ""
    storage_class: str = ""

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Identity:
        return cls(
            run=environ.get(Env.RUN_ID, ""),
            probe=environ.get(Env.PROBE, ""),
            node=environ.get(Env.NODE, ""),
            storage_class=environ.get(Env.STORAGE_CLASS, ""),
        )


@dataclass(frozen=True)
class Options:
    kind: str
    path: str | None
    device: str | None
    result_file: str
    result_file_explicit: bool
    payload_bytes: int
    block_bytes: int
    deadline: float
    expect_generation: int | None
    fio: bool
    identity: Identity


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so `main` returns its status like a function."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise HelpRequested(self.format_help())


def _parser() -> _Parser:
    parser = _Parser(
        prog="volprobe probe",
        description="Verified IO check of a mounted volume or raw block device (runs in probe pods).",
    )
    parser.add_argument("kind", help="what the run exercises (recorded in the report: provision, mount…)")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument(Flag.PATH, help="directory where the volume is mounted")
    target.add_argument(Flag.DEVICE, help="raw block device (block-mode volume)")
    parser.add_argument(Flag.RESULT_FILE, help=f"where the JSON report goes (default {RESULT_FILE})")
    parser.add_argument(Flag.PAYLOAD_BYTES, default=str(DEFAULT_PAYLOAD_BYTES), help="payload size (4MiB)")
    parser.add_argument(Flag.BLOCK_BYTES, default=str(DEFAULT_BLOCK_BYTES), help="IO size, 4KiB..1MiB")
    parser.add_argument(Flag.DEADLINE, help=f"seconds for the whole check (default {DEFAULT_DEADLINE:g})")
    parser.add_argument(Flag.EXPECT_GENERATION, help="generation the controller last saw written")
    parser.add_argument(Flag.FIO, action="store_true", help="also measure latency with fio")
    return parser


def parse_size(text: str) -> int:
    """`4194304`, `4MiB`, `4Mi`, `4M` (binary units): the probe's sizes are IO sizes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").upper()]


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    args = _parser().parse_args(list(argv))
    kind = str(args.kind)
    if re.fullmatch(KIND_PATTERN, kind) is None:
        raise UsageError(f"not a probe kind: {kind[:40]!r}")
    announced = environ.get(Env.KIND)
    if announced and announced != kind:
        raise UsageError(f"{Env.KIND}={announced} contradicts the {kind!r} subcommand")
    payload = parse_size(args.payload_bytes)
    block = parse_size(args.block_bytes)
    if not MIN_BLOCK_BYTES <= block <= MAX_BLOCK_BYTES or block & (block - 1):
        raise UsageError(
            f"{Flag.BLOCK_BYTES} must be a power of two from {MIN_BLOCK_BYTES} to {MAX_BLOCK_BYTES}"
        )
    if not 0 < payload <= MAX_PAYLOAD_BYTES or payload % block:
        raise UsageError(
            f"{Flag.PAYLOAD_BYTES} must be a positive multiple of the block size, at most {MAX_PAYLOAD_BYTES}"
        )
    deadline = _seconds(args.deadline, environ.get(Env.DEADLINE_SECONDS))
    if deadline is None:
        deadline = DEFAULT_DEADLINE
    expected = _generation(args.expect_generation, environ.get(Env.EXPECT_GENERATION))
    return Options(
        kind=kind,
        path=args.path,
        device=args.device,
        result_file=args.result_file or RESULT_FILE,
        result_file_explicit=args.result_file is not None,
        payload_bytes=payload,
        block_bytes=block,
        deadline=deadline,
        expect_generation=expected,
        fio=args.fio,
        identity=Identity.from_environ(environ),
    )


def _chosen(flag: str | None, environment: str | None) -> str | None:
    """The flag if given, else the environment variable; empty means unset."""
    text = flag if flag is not None else environment
    return text.strip() if text is not None and text.strip() else None


def _seconds(flag: str | None, environment: str | None) -> float | None:
    text = _chosen(flag, environment)
    if text is None:
        return None
    try:
        value = float(text)
    except ValueError:
        raise UsageError(f"deadline is not a number: {text!r}") from None
    if not MIN_DEADLINE <= value <= MAX_DEADLINE:  # also rejects nan and inf
        raise UsageError(f"deadline must be between {MIN_DEADLINE:g} and {MAX_DEADLINE:g} seconds")
    return value


def _generation(flag: str | None, environment: str | None) -> int | None:
    text = _chosen(flag, environment)
    if text is None:
        return None
    if not text.isascii() or not text.isdigit() or len(text) > 18:
        raise UsageError(f"expected generation must be a non-negative integer, not {text!r}")
    return int(text)
