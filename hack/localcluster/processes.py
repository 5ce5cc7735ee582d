"""Start and stop the cluster's daemons: detached, logging to files, tracked by pid files.

Daemons run in their own session with stdin from /dev/null and stdout/stderr to a log file, so
they never hold a terminal or CI's output pipe open. Stopping finds them by pid file and, as a
safety net, by any process whose command line mentions the cluster's state directory: only
processes we started carry that path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import Layout


def start(layout: Layout, name: str, argv: Sequence[str], *, env: dict[str, str] | None = None) -> int:
    layout.logs.mkdir(parents=True, exist_ok=True)
    layout.run.mkdir(parents=True, exist_ok=True)
    log = (layout.logs / f"{name}.log").open("ab")
    try:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=layout.state,
        )
    finally:
        log.close()
    (layout.run / f"{name}.pid").write_text(f"{process.pid}\n")
    return process.pid


def pid_of(layout: Layout, name: str) -> int | None:
    try:
        pid = int((layout.run / f"{name}.pid").read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if alive(pid) else None


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError, ProcessLookupError):
        return False
    return state != "Z"


def _terminate(pids: list[int], timeout: float) -> None:
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            _signal(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(pid) for pid in pids):
        time.sleep(0.05)


def _signal(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def stop(layout: Layout, name: str, timeout: float = 10.0) -> None:
    pid = pid_of(layout, name)
    if pid is not None:
        _terminate([pid], timeout)
    (layout.run / f"{name}.pid").unlink(missing_ok=True)


def processes_mentioning(text: str) -> list[int]:
    """PIDs whose command line contains `text` (never our own process)."""
    found = []
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return [pid for pid in found if alive(pid)]


def stop_all_mentioning(text: str, timeout: float = 10.0) -> None:
    pids = processes_mentioning(text)
    if pids:
        _terminate(pids, timeout)


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, interval: float = 0.2, log: Path | None = None
) -> float:
    """Poll `check` until it is true; return the seconds waited or raise with the log's tail."""
    started = time.monotonic()
    while True:
        try:
            if check():
                return time.monotonic() - started
        except Exception:
            pass
        if time.monotonic() - started > timeout:
            tail = ""
            if log and log.exists():
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-25:])
            raise TimeoutError(
                f"{what} not ready after {timeout:.0f}s"
                + (f"; last log lines of {log}:\n{tail}" if tail else "")
            )
        time.sleep(interval)
