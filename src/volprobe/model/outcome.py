"""What a finished run found (`Outcome`), and the two rules that turn runs into skips.

Everything metrics, status and Events need about a run is in its outcome; it is plain data, so
the planner, the one-shot check and the tests all reason about the same values.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from volprobe.contract.reasons import INTEGRITY_REASONS, Phase, Reason, Result, SkipReason
from volprobe.contract.report import Report
from volprobe.model.targets import Target


@dataclass(frozen=True)
class Verdict:
    """How a run ended, before it is an `Outcome` (a pod run's clean-up can still change it)."""

    result: Result
    phase: Phase | None = None
    reason: Reason | None = None
    message: str = ""
    skip: SkipReason | None = None

    @property
    def passed(self) -> bool:
        return self.result is Result.SUCCESS


@dataclass(frozen=True)
class Outcome:
    """What one run found; everything metrics, status and Events need."""

    target: Target
    run: str
    result: Result
    phase: Phase | None
    reason: Reason | None
    message: str
    node: str
    started: float
    finished: float
    durations: dict[Phase, float] = field(default_factory=dict)
    report: Report | None = None
    skip: SkipReason | None = None
    details: Any = field(default=None, compare=False)
    """What only this kind's runs find, for its own status and metrics (an object store's
    per-operation results and canary)."""

    @property
    def passed(self) -> bool:
        """The run did what an application needs (a slow run too: slow is not a failure)."""
        return self.result in (Result.SUCCESS, Result.SLOW)

    @property
    def failed(self) -> bool:
        """A failure or a timeout: what streaks, alerts and Events count."""
        return self.result in (Result.FAILURE, Result.TIMEOUT)

    @property
    def seconds(self) -> float:
        return max(0.0, self.finished - self.started)


def skipped(
    target: Target, reason: SkipReason, now: float, run: str = "", started: float | None = None
) -> Outcome:
    return Outcome(
        target,
        run,
        Result.SKIPPED,
        None,
        None,
        f"skipped: {reason.value}",
        target.node,
        now if started is None else started,
        now,
        skip=reason,
    )


def failed(
    target: Target, reason: Reason, phase: Phase, message: str, *, now: float, run: str = ""
) -> Outcome:
    """A run that failed before it had any object to follow (missing class, API refusal)."""
    return Outcome(target, run, Result.FAILURE, phase, reason, message, target.node, now, now)


def demote_if_node_unwell(outcome: Outcome, reason: SkipReason | None) -> Outcome:
    """A run that failed while its node went unwell is a skip, not a storage failure.

    Draining or rebooting a node kills its probe pod; counting that as a failure is exactly
    the false positive operators had to filter out of pie's metrics by hand.
    """
    if outcome.passed or outcome.result is Result.SKIPPED or reason is None:
        return outcome
    if outcome.reason in INTEGRITY_REASONS:
        return outcome  # corruption found during a drain is still corruption
    return skipped(outcome.target, reason, outcome.finished, outcome.run, started=outcome.started)
