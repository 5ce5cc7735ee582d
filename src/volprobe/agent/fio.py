"""`--fio`: benchmark-grade latency numbers from fio, after the verified check passed.

fio runs two jobs with pinned parameters — a sequential write then a sequential read of the
same size and block size as the payload, each a single synchronous thread (`psync`, iodepth 1,
one job), O_DIRECT when the check itself could use it — and the agent parses fio's `json+`
output. Their completion-latency distributions and bandwidth replace the agent's own `write`
and `read` figures in the report (the `note` says so); `fsync` stays the agent's.

On a filesystem fio works on `DIR/.volprobe/fio.dat` (removed afterwards). On a block device it
works in the payload slot the check did not just write, so it stays inside the owned region and
never touches the newest generation.
"""

from __future__ import annotations

import errno
import json
import subprocess
from dataclasses import dataclass
from typing import Any

from volprobe.contract.report import LATENCY_BUCKETS, OpStats

FIO = "fio"
PINNED = (
    "--ioengine=psync",
    "--iodepth=1",
    "--numjobs=1",
    "--invalidate=1",
    "--randrepeat=0",
    "--fallocate=none",
    "--clat_percentiles=1",
    "--percentile_list=50:99",
    "--output-format=json+",
)
"""Parameters that make fio's numbers comparable with the agent's: one synchronous IO at a
time, cache invalidated before the job, and the full latency histogram (json+ "bins")."""


class FioFailed(Exception):
    """fio did not produce a usable result, for a reason other than an IO error."""


@dataclass(frozen=True)
class FioResult:
    stats: OpStats
    bandwidth: float
    """Bytes per second over the job's runtime."""
    version: str


def command(target: str, direction: str, *, block: int, size: int, offset: int, direct: bool) -> list[str]:
    """The fio command line for one job ("write" or "read")."""
    args = [
        FIO,
        f"--name=volprobe-{direction}",
        f"--filename={target.replace(':', chr(92) + ':')}",
        f"--rw={direction}",
        f"--bs={block}",
        f"--size={size}",
        f"--offset={offset}",
        f"--direct={int(direct)}",
        *PINNED,
    ]
    if direction == "write":
        args.append("--end_fsync=1")
    return args


def parse_output(text: str, direction: str) -> FioResult:
    """Turn fio's json+ output into the report's distribution for `direction`.

    Raises OSError with fio's errno if the job failed on an IO error (so it is classified like
    any other), FioFailed if the output is not what pinned fio produces.
    """
    start = text.find("{")
    try:
        body: Any = json.loads(text[start:]) if start >= 0 else None
        job = body["jobs"][0]
        code = int(job["error"])
        if code:
            raise OSError(code, f"fio: {errno.errorcode.get(code, code)}")
        side = job[direction]
        clat = side["clat_ns"]
        count = int(clat["N"])
        percentiles = clat["percentile"]
        bins = {int(value): int(hits) for value, hits in clat.get("bins", {}).items()}
        stats = OpStats(
            count=count,
            total=float(clat["mean"]) * count / 1e9,
            maximum=float(clat["max"]) / 1e9,
            p50=float(percentiles["50.000000"]) / 1e9,
            p99=float(percentiles["99.000000"]) / 1e9,
            buckets=_buckets(bins) if bins else (),
        )
        return FioResult(stats=stats, bandwidth=float(side["bw_bytes"]), version=str(body["fio version"]))
    except (ValueError, KeyError, IndexError, TypeError) as error:
        raise FioFailed(f"unexpected fio output ({type(error).__name__})") from None


def _buckets(bins: dict[int, int]) -> tuple[int, ...]:
    """Cumulative counts per LATENCY_BUCKETS bound from fio's histogram bins.

    A bin's key is the latency fio files its samples under (fio's histogram groups values with
    at most ~3 % relative error), so a sample right at a bound may land on either side of it.
    """
    return tuple(
        sum(hits for value, hits in bins.items() if value <= bound * 1e9) for bound in LATENCY_BUCKETS
    )


def run(args: list[str], started: list[subprocess.Popen[str]]) -> str:
    """Run fio; its stdout. The process is put in `started` so the watchdog can kill it."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    started.append(process)
    out, err = process.communicate()
    if process.returncode != 0 and "{" not in out:
        raise FioFailed(f"fio exited with {process.returncode}: {err.strip()[-160:]}")
    return out
