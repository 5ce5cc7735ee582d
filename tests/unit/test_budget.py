"""The API budget: token-bucket math, AIMD back-off and recovery, the async façade — on a fake clock."""

from __future__ import annotations

import asyncio

import pytest

from volprobe.runtime.budget import ApiBudget, BudgetConfig, TokenBucket


class FakeClock:
    """A clock that only moves when someone sleeps on it."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


def make(clock: FakeClock, **config: float) -> ApiBudget:
    return ApiBudget(BudgetConfig(**config), clock=clock, sleep=clock.sleep)


def test_bucket_serves_burst_then_rate() -> None:
    bucket = TokenBucket.full(rate=10, burst=5, now=0)
    assert [bucket.reserve(0) for _ in range(5)] == [0, 0, 0, 0, 0]
    assert bucket.reserve(0) == pytest.approx(0.1)
    assert bucket.reserve(0) == pytest.approx(0.2)


def test_bucket_refills_up_to_burst() -> None:
    bucket = TokenBucket.full(rate=10, burst=5, now=0)
    for _ in range(5):
        bucket.reserve(0)
    bucket.refill(0.3)
    assert bucket.tokens == pytest.approx(3)
    bucket.refill(100)
    assert bucket.tokens == 5


def test_bucket_give_back_undoes_a_reservation() -> None:
    bucket = TokenBucket.full(rate=1, burst=1, now=0)
    bucket.reserve(0)
    assert bucket.reserve(0) == pytest.approx(1)
    bucket.give_back(0)
    assert bucket.reserve(0) == pytest.approx(1)


def test_rate_halves_on_throttle_down_to_floor() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=100, pod_create_rate=10, floor=0.1, decrease_cooldown=0)
    budget.on_throttle(clock.now, retry_after=0)
    assert budget.effective_rate("request", clock.now) == pytest.approx(50)
    assert budget.effective_rate("pod_create", clock.now) == pytest.approx(5)
    for _ in range(10):
        budget.on_throttle(clock.now, retry_after=0)
    assert budget.effective_rate("request", clock.now) == pytest.approx(10)
    assert budget.effective_rate("pod_create", clock.now) == pytest.approx(1)
    assert budget.stats.throttle_events == 11


def test_burst_shrinks_with_the_rate() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=100, request_burst=40)
    budget.on_throttle(clock.now, retry_after=0)
    delays = [budget.reserve("request", clock.now) for _ in range(21)]
    assert delays[:20] == [0] * 20
    assert delays[20] == pytest.approx(1 / 50)


def test_one_decrease_per_cooldown() -> None:
    """Ten requests in flight that all get 429 are one congestion signal, not ten."""
    clock = FakeClock()
    budget = make(clock, request_rate=100, decrease_cooldown=1.0)
    for _ in range(10):
        budget.on_throttle(clock.now, retry_after=0)
    assert budget.effective_rate("request", clock.now) == pytest.approx(50)
    clock.now += 1.0
    budget.on_throttle(clock.now, retry_after=0)
    assert budget.effective_rate("request", clock.now) == pytest.approx(25)
    assert budget.stats.decreases == 2
    assert budget.stats.throttle_events == 11


def test_additive_recovery_per_quiet_interval() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=100, recovery_step=0.1, recovery_interval=10, decrease_cooldown=0)
    budget.on_throttle(clock.now, retry_after=0)
    budget.on_throttle(clock.now, retry_after=0)
    assert budget.effective_rate("request", clock.now) == pytest.approx(25)
    clock.now += 9.9
    assert budget.effective_rate("request", clock.now) == pytest.approx(25)
    clock.now += 0.1
    assert budget.effective_rate("request", clock.now) == pytest.approx(35)
    clock.now += 25
    assert budget.effective_rate("request", clock.now) == pytest.approx(55)
    clock.now += 1000
    assert budget.effective_rate("request", clock.now) == pytest.approx(100)


def test_a_throttle_restarts_the_quiet_interval() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=100, recovery_interval=10, decrease_cooldown=5)
    budget.on_throttle(clock.now, retry_after=0)
    clock.now += 4
    budget.on_throttle(clock.now, retry_after=0)
    clock.now += 9
    assert budget.effective_rate("request", clock.now) == pytest.approx(50)
    clock.now += 1
    assert budget.effective_rate("request", clock.now) == pytest.approx(60)


def test_retry_after_pauses_every_reservation() -> None:
    clock = FakeClock()
    budget = make(clock)
    budget.on_throttle(clock.now, retry_after=3)
    assert budget.reserve("request", clock.now) == pytest.approx(3)
    assert budget.reserve("pod_create", clock.now + 1) == pytest.approx(2)
    assert budget.reserve("request", clock.now + 3) == 0


def test_retry_after_is_capped_and_defaulted() -> None:
    clock = FakeClock()
    budget = make(clock, max_retry_after=60, default_retry_after=1)
    budget.on_throttle(clock.now, retry_after=3600)
    assert budget.pause_remaining(clock.now) == 60
    other = make(clock, default_retry_after=1)
    other.on_throttle(clock.now, retry_after=None)
    assert other.pause_remaining(clock.now) == 1


async def test_acquire_waits_for_tokens_and_counts() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=10, request_burst=2)
    start = clock.now
    for _ in range(4):
        await budget.acquire("request")
    assert clock.now - start == pytest.approx(0.2)
    assert budget.stats.granted["request"] == 4
    assert budget.stats.seconds_waited == pytest.approx(0.2)


async def test_acquire_honours_a_pause_that_starts_while_waiting() -> None:
    clock = FakeClock()
    budget = make(clock, request_rate=1, request_burst=1)
    await budget.acquire("request")
    waiter = asyncio.create_task(budget.acquire("request"))
    await asyncio.sleep(0)
    budget.on_throttle(clock.now, retry_after=5)
    await waiter
    assert clock.now >= 1005.0


async def test_cancelled_acquire_returns_its_token() -> None:
    clock = FakeClock()
    never = asyncio.Event()

    async def stuck_sleep(seconds: float) -> None:
        await never.wait()

    budget = ApiBudget(BudgetConfig(request_rate=1, request_burst=1), clock=clock, sleep=stuck_sleep)
    await budget.acquire("request")
    waiter = asyncio.create_task(budget.acquire("request"))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert budget.stats.granted["request"] == 1
    assert budget.reserve("request", clock.now) == pytest.approx(1)


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="positive"):
        BudgetConfig(request_rate=0)
    with pytest.raises(ValueError, match="floor"):
        BudgetConfig(floor=0)
