"""The reflector against a fake API server: list, watch, bookmarks, 410 relists, inactivity, bad events."""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest

from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.kube import Backoff, ConnectionConfig, KubeClient, Reflector, object_key

pytestmark = pytest.mark.timeout(20)

PATH = "/api/v1/namespaces/ns/configmaps"


def cm(name: str, rv: int, value: str = "v", namespace: str | None = "ns") -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "resourceVersion": str(rv), "uid": f"uid-{name}"}
    if namespace:
        metadata["namespace"] = namespace
    return {"metadata": metadata, "data": {"k": value}}


class Watch:
    """One watch connection of the fake server; the test writes its lines."""

    def __init__(self, request: httpx.Request) -> None:
        self.request = request
        self.params = dict(request.url.params)
        self._lines: asyncio.Queue[bytes | None] = asyncio.Queue()
        self.closed_by_client = False

    def send(self, kind: str, obj: Any) -> None:
        self.raw(json.dumps({"type": kind, "object": obj}).encode() + b"\n")

    def raw(self, data: bytes) -> None:
        self._lines.put_nowait(data)

    def end(self) -> None:
        self._lines.put_nowait(None)

    async def body(self) -> AsyncIterator[bytes]:
        try:
            while (line := await self._lines.get()) is not None:
                yield line
        except asyncio.CancelledError:
            self.closed_by_client = True
            raise


class FakeApi:
    """Serves a list of `objects` in pages and hands each watch to the test."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.rv = 100
        self.lists: list[httpx.Request] = []
        self.watches: list[Watch] = []
        self.failures: list[Callable[[httpx.Request], httpx.Response]] = []
        self._changed = asyncio.Event()

    def put(self, obj: dict[str, Any]) -> None:
        self.objects[obj["metadata"]["name"]] = obj
        self.rv = max(self.rv, int(obj["metadata"]["resourceVersion"]))

    async def handler(self, request: httpx.Request) -> httpx.Response:
        self._changed.set()
        if self.failures:
            return self.failures.pop(0)(request)
        if request.url.params.get("watch") == "true":
            watch = Watch(request)
            self.watches.append(watch)
            return httpx.Response(200, content=watch.body())
        self.lists.append(request)
        names = sorted(self.objects)
        start = int(request.url.params.get("continue") or 0)
        limit = int(request.url.params["limit"])
        page = names[start : start + limit]
        metadata: dict[str, Any] = {"resourceVersion": str(self.rv)}
        if start + limit < len(names):
            metadata["continue"] = str(start + limit)
        return httpx.Response(200, json={"metadata": metadata, "items": [self.objects[n] for n in page]})

    async def until(self, what: str, condition: Callable[[], bool], within: float = 5) -> None:
        async with asyncio.timeout(within):
            while not condition():
                self._changed.clear()
                await asyncio.sleep(0.005)
        assert condition(), what

    async def next_watch(self, count: int) -> Watch:
        """The `count`-th watch (1-based), once the reflector has opened it."""
        await self.until(f"watch #{count}", lambda: len(self.watches) >= count)
        return self.watches[count - 1]


Event = tuple[str, str, Any, Any]


@pytest.fixture
def api() -> FakeApi:
    return FakeApi()


@pytest.fixture
async def client(api: FakeApi) -> AsyncIterator[KubeClient]:
    budget = ApiBudget(BudgetConfig(request_rate=10_000, request_burst=10_000))
    async with KubeClient(
        ConnectionConfig(server="https://fake"), transport=httpx.MockTransport(api.handler), budget=budget
    ) as kube:
        yield kube


@contextmanager
def running(reflector: Reflector[Any]) -> Iterator[asyncio.Task[None]]:
    task = asyncio.create_task(reflector.run())
    try:
        yield task
    finally:
        task.cancel()


def quick(client: KubeClient, events: list[Event], **kwargs: Any) -> Reflector[Any]:
    return Reflector(
        client,
        PATH,
        on_event=lambda *event: events.append(event),
        page_size=2,
        backoff=Backoff(initial=0.01, cap=0.05),
        rng=random.Random(7),
        **kwargs,
    )


async def synced(reflector: Reflector[Any]) -> None:
    async with asyncio.timeout(5):
        await reflector.synced.wait()


async def test_initial_paged_list_fills_the_store_then_watches_from_its_version(
    api: FakeApi, client: KubeClient
) -> None:
    for i in range(5):
        api.put(cm(f"c{i}", 90 + i))
    events: list[Event] = []
    reflector = quick(client, events, label_selector="app=x")
    with running(reflector):
        await synced(reflector)
        assert sorted(reflector.store) == [f"ns/c{i}" for i in range(5)]
        assert [(e[0], e[1], e[2]) for e in events] == [("ADDED", f"ns/c{i}", None) for i in range(5)]
        assert len(api.lists) == 3, "five objects in pages of two"
        watch = await api.next_watch(1)
    assert watch.params["resourceVersion"] == "100"
    assert watch.params["allowWatchBookmarks"] == "true"
    assert watch.params["labelSelector"] == "app=x"
    assert 240 <= int(watch.params["timeoutSeconds"]) <= 360


async def test_watch_events_update_the_store_with_projections(api: FakeApi, client: KubeClient) -> None:
    api.put(cm("a", 100, "1"))
    events: list[Event] = []
    reflector = Reflector(
        client, PATH, project=lambda obj: obj["data"]["k"], on_event=lambda *e: events.append(e)
    )
    with running(reflector):
        await synced(reflector)
        watch = await api.next_watch(1)
        watch.send("ADDED", cm("b", 101, "2"))
        watch.send("MODIFIED", cm("a", 102, "3"))
        watch.send("DELETED", cm("b", 103, "2"))
        await api.until("three events", lambda: len(events) == 4)
    assert reflector.store == {"ns/a": "3"}
    assert events == [
        ("ADDED", "ns/a", None, "1"),
        ("ADDED", "ns/b", None, "2"),
        ("MODIFIED", "ns/a", "1", "3"),
        ("DELETED", "ns/b", "2", None),
    ]
    assert reflector.resource_version == "103"


async def test_bookmarks_advance_the_version_used_to_rewatch(api: FakeApi, client: KubeClient) -> None:
    events: list[Event] = []
    reflector = quick(client, events)
    with running(reflector):
        await synced(reflector)
        first = await api.next_watch(1)
        first.send("BOOKMARK", {"kind": "ConfigMap", "metadata": {"resourceVersion": "555"}})
        await api.until("bookmark", lambda: reflector.resource_version == "555")
        first.end()
        second = await api.next_watch(2)
    assert second.params["resourceVersion"] == "555"
    assert len(api.lists) == 1, "a watch that ends normally is resumed, not relisted"
    assert events == []
    assert reflector.stats.bookmarks == 1


async def test_410_error_event_relists_and_sees_deletions_made_meanwhile(
    api: FakeApi, client: KubeClient
) -> None:
    for name in ("keep", "change", "vanish"):
        api.put(cm(name, 100))
    events: list[Event] = []
    reflector = quick(client, events)
    with running(reflector):
        await synced(reflector)
        watch = await api.next_watch(1)
        del api.objects["vanish"]
        api.put(cm("change", 150, "new"))
        api.put(cm("born", 151))
        api.rv = 200
        events.clear()
        watch.send("ERROR", {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"})
        after = await api.next_watch(2)
    assert after.params["resourceVersion"] == "200"
    assert sorted(reflector.store) == ["ns/born", "ns/change", "ns/keep"]
    assert sorted((e[0], e[1]) for e in events) == [
        ("ADDED", "ns/born"),
        ("DELETED", "ns/vanish"),
        ("MODIFIED", "ns/change"),
    ]
    deleted = next(e for e in events if e[0] == "DELETED")
    assert deleted[2]["metadata"]["name"] == "vanish"
    assert deleted[3] is None
    assert (reflector.stats.gone, reflector.stats.lists) == (1, 2)


async def test_http_410_on_the_watch_request_relists(api: FakeApi, client: KubeClient) -> None:
    reflector = quick(client, [])
    with running(reflector):
        await synced(reflector)
        (await api.next_watch(1)).end()
        api.failures.append(
            lambda r: httpx.Response(410, json={"kind": "Status", "code": 410, "reason": "Expired"})
        )
        await api.next_watch(2)
    assert (reflector.stats.gone, reflector.stats.lists) == (1, 2)


async def test_a_watch_that_is_always_gone_does_not_make_a_list_storm(
    api: FakeApi, client: KubeClient
) -> None:
    reflector = Reflector(client, PATH, backoff=Backoff(initial=0.1, cap=0.2))

    def gone(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("watch") == "true":
            return httpx.Response(410, json={"kind": "Status", "code": 410, "reason": "Expired"})
        return httpx.Response(200, json={"metadata": {"resourceVersion": "1"}, "items": []})

    api.failures.extend([gone] * 1000)
    with running(reflector):
        await asyncio.sleep(1.0)
    assert 3 <= reflector.stats.lists <= 12
    assert reflector.stats.lists - 1 <= reflector.stats.gone <= reflector.stats.lists


async def test_inactivity_drops_the_connection_and_rewatches(api: FakeApi, client: KubeClient) -> None:
    reflector = quick(client, [], inactivity_timeout=0.2)
    with running(reflector):
        await synced(reflector)
        first = await api.next_watch(1)
        second = await api.next_watch(2)
    assert first.closed_by_client
    assert second.params["resourceVersion"] == first.params["resourceVersion"]
    assert reflector.stats.inactivity_timeouts >= 1
    assert len(api.lists) == 1


async def test_events_keep_a_watch_alive(api: FakeApi, client: KubeClient) -> None:
    reflector = quick(client, [], inactivity_timeout=0.3)
    with running(reflector):
        await synced(reflector)
        watch = await api.next_watch(1)
        for rv in range(200, 208):
            watch.send("BOOKMARK", {"metadata": {"resourceVersion": str(rv)}})
            await asyncio.sleep(0.1)
        assert len(api.watches) == 1
        assert reflector.stats.inactivity_timeouts == 0


async def test_connection_errors_back_off_and_resume_from_the_last_version(
    api: FakeApi, client: KubeClient
) -> None:
    reflector = quick(client, [])
    with running(reflector):
        await synced(reflector)
        first = await api.next_watch(1)
        first.send("ADDED", cm("x", 300))
        await api.until("event", lambda: "ns/x" in reflector.store)

        def refuse(request: httpx.Request) -> httpx.Response:
            raise httpx.ConnectError("refused", request=request)

        api.failures.extend([refuse, refuse])
        first.end()
        second = await api.next_watch(2)
    assert second.params["resourceVersion"] == "300"
    assert reflector.stats.errors == 2
    assert len(api.lists) == 1


async def test_non_410_error_events_back_off_and_rewatch(api: FakeApi, client: KubeClient) -> None:
    reflector = quick(client, [])
    with running(reflector):
        await synced(reflector)
        first = await api.next_watch(1)
        first.send("ERROR", {"kind": "Status", "code": 500, "reason": "InternalError", "message": "etcd"})
        second = await api.next_watch(2)
    assert second.params["resourceVersion"] == first.params["resourceVersion"]
    assert (reflector.stats.errors, reflector.stats.lists) == (1, 1)


async def test_list_failures_are_retried(api: FakeApi, client: KubeClient) -> None:
    api.put(cm("a", 100))
    api.failures.append(lambda r: httpx.Response(500, json={"kind": "Status", "code": 500}))
    reflector = quick(client, [])
    with running(reflector):
        await synced(reflector)
    assert list(reflector.store) == ["ns/a"]
    assert reflector.stats.errors == 1


async def test_malformed_events_are_skipped(api: FakeApi, client: KubeClient) -> None:
    events: list[Event] = []

    def project(obj: dict[str, Any]) -> str:
        if obj["data"]["k"] == "explode":
            raise ValueError("cannot project")
        return str(obj["data"]["k"])

    def on_event(kind: str, key: str, old: Any, new: Any) -> None:
        events.append((kind, key, old, new))
        if new == "callback-bug":
            raise RuntimeError("a consumer bug")

    reflector = Reflector(client, PATH, project=project, on_event=on_event)
    with running(reflector) as task:
        await synced(reflector)
        watch = await api.next_watch(1)
        watch.raw(b"this is not json\n")
        watch.raw(b'{"type":"ADDED"}\n')
        watch.send("ADDED", {"metadata": {"namespace": "ns"}})
        watch.send("MODIFIED", {"no": "metadata"})
        watch.send("DELETED", {"metadata": {}})
        watch.send("SURPRISE", cm("s", 101))
        watch.send("ADDED", cm("boom", 102, "explode"))
        watch.send("ADDED", cm("cb", 103, "callback-bug"))
        watch.send("ADDED", cm("fine", 104, "ok"))
        await api.until("the good event", lambda: "ns/fine" in reflector.store)
        assert not task.done()
    assert reflector.store == {"ns/cb": "callback-bug", "ns/fine": "ok"}
    assert [e[1] for e in events] == ["ns/cb", "ns/fine"]
    assert reflector.stats.malformed == 6
    assert reflector.resource_version == "104"
    assert len(api.watches) == 1, "bad events do not cost a reconnection"


async def test_cluster_scoped_keys_and_unchanged_objects(api: FakeApi, client: KubeClient) -> None:
    api.put(cm("node-1", 100, namespace=None))
    events: list[Event] = []
    reflector = quick(client, events)
    with running(reflector):
        await synced(reflector)
        watch = await api.next_watch(1)
        watch.send("MODIFIED", cm("node-1", 100, namespace=None))
        watch.send("BOOKMARK", {"metadata": {"resourceVersion": "120"}})
        await api.until("bookmark", lambda: reflector.resource_version == "120")
    assert list(reflector.store) == ["node-1"]
    assert [e[0] for e in events] == ["ADDED"], "same resourceVersion: no MODIFIED"


async def test_cancellation_stops_the_reflector(api: FakeApi, client: KubeClient) -> None:
    reflector = quick(client, [])
    task = asyncio.create_task(reflector.run())
    await synced(reflector)
    watch = await api.next_watch(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert watch.closed_by_client


def test_backoff_grows_with_jitter_and_is_capped() -> None:
    backoff = Backoff(initial=1, cap=8, rng=random.Random(1))
    delays = [backoff.next() for _ in range(6)]
    for delay, ceiling in zip(delays, [1, 2, 4, 8, 8, 8], strict=True):
        assert ceiling / 2 <= delay <= ceiling
    backoff.reset()
    assert backoff.next() <= 1


def test_object_key() -> None:
    assert object_key(cm("a", 1)) == "ns/a"
    assert object_key(cm("a", 1, namespace=None)) == "a"
    with pytest.raises(ValueError, match="name"):
        object_key({"metadata": {"name": ""}})
