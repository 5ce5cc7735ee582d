"""Run the check on a worker thread and give up on it when a phase misses its deadline.

A syscall on storage that has gone away can block forever, in uninterruptible sleep where no
signal reaches it, so the check cannot time itself out. The main thread therefore only waits:
on the progress lock, until the running phase's deadline. If the deadline passes first, it
builds the `timeout` report from what the worker recorded so far; the caller writes it (never
touching the volume) and leaves with os._exit, because a thread stuck in a syscall can be
neither interrupted nor joined.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from volprobe.agent.progress import Progress
from volprobe.contract.report import Report


@dataclass(frozen=True)
class Supervised:
    """How a supervised check ended: its report, and whether its worker had to be abandoned."""

    report: Report
    abandoned: bool
    """The worker is still running (hung): the process must exit without waiting for it."""


def supervise(check: Callable[[], None], progress: Progress) -> Supervised:
    """Run `check` (which records into `progress`) under the schedule's deadlines.

    An exception other than what the check records itself is an agent bug: it is re-raised
    here, on the main thread, so the process exits non-zero.
    """
    crashed: list[BaseException] = []

    def work() -> None:
        try:
            check()
        except BaseException as error:  # re-raised on the main thread below
            crashed.append(error)
        finally:
            progress.finish()

    worker = threading.Thread(target=work, name="volprobe-io", daemon=True)
    worker.start()
    with progress.lock:
        while not progress.finished:
            remaining = progress.deadline - time.monotonic()
            if remaining <= 0:
                return Supervised(progress.report(timed_out=True), abandoned=True)
            progress.lock.wait(remaining)
    worker.join()
    if crashed:
        raise crashed[0]
    return Supervised(progress.report(), abandoned=False)
