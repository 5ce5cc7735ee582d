"""One API budget for the whole process, so volprobe can never become the load it is meant to observe.

Every request to the API server takes a token from a *request* bucket; every pod creation also takes
one from a separate, much slower *pod_create* bucket (pods are what make schedulers, kubelets and
storage drivers busy, so they are budgeted on their own).

When the server pushes back — HTTP 429 (API Priority and Fairness or max-in-flight), or 503 with a
``Retry-After`` — the budget reacts the way TCP does to congestion (AIMD):

* multiplicative decrease: the effective rates (and bursts) of both buckets are halved, down to a
  floor, at most once per ``decrease_cooldown``: a burst of requests that were all in flight when
  the server started throttling is one congestion signal, not many;
* everybody pauses until the ``Retry-After`` instant, not just the request that was refused;
* additive increase: after each quiet ``recovery_interval`` without throttling, the rates grow back
  by ``recovery_step`` of their configured values, up to those values.

The math is pure and takes ``now`` explicitly, so tests can check it without sleeping; `ApiBudget`
wraps it in a small async façade (`ApiBudget.acquire`) driven by an injectable clock and sleep.
Token buckets reserve: a caller takes its token at once (the bucket may go into debt) and sleeps
until the debt is paid, which serves waiters in arrival order without a queue.

The budget knows nothing about HTTP: `volprobe.runtime.kube.transport.BudgetTransport` applies it to
every request of any httpx client built on that transport, and reports throttling back to it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Literal

Bucket = Literal["request", "pod_create"]
BUCKETS: tuple[Bucket, ...] = ("request", "pod_create")

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class BudgetConfig:
    """Configured (maximum) rates; the effective rates move between ``floor`` and these."""

    request_rate: float = 50.0
    request_burst: float = 100.0
    pod_create_rate: float = 5.0
    pod_create_burst: float = 10.0
    decrease_factor: float = 0.5
    floor: float = 0.1
    recovery_step: float = 0.1
    recovery_interval: float = 10.0
    decrease_cooldown: float = 1.0
    default_retry_after: float = 1.0
    max_retry_after: float = 60.0

    def __post_init__(self) -> None:
        if min(self.request_rate, self.request_burst, self.pod_create_rate, self.pod_create_burst) <= 0:
            raise ValueError("rates and bursts must be positive")
        if not 0 < self.floor <= 1 or not 0 < self.decrease_factor < 1:
            raise ValueError("floor must be in (0, 1] and decrease_factor in (0, 1)")
        if self.recovery_step <= 0 or self.recovery_interval <= 0:
            raise ValueError("recovery_step and recovery_interval must be positive")


@dataclass
class TokenBucket:
    """A token bucket whose rate and capacity can be scaled while it runs.

    ``tokens`` may go negative: that is debt owed by callers that have reserved a token and are
    sleeping until it is paid.
    """

    rate: float
    burst: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, rate: float, burst: float, now: float) -> TokenBucket:
        return cls(rate=rate, burst=burst, tokens=burst, updated=now)

    def refill(self, now: float) -> None:
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.burst, self.tokens + elapsed * self.rate)
        self.updated = max(self.updated, now)

    def reserve(self, now: float) -> float:
        """Take one token; return how long the caller must wait before using it."""
        self.refill(now)
        self.tokens -= 1
        return 0.0 if self.tokens >= 0 else -self.tokens / self.rate

    def give_back(self, now: float) -> None:
        """Return a reserved token that was never used (its caller was cancelled)."""
        self.refill(now)
        self.tokens = min(self.burst, self.tokens + 1)

    def rescale(self, rate: float, burst: float, now: float) -> None:
        self.refill(now)
        self.rate, self.burst = rate, burst
        self.tokens = min(self.tokens, burst)


@dataclass
class BudgetStats:
    """Counters for metrics; they only ever grow."""

    granted: dict[str, int] = field(default_factory=lambda: dict.fromkeys(BUCKETS, 0))
    throttle_events: int = 0
    decreases: int = 0
    seconds_waited: float = 0.0


class ApiBudget:
    """The process-wide API budget (token buckets + AIMD), shared by every `KubeClient`.

    Example::

        budget = ApiBudget(BudgetConfig(request_rate=20, request_burst=40))
        await budget.acquire("request")          # before each API call
        budget.throttled(retry_after=2.0)        # after a 429: halve, pause everybody 2 s
    """

    def __init__(
        self,
        config: BudgetConfig | None = None,
        *,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.config = config or BudgetConfig()
        self._clock = clock
        self._sleep = sleep
        now = clock()
        self.factor = 1.0
        self.paused_until = now
        self._last_change = now
        self._last_decrease = -math.inf
        self._buckets: dict[Bucket, TokenBucket] = {
            "request": TokenBucket.full(self.config.request_rate, self.config.request_burst, now),
            "pod_create": TokenBucket.full(self.config.pod_create_rate, self.config.pod_create_burst, now),
        }
        self.stats = BudgetStats()

    # -- pure math: every method takes `now` ---------------------------------------------------

    def _configured(self, bucket: Bucket) -> tuple[float, float]:
        if bucket == "request":
            return self.config.request_rate, self.config.request_burst
        return self.config.pod_create_rate, self.config.pod_create_burst

    def _apply_factor(self, now: float) -> None:
        for name, bucket in self._buckets.items():
            rate, burst = self._configured(name)
            bucket.rescale(rate * self.factor, max(1.0, burst * self.factor), now)

    def recover(self, now: float) -> None:
        """Additive increase: one ``recovery_step`` per quiet ``recovery_interval`` since the last change."""
        if self.factor >= 1.0:
            self._last_change = now
            return
        steps = math.floor((now - self._last_change) / self.config.recovery_interval)
        if steps <= 0:
            return
        self.factor = min(1.0, self.factor + steps * self.config.recovery_step)
        self._last_change += steps * self.config.recovery_interval
        self._apply_factor(now)

    def on_throttle(self, now: float, retry_after: float | None) -> None:
        """The server refused a request: decrease (once per cooldown) and pause until Retry-After."""
        self.stats.throttle_events += 1
        wait = self.config.default_retry_after if retry_after is None else retry_after
        wait = min(max(0.0, wait), self.config.max_retry_after)
        self.paused_until = max(self.paused_until, now + wait)
        self.recover(now)
        self._last_change = now
        if now - self._last_decrease < self.config.decrease_cooldown:
            return
        self._last_decrease = now
        self.stats.decreases += 1
        self.factor = max(self.config.floor, self.factor * self.config.decrease_factor)
        self._apply_factor(now)

    def effective_rate(self, bucket: Bucket, now: float) -> float:
        self.recover(now)
        return self._buckets[bucket].rate

    def pause_remaining(self, now: float) -> float:
        return max(0.0, self.paused_until - now)

    def reserve(self, bucket: Bucket, now: float) -> float:
        """Take a token from `bucket`; return the seconds to wait before the request may be sent."""
        self.recover(now)
        self.stats.granted[bucket] += 1
        return max(self.pause_remaining(now), self._buckets[bucket].reserve(now))

    def cancel(self, bucket: Bucket, now: float) -> None:
        """Undo a reservation whose caller gave up before using it."""
        self.stats.granted[bucket] -= 1
        self._buckets[bucket].give_back(now)

    # -- async façade --------------------------------------------------------------------------

    async def acquire(self, bucket: Bucket = "request") -> None:
        """Wait until a request budgeted against `bucket` may be sent.

        The token is reserved first; a throttle that arrives while we sleep extends the wait to
        the new Retry-After instant, so no request leaves during a pause.
        """
        started = self._clock()
        delay = self.reserve(bucket, started)
        try:
            while delay > 0:
                await self._sleep(delay)
                delay = self.pause_remaining(self._clock())
        except asyncio.CancelledError:
            self.cancel(bucket, self._clock())
            raise
        finally:
            self.stats.seconds_waited += self._clock() - started

    def throttled(self, retry_after: float | None = None) -> None:
        """Report a 429 / 503+Retry-After / APF rejection observed now."""
        self.on_throttle(self._clock(), retry_after)
