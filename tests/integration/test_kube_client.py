"""The Kubernetes client layer against the real local cluster: CRUD, server-side apply, preconditions,
the reflector (including a genuine 410 from the API server) and Lease leader election.

About the 410: the API server serves watches from its watch cache, which keeps at least 75 s of
history (``eventFreshDuration``) and doubles its capacity while its oldest event is younger than
that (apiserver ``storage/cacher/watch_cache.go``, ``resizeCacheLocked``). A burst of writes
alone therefore never expires a recent resourceVersion (the test checks that too); it expires
only once it is older than 75 s *and* enough newer events have pushed it out. The test cuts the
reflector off (a partitionable transport), changes things, lets 75 s pass, writes until a probe
watch from the reflector's version really gets ``ERROR 410 too old resource version``, then heals
the partition and checks the reflector relists into the right state.

It uses a custom resource of a CRD made for the run, not ConfigMaps: the configmaps watch cache
is shared by the whole cluster, and every run of such a test leaves it full of fresh events,
which makes the next insert double it — each run needed twice the writes of the previous one
(measured: 100, 6 375, 12 800). A new CRD has a new cache of capacity 100.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, contextmanager
from typing import Any

import httpx
import pytest

from tests.conftest import Cluster
from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.kube import (
    ApiError,
    Backoff,
    ConflictError,
    ConnectionConfig,
    ConnectionTransport,
    KubeClient,
    LeaderElector,
    NotFoundError,
    Reflector,
    load_kubeconfig,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

logger = logging.getLogger(__name__)


def configmap(name: str, **data: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}


def fast_budget() -> ApiBudget:
    return ApiBudget(BudgetConfig(request_rate=500, request_burst=500))


@pytest.fixture
def config(cluster: Cluster) -> ConnectionConfig:
    return load_kubeconfig(cluster.kubeconfig)


@pytest.fixture
async def kube(config: ConnectionConfig) -> AsyncIterator[KubeClient]:
    async with KubeClient(config, budget=fast_budget(), user_agent="volprobe-integration") as client:
        yield client


def cms(namespace: str) -> str:
    return f"/api/v1/namespaces/{namespace}/configmaps"


async def test_configmap_crud(kube: KubeClient, namespace: str, cluster: Cluster) -> None:
    created = await kube.create(cms(namespace), configmap("one", a="1"))
    assert created["metadata"]["uid"]
    assert cluster.kubectl.get("configmap", "one", namespace)["data"] == {"a": "1"}
    with pytest.raises(ConflictError) as duplicate:
        await kube.create(cms(namespace), configmap("one"))
    assert duplicate.value.already_exists

    path = f"{cms(namespace)}/one"
    await kube.patch(path, {"data": {"b": "2"}})
    await kube.patch(path, [{"op": "add", "path": "/data/c", "value": "3"}], "json")
    await kube.patch(path, {"metadata": {"labels": {"x": "y"}}}, "strategic")
    current = await kube.get(path)
    assert current["data"] == {"a": "1", "b": "2", "c": "3"}
    assert current["metadata"]["labels"] == {"x": "y"}

    stale = dict(created, data={"stale": "write"})
    with pytest.raises(ConflictError):
        await kube.replace(path, stale)
    current["data"] = {"replaced": "yes"}
    replaced = await kube.replace(path, current)
    assert replaced["data"] == {"replaced": "yes"}

    await kube.delete(path)
    with pytest.raises(NotFoundError) as missing:
        await kube.get(path)
    assert missing.value.not_found
    with pytest.raises(NotFoundError):
        await kube.delete(path)


async def test_list_pages(config: ConnectionConfig, namespace: str) -> None:
    calls: list[tuple[str, int]] = []
    async with KubeClient(
        config, budget=fast_budget(), on_response=lambda v, c, s: calls.append((v, c))
    ) as kube:
        for i in range(7):
            await kube.create(cms(namespace), configmap(f"page-{i}"))
        calls.clear()
        result = await kube.list(cms(namespace), limit=3, label_selector=None)
    names = {item["metadata"]["name"] for item in result.items}
    assert names == {f"page-{i}" for i in range(7)} | {"kube-root-ca.crt"}
    assert calls == [("list", 200)] * 3, "8 objects in pages of 3"
    assert int(result.resource_version) > 0


async def test_server_side_apply(kube: KubeClient, namespace: str) -> None:
    path = f"{cms(namespace)}/applied"
    first = await kube.apply(path, configmap("applied", owner="volprobe"), field_manager="volprobe")
    assert first["data"] == {"owner": "volprobe"}
    managers = {(m["manager"], m["operation"]) for m in first["metadata"]["managedFields"]}
    assert ("volprobe", "Apply") in managers

    with pytest.raises(ConflictError) as conflict:
        await kube.apply(path, configmap("applied", owner="intruder"), field_manager="other")
    assert "conflict" in conflict.value.message.lower()
    forced = await kube.apply(path, configmap("applied", owner="intruder"), field_manager="other", force=True)
    assert forced["data"] == {"owner": "intruder"}

    shrunk = await kube.apply(path, configmap("applied", extra="x"), field_manager="volprobe")
    assert shrunk["data"] == {"owner": "intruder", "extra": "x"}


async def test_apply_status_and_pod_budget(kube: KubeClient, namespace: str, cluster: Cluster) -> None:
    pods = f"/api/v1/namespaces/{namespace}/pods"
    unschedulable = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "never-runs"},
        "spec": {
            "nodeSelector": {"volprobe.io/no-such-node": "true"},
            "containers": [{"name": "c", "image": "localhost/volprobe-helper:busybox-1"}],
        },
    }
    before = kube.budget.stats.granted["pod_create"]
    await kube.create(pods, unschedulable)
    assert kube.budget.stats.granted["pod_create"] == before + 1
    status = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "never-runs"},
        "status": {"conditions": [{"type": "volprobe.io/Probed", "status": "True", "reason": "Test"}]},
    }
    await kube.apply_status(f"{pods}/never-runs", status, field_manager="volprobe")
    conditions = cluster.kubectl.get("pod", "never-runs", namespace)["status"]["conditions"]
    assert {"type": "volprobe.io/Probed", "status": "True"}.items() <= next(
        c for c in conditions if c["type"] == "volprobe.io/Probed"
    ).items()
    await kube.delete(f"{pods}/never-runs", grace_period_seconds=0)


async def test_delete_with_a_wrong_uid_precondition_is_409(kube: KubeClient, namespace: str) -> None:
    created = await kube.create(cms(namespace), configmap("guarded"))
    path = f"{cms(namespace)}/guarded"
    with pytest.raises(ConflictError) as caught:
        await kube.delete(path, preconditions={"uid": "00000000-0000-0000-0000-000000000000"})
    assert caught.value.status == 409
    assert "precondition" in caught.value.message.lower()
    assert (await kube.get(path))["metadata"]["uid"] == created["metadata"]["uid"]
    await kube.delete(
        path, preconditions={"uid": created["metadata"]["uid"]}, propagation_policy="Background"
    )
    with pytest.raises(NotFoundError):
        await kube.get(path)


Event = tuple[str, str, Any, Any]


def project(obj: dict[str, Any]) -> dict[str, Any]:
    return {"data": obj.get("data") or {}, "labels": obj["metadata"].get("labels") or {}}


async def eventually(what: str, condition: Any, within: float = 30) -> float:
    """Poll `condition` (state owned by background tasks); return how long it took to hold."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.05)
    return time.monotonic() - started


@contextmanager
def running(coroutine: Any) -> Iterator[asyncio.Task[None]]:
    task: asyncio.Task[None] = asyncio.create_task(coroutine)
    try:
        yield task
    finally:
        task.cancel()


async def test_reflector_follows_create_update_delete(
    kube: KubeClient, namespace: str, cluster: Cluster
) -> None:
    events: list[Event] = []
    reflector = Reflector(kube, cms(namespace), project=project, on_event=lambda *e: events.append(e))
    with running(reflector.run()):
        await asyncio.wait_for(reflector.synced.wait(), 10)
        assert f"{namespace}/kube-root-ca.crt" in reflector.store
        cluster.kubectl.apply(configmap("watched", v="1"), namespace=namespace)
        key = f"{namespace}/watched"
        await eventually("ADDED", lambda: key in reflector.store)
        cluster.kubectl.run("label", "configmap", "watched", "tier=gold", "-n", namespace)
        await eventually("MODIFIED", lambda: reflector.store[key]["labels"] == {"tier": "gold"})
        cluster.kubectl.delete("configmap", "watched", namespace)
        await eventually("DELETED", lambda: key not in reflector.store)
    mine = [(kind, old, new) for kind, k, old, new in events if k == key]
    assert [kind for kind, _, _ in mine] == ["ADDED", "MODIFIED", "DELETED"]
    assert mine[1][1] == {"data": {"v": "1"}, "labels": {}}
    assert mine[2] == ("DELETED", {"data": {"v": "1"}, "labels": {"tier": "gold"}}, None)
    assert reflector.stats.gone == 0
    assert reflector.stats.lists == 1


class Partition(httpx.AsyncBaseTransport):
    """A real transport that the test can cut: new requests fail to connect, open streams break."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.cut = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.cut:
            raise httpx.ConnectError("partitioned by the test", request=request)
        response = await self.inner.handle_async_request(request)
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_Breakable(response.stream, self),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Breakable(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, partition: Partition) -> None:
        self.inner = inner
        self.partition = partition

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for chunk in self.inner:
            if self.partition.cut:
                raise httpx.ReadError("partitioned by the test")
            yield chunk

    async def aclose(self) -> None:
        await self.inner.aclose()


async def first_watch_event(kube: KubeClient, path: str, resource_version: str) -> dict[str, Any]:
    async with aclosing(kube.watch(path, resource_version=resource_version, timeout_seconds=5)) as events:
        async for event in events:
            return event
    return {}


@pytest.fixture
async def scratch_resource(kube: KubeClient, namespace: str) -> AsyncIterator[tuple[str, str]]:
    """A namespaced custom resource of a CRD made for this test only: (collection path, kind).

    Its watch cache is brand new (capacity 100, nobody else writes to it), so how many writes
    expire a version does not depend on the shared cluster's history; see the module docstring.
    """
    suffix = uuid.uuid4().hex[:6]
    plural, kind = f"churn{suffix}s", f"Churn{suffix}"
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.test.volprobe.io"},
        "spec": {
            "group": "test.volprobe.io",
            "scope": "Namespaced",
            "names": {"plural": plural, "singular": f"churn{suffix}", "kind": kind},
            "versions": [
                {
                    "name": "v1",
                    "served": True,
                    "storage": True,
                    "schema": {
                        "openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
                    },
                }
            ],
        },
    }
    crds = "/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
    await kube.create(crds, crd)
    path = f"/apis/test.volprobe.io/v1/namespaces/{namespace}/{plural}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                await kube.list(path)
                break
            except NotFoundError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.1)
        yield path, kind
    finally:
        await kube.delete(f"{crds}/{plural}.test.volprobe.io")


@pytest.mark.timeout(400)
async def test_reflector_relists_after_a_real_410(
    config: ConnectionConfig, kube: KubeClient, namespace: str, scratch_resource: tuple[str, str]
) -> None:
    path, kind = scratch_resource

    def item(name: str, **data: str) -> dict[str, Any]:
        return {"apiVersion": "test.volprobe.io/v1", "kind": kind, "metadata": {"name": name}, "data": data}

    for i in range(4):
        await kube.create(path, item(f"cm-{i}", v="0"))
    partition = Partition(ConnectionTransport(config))
    events: list[Event] = []
    async with KubeClient(config, transport=partition, budget=fast_budget()) as cut_off:
        reflector = Reflector(
            cut_off, path, project=project, on_event=lambda *e: events.append(e), backoff=Backoff(0.2, 1.0)
        )
        with running(reflector.run()):
            await asyncio.wait_for(reflector.synced.wait(), 10)
            await kube.patch(f"{path}/cm-3", {"data": {"v": "live"}})
            await eventually(
                "the live watch", lambda: reflector.store[f"{namespace}/cm-3"]["data"]["v"] == "live"
            )
            stale = reflector.resource_version
            assert stale is not None

            partition.cut = True
            await kube.delete(f"{path}/cm-0")
            await kube.delete(f"{path}/cm-1")
            await kube.patch(f"{path}/cm-2", {"data": {"v": "changed"}})
            await kube.create(path, item("cm-new", v="1"))
            await kube.create(path, item("churn", n="0"))
            for n in range(1, 301):
                await kube.patch(f"{path}/churn", {"data": {"n": f"burst-{n}"}})
            changed_at = time.monotonic()
            replayed = await first_watch_event(kube, path, stale)
            assert replayed.get("type") == "DELETED", f"300 quick writes do not expire a version: {replayed}"

            await asyncio.sleep(max(0.0, changed_at + 76 - time.monotonic()))
            writes = 0
            probe: dict[str, Any] = {}
            churn_started = time.monotonic()
            while time.monotonic() - churn_started < 120:
                for _ in range(25):
                    writes += 1
                    await kube.patch(f"{path}/churn", {"data": {"n": str(writes)}})
                probe = await first_watch_event(kube, path, stale)
                if probe.get("type") == "ERROR":
                    break
            churned = time.monotonic() - churn_started
            logger.warning("410 after %d writes, %.1fs of churn; probe: %s", writes, churned, probe)
            assert probe.get("type") == "ERROR", f"no 410 after {writes} writes: {probe}"
            assert probe["object"]["code"] == 410
            assert "too old resource version" in probe["object"]["message"]

            assert reflector.stats.gone == 0
            assert reflector.stats.lists == 1
            partition.cut = False
            healed = time.monotonic()
            await eventually("the relist", lambda: reflector.stats.lists >= 2, within=30)
            recovered = time.monotonic() - healed
            truth = await kube.list(path)
            expected = {f"{namespace}/{o['metadata']['name']}": project(o) for o in truth.items}
            await eventually("the store to match", lambda: reflector.store == expected, within=10)
        logger.warning(
            "relisted %.2fs after healing (relist itself %.3fs); store %d objects",
            recovered,
            reflector.stats.last_relist_seconds,
            len(reflector.store),
        )
    assert reflector.stats.gone >= 1
    assert reflector.stats.errors >= 1, "the partition was noticed"
    # The stream was cut before these changes were made: only the relist can have reported them.
    seen = {(event_type, key) for event_type, key, _, _ in events}
    for name in ("cm-0", "cm-1"):
        assert ("DELETED", f"{namespace}/{name}") in seen
    assert ("MODIFIED", f"{namespace}/cm-2") in seen
    assert ("ADDED", f"{namespace}/cm-new") in seen
    assert reflector.store[f"{namespace}/churn"]["data"] == {"n": str(writes)}
    assert sorted(reflector.store) == [f"{namespace}/{n}" for n in ("churn", "cm-2", "cm-3", "cm-new")]


def electors(config: ConnectionConfig, namespace: str, *, release: bool = True) -> list[LeaderElector]:
    return [
        LeaderElector(
            KubeClient(config, budget=fast_budget(), user_agent=f"elector-{name}"),
            namespace,
            "volprobe-test",
            name,
            lease_duration=4,
            renew_deadline=3,
            retry_period=0.5,
            release_on_cancel=release,
        )
        for name in ("a", "b")
    ]


async def test_exactly_one_leader_and_handover_on_release(
    config: ConnectionConfig, namespace: str, cluster: Cluster
) -> None:
    pair = electors(config, namespace)
    tasks = {e.identity: asyncio.create_task(e.run()) for e in pair}
    try:
        await eventually("a leader", lambda: any(e.is_leader for e in pair), within=10)
        for _ in range(40):
            assert sum(e.is_leader for e in pair) == 1
            await asyncio.sleep(0.05)
        leader = next(e for e in pair if e.is_leader)
        other = next(e for e in pair if e is not leader)
        lease = cluster.kubectl.get("lease", "volprobe-test", namespace)
        assert lease["spec"]["holderIdentity"] == leader.identity

        tasks[leader.identity].cancel()
        await asyncio.gather(tasks[leader.identity], return_exceptions=True)
        took = await eventually("the successor", lambda: other.is_leader, within=10)
        logger.warning("handover after release: %.2fs", took)
        assert took < 0.5 * 2.2 + 1.0
        assert (
            cluster.kubectl.get("lease", "volprobe-test", namespace)["spec"]["holderIdentity"]
            == other.identity
        )
    finally:
        for task in tasks.values():
            task.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
        for e in pair:
            await e.client.aclose()


async def test_takeover_after_expiry_when_the_leader_vanishes(
    config: ConnectionConfig, namespace: str
) -> None:
    first, second = electors(config, namespace, release=False)
    first_task = asyncio.create_task(first.run())
    second_task: asyncio.Task[None] | None = None
    try:
        await eventually("the first leader", lambda: first.is_leader, within=10)
        second_task = asyncio.create_task(second.run())
        await asyncio.sleep(1.5)
        assert not second.is_leader
        first_task.cancel()
        await asyncio.gather(first_task, return_exceptions=True)
        took = await eventually("the successor", lambda: second.is_leader, within=15)
        logger.warning("takeover after a vanished leader: %.2fs (lease 4s)", took)
        assert 4 - 0.5 <= took <= 4 + 0.5 * 2.2 + 1.0
    finally:
        tasks = [task for task in (first_task, second_task) if task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await first.client.aclose()
        await second.client.aclose()


async def test_errors_from_a_missing_namespace(kube: KubeClient) -> None:
    with pytest.raises(ApiError) as caught:
        await kube.create(cms("volprobe-no-such-namespace"), configmap("x"))
    assert caught.value.not_found
