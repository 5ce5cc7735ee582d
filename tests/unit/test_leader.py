"""Lease leader election against an in-memory Lease endpoint with real optimistic concurrency.

Single steps run on a fake clock; the loops run on short real durations (a lease of 2 s).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest

from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.kube import ConnectionConfig, KubeClient, LeaderElector

pytestmark = pytest.mark.timeout(30)

NS, NAME = "volprobe", "controller"
PATH = f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases/{NAME}"


def status(code: int, reason: str) -> httpx.Response:
    return httpx.Response(code, json={"kind": "Status", "code": code, "reason": reason, "message": reason})


class LeaseServer:
    """One Lease, resourceVersion-checked like the API server; requests identified by User-Agent."""

    def __init__(self) -> None:
        self.lease: dict[str, Any] | None = None
        self.rv = 0
        self.failing: dict[str, str] = {}
        self.writes: list[tuple[float, str, dict[str, Any]]] = []

    def _store(self, body: dict[str, Any], who: str) -> httpx.Response:
        self.rv += 1
        body["metadata"]["resourceVersion"] = str(self.rv)
        self.lease = body
        self.writes.append((time.monotonic(), who, dict(body["spec"])))
        return httpx.Response(200, json=body)

    async def handler(self, request: httpx.Request) -> httpx.Response:
        who = request.headers["User-Agent"]
        mode = self.failing.get(who)
        if mode == "hang":
            await asyncio.Event().wait()
        if mode == "error":
            return status(500, "InternalError")
        if request.method == "GET":
            assert request.url.path == PATH
            return httpx.Response(200, json=self.lease) if self.lease else status(404, "NotFound")
        body = json.loads(request.content)
        if request.method == "POST":
            assert request.url.path == PATH.rsplit("/", 1)[0]
            return status(409, "AlreadyExists") if self.lease else self._store(body, who)
        if request.method == "PUT":
            assert self.lease is not None
            if body["metadata"].get("resourceVersion") != self.lease["metadata"]["resourceVersion"]:
                return status(409, "Conflict")
            return self._store(body, who)
        return status(405, "MethodNotAllowed")

    @property
    def spec(self) -> dict[str, Any]:
        assert self.lease is not None
        return dict(self.lease["spec"])


@pytest.fixture
def server() -> LeaseServer:
    return LeaseServer()


@pytest.fixture
async def clients(server: LeaseServer) -> AsyncIterator[Callable[[str], KubeClient]]:
    made: list[KubeClient] = []

    def make(identity: str) -> KubeClient:
        budget = ApiBudget(BudgetConfig(request_rate=10_000, request_burst=10_000))
        client = KubeClient(
            ConnectionConfig(server="https://fake"),
            transport=httpx.MockTransport(server.handler),
            budget=budget,
            user_agent=identity,
            max_attempts=1,
        )
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def elector(make: Callable[[str], KubeClient], identity: str, **kwargs: Any) -> LeaderElector:
    return LeaderElector(make(identity), NS, NAME, identity, **kwargs)


async def test_acquire_creates_the_lease(server: LeaseServer, clients: Callable[[str], KubeClient]) -> None:
    a = elector(clients, "a")
    assert await a.try_acquire_or_renew()
    assert server.spec["holderIdentity"] == "a"
    assert server.spec["leaseDurationSeconds"] == 15
    assert server.spec["leaseTransitions"] == 0
    assert server.spec["renewTime"].endswith("Z")


async def test_renew_keeps_acquire_time_and_transitions(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    a = elector(clients, "a")
    await a.try_acquire_or_renew()
    first = server.spec
    await asyncio.sleep(0.001)
    assert await a.try_acquire_or_renew()
    second = server.spec
    assert second["acquireTime"] == first["acquireTime"]
    assert second["renewTime"] > first["renewTime"]
    assert second["leaseTransitions"] == 0
    assert server.rv == 2


async def test_takeover_only_after_expiry_on_our_own_clock(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    a = elector(clients, "a")
    await a.try_acquire_or_renew()
    assert server.lease is not None
    server.lease["spec"]["renewTime"] = "2001-01-01T00:00:00.000000Z"  # a holder with a skewed clock
    clock = Clock()
    b = elector(clients, "b", clock=clock)
    assert not await b.try_acquire_or_renew(), "first sight starts b's timer, whatever renewTime says"
    assert b.observed_holder == "a"
    clock.now = 14.9
    assert not await b.try_acquire_or_renew()
    clock.now = 15.1
    assert await b.try_acquire_or_renew()
    assert server.spec["holderIdentity"] == "b"
    assert server.spec["leaseTransitions"] == 1


async def test_a_renewal_seen_restarts_the_expiry_timer(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    a = elector(clients, "a")
    await a.try_acquire_or_renew()
    clock = Clock()
    b = elector(clients, "b", clock=clock)
    await b.try_acquire_or_renew()
    clock.now = 10
    await a.try_acquire_or_renew()
    assert not await b.try_acquire_or_renew()
    clock.now = 24.9
    assert not await b.try_acquire_or_renew()
    clock.now = 25.1
    assert await b.try_acquire_or_renew()


async def test_the_holders_own_duration_counts(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    await elector(clients, "a", lease_duration=40, renew_deadline=30).try_acquire_or_renew()
    clock = Clock()
    b = elector(clients, "b", clock=clock)
    await b.try_acquire_or_renew()
    clock.now = 39
    assert not await b.try_acquire_or_renew(), "a asked for 40 s; b's own 15 s do not matter"
    clock.now = 40.5
    assert await b.try_acquire_or_renew()


async def test_of_two_racing_writers_one_wins(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    a = elector(clients, "a")
    await a.try_acquire_or_renew()
    assert server.lease is not None
    server.lease["spec"]["holderIdentity"] = ""
    b, c = elector(clients, "b"), elector(clients, "c")
    results = await asyncio.gather(b.try_acquire_or_renew(), c.try_acquire_or_renew())
    assert sorted(results) == [False, True]
    assert server.spec["holderIdentity"] in ("b", "c")


async def test_create_race_loser_gets_false(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    results = await asyncio.gather(*(elector(clients, x).try_acquire_or_renew() for x in "abc"))
    assert sorted(results) == [False, False, True]


def test_timings_are_validated(clients: Callable[[str], KubeClient]) -> None:
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        elector(clients, "a", lease_duration=10, renew_deadline=10)
    with pytest.raises(ValueError, match="lease_duration > renew_deadline"):
        elector(clients, "a", renew_deadline=2, retry_period=2)


FAST = {"lease_duration": 2.0, "renew_deadline": 1.2, "retry_period": 0.2}


async def wait_for(event: asyncio.Event, within: float = 10) -> float:
    """Wait for `event`; return the monotonic time it was seen."""
    async with asyncio.timeout(within):
        await event.wait()
    return time.monotonic()


async def test_run_acquires_renews_and_calls_back(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    calls: list[str] = []
    a = elector(
        clients,
        "a",
        on_started_leading=lambda: calls.append("started"),
        on_stopped_leading=lambda: calls.append("stopped"),
        **FAST,
    )
    task = asyncio.create_task(a.run())
    await wait_for(a.leading)
    assert a.is_leader
    await asyncio.sleep(1.0)
    assert sum(1 for _, who, _ in server.writes if who == "a") >= 4
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == ["started", "stopped"]
    assert not a.is_leader


@pytest.mark.parametrize("failure", ["error", "hang"])
async def test_a_leader_that_cannot_renew_steps_down_before_anyone_can_take_over(
    server: LeaseServer, clients: Callable[[str], KubeClient], failure: str
) -> None:
    stepped_down = asyncio.Event()
    a = elector(clients, "a", on_stopped_leading=stepped_down.set, **FAST)
    b = elector(clients, "b", **FAST)
    tasks = [asyncio.create_task(a.run())]
    await wait_for(a.leading)
    tasks.append(asyncio.create_task(b.run()))
    await asyncio.sleep(0.5)
    assert not b.is_leader
    server.failing["a"] = failure
    a_stopped = await wait_for(stepped_down)
    assert not a.is_leader
    b_started = await wait_for(b.leading)
    last_a_write = max(at for at, who, _ in server.writes if who == "a")
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert a_stopped - last_a_write <= FAST["renew_deadline"] + 0.1
    assert b_started > a_stopped
    assert b_started - last_a_write >= FAST["lease_duration"]


async def test_a_leader_that_sees_another_holder_steps_down_at_once(
    server: LeaseServer, clients: Callable[[str], KubeClient]
) -> None:
    stepped_down = asyncio.Event()
    a = elector(clients, "a", on_stopped_leading=stepped_down.set, **FAST)
    task = asyncio.create_task(a.run())
    await wait_for(a.leading)
    assert server.lease is not None
    server.lease["spec"]["holderIdentity"] = "usurper"
    server.rv += 1
    server.lease["metadata"]["resourceVersion"] = str(server.rv)
    started = time.monotonic()
    await wait_for(stepped_down)
    assert not a.is_leader
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert time.monotonic() - started < FAST["retry_period"] + 0.3
    assert server.spec["holderIdentity"] == "usurper", "stepping down is not releasing someone else's lease"


@pytest.mark.parametrize("release", [True, False])
async def test_successor_after_shutdown(
    server: LeaseServer, clients: Callable[[str], KubeClient], release: bool
) -> None:
    a = elector(clients, "a", release_on_cancel=release, **FAST)
    b = elector(clients, "b", **FAST)
    a_task = asyncio.create_task(a.run())
    await wait_for(a.leading)
    b_task = asyncio.create_task(b.run())
    await asyncio.sleep(0.5)
    a_task.cancel()
    await asyncio.gather(a_task, return_exceptions=True)
    stopped = time.monotonic()
    if release:
        assert server.spec["holderIdentity"] == ""
        assert server.spec["leaseDurationSeconds"] == 1
    took = await wait_for(b.leading) - stopped
    b_task.cancel()
    await asyncio.gather(b_task, return_exceptions=True)
    if release:
        assert took <= FAST["retry_period"] * 2.2 + 0.2
    else:
        assert FAST["lease_duration"] - FAST["retry_period"] <= took <= FAST["lease_duration"] + 1.0
    assert server.spec["holderIdentity"] == ""  # b released on its own shutdown too
