"""KubeClient against httpx.MockTransport: requests, errors, retries, budget, paging, SSA, watch parsing."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

import volprobe.runtime.kube
from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.kube import (
    ApiError,
    ConflictError,
    ConnectionConfig,
    Credential,
    GoneError,
    KubeClient,
    NotFoundError,
    StaticCredentials,
    parse_watch_stream,
)
from volprobe.runtime.kube.errors import parse_retry_after

Handler = Callable[[httpx.Request], httpx.Response]


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0)


def status(code: int, reason: str, message: str = "", **details: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    body |= {"reason": reason, "message": message or reason}
    if details:
        body["details"] = details
    return body


def make_client(
    handler: Handler,
    *,
    clock: FakeClock | None = None,
    budget_config: BudgetConfig | None = None,
    **kwargs: Any,
) -> tuple[KubeClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    clock = clock or FakeClock()
    budget = ApiBudget(budget_config, clock=clock, sleep=clock.sleep)
    config = ConnectionConfig(
        server="https://k8s.test:6443", credentials=StaticCredentials(Credential(token="t0k"))
    )
    client = KubeClient(config, transport=httpx.MockTransport(recording), budget=budget, **kwargs)
    return client, seen


def body_of(request: httpx.Request) -> Any:
    return json.loads(request.content)


async def test_get_sends_auth_user_agent_and_decodes() -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={"kind": "ConfigMap"}), user_agent="ua/1")
    assert await client.get("/api/v1/namespaces/a/configmaps/b") == {"kind": "ConfigMap"}
    (request,) = seen
    assert request.url == "https://k8s.test:6443/api/v1/namespaces/a/configmaps/b"
    assert request.headers["Authorization"] == "Bearer t0k"
    assert request.headers["User-Agent"] == "ua/1"
    assert request.headers["Accept"] == "application/json"


async def test_list_follows_continue_tokens() -> None:
    pages = {
        None: {"metadata": {"continue": "p2", "resourceVersion": "100"}, "items": [{"n": 1}, {"n": 2}]},
        "p2": {"metadata": {"continue": "p3", "resourceVersion": "100"}, "items": [{"n": 3}]},
        "p3": {"metadata": {"resourceVersion": "100"}, "items": [{"n": 4}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=pages[request.url.params.get("continue")])

    client, seen = make_client(handler)
    result = await client.list(
        "/api/v1/pods", label_selector="app=x", field_selector="spec.nodeName=n", limit=2
    )
    assert [item["n"] for item in result.items] == [1, 2, 3, 4]
    assert result.resource_version == "100"
    assert [r.url.params.get("continue") for r in seen] == [None, "p2", "p3"]
    for request in seen:
        assert request.url.params["limit"] == "2"
        assert request.url.params["labelSelector"] == "app=x"
        assert request.url.params["fieldSelector"] == "spec.nodeName=n"


async def test_list_with_an_expired_continue_token_raises_gone() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.params.get("continue"):
            return httpx.Response(410, json=status(410, "Expired", "continue token expired"))
        return httpx.Response(200, json={"metadata": {"continue": "x", "resourceVersion": "1"}, "items": []})

    client, _ = make_client(handler)
    with pytest.raises(GoneError) as caught:
        await client.list("/api/v1/pods")
    assert caught.value.gone


async def test_create_replace_and_delete_bodies() -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={"ok": True}))
    await client.create("/api/v1/namespaces/a/configmaps", {"metadata": {"name": "x"}}, field_manager="vp")
    await client.replace("/api/v1/namespaces/a/configmaps/x", {"metadata": {"resourceVersion": "7"}})
    await client.delete(
        "/api/v1/namespaces/a/configmaps/x", preconditions={"uid": "u-1"}, propagation_policy="Foreground"
    )
    create, replace, delete = seen
    assert (create.method, create.url.params["fieldManager"]) == ("POST", "vp")
    assert create.headers["Content-Type"] == "application/json"
    assert body_of(create) == {"metadata": {"name": "x"}}
    assert replace.method == "PUT"
    assert "fieldManager" not in replace.url.params
    assert delete.method == "DELETE"
    assert body_of(delete) == {
        "kind": "DeleteOptions",
        "apiVersion": "v1",
        "preconditions": {"uid": "u-1"},
        "propagationPolicy": "Foreground",
    }


@pytest.mark.parametrize(
    ("code", "reason", "cls", "flag"),
    [
        (404, "NotFound", NotFoundError, "not_found"),
        (409, "Conflict", ConflictError, "conflict"),
        (409, "AlreadyExists", ConflictError, "already_exists"),
        (410, "Expired", GoneError, "gone"),
        (422, "Invalid", ApiError, None),
    ],
)
async def test_errors_carry_the_status(code: int, reason: str, cls: type[ApiError], flag: str | None) -> None:
    client, _ = make_client(lambda r: httpx.Response(code, json=status(code, reason, "it broke")))
    with pytest.raises(cls) as caught:
        await client.get("/x")
    error = caught.value
    assert type(error) is cls
    assert (error.status, error.reason, error.message) == (code, reason, "it broke")
    assert error.body["kind"] == "Status"
    if flag:
        assert getattr(error, flag)
    assert not error.throttled


async def test_plain_text_answers_are_returned_as_text() -> None:
    client, _ = make_client(lambda r: httpx.Response(200, text="ok"))
    assert await client.request("GET", "/healthz") == "ok"


async def test_a_non_status_error_body_is_kept() -> None:
    client, _ = make_client(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(ApiError) as caught:
        await client.get("/x")
    assert caught.value.status == 502
    assert "bad gateway" in caught.value.message


@pytest.mark.parametrize("patch_type", ["merge", "json", "strategic"])
async def test_patch_content_types(patch_type: Any) -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={}))
    body: Any = [{"op": "add", "path": "/x", "value": 1}] if patch_type == "json" else {"a": 1}
    await client.patch("/p", body, patch_type)
    (request,) = seen
    assert request.method == "PATCH"
    assert request.headers["Content-Type"] == volprobe.runtime.kube.PATCH_CONTENT_TYPES[patch_type]
    assert body_of(request) == body
    assert "force" not in request.url.params


async def test_server_side_apply_content_type_and_params() -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={}))
    manifest = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"k": "v"}}
    await client.apply("/api/v1/namespaces/a/configmaps/c", manifest, field_manager="volprobe", force=True)
    await client.apply_status("/apis/v.io/v1/probes/p/", {"status": {}}, field_manager="volprobe")
    apply, apply_status = seen
    assert apply.headers["Content-Type"] == "application/apply-patch+yaml"
    assert dict(apply.url.params) == {"fieldManager": "volprobe", "force": "true"}
    assert body_of(apply) == manifest
    assert apply_status.url.path == "/apis/v.io/v1/probes/p/status"
    assert dict(apply_status.url.params) == {"fieldManager": "volprobe", "force": "false"}


async def test_patch_argument_checks() -> None:
    client, seen = make_client(lambda r: httpx.Response(200, json={}))
    with pytest.raises(ValueError, match="field_manager"):
        await client.patch("/p", {}, "apply")
    with pytest.raises(ValueError, match="force"):
        await client.patch("/p", {}, "merge", force=True)
    assert seen == []


async def test_429_is_retried_after_retry_after_and_reported_to_the_budget() -> None:
    clock = FakeClock()
    answers = [
        httpx.Response(429, headers={"Retry-After": "3"}, json=status(429, "TooManyRequests")),
        httpx.Response(201, json={"created": True}),
    ]
    sent_at: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append(clock.now)
        return answers.pop(0)

    client, _ = make_client(handler, clock=clock, budget_config=BudgetConfig(request_rate=100))
    assert await client.create("/api/v1/namespaces/a/configmaps", {}) == {"created": True}
    assert sent_at[1] - sent_at[0] >= 3
    assert client.budget.stats.throttle_events == 1
    assert client.budget.effective_rate("request", clock.now) == pytest.approx(50)


async def test_503_with_retry_after_is_retried_but_plain_503_is_not() -> None:
    answers = [
        httpx.Response(503, headers={"Retry-After": "1"}, text="busy"),
        httpx.Response(200, json={"ok": 1}),
        httpx.Response(503, text="down"),
    ]
    client, seen = make_client(lambda r: answers.pop(0))
    assert await client.get("/x") == {"ok": 1}
    with pytest.raises(ApiError) as caught:
        await client.get("/x")
    assert caught.value.status == 503
    assert not caught.value.throttled
    assert len(seen) == 3


async def test_retries_are_bounded() -> None:
    client, seen = make_client(
        lambda r: httpx.Response(429, json=status(429, "TooManyRequests", retryAfterSeconds=1)),
        max_attempts=3,
    )
    with pytest.raises(ApiError) as caught:
        await client.delete("/api/v1/namespaces/a/configmaps/x")
    assert caught.value.throttled
    assert caught.value.retry_after == 1
    assert len(seen) == 3
    assert client.budget.stats.throttle_events == 3


async def test_pod_creations_take_a_pod_create_token() -> None:
    client, _ = make_client(lambda r: httpx.Response(201, json={}))
    await client.create("/api/v1/namespaces/a/pods", {})
    await client.create("/api/v1/namespaces/a/configmaps", {})
    await client.create("/api/v1/namespaces/a/pods/p/eviction", {})
    assert client.budget.stats.granted == {"request": 3, "pod_create": 1}


async def test_pod_creations_are_paced_by_their_own_bucket() -> None:
    clock = FakeClock()
    config = BudgetConfig(pod_create_rate=2, pod_create_burst=1, request_rate=1000, request_burst=1000)
    client, _ = make_client(lambda r: httpx.Response(201, json={}), clock=clock, budget_config=config)
    for _ in range(5):
        await client.create("/api/v1/namespaces/a/pods", {})
    assert clock.now == pytest.approx(2.0)


async def test_on_response_hook_sees_every_attempt() -> None:
    calls: list[tuple[str, int]] = []
    answers = [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={})]
    client, _ = make_client(lambda r: answers.pop(0), on_response=lambda v, c, s: calls.append((v, c)))
    await client.list("/api/v1/pods")
    assert calls == [("list", 429), ("list", 200)]


async def test_a_failing_hook_does_not_fail_the_request() -> None:
    def hook(verb: str, code: int, seconds: float) -> None:
        raise RuntimeError("metrics are broken")

    client, _ = make_client(lambda r: httpx.Response(200, json={"a": 1}), on_response=hook)
    assert await client.request("GET", "/x") == {"a": 1}


async def test_transport_errors_are_reported_and_raised() -> None:
    calls: list[tuple[str, int]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client, _ = make_client(handler, on_response=lambda v, c, s: calls.append((v, c)))
    with pytest.raises(httpx.ConnectError):
        await client.get("/x")
    assert calls == [("get", 0)]


def test_retry_after_forms() -> None:
    assert parse_retry_after("5") == 5
    assert parse_retry_after("-1") == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    now = datetime(2025, 1, 1, 0, 0, 0, tzinfo=UTC)
    assert parse_retry_after("Wed, 01 Jan 2025 00:00:07 GMT", now=now) == 7


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_watch_lines_split_anywhere() -> None:
    one = b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}'
    two = b'{"type":"BOOKMARK","object":{"metadata":{"resourceVersion":"9"}}}'
    stream = chunks(
        one[:10], one[10:] + b"\n" + two[:5], two[5:] + b"\n\n", b'{"type":"DELETED","object":{}}'
    )
    events = [event async for event in parse_watch_stream(stream)]
    assert [event["type"] for event in events] == ["ADDED", "BOOKMARK", "DELETED"]
    assert events[1]["object"]["metadata"]["resourceVersion"] == "9"


async def test_watch_skips_lines_that_are_not_json_objects() -> None:
    stream = chunks(b'{"type":"ADDED","object":{}}\nnot json\n[1,2]\n{"type":"MODIFIED","object":{}}\n')
    assert [event["type"] async for event in parse_watch_stream(stream)] == ["ADDED", "MODIFIED"]


async def test_watch_request_and_stream() -> None:
    lines = b'{"type":"ADDED","object":{"metadata":{"name":"a"}}}\n{"type":"ERROR","object":{"code":410}}\n'
    client, seen = make_client(lambda r: httpx.Response(200, content=chunks(lines[:7], lines[7:])))
    events = [
        event
        async for event in client.watch(
            "/api/v1/namespaces/a/configmaps",
            resource_version="42",
            label_selector="x=y",
            timeout_seconds=300,
            read_timeout=12,
        )
    ]
    assert [event["type"] for event in events] == ["ADDED", "ERROR"]
    (request,) = seen
    assert dict(request.url.params) == {
        "watch": "true",
        "resourceVersion": "42",
        "labelSelector": "x=y",
        "timeoutSeconds": "300",
        "allowWatchBookmarks": "true",
    }
    assert request.extensions["timeout"]["read"] == 12


async def test_watch_http_410_raises_gone() -> None:
    client, _ = make_client(
        lambda r: httpx.Response(410, json=status(410, "Expired", "too old resource version"))
    )
    with pytest.raises(GoneError):
        async for _ in client.watch("/api/v1/pods", resource_version="1", timeout_seconds=1):
            pass


def test_public_surface() -> None:
    assert sorted(volprobe.runtime.kube.__all__) == sorted(
        [
            "PATCH_CONTENT_TYPES", "ApiError", "AuthTransport", "Backoff", "BudgetTransport",
            "ClientCertificate", "ConfigError", "ConflictError", "ConnectionConfig", "ConnectionTransport",
            "Credential", "CredentialError", "Credentials", "ExecConfig", "ExecPlugin", "FileToken",
            "GoneError", "KubeClient", "LeaderElector", "ListResult", "NotFoundError", "PatchType",
            "Reflector", "ReflectorStats", "ResponseHook", "StaticCredentials", "TlsConfig",
            "build_transport", "error_from_status", "load_config", "load_incluster", "load_kubeconfig",
            "object_key", "parse_watch_stream",
        ]
    )  # fmt: skip
    for name in volprobe.runtime.kube.__all__:
        assert getattr(volprobe.runtime.kube, name) is not None
