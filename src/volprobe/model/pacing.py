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
normal time widens it by one, and a volume in the making for longer than the class's learned
"stalled" threshold (or a provisioning timeout) halves it, at most once per such period. A
healthy provisioner therefore sees volprobe ramp up to its pace within seconds; a struggling
or broken one sees at most a handful of volprobe's claims.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

INITIAL = 4.0
MAXIMUM = 64.0
CONGESTED_AFTER = 30.0
"""A volume in the making this long means congestion, for classes with no baseline yet."""


@dataclass
class Window:
    size: float = INITIAL
    shrunk_at: float = -math.inf

    def allowed(self) -> int:
        return max(1, int(self.size))

    def bound(self) -> None:
        """A volume of the class bound within its normal time: the provisioner keeps up."""
        self.size = min(MAXIMUM, self.size + 1)

    def congested(self, now: float, period: float) -> None:
        """A volume took too long (or never came): back off, once per `period`."""
        if now - self.shrunk_at >= period:
            self.size = max(1.0, self.size / 2)
            self.shrunk_at = now
