"""What the run has done so far, shared by the IO thread and the watchdog.

The IO thread records every finding here as it goes; the watchdog reads it when a deadline
passes. The report of a run that hung is therefore as complete as the run got — generations
seen and written, the latencies measured before the hang — and is built without touching the
volume again.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from volprobe.agent.deadlines import Step
from volprobe.agent.measure import Recorder
from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.contract.report import OpStats, Report


@dataclass(frozen=True)
class Failure:
    phase: Phase
    reason: Reason
    detail: str


class Progress:
    """Mutable run state. Every mutation happens under `lock`, which the watchdog waits on."""

    def __init__(
        self, run: str, origin: float, steps: tuple[Step, ...], payload_bytes: int, block_bytes: int
    ) -> None:
        self.lock = threading.Condition()
        self.origin = origin
        """Monotonic time the agent started; the schedule's deadlines count from it."""
        self.run = run
        self.steps = steps
        self.step = 0
        self.finished = False
        self.started = 0.0
        """Wall-clock time of the first IO on the volume (0 until then)."""
        self.started_monotonic = time.monotonic()
        self.payload_bytes = payload_bytes
        self.block_bytes = block_bytes
        self.fresh = False
        self.previous_generation: int | None = None
        self.written_generation: int | None = None
        self.used_direct = False
        self.fell_back = False
        self.notes: list[str] = []
        self.failures: list[Failure] = []
        self.recorder = Recorder()
        self.measured: dict[str, tuple[OpStats, float]] = {}
        """Distributions measured by someone else (fio) that replace the recorder's."""

    @property
    def phase(self) -> Phase:
        return self.steps[self.step].phase

    @property
    def deadline(self) -> float:
        return self.steps[self.step].deadline

    def begin(self) -> None:
        """Mark the first IO: the report's `start`, and the origin of `elapsed`."""
        with self.lock:
            self.started = time.time()
            self.started_monotonic = time.monotonic()

    def enter(self, phase: Phase) -> None:
        """Move to the next step of the schedule, which must be `phase`."""
        with self.lock:
            following = self.step + 1
            if following >= len(self.steps) or self.steps[following].phase is not phase:
                raise RuntimeError(f"phase {phase} is not next in the schedule after {self.phase}")
            self.step = following
            self.lock.notify_all()

    def finish(self) -> None:
        with self.lock:
            self.finished = True
            self.lock.notify_all()

    def note(self, text: str) -> None:
        with self.lock:
            if text not in self.notes:
                self.notes.append(text)

    def io_mode(self, direct: bool, why: str = "") -> None:
        """Record how a data file was opened; a single buffered file makes the run non-direct."""
        with self.lock:
            self.used_direct = self.used_direct or direct
            self.fell_back = self.fell_back or not direct
        if why:
            self.note(why)

    def fail(self, reason: Reason, detail: str, phase: Phase | None = None) -> None:
        with self.lock:
            self.failures.append(Failure(phase or self.phase, reason, detail))

    def report(self, timed_out: bool = False) -> Report:
        """The report as of now; with `timed_out`, the running phase missed its deadline."""
        with self.lock:
            failures = list(self.failures)
            if timed_out:
                failures.append(Failure(self.phase, Reason.TIMEOUT, self._timeout_detail()))
            ops = self.recorder.stats()
            throughput = self.recorder.throughput()
            for op, (stats, rate) in self.measured.items():
                ops[op] = stats
                throughput[op] = rate
            first = failures[0] if failures else None
            detail = "; then ".join(
                f"{f.phase.value}: {f.detail}" if f is not first else f.detail for f in failures
            )
            verdict = Result.SUCCESS
            if first is not None:
                verdict = Result.TIMEOUT if first.reason is Reason.TIMEOUT else Result.FAILURE
            return Report(
                run=self.run,
                verdict=verdict,
                phase=first.phase if first else None,
                reason=first.reason if first else None,
                detail=detail,
                fresh=self.fresh,
                previous_generation=self.previous_generation,
                written_generation=self.written_generation,
                direct=self.used_direct and not self.fell_back,
                note="; ".join(self.notes),
                payload_bytes=self.payload_bytes,
                block_bytes=self.block_bytes,
                started=self.started,
                elapsed=max(0.0, time.monotonic() - self.started_monotonic),
                ops=ops,
                throughput=throughput,
            )

    def _timeout_detail(self) -> str:
        allowed = self.deadline - self.origin
        return f"{self.phase.value} did not finish by its deadline, {allowed:.1f}s into the run"
