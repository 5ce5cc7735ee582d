"""One probe's answers about the nodes, kept up to date between planner ticks.

Which nodes a probe covers and why any of them may not be probed now (`volprobe.model.nodes`)
are needed on every tick: for each queued run and, for a run that may go to any node, for all
nodes. With a thousand nodes, deriving them afresh each tick was the largest part of the
planner's CPU time (docs/performance.md, run K). The answers change only when a node changes,
when the probe's spec changes, or while a node's grace period runs; and the caches replace a
`NodeView` whenever its Node changes. So each tick re-derives only the nodes whose view is not
the one seen before, plus the few whose grace period is still running.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from volprobe.contract.reasons import SkipReason
from volprobe.model.resource import ProbeResource
from volprobe.model.views import NodeView


class Eligibility:
    def __init__(self, resource: ProbeResource) -> None:
        self.resource = resource
        self._spec: Any = None
        self._views: dict[str, NodeView] = {}
        self._covered: set[str] = set()
        self._unwell: dict[str, SkipReason] = {}
        """Every node (covered or not) that must not be probed now, with the reason."""
        self._timed: set[str] = set()
        """Nodes whose answer still depends on the time (`ProbeResource.skip_settles`)."""
        self.selected: frozenset[str] = frozenset()
        """The names of the nodes the probe covers (`ProbeResource.covers`)."""
        self.unwell: dict[str, SkipReason] = {}
        """The selected nodes that must not be probed now, with the reason."""

    def refresh(self, spec: Any, nodes: Mapping[str, NodeView], now: float) -> None:
        """Bring `selected` and `unwell` up to date with these nodes at this time."""
        if spec is not self._spec and spec != self._spec:
            # Its selector, tolerations or grace changed: every answer may have.
            for kept in (self._views, self._covered, self._unwell, self._timed):
                kept.clear()
        self._spec = spec
        changed = len(self._views) != len(nodes)
        for name, view in nodes.items():
            if self._views.get(name) is not view:
                self._views[name] = view
                self._covered.discard(name)
                if self.resource.covers(spec, view):
                    self._covered.add(name)
                self._derive(name, view, now)
                changed = True
            elif name in self._timed:
                changed = self._derive(name, view, now) or changed
        if not changed:
            return
        for name in self._views.keys() - nodes.keys():
            del self._views[name]
            self._covered.discard(name)
            self._unwell.pop(name, None)
            self._timed.discard(name)
        self.selected = frozenset(self._covered)
        self.unwell = {name: reason for name, reason in self._unwell.items() if name in self._covered}

    def _derive(self, name: str, view: NodeView, now: float) -> bool:
        """Ask the resource about one node again; True if its answer changed."""
        reason = self.resource.node_skip(self._spec, view, now)
        if now < self.resource.skip_settles(self._spec, view):
            self._timed.add(name)
        else:
            self._timed.discard(name)
        if reason is None:
            return self._unwell.pop(name, None) is not None
        changed = self._unwell.get(name) is not reason
        self._unwell[name] = reason
        return changed

    def skip(self, name: str, view: NodeView | None, now: float) -> SkipReason | None:
        """Why the node `name` (whose view is now `view`, None once it left the cache) must not be
        probed now: the kept answer while it holds, else asked afresh."""
        if view is not None and self._views.get(name) is view and name not in self._timed:
            return self._unwell.get(name)
        return self.resource.node_skip(self._spec, view, now)
