"""Benchmark the agent against fio on the same loop device: start-up, memory, latency.

    sudo .venv/bin/python bench/agent_vs_fio.py [--runs N] [--python PATH] [--buffered-loop]

Creates its own ext4 filesystem on a loop device (removed afterwards, whatever happens) and
prints:

* start-up: wall time from spawning the agent to its first IO on the volume (the report's
  `start` is the wall-clock time of the first IO), median of --runs runs, next to a bare
  `python -c pass` for scale;
* peak RSS of the agent with the default payload (4 MiB in 1 MiB blocks), from wait4's rusage;
* write and read latency p50/p99 and throughput, ours vs fio, for the same block size, the same
  amount of data and O_DIRECT. fio runs the pinned jobs of `volprobe probe --fio`
  (volprobe/agent/fio.py): psync, iodepth 1, one job — a single thread doing one synchronous
  IO at a time, which is exactly what the agent does, so the two must agree.

Tolerance, fixed before measuring: p50 within 25 % or 50 µs, p99 within 50 % or 250 µs,
whichever is larger. Both tools time the same syscalls; what differs is per-call overhead
(a Python-level clock read around each call vs fio's C loop, a few µs) and run-to-run noise
of the device, which on a VM is what dominates the tail — hence the wider p99 band. Each
figure is the median over --runs alternating runs of each tool. Exit status 1 if a comparison
falls outside the tolerance.

The loop device uses direct IO to its backing file by default (`losetup --direct-io=on`), so
the latencies are those of the VM's disk rather than of the host page cache.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from volprobe.agent import fio  # noqa: E402 - after the path set-up, so a checkout runs as is
from volprobe.contract.report import Report, decode_report  # noqa: E402

MIB = 1 << 20
KIB = 1 << 10
P50_TOLERANCE = (0.25, 50e-6)
P99_TOLERANCE = (0.50, 250e-6)
CONFIGS = ((4 * KIB, 16 * MIB), (64 * KIB, 64 * MIB), (MIB, 256 * MIB))
"""(block size, amount of data) pairs compared; each one is a single agent run / fio job pair.
At least 256 IOs each, so that p99 is not simply the maximum (nearest rank of 64 samples is)."""


def sh(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout.strip()


@contextlib.contextmanager
def ext4_on_loop(buffered: bool) -> Iterator[Path]:
    """A fresh ext4 on a loop device, mounted; everything undone on exit."""
    workdir = Path(tempfile.mkdtemp(prefix="volprobe-bench-"))
    image, mountpoint = workdir / "ext4.img", workdir / "mnt"
    mountpoint.mkdir()
    device = ""
    mounted = False
    try:
        with open(image, "wb") as handle:
            handle.truncate(1 << 30)
        device = sh("losetup", "--find", "--show", f"--direct-io={'off' if buffered else 'on'}", str(image))
        sh("mkfs.ext4", "-q", "-F", device)
        sh("mount", device, str(mountpoint))
        mounted = True
        yield mountpoint
    finally:
        if mounted and subprocess.run(["umount", str(mountpoint)], check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], check=False)
        if device:
            subprocess.run(["losetup", "-d", device], check=False)
        shutil.rmtree(workdir, ignore_errors=True)


@dataclass
class AgentRun:
    report: Report
    startup: float
    """Seconds from spawning the process to its first IO."""
    peak_rss: int
    """Bytes (ru_maxrss)."""


def run_agent(python: str, volume: Path, payload: int, block: int) -> AgentRun:
    """One agent run on a fresh state directory (so its reads are the read-back only)."""
    shutil.rmtree(volume / ".volprobe", ignore_errors=True)
    result = volume.parent / "result.json"
    args = [python, "-s", "-E", "-m", "volprobe", "probe", "mount", "--path", str(volume),
            "--payload-bytes", str(payload), "--block-bytes", str(block), "--deadline", "300",
            "--result-file", str(result)]  # fmt: skip
    spawned = time.time()
    process = subprocess.Popen(args, cwd=ROOT / "src", stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"agent exited with {process.returncode}")
    report = decode_report(result.read_bytes())
    if not report.passed:
        raise SystemExit(f"agent check failed: {report.reason} {report.detail}")
    return AgentRun(report, report.started - spawned, usage.ru_maxrss * 1024)


def run_fio(volume: Path, direction: str, payload: int, block: int) -> fio.FioResult:
    target = volume / "fio.dat"
    args = fio.command(str(target), direction, block=block, size=payload, offset=0, direct=True)
    completed = subprocess.run(args, check=True, capture_output=True, text=True)
    return fio.parse_output(completed.stdout, direction)


def bare_interpreter(python: str, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run([python, "-s", "-E", "-c", "pass"], check=True)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def within(ours: float, theirs: float, tolerance: tuple[float, float]) -> bool:
    relative, absolute = tolerance
    return abs(ours - theirs) <= max(relative * theirs, absolute)


def micros(seconds: float) -> str:
    return f"{seconds * 1e6:9.1f}"


def size(nbytes: int) -> str:
    return f"{nbytes // MIB}MiB" if nbytes >= MIB else f"{nbytes // KIB}KiB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="repetitions per figure (median)")
    parser.add_argument("--python", default=sys.executable, help="interpreter to run the agent with")
    parser.add_argument("--buffered-loop", action="store_true", help="loop device through the page cache")
    options = parser.parse_args()
    if os.geteuid() != 0:
        print("agent_vs_fio: needs root (loop device, mount)", file=sys.stderr)
        return 2
    if shutil.which("fio") is None:
        print("agent_vs_fio: fio is not installed", file=sys.stderr)
        return 2
    version = sh(options.python, "-c", "import sys; print(sys.version.split()[0])")
    outside = 0
    with ext4_on_loop(options.buffered_loop) as volume:
        loop_mode = "buffered" if options.buffered_loop else "direct-io=on"
        fio_version = sh("fio", "--version")
        print(f"volprobe agent vs fio: ext4 on a loop device ({loop_mode}), python {version}, {fio_version}")

        runs = [run_agent(options.python, volume, 4 * MIB, MIB) for _ in range(options.runs)]
        startup = statistics.median(run.startup for run in runs)
        bare = bare_interpreter(options.python, options.runs)
        peak = max(run.peak_rss for run in runs)
        print(f"start-up, spawn to first IO (median of {options.runs}): {startup * 1000:.1f} ms"
              f"   [bare `python -c pass`, whole process: {bare * 1000:.1f} ms]")  # fmt: skip
        print(f"peak RSS, default payload 4 MiB / 1 MiB blocks (max of {options.runs}): {peak / MIB:.1f} MiB")
        print(
            f"tolerance: p50 within {P50_TOLERANCE[0]:.0%} or {P50_TOLERANCE[1] * 1e6:.0f} µs, "
            f"p99 within {P99_TOLERANCE[0]:.0%} or {P99_TOLERANCE[1] * 1e6:.0f} µs; "
            f"median of {options.runs} alternating runs each"
        )
        print()
        print(f"{'block':>6} {'data':>6} {'op':>5}   {'p50 µs':>9} {'fio':>9}   {'p99 µs':>9} {'fio':>9}"
              f"   {'MB/s':>7} {'fio':>7}   verdict")  # fmt: skip
        for block, payload in CONFIGS:
            ours: dict[str, list[tuple[float, float, float]]] = {"write": [], "read": []}
            theirs: dict[str, list[tuple[float, float, float]]] = {"write": [], "read": []}
            for _ in range(options.runs):
                report = run_agent(options.python, volume, payload, block).report
                for op, samples in ours.items():
                    stats = report.ops[op]
                    samples.append((stats.p50, stats.p99, report.throughput[op]))
                for op, samples in theirs.items():
                    result = run_fio(volume, op, payload, block)
                    samples.append((result.stats.p50, result.stats.p99, result.bandwidth))
                (volume / "fio.dat").unlink()
            for op in ("write", "read"):
                mine = [statistics.median(values) for values in zip(*ours[op], strict=True)]
                fios = [statistics.median(values) for values in zip(*theirs[op], strict=True)]
                good = within(mine[0], fios[0], P50_TOLERANCE) and within(mine[1], fios[1], P99_TOLERANCE)
                outside += not good
                print(
                    f"{size(block):>6} {size(payload):>6} {op:>5}   {micros(mine[0])} {micros(fios[0])}"
                    f"   {micros(mine[1])} {micros(fios[1])}   {mine[2] / 1e6:7.0f} {fios[2] / 1e6:7.0f}"
                    f"   {'within' if good else 'OUTSIDE'}"
                )
    print()
    print("all within tolerance" if not outside else f"{outside} comparison(s) outside tolerance")
    return 1 if outside else 0


if __name__ == "__main__":
    sys.exit(main())
