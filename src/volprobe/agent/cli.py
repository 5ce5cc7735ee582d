"""The `volprobe probe` command line and the run's identity. Pure: argv and environment in.

The controller passes identity and per-run settings through the environment (downward API), so
the pod spec stays static; flags exist for people running the agent by hand and override the
environment where both exist.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NoReturn

from volprobe.agent.layout import MAX_BLOCK, MAX_PAYLOAD, MIN_BLOCK
from volprobe.contract.reasons import Kind

DEFAULT_RESULT_FILE = "/dev/termination-log"
DEFAULT_PAYLOAD_BYTES = 4 << 20
DEFAULT_BLOCK_BYTES = 1 << 20
DEFAULT_DEADLINE = 30.0
MIN_DEADLINE = 1.0
MAX_DEADLINE = 3600.0

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
            run=environ.get("VOLPROBE_RUN_ID", ""),
            probe=environ.get("VOLPROBE_PROBE", ""),
            node=environ.get("VOLPROBE_NODE", ""),
            storage_class=environ.get("VOLPROBE_STORAGE_CLASS", ""),
        )


@dataclass(frozen=True)
class Options:
    kind: Kind
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
    parser.add_argument("kind", choices=[kind.value for kind in Kind], help="what the run exercises")
    target = parser.add_mutually_exclusive_group(required=True)
    target.add_argument("--path", help="directory where the volume is mounted")
    target.add_argument("--device", help="raw block device (block-mode volume)")
    parser.add_argument("--result-file", help=f"where the JSON report goes (default {DEFAULT_RESULT_FILE})")
    parser.add_argument("--payload-bytes", default=str(DEFAULT_PAYLOAD_BYTES), help="payload size (4MiB)")
    parser.add_argument("--block-bytes", default=str(DEFAULT_BLOCK_BYTES), help="IO size, 4KiB..1MiB")
    parser.add_argument("--deadline", help=f"seconds for the whole check (default {DEFAULT_DEADLINE:g})")
    parser.add_argument("--expect-generation", help="generation the controller last saw written")
    parser.add_argument("--fio", action="store_true", help="also measure latency with fio")
    return parser


def parse_size(text: str) -> int:
    """`4194304`, `4MiB`, `4Mi`, `4M` (binary units): the probe's sizes are IO sizes."""
    match = _SIZE.fullmatch(text.strip())
    if match is None:
        raise UsageError(f"not a size: {text!r}")
    return int(match.group(1)) * _UNITS[(match.group(2) or "").upper()]


def parse_args(argv: Sequence[str], environ: Mapping[str, str]) -> Options:
    args = _parser().parse_args(list(argv))
    kind = Kind(args.kind)
    announced = environ.get("VOLPROBE_KIND")
    if announced and announced != kind.value:
        raise UsageError(f"VOLPROBE_KIND={announced} contradicts the {kind.value!r} subcommand")
    payload = parse_size(args.payload_bytes)
    block = parse_size(args.block_bytes)
    if not MIN_BLOCK <= block <= MAX_BLOCK or block & (block - 1):
        raise UsageError(f"--block-bytes must be a power of two from {MIN_BLOCK} to {MAX_BLOCK}")
    if not 0 < payload <= MAX_PAYLOAD or payload % block:
        raise UsageError(
            f"--payload-bytes must be a positive multiple of the block size, at most {MAX_PAYLOAD}"
        )
    deadline = _seconds(args.deadline, environ.get("VOLPROBE_DEADLINE_SECONDS"))
    if deadline is None:
        deadline = DEFAULT_DEADLINE
    expected = _generation(args.expect_generation, environ.get("VOLPROBE_EXPECT_GENERATION"))
    return Options(
        kind=kind,
        path=args.path,
        device=args.device,
        result_file=args.result_file or DEFAULT_RESULT_FILE,
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
