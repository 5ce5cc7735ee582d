"""What one run probes: a `Target` names the probe, the kind of run and, for per-node kinds, the node.

A target is the unit everything else is keyed by: timers, the run in flight, the latest
outcome, the metric series and the objects that outlive runs. Kind names are plain strings owned
by the kind modules (`volprobe.kinds`), so adding a kind never touches this module.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, order=True)
class Target:
    """A probe's run of one kind, on one node for per-node kinds (node "" otherwise)."""

    probe: str
    kind: str
    node: str = ""

    def __str__(self) -> str:
        return f"{self.probe}/{self.kind}" + (f"/{self.node}" if self.node else "")
