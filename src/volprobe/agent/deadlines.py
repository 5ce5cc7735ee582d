"""Per-phase deadlines, derived from the one overall deadline the controller passes.

Each phase must end by a fixed point in the IO budget rather than within a fixed length of its
own: a phase that finishes early hands its spare time to the next, yet a hang is still caught
early (a verify that hangs is reported after a quarter of the budget, not at the very end).

Overall deadline D (default 30 s):

* reserve: min(2 s, 10 % of D) is kept back for writing the report and exiting;
* IO budget B = D - reserve, measured from the agent's start;
* verify must end by 25 % of B, write by 55 %, fsync by 70 %, read by 100 %.

With `--fio` the verified check gets the first half of B (same proportions) and fio's write
and read jobs end by 75 % and 100 %.
"""

from __future__ import annotations

from dataclasses import dataclass

from volprobe.contract.reasons import Phase

CHECK_SCHEDULE: tuple[tuple[Phase, float], ...] = (
    (Phase.VERIFY, 0.25),
    (Phase.WRITE, 0.55),
    (Phase.FSYNC, 0.70),
    (Phase.READ, 1.0),
)
FIO_SCHEDULE: tuple[tuple[Phase, float], ...] = (
    *((phase, end / 2) for phase, end in CHECK_SCHEDULE),
    (Phase.WRITE, 0.75),
    (Phase.READ, 1.0),
)

MAX_RESERVE = 2.0
RESERVE_SHARE = 0.1


@dataclass(frozen=True)
class Step:
    """One phase of the run and the monotonic time by which it must be over."""

    phase: Phase
    deadline: float


def plan(start: float, deadline: float, fio: bool) -> tuple[Step, ...]:
    """The ordered phase deadlines of a run that started at `start` (monotonic seconds)."""
    budget = deadline - min(MAX_RESERVE, deadline * RESERVE_SHARE)
    schedule = FIO_SCHEDULE if fio else CHECK_SCHEDULE
    return tuple(Step(phase, start + budget * end) for phase, end in schedule)
