"""The agent's report: the one message that crosses from a probe pod to the controller.

The agent writes it to its container's termination-message file; the kubelet copies it into the
pod's status, where the controller's pod watch already sees it. No HTTP receiver, no credentials,
no extra requests. The kubelet truncates termination messages at 4096 bytes, so the encoding is
compact JSON with short keys and the encoder guarantees the limit.

Both sides import this module, so it depends on the standard library only. `decode_report()` is the
controller's side and never raises: anything it cannot trust becomes `bad_report`.

Schema version 1 (documented in docs/report.md)::

    {"v": 1, "run": "…", "verdict": "success|failure|timeout",
     "phase": "verify|write|fsync|read|…" | null, "reason": "<Reason>" | null, "detail": "…",
     "fresh": bool, "gen": [previous or null, written or null], "direct": bool, "note": "…",
     "bytes": int, "block": int, "start": unix seconds, "elapsed": seconds,
     "ops": {"write"|"fsync"|"read": {"n": int, "sum": s, "max": s, "p50": s, "p99": s,
                                      "b": [cumulative counts per LATENCY_BUCKETS]}},
     "tput": {"write": bytes/s, "read": bytes/s}}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, TypeVar

from volprobe.contract.reasons import Phase, Reason, Result

SCHEMA_VERSION = 1
MAX_REPORT_BYTES = 4096
"""The kubelet's limit for a termination message (bytes)."""
MAX_DETAIL_CHARS = 240

LATENCY_BUCKETS: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
"""Upper bounds (seconds) of the IO latency histogram, shared by agent, report and metrics."""

IO_OPS = ("write", "fsync", "read")
VERDICTS = (Result.SUCCESS, Result.FAILURE, Result.TIMEOUT)

E = TypeVar("E", Result, Phase, Reason)


@dataclass(frozen=True)
class OpStats:
    """Latency distribution of one kind of IO operation in one run."""

    count: int = 0
    total: float = 0.0
    maximum: float = 0.0
    p50: float = 0.0
    p99: float = 0.0
    buckets: tuple[int, ...] = ()
    """Cumulative counts per LATENCY_BUCKETS bound (len == len(LATENCY_BUCKETS))."""

    @classmethod
    def from_samples(cls, samples: list[float]) -> OpStats:
        if not samples:
            return cls(buckets=(0,) * len(LATENCY_BUCKETS))
        ordered = sorted(samples)
        buckets = []
        index = 0
        for bound in LATENCY_BUCKETS:
            while index < len(ordered) and ordered[index] <= bound:
                index += 1
            buckets.append(index)
        return cls(
            count=len(ordered),
            total=math.fsum(ordered),
            maximum=ordered[-1],
            p50=_quantile(ordered, 0.50),
            p99=_quantile(ordered, 0.99),
            buckets=tuple(buckets),
        )


def _quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile: a value that was actually observed, never an interpolation."""
    rank = max(1, math.ceil(q * len(ordered)))
    return ordered[rank - 1]


@dataclass(frozen=True)
class Report:
    """What one agent run found."""

    run: str
    verdict: Result
    phase: Phase | None = None
    reason: Reason | None = None
    detail: str = ""
    fresh: bool = False
    """The volume held no data from a previous run, and none was expected."""
    previous_generation: int | None = None
    written_generation: int | None = None
    direct: bool = False
    """Writes and reads used O_DIRECT (False: the filesystem refused it and buffered IO was used)."""
    note: str = ""
    payload_bytes: int = 0
    block_bytes: int = 0
    started: float = 0.0
    elapsed: float = 0.0
    ops: dict[str, OpStats] = field(default_factory=dict)
    throughput: dict[str, float] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.verdict is Result.SUCCESS


def encode(report: Report) -> str:
    """Serialise a report within MAX_REPORT_BYTES.

    Free text is shortened first, then per-op histograms are dropped, so the verdict and reason
    always get through even if a future field grows.
    """
    body = _to_wire(report)
    text = _dump(body)
    if len(text.encode()) <= MAX_REPORT_BYTES:
        return text
    body["detail"] = body["detail"][:80]
    body["note"] = body["note"][:80]
    for stats in body["ops"].values():
        stats.pop("b", None)
    text = _dump(body)
    if len(text.encode()) <= MAX_REPORT_BYTES:
        return text
    minimal = {key: body[key] for key in ("v", "run", "verdict", "phase", "reason")}
    return _dump(minimal)


def _dump(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=True)


def _round(value: float) -> float:
    return float(f"{value:.6g}")


def _to_wire(report: Report) -> dict[str, Any]:
    return {
        "v": SCHEMA_VERSION,
        "run": report.run[:64],
        "verdict": report.verdict.value,
        "phase": report.phase.value if report.phase else None,
        "reason": report.reason.value if report.reason else None,
        "detail": report.detail[:MAX_DETAIL_CHARS],
        "fresh": report.fresh,
        "gen": [report.previous_generation, report.written_generation],
        "direct": report.direct,
        "note": report.note[:MAX_DETAIL_CHARS],
        "bytes": report.payload_bytes,
        "block": report.block_bytes,
        "start": round(report.started, 3),
        "elapsed": _round(report.elapsed),
        "ops": {
            name: {
                "n": stats.count,
                "sum": _round(stats.total),
                "max": _round(stats.maximum),
                "p50": _round(stats.p50),
                "p99": _round(stats.p99),
                **({"b": list(stats.buckets)} if stats.buckets else {}),
            }
            for name, stats in report.ops.items()
        },
        "tput": {name: _round(value) for name, value in report.throughput.items()},
    }


class ReportError(ValueError):
    """The report cannot be trusted; the message says why (for logs and Events, not labels)."""


def decode_report(text: str | bytes | None) -> Report:
    """Decode a report written by the agent. Raises ReportError only; never anything else.

    Callers turn ReportError into a `bad_report` failure. Every field is type-checked because the
    text comes from a container we do not control the behaviour of (a broken or hostile image can
    write anything into its termination-message file).
    """
    try:
        return _parse(text)
    except ReportError:
        raise
    except Exception as error:
        raise ReportError(f"unreadable report: {type(error).__name__}") from None


def _parse(text: str | bytes | None) -> Report:
    if not text:
        raise ReportError("no report")
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_REPORT_BYTES:
        raise ReportError(f"report is {len(raw)} bytes, over the {MAX_REPORT_BYTES}-byte limit")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        raise ReportError("report is not valid JSON (truncated?)") from None
    if not isinstance(body, dict):
        raise ReportError("report is not a JSON object")
    if body.get("v") != SCHEMA_VERSION:
        raise ReportError(f"unsupported report schema version {body.get('v')!r}")
    verdict = _enum(Result, body.get("verdict"), "verdict")
    if verdict not in VERDICTS:
        raise ReportError(f"verdict {verdict.value!r} is not a completed run")
    phase = _optional_enum(Phase, body.get("phase"), "phase")
    reason = _optional_enum(Reason, body.get("reason"), "reason")
    if verdict is not Result.SUCCESS and reason is None:
        raise ReportError("a failed run must carry a reason")
    generations = body.get("gen", [None, None])
    if not (isinstance(generations, list) and len(generations) == 2):
        raise ReportError("gen must be a pair")
    ops_body = _typed(body.get("ops", {}), dict, "ops")
    return Report(
        run=_typed(body.get("run", ""), str, "run")[:64],
        verdict=verdict,
        phase=phase,
        reason=reason,
        detail=_typed(body.get("detail", ""), str, "detail")[:MAX_DETAIL_CHARS],
        fresh=_typed(body.get("fresh", False), bool, "fresh"),
        previous_generation=_optional_int(generations[0], "gen"),
        written_generation=_optional_int(generations[1], "gen"),
        direct=_typed(body.get("direct", False), bool, "direct"),
        note=_typed(body.get("note", ""), str, "note")[:MAX_DETAIL_CHARS],
        payload_bytes=_count(body.get("bytes", 0), "bytes"),
        block_bytes=_count(body.get("block", 0), "block"),
        started=_seconds(body.get("start", 0.0), "start"),
        elapsed=_seconds(body.get("elapsed", 0.0), "elapsed"),
        ops={name: _op_stats(ops_body[name], name) for name in IO_OPS if name in ops_body},
        throughput={
            name: _seconds(value, "tput")
            for name, value in _typed(body.get("tput", {}), dict, "tput").items()
            if name in IO_OPS
        },
    )


def _op_stats(body: object, name: str) -> OpStats:
    stats = _typed(body, dict, f"ops.{name}")
    buckets = stats.get("b")
    if buckets is None:
        bucket_counts: tuple[int, ...] = ()
    else:
        values = tuple(_count(value, f"ops.{name}.b") for value in _typed(buckets, list, "b"))
        if len(values) != len(LATENCY_BUCKETS) or list(values) != sorted(values):
            raise ReportError(f"ops.{name}.b is not a cumulative histogram")
        bucket_counts = values
    count = _count(stats.get("n", 0), f"ops.{name}.n")
    if bucket_counts and bucket_counts[-1] > count:
        raise ReportError(f"ops.{name}.b counts more samples than n")
    return OpStats(
        count=count,
        total=_seconds(stats.get("sum", 0.0), f"ops.{name}.sum"),
        maximum=_seconds(stats.get("max", 0.0), f"ops.{name}.max"),
        p50=_seconds(stats.get("p50", 0.0), f"ops.{name}.p50"),
        p99=_seconds(stats.get("p99", 0.0), f"ops.{name}.p99"),
        buckets=bucket_counts,
    )


def _typed(value: Any, kind: type, name: str) -> Any:
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ReportError(f"{name} must be {kind.__name__}")
    return value


def _count(value: object, name: str) -> int:
    number = _typed(value, int, name)
    if number < 0 or number > 1 << 53:
        raise ReportError(f"{name} out of range")
    return int(number)


def _optional_int(value: object, name: str) -> int | None:
    return None if value is None else _count(value, name)


def _seconds(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ReportError(f"{name} must be a number")
    number = float(value)
    if not math.isfinite(number) or number < 0:
        raise ReportError(f"{name} must be a finite non-negative number")
    return number


def _enum(kind: type[E], value: object, name: str) -> E:
    if not isinstance(value, str):
        raise ReportError(f"{name} must be a string")
    try:
        return kind(value)
    except ValueError:
        raise ReportError(f"unknown {name} {value[:40]!r}") from None


def _optional_enum(kind: type[E], value: object, name: str) -> E | None:
    return None if value is None else _enum(kind, value, name)
