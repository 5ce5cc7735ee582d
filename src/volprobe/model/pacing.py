"""How many new volumes of one StorageClass volprobe may have in the making at once.

Installing volprobe on a big cluster (or adding a node pool) gives every node's mount probe a
first run that needs a new volume. Created as fast as the API budget allows, those claims
swamp the provisioner: measured with 300 kwok nodes, 256 first runs ran out of their provision
deadline — a storm of failures volprobe made itself, the self-inflicted load of pie's seed
report. Instead, runs that need a new volume (a provision run; a mount run whose node has no
bound claim yet) start only while fewer than `Window.allowed()` volumes of their class are in
the making. The others wait in volprobe's own queue, where waiting is never a failure, and are
reported as a backlog.

The window adapts like TCP's congestion window (AIMD): every volume that binds within its
normal time widens it by one, and a volume in the making for longer than that (or a provisioning
timeout) halves it, at most once per such period. A healthy provisioner therefore sees volprobe
ramp up to its pace within seconds; a struggling or broken one sees at most a handful of
volprobe's claims.

"Normal" is measured from the fastest volume, as TCP Vegas takes the smallest round trip for the
one without queueing, not from the usual ones (the p90 behind "stalled"): during a rollout every
volume also waits behind volprobe's own earlier claims, so the usual time grows with the window.
Judged by it, a serial provisioner (local-path makes one volume at a time) let the window grow
until volumes waited longer than their deadline: 43 `provisioning_timeout`s at 1,000 nodes on a
provisioner making 0.65 volumes/s. The fastest of the recent 20 drifts the same way (in a long
rollout all 20 waited ~100 s), so it is the fastest this leader has seen, or the baseline's after
a restart: a minimum only falls, and a queue cannot raise it.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

INITIAL = 4.0
MAXIMUM = 64.0
CONGESTED_AFTER = 30.0
"""A volume in the making this long means congestion, for classes with no baseline yet."""
FACTOR = 3.0
FLOOR = 10.0


def congested_after(fastest: Iterable[float]) -> float:
    """How long a volume may be in the making before it means congestion, given the fastest
    volumes known for the class (none: `CONGESTED_AFTER`)."""
    known = list(fastest)
    if not known:
        return CONGESTED_AFTER
    return max(FLOOR, FACTOR * min(known))


@dataclass
class Window:
    size: float = INITIAL
    shrunk_at: float = -math.inf
    fastest: float = math.inf
    """The shortest time a volume of the class took to bind, since this leader started."""

    def allowed(self) -> int:
        return max(1, int(self.size))

    def bound(self, seconds: float, limit: float) -> None:
        """A volume of the class bound after `seconds`; within `limit` the provisioner keeps up."""
        self.fastest = min(self.fastest, seconds)
        if seconds <= limit:
            self.size = min(MAXIMUM, self.size + 1)

    def congested(self, now: float, period: float) -> bool:
        """A volume took too long (or never came): back off, once per `period`. True if it did."""
        if now - self.shrunk_at < period:
            return False
        self.size = max(1.0, self.size / 2)
        self.shrunk_at = now
        return True
