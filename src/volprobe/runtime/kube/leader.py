"""Leader election on a ``coordination.k8s.io/v1`` Lease, with client-go's semantics.

Why these rules:

* Optimistic concurrency: the Lease is read, changed and written back with its resourceVersion, so
  of two candidates writing at once exactly one wins (the other gets 409 and tries later).
* Expiry is judged on *our* monotonic clock: a candidate remembers when it last saw the Lease's spec
  change and considers the holder gone only ``leaseDurationSeconds`` (the holder's own figure) after
  that. The wall-clock ``renewTime`` in the record is never compared with our clock, so clock skew
  between hosts cannot hand the lease to two holders.
* A leader that cannot renew for ``renew_deadline`` steps down — clears `LeaderElector.leading`
  and calls ``on_stopped_leading`` — and since ``renew_deadline < lease_duration`` and the deadline
  counts from *before* the last successful renewal was sent, that happens before any other
  candidate can consider the lease expired.
* On graceful shutdown (cancelling `LeaderElector.run`) the leader first stops leading, then
  releases the Lease (empty holder, ``leaseDurationSeconds: 1``), so a successor takes over at its
  next retry instead of waiting for expiry.

After losing the lease, `LeaderElector.run` campaigns again; the owner's leader-only work must
watch `LeaderElector.leading` or the callbacks and stop when leadership ends.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import httpx

from volprobe.runtime.kube.client import KubeClient
from volprobe.runtime.kube.errors import ApiError, NotFoundError

logger = logging.getLogger(__name__)

JITTER_FACTOR = 1.2


def _micro_time() -> str:
    """Now as a Kubernetes MicroTime (RFC 3339 with microseconds, UTC)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElector:
    """Campaigns for the Lease `namespace`/`name` as `identity` and keeps it while it can.

    Example::

        elector = LeaderElector(client, "volprobe", "volprobe-controller", identity=pod_name)
        task = asyncio.create_task(elector.run())
        await elector.leading.wait()
        ...                                 # leader-only work, stopped when `leading` clears
        task.cancel()                       # steps down and releases the Lease
    """

    def __init__(
        self,
        client: KubeClient,
        namespace: str,
        name: str,
        identity: str,
        *,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        on_started_leading: Callable[[], None] | None = None,
        on_stopped_leading: Callable[[], None] | None = None,
        release_on_cancel: bool = True,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        """`clock` must tick in real seconds when `run` is used (its deadlines become asyncio
        timeouts); a fake clock is only for driving `try_acquire_or_renew` step by step."""
        if not lease_duration > renew_deadline > retry_period * JITTER_FACTOR:
            raise ValueError("need lease_duration > renew_deadline > 1.2 * retry_period (as client-go)")
        if not identity:
            raise ValueError("identity must not be empty")
        self.client = client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_cancel = release_on_cancel
        self._on_started = on_started_leading
        self._on_stopped = on_stopped_leading
        self._clock = clock
        self._rng = rng or random.Random()
        self.leading = asyncio.Event()
        self.observed_holder: str | None = None
        self._observed_spec: dict[str, Any] | None = None
        self._observed_at = -math.inf
        self._renewed_at = -math.inf

    @property
    def is_leader(self) -> bool:
        return self.leading.is_set()

    @property
    def path(self) -> str:
        return f"/apis/coordination.k8s.io/v1/namespaces/{self.namespace}/leases/{self.name}"

    # -- one step ------------------------------------------------------------------------------

    def _our_spec(self, previous: dict[str, Any] | None) -> dict[str, Any]:
        now = _micro_time()
        previous = previous or {}
        ours = previous.get("holderIdentity") == self.identity
        transitions = int(previous.get("leaseTransitions") or 0)
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": max(1, math.ceil(self.lease_duration)),
            "acquireTime": previous.get("acquireTime") if ours else now,
            "renewTime": now,
            "leaseTransitions": transitions if ours or not previous else transitions + 1,
        }

    def _observe(self, spec: dict[str, Any], at: float) -> None:
        if spec != self._observed_spec:
            self._observed_spec = spec
            self._observed_at = at
        self.observed_holder = spec.get("holderIdentity") or None

    async def try_acquire_or_renew(self) -> bool:
        """One attempt to take or renew the Lease; True if we hold it now.

        Errors other than losing a write race propagate; `run` treats them as a failed attempt.
        """
        started = self._clock()
        try:
            lease = await self.client.get(self.path)
        except NotFoundError:
            return await self._create(started)
        spec = dict(lease.get("spec") or {})
        self._observe(spec, self._clock())
        holder = spec.get("holderIdentity") or ""
        duration = float(spec.get("leaseDurationSeconds") or self.lease_duration)
        if holder and holder != self.identity and self._observed_at + duration > self._clock():
            return False
        lease["spec"] = self._our_spec(spec)
        try:
            written = await self.client.replace(self.path, lease)
        except ApiError as error:
            if error.conflict:
                logger.debug("lost a write race for lease %s/%s", self.namespace, self.name)
                return False
            raise
        self._observe(dict(written.get("spec") or {}), self._clock())
        self._renewed_at = started
        return True

    async def _create(self, started: float) -> bool:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": self._our_spec(None),
        }
        try:
            created = await self.client.create(self.path.rsplit("/", 1)[0], body)
        except ApiError as error:
            if error.conflict:
                return False
            raise
        self._observe(dict(created.get("spec") or {}), self._clock())
        self._renewed_at = started
        return True

    async def _attempt(self) -> bool:
        try:
            return await self.try_acquire_or_renew()
        except (ApiError, httpx.TransportError) as error:
            logger.warning("lease %s/%s: attempt failed: %s", self.namespace, self.name, error)
            return False

    # -- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Campaign, lead, and campaign again after losing — until cancelled."""
        try:
            while True:
                await self._acquire()
                await self._renew_until_lost()
        finally:
            if self.is_leader:
                self._step_down("shutting down")
                if self.release_on_cancel:
                    await self._release()

    async def _acquire(self) -> None:
        while True:
            try:
                async with asyncio.timeout(self.renew_deadline):
                    if await self._attempt():
                        break
            except TimeoutError:
                logger.warning("lease %s/%s: attempt timed out", self.namespace, self.name)
            await asyncio.sleep(self.retry_period * (1 + self._rng.random() * JITTER_FACTOR))
        logger.info("lease %s/%s: %s started leading", self.namespace, self.name, self.identity)
        self.leading.set()
        self._call(self._on_started)

    async def _renew_until_lost(self) -> None:
        while True:
            await asyncio.sleep(self.retry_period)
            renewed = False
            try:
                async with asyncio.timeout(self._renewed_at + self.renew_deadline - self._clock()):
                    while not (renewed := await self._attempt()):
                        if self.observed_holder not in (None, self.identity):
                            break
                        await asyncio.sleep(self.retry_period)
            except TimeoutError:
                pass
            if not renewed:
                holder = self.observed_holder
                why = f"taken by {holder}" if holder not in (None, self.identity) else "renew deadline passed"
                self._step_down(why)
                return

    def _step_down(self, why: str) -> None:
        logger.info("lease %s/%s: %s stopped leading (%s)", self.namespace, self.name, self.identity, why)
        self.leading.clear()
        self._call(self._on_stopped)

    async def _release(self) -> None:
        """Hand the Lease over now: empty holder and a one-second duration, as client-go does."""
        try:
            async with asyncio.timeout(self.renew_deadline):
                lease = await self.client.get(self.path)
                spec = dict(lease.get("spec") or {})
                if spec.get("holderIdentity") != self.identity:
                    return
                now = _micro_time()
                spec.update(holderIdentity="", leaseDurationSeconds=1, acquireTime=now, renewTime=now)
                lease["spec"] = spec
                await self.client.replace(self.path, lease)
                logger.info("lease %s/%s: released by %s", self.namespace, self.name, self.identity)
        except (ApiError, httpx.TransportError, TimeoutError) as error:
            logger.warning(
                "lease %s/%s: release failed, it will expire: %s", self.namespace, self.name, error
            )

    @staticmethod
    def _call(callback: Callable[[], None] | None) -> None:
        if callback is None:
            return
        try:
            callback()
        except Exception:
            logger.exception("leader election callback failed")
