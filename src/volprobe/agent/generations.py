"""The generation rules: what the previous run's marker means for this run. Pure logic.

Every run writes generation previous+1 with its payload. The controller remembers the newest
generation it saw acknowledged and passes it back as the expected generation E:

* no data and nothing expected (or E = 0): a fresh volume, not a failure;
* no data but E >= 1: the volume lost what was written (`data_lost`);
* generation g < E: stale, an acknowledged write vanished (`data_lost`);
* g >= E: fine — the controller may simply have missed recording the newest run.

"No data" counts as generation 0 throughout, which makes the rules one comparison.
"""

from __future__ import annotations

from volprobe.contract.reasons import Reason


def judge(found: int | None, expected: int | None) -> tuple[Reason, str] | None:
    """The failure (reason and detail) implied by the generation found, or None if acceptable."""
    if expected is None or (found or 0) >= expected:
        return None
    if found is None:
        return Reason.DATA_LOST, f"no data from a previous run on the volume, expected generation {expected}"
    return Reason.DATA_LOST, f"volume holds generation {found}, expected at least {expected}: stale"


def next_generation(found: int | None, expected: int | None) -> int:
    """The generation this run writes.

    Counting on from the larger of what was found and what was expected keeps generations
    increasing from the controller's point of view even after a loss, so the run after a
    `data_lost` report checks the fresh data instead of failing again on the same loss.
    """
    return max(found or 0, expected or 0) + 1
