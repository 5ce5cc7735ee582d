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

"Normal" is measured from the fastest recent volumes, as TCP Vegas takes the smallest round trip
for the one without queueing, not from the usual ones (the p90 behind "stalled"): during a
rollout every volume also waits behind volprobe's own earlier claims, so the usual time grows
with the window. Judged by it, a serial provisioner (local-path makes one volume at a time) let
the window grow until volumes waited longer than their deadline: 43 `provisioning_timeout`s at
1,000 nodes on a provisioner making 0.6 volumes/s. The fastest volume stays near the time one
takes without a queue.
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
    recent volume of each probe kind of the class (none learned yet: `CONGESTED_AFTER`).

    The most lenient kind decides: its volumes may legitimately take longer (another binding
    mode, a bigger volume)."""
    known = list(fastest)
    if not known:
        return CONGESTED_AFTER
    return max(FLOOR, FACTOR * max(known))


@dataclass
class Window:
    size: float = INITIAL
    shrunk_at: float = -math.inf

    def allowed(self) -> int:
        return max(1, int(self.size))

    def bound(self) -> None:
        """A volume of the class bound within its normal time: the provisioner keeps up."""
        self.size = min(MAXIMUM, self.size + 1)

    def congested(self, now: float, period: float) -> bool:
        """A volume took too long (or never came): back off, once per `period`. True if it did."""
        if now - self.shrunk_at < period:
            return False
        self.size = max(1.0, self.size / 2)
        self.shrunk_at = now
        return True
