"""The volprobe agent: the verified IO check that runs inside every probe pod.

`volprobe probe mount --path DIR` (or `--device DEV`) checks that the previous run's data is
still there and intact, writes a fresh payload with O_DIRECT, fsyncs it, reads it back past the
page cache and verifies it, timing every operation. The JSON report (volprobe.contract.report, schema
v1) goes to the termination-message file, a summary line to stdout. See docs/agent.md.

Exit status: 0 whenever a report was written, whatever its verdict; 2 for a bad command line;
1 when the agent itself broke (the controller turns that into `agent_failed`).

Standard library only, and only what the check needs is imported: this runs on every probe,
and start-up time is part of every probe's latency.
"""

from __future__ import annotations

import os
import sys
import time
from typing import TYPE_CHECKING

from volprobe.agent.cli import HelpRequested, Options, UsageError, parse_args
from volprobe.agent.deadlines import plan
from volprobe.agent.directio import AlignedBuffer
from volprobe.agent.iocheck import Store, run_check
from volprobe.agent.output import deliver, summary
from volprobe.agent.progress import Progress
from volprobe.agent.watchdog import supervise
from volprobe.contract.reasons import Phase

if TYPE_CHECKING:
    import subprocess

__all__ = ["main"]


def main(argv: list[str]) -> int:
    origin = time.monotonic()
    try:
        options = parse_args(argv, os.environ)
    except HelpRequested as text:
        print(text, end="")
        return 0
    except UsageError as error:
        print(f"volprobe probe: {error} (see volprobe probe --help)", file=sys.stderr)
        return 2
    if options.fio:
        import shutil

        from volprobe.agent.fio import FIO

        if shutil.which(FIO) is None:
            print("volprobe probe: --fio needs fio on PATH", file=sys.stderr)
            return 2
    progress = Progress(
        options.identity.run,
        origin,
        plan(origin, options.deadline, options.fio),
        options.payload_bytes,
        options.block_bytes,
    )
    children: list[subprocess.Popen[str]] = []
    outcome = supervise(lambda: _check(options, progress, children), progress)
    status = deliver(
        outcome.report,
        summary(outcome.report, options.kind, options.identity),
        options.result_file,
        options.result_file_explicit,
    )
    if outcome.abandoned:
        for child in children:
            child.kill()
        os._exit(status)
    return status


def _check(options: Options, progress: Progress, children: list[subprocess.Popen[str]]) -> None:
    buffer = AlignedBuffer(options.block_bytes)
    store: Store
    if options.device is not None:
        from volprobe.agent.blockdev import BlockStore

        store = BlockStore(options.device, progress, buffer, options.payload_bytes)
    else:
        from volprobe.agent.volume import VolumeStore

        store = VolumeStore(options.path or ".", progress, buffer)
    run_check(store, progress, options.expect_generation, options.payload_bytes, options.block_bytes)
    if options.fio and not progress.failures:
        _benchmark(options, store, progress, children)


def _benchmark(
    options: Options, store: Store, progress: Progress, children: list[subprocess.Popen[str]]
) -> None:
    """Run fio's write and read jobs (phases write and read again, with their own deadlines)."""
    from volprobe.agent import fio
    from volprobe.agent.classify import describe, reason_for

    target, offset = store.scratch()
    direct = progress.used_direct and not progress.fell_back
    try:
        for phase, direction in ((Phase.WRITE, "write"), (Phase.READ, "read")):
            progress.enter(phase)
            args = fio.command(
                target,
                direction,
                block=options.block_bytes,
                size=options.payload_bytes,
                offset=offset,
                direct=direct,
            )
            result = fio.parse_output(fio.run(args, children), direction)
            with progress.lock:
                progress.measured[direction] = (result.stats, result.bandwidth)
        progress.note(f"write/read latency by {result.version} (psync, iodepth 1, direct={int(direct)})")
    except fio.FioFailed as failure:
        progress.note(f"fio failed, latency is the agent's own: {failure}")
    except OSError as error:
        progress.fail(reason_for(error), describe(error, f"fio {progress.phase.value} job"))
    finally:
        store.drop_scratch()
