"""What "normal" looks like for each phase of a probe's runs, and when a phase is stalled or slow.

A hard deadline has to be generous: a probe cannot know in advance how long a healthy
provision takes on a given storage system (3 s here, 20 s on some clouds), so its timeouts
default to minutes. That makes a frozen provisioner visible only after 120 s. Every successful
run, though, says how long each phase took when things were fine. This module keeps the recent
ones per (kind, phase) of a probe and derives a threshold from them:

    stalled after = max(floor of the phase, FACTOR * p90 of the last WINDOW successful durations)

* Until MIN_SAMPLES successes are known there is no threshold: a new probe waits for its
  configured timeouts, as before.
* A run still in a phase past its threshold is **stalled**: exported at once and alertable,
  long before the hard deadline, which stays the ceiling and the final verdict.
* A run that finished with a phase past its threshold is **slow**: a result of its own
  (`slow`), a success that says storage got slower, never a failure.
* FACTOR and the floors keep it quiet: a storage whose normal provision takes 20 s is stalled
  only after 60 s, and a phase that normally takes 0.3 s only after 10 s (seconds-scale hiccups
  of the API server or the kubelet are normal and must not flap); the mount phase only after
  20 s (MOUNT_FLOOR).
* Slow runs join the window too, so a storage that became slower for good moves its own
  baseline up instead of being called slow forever.

The windows travel in the StorageProbe's status (rounded to milliseconds), which is written after
runs anyway: a restarted or newly elected controller starts with the baseline its predecessor
had, at no extra API cost.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from volprobe.contract.reasons import Phase

WINDOW = 20
"""Successful durations kept per (kind, phase)."""
MIN_SAMPLES = 5
"""Fewer successes than this: no threshold yet."""
QUANTILE = 0.9
FACTOR = 3.0
"""Stalled when a phase takes more than FACTOR times its usual (p90) duration..."""
FLOOR = 10.0
"""...and never sooner than this many seconds into the phase."""
MOUNT_FLOOR = 20.0
"""The mount phase's floor. When the kubelet cannot set up a pod's volumes at once it retries the
pod after 10 s plus jitter; a healthy mount meets that now and then. In the fault-free hour at a
20 s interval (docs/performance.md), 4 of ~270 mount runs waited 10-11 s for it: a new pod's
claim was not yet readable with the node's credentials ("failed to fetch PVC from API server ...
forbidden", the node authorizer not having seen the pod yet). One such retry is normal."""
FLOORS = {Phase.MOUNT: MOUNT_FLOOR}
TRACKED = (Phase.PROVISION, Phase.SCHEDULE, Phase.MOUNT, Phase.IO, Phase.CLEANUP)
"""The phases of a run the controller times (the agent's finer phases are inside `io`)."""


def quantile(values: Sequence[float], q: float) -> float:
    """The q-quantile by linear interpolation between closest ranks (numpy's default)."""
    ordered = sorted(values)
    position = (len(ordered) - 1) * q
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def threshold(samples: Sequence[float], phase: Phase) -> float | None:
    """Seconds after which a phase with these recent healthy durations is stalled."""
    if len(samples) < MIN_SAMPLES:
        return None
    return max(FLOORS.get(phase, FLOOR), FACTOR * quantile(samples, QUANTILE))


@dataclass
class Baseline:
    """Recent healthy phase durations of one probe, per kind and phase."""

    windows: dict[tuple[str, Phase], list[float]] = field(default_factory=dict)

    def learn(self, kind: str, durations: Mapping[Phase, float]) -> None:
        for phase, seconds in durations.items():
            if phase in TRACKED:
                window = self.windows.setdefault((kind, phase), [])
                window.append(round(seconds, 3))
                del window[:-WINDOW]

    def threshold(self, kind: str, phase: Phase) -> float | None:
        return threshold(self.windows.get((kind, phase), ()), phase)

    def usual(self, kind: str, phase: Phase) -> float | None:
        """The p90 the threshold comes from (for messages)."""
        window = self.windows.get((kind, phase), ())
        return quantile(window, QUANTILE) if len(window) >= MIN_SAMPLES else None

    def fastest(self, kind: str, phase: Phase) -> float | None:
        """The shortest recent duration: what the phase takes without waiting in a queue."""
        window = self.windows.get((kind, phase), ())
        return min(window) if len(window) >= MIN_SAMPLES else None

    def slowest_over(self, kind: str, durations: Mapping[Phase, float]) -> tuple[Phase, float, float] | None:
        """The phase of a finished run that most exceeded its threshold: (phase, seconds, threshold)."""
        over = []
        for phase, seconds in durations.items():
            limit = self.threshold(kind, phase) if phase in TRACKED else None
            if limit is not None and seconds > limit:
                over.append((seconds / limit, phase, seconds, limit))
        if not over:
            return None
        _, phase, seconds, limit = max(over)
        return phase, seconds, limit

    # -- in the StorageProbe's status ----------------------------------------------------------

    def to_status(self) -> dict[str, list[float]]:
        """`{"<kind>/<phase>": [seconds, ...]}`, oldest first."""
        return {
            f"{kind}/{phase.value}": list(window) for (kind, phase), window in sorted(self.windows.items())
        }

    @classmethod
    def from_status(cls, document: Mapping[str, Any] | None, kinds: Iterable[str]) -> Baseline:
        """Read what a previous leader wrote; anything malformed is ignored, not trusted."""
        known = set(kinds)
        baseline = cls()
        entries = document.get("baselines") if isinstance(document, Mapping) else None
        if not isinstance(entries, Mapping):
            return baseline
        for key, values in entries.items():
            kind, _, phase_name = str(key).partition("/")
            try:
                phase = Phase(phase_name)
            except ValueError:
                continue
            if kind not in known or phase not in TRACKED or not isinstance(values, list):
                continue
            good = [float(v) for v in values if isinstance(v, int | float) and math.isfinite(v) and v >= 0]
            if good:
                baseline.windows[(kind, phase)] = good[-WINDOW:]
        return baseline
