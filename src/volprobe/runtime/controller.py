"""The controller: caches, leader election, health, and the leader's executor, wired together.

No CronJobs, no Jobs: the leader owns one timer per target (a probe's run of one kind, on one
node for per-node kinds), spread over the interval (`volprobe.model.slots`), at most one run in
flight per target, pod creations under the cluster-wide API budget. What to do is decided by
the pure `volprobe.model.planner.Planner`; `volprobe.runtime.executor` does it. The controller is
restartable at any moment: what is running is found again from the pods' labels, and only the
leader probes, so two replicas never double-count.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from volprobe.model.manifests import AgentImage
from volprobe.model.resource import ProbeResource
from volprobe.runtime.caches import Caches
from volprobe.runtime.engine import RunnableKind
from volprobe.runtime.events import EventRecorder
from volprobe.runtime.executor import Executor, ExecutorConfig
from volprobe.runtime.kube import KubeClient, LeaderElector
from volprobe.runtime.metrics import ProbeMetrics

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ControllerConfig:
    namespace: str
    agent: AgentImage
    identity: str
    leader_election: bool = True
    lease_name: str = "volprobe-controller"
    status_interval: float = 5.0
    """At most one status write per probe per this many seconds."""
    sweep_interval: float = 30.0
    """How often leftover pods and claims (of targets that no longer exist) are looked for."""
    probe_selector: str = ""
    """Only probe objects matching this label selector (empty: all); lets controllers share a cluster."""


@dataclass
class Health:
    """What /healthz and /readyz report; updated by the event loop, read by the HTTP thread."""

    heartbeat: float = field(default_factory=time.monotonic)
    synced: bool = False
    leading: bool = False
    leader_election: bool = True

    def alive(self, max_age: float = 30.0) -> bool:
        return time.monotonic() - self.heartbeat < max_age

    def ready(self) -> bool:
        return self.synced and (self.leading or not self.leader_election)


class Controller:
    """Caches, leader election, health and the leader's executor, wired together."""

    def __init__(
        self,
        client: KubeClient,
        config: ControllerConfig,
        metrics: ProbeMetrics,
        health: Health,
        *,
        kinds: Mapping[str, RunnableKind],
        resources: Mapping[str, ProbeResource],
    ) -> None:
        """`resources` are watched in their order; the first (StorageProbe) must exist."""
        self.client = client
        self.config = config
        self.metrics = metrics
        self.kinds = kinds
        self.resources = resources
        self.health = health
        self.caches = Caches(client, config.namespace, config.probe_selector, probe_resources=list(resources))
        self.events = EventRecorder(client, config.identity)
        health.leader_election = config.leader_election

    async def run(self) -> None:
        self.caches.start()
        helpers = [asyncio.create_task(self._heartbeat()), asyncio.create_task(self.events.run())]
        try:
            await self.caches.wait_synced()
            self.health.synced = True
            log.info("caches synced")
            if not self.config.leader_election:
                self._set_leading(True)
                await self._lead()
                return
            stopped = asyncio.Event()
            elector = LeaderElector(
                self.client,
                self.config.namespace,
                self.config.lease_name,
                self.config.identity,
                on_started_leading=stopped.clear,
                on_stopped_leading=stopped.set,
            )
            election = asyncio.create_task(elector.run())
            helpers.append(election)
            while True:
                await elector.leading.wait()
                self._set_leading(True)
                leading = asyncio.create_task(self._lead())
                stepped_down = asyncio.create_task(stopped.wait())
                await asyncio.wait({leading, stepped_down, election}, return_when=asyncio.FIRST_COMPLETED)
                for task in (leading, stepped_down):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                self._set_leading(False)
                self.metrics.reset_probe_series()
                if election.done():
                    election.result()
                    return
        finally:
            for task in helpers:
                task.cancel()
            for task in helpers:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            await self.caches.stop()

    def _set_leading(self, leading: bool) -> None:
        self.health.leading = leading
        self.metrics.set_leader(leading)

    async def _lead(self) -> None:
        config = ExecutorConfig(self.config.agent, self.config.status_interval, self.config.sweep_interval)
        executor = Executor(
            self.client,
            self.caches,
            config,
            metrics=self.metrics,
            events=self.events,
            kinds=self.kinds,
            resources=self.resources,
        )
        await executor.run()

    async def _heartbeat(self) -> None:
        """Liveness means "the event loop still turns": this is what stops when it does not."""
        while True:
            self.health.heartbeat = time.monotonic()
            budget = self.client.budget.stats
            self.metrics.set_api_budget(budget.throttle_events, budget.seconds_waited)
            await asyncio.sleep(1.0)
