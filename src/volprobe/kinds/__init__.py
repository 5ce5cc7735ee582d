"""The kinds of probe volprobe runs, one module each, and the registry that lists them.

A kind is the unit of extension: what a run of it creates, how the run is followed and judged,
and what it reports. Adding one is a new module here, a line in `REGISTRY`, and its entry in the
docs (docs/design.md, "Adding a probe kind", lists exactly which files). The planner, the
status, the metrics and the one-shot check work from the registry and never name a kind.
"""

from __future__ import annotations

from volprobe.kinds import mount, provision
from volprobe.runtime.engine import RunnableKind

REGISTRY: tuple[RunnableKind, ...] = (provision.KIND, mount.KIND)
"""Every kind, in the order status and docs list them."""

BY_NAME: dict[str, RunnableKind] = {kind.name: kind for kind in REGISTRY}

__all__ = ["BY_NAME", "REGISTRY"]
