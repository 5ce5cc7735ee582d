"""Getting the result out: the JSON report to the termination-message file, a line to stdout.

The report is what the controller acts on (the kubelet copies the termination-message file into
the pod status); the stdout line is for people reading `kubectl logs`.
"""

from __future__ import annotations

import os
import sys

from volprobe.agent.cli import Identity
from volprobe.contract.report import Report, encode

MIB = 1 << 20


def summary(report: Report, kind: str, identity: Identity) -> str:
    """One human-readable line, e.g.

    `volprobe: success mount gen 4->5 4.0 MiB direct write p50 1.2ms p99 3.4ms 150 MB/s ...`
    """
    words = ["volprobe:", report.verdict.value]
    if report.phase is not None:
        words.append(f"phase={report.phase.value}")
    if report.reason is not None:
        words.append(f"reason={report.reason.value}")
    words.append(kind)
    previous = "fresh" if report.fresh else _generation(report.previous_generation)
    words.append(f"gen {previous}->{_generation(report.written_generation)}")
    words.append(_size(report.payload_bytes))
    words.append("direct" if report.direct else "buffered")
    for op in ("write", "fsync", "read"):
        stats = report.ops.get(op)
        if stats is None or not stats.count:
            continue
        words += [op, "p50", _duration(stats.p50)]
        words += ["p99", _duration(stats.p99)] if op != "fsync" else ["max", _duration(stats.maximum)]
        rate = report.throughput.get(op)
        if rate:
            words.append(f"{rate / 1e6:.0f} MB/s")
    if report.detail:
        words.append(f"detail={report.detail!a}")
    if report.note:
        words.append(f"note={report.note!a}")
    for key, value in (
        ("run", identity.run),
        ("probe", identity.probe),
        ("node", identity.node),
        ("class", identity.storage_class),
    ):
        if value:
            words.append(f"{key}={value}")
    return " ".join(words)


def _generation(value: int | None) -> str:
    return "-" if value is None else str(value)


def _size(nbytes: int) -> str:
    if nbytes >= MIB:
        return f"{nbytes / MIB:.1f} MiB"
    return f"{nbytes / 1024:.0f} KiB"


def _duration(seconds: float) -> str:
    millis = seconds * 1000
    if millis >= 10:
        return f"{millis:.0f}ms"
    if millis >= 1:
        return f"{millis:.1f}ms"
    return f"{millis:.3f}ms"


def deliver(report: Report, line: str, result_file: str, explicit: bool) -> int:
    """Write the report and the summary; the exit status (0, or 1 if an explicit file failed).

    The default file (/dev/termination-log) exists only inside a pod; outside one the report goes
    to stdout after the summary and stderr says why. It is never created: as root that would
    leave a stray file in /dev. An explicitly named file is created, and failing to write it is
    an agent error, because whoever named it will read it.
    """
    text = encode(report)
    status = 0
    on_stdout = False
    try:
        _write(result_file, text, create=explicit)
    except OSError as error:
        if explicit:
            print(f"volprobe probe: cannot write the result file {result_file}: {error}", file=sys.stderr)
            status = 1
        else:
            print(
                f"volprobe probe: {result_file} is not writable ({error.strerror}); report on stdout only",
                file=sys.stderr,
            )
            on_stdout = True
    print(line)
    if on_stdout:
        print(text)
    sys.stdout.flush()
    sys.stderr.flush()
    return status


def _write(path: str, text: str, create: bool) -> None:
    flags = os.O_WRONLY | os.O_TRUNC | (os.O_CREAT if create else 0)
    fd = os.open(path, flags, 0o644)
    try:
        data = memoryview(text.encode())
        while data:
            data = data[os.write(fd, data) :]
    finally:
        os.close(fd)
