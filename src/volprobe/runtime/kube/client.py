"""A small asyncio Kubernetes API client on httpx: raw JSON dicts in and out, no generated models.

Why not an existing client: generated models are slow and heavy for thousands of nodes and pods,
and what volprobe needs is narrow (CRUD, paged lists, watches, server-side apply). Keeping it here
also puts every request behind one `ApiBudget`, which is the point of the project.

Design notes:

* Requests go through the transports of `volprobe.runtime.kube.transport`: credentials (and a retry
  after a 401 when they can be renewed), then the API budget (a token per attempt, retries of what
  the server throttled), then the network. The ``transport`` argument replaces only the network,
  so tests with ``httpx.MockTransport`` exercise the other two.
* Errors are `ApiError` built from the server's ``Status``; 404, 409 and 410 have subclasses so
  callers can catch exactly the case they handle.
* Transport failures surface as ``httpx.TransportError`` (timeouts included, and
  `CredentialError` when an exec plugin fails): callers that loop, like the reflector, decide how
  to back off.
* ``timeout=`` arguments are the HTTP timeout of each attempt, not a deadline for the call: a call
  may also wait for the budget and retry after throttling. Wrap it in ``asyncio.timeout`` for that.
* ``on_response(verb, code, seconds)`` is called once per attempt (code 0 when no response came);
  for watches the time is until the response headers, not the life of the stream.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncGenerator, AsyncIterable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import httpx

from volprobe import __version__
from volprobe.runtime.budget import ApiBudget
from volprobe.runtime.kube.config import ConnectionConfig
from volprobe.runtime.kube.errors import error_from_response
from volprobe.runtime.kube.transport import VERB, ResponseHook, build_transport

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
DEFAULT_USER_AGENT = f"volprobe/{__version__}"
Params = Mapping[str, str | int | bool | None]


async def parse_watch_stream(chunks: AsyncIterable[bytes]) -> AsyncGenerator[dict[str, Any], None]:
    """Watch events from a stream of bytes: one JSON object per line, lines split anywhere.

    A line that is not a JSON object is logged and skipped: one corrupt event must not end a
    watch that is otherwise fine.
    """
    buffer = bytearray()
    async for chunk in chunks:
        buffer.extend(chunk)
        while (end := buffer.find(b"\n")) >= 0:
            line = bytes(buffer[:end])
            del buffer[: end + 1]
            event = _decode_line(line)
            if event is not None:
                yield event
    event = _decode_line(bytes(buffer))
    if event is not None:
        yield event


def _decode_line(line: bytes) -> dict[str, Any] | None:
    if not line.strip():
        return None
    try:
        event = json.loads(line)
    except ValueError:
        logger.warning("skipping a watch line that is not JSON: %r", line[:200])
        return None
    if not isinstance(event, dict):
        logger.warning("skipping a watch line that is not an object: %r", line[:200])
        return None
    return event


@dataclass(frozen=True)
class ListResult:
    """All items of a (paged) list and the resourceVersion to start a watch from."""

    items: list[dict[str, Any]]
    resource_version: str


class KubeClient:
    """An asyncio client for one API server.

    Example::

        async with KubeClient(load_config(), budget=budget) as client:
            pods = await client.list("/api/v1/namespaces/default/pods", label_selector="app=x")
            await client.apply(path, manifest, field_manager="volprobe")
    """

    def __init__(
        self,
        config: ConnectionConfig,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        budget: ApiBudget | None = None,
        user_agent: str = DEFAULT_USER_AGENT,
        on_response: ResponseHook | None = None,
        timeout: float = 30.0,
        max_attempts: int = 5,
        max_connections: int = 100,
    ) -> None:
        self.config = config
        self.budget = budget or ApiBudget()
        self._timeout = timeout
        # The transport stack is called directly, not through an `httpx.AsyncClient`: the client
        # adds nothing volprobe uses (cookies, redirects, auth flows) and cost 0.8 ms of CPU per
        # request on the development VM (bench/http_client.py).
        self._transport = build_transport(
            config,
            self.budget,
            connection=transport,
            max_attempts=max_attempts,
            on_response=on_response,
            max_connections=max_connections,
        )
        self._base = config.server.rstrip("/")
        self._headers = {
            "User-Agent": user_agent,
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
        }

    async def aclose(self) -> None:
        await self._transport.aclose()

    async def __aenter__(self) -> KubeClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- the one place that talks HTTP ---------------------------------------------------------

    async def _send(
        self,
        verb: str,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | httpx.Timeout | None = None,  # noqa: ASYNC109 - per attempt, see module doc
        stream: bool = False,
    ) -> httpx.Response:
        headers = self._headers
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers = {**headers, "Content-Type": content_type or "application/json"}
        query = {key: value for key, value in (params or {}).items() if value is not None}
        limits = httpx.Timeout(self._timeout if timeout is None else timeout)
        request = httpx.Request(
            method,
            httpx.URL(self._base + path, params=query),
            content=content,
            headers=headers,
            extensions={VERB: verb, "timeout": limits.as_dict()},
        )
        response = await self._transport.handle_async_request(request)
        response.request = request
        if not stream or response.is_error:
            await response.aread()
        if response.is_error:
            raise error_from_response(response)
        return response

    @staticmethod
    def _decode(response: httpx.Response) -> Any:
        """JSON as dicts and lists; the few plain-text endpoints (``/healthz``) as a string."""
        if not response.content:
            return None
        if "json" in response.headers.get("Content-Type", "application/json"):
            return response.json()
        return response.text

    # -- verbs ---------------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Params | None = None,
        body: Any = None,
        content_type: str | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, see module doc
    ) -> Any:
        """Any request; returns the decoded JSON body (None when empty)."""
        response = await self._send(
            method.lower(),
            method.upper(),
            path,
            params=params,
            body=body,
            content_type=content_type,
            timeout=timeout,
        )
        return self._decode(response)

    async def get(
        self,
        path: str,
        *,
        params: Params | None = None,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, see module doc
    ) -> Any:
        return self._decode(await self._send("get", "GET", path, params=params, timeout=timeout))

    async def list(
        self,
        path: str,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int = 500,
        timeout: float | None = None,  # noqa: ASYNC109 - per attempt, see module doc
    ) -> ListResult:
        """Every item of a collection, fetched in pages of `limit` (one consistent snapshot).

        An expired continue token raises `GoneError`; list again from the start.
        """
        items: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, str | int | bool | None] = {
                "labelSelector": label_selector,
                "fieldSelector": field_selector,
                "limit": limit,
                "continue": token,
            }
            page = self._decode(await self._send("list", "GET", path, params=params, timeout=timeout))
            items.extend(page.get("items") or [])
            metadata = page.get("metadata") or {}
            token = metadata.get("continue")
            if not token:
                return ListResult(items=items, resource_version=str(metadata.get("resourceVersion", "")))

    async def create(self, path: str, body: Mapping[str, Any], *, field_manager: str | None = None) -> Any:
        """POST `body` to the collection at `path`."""
        response = await self._send(
            "create", "POST", path, params={"fieldManager": field_manager}, body=dict(body)
        )
        return self._decode(response)

    async def replace(self, path: str, body: Mapping[str, Any], *, field_manager: str | None = None) -> Any:
        """PUT: a full update, guarded by ``metadata.resourceVersion`` when the body carries one."""
        response = await self._send(
            "update", "PUT", path, params={"fieldManager": field_manager}, body=dict(body)
        )
        return self._decode(response)

    async def delete(
        self,
        path: str,
        *,
        preconditions: Mapping[str, str] | None = None,
        propagation_policy: Literal["Orphan", "Background", "Foreground"] | None = None,
        grace_period_seconds: int | None = None,
    ) -> Any:
        """DELETE; a missing object raises `NotFoundError`, a failed precondition `ConflictError`."""
        options: dict[str, Any] = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = grace_period_seconds
        return self._decode(await self._send("delete", "DELETE", path, body=options))

    async def patch(
        self,
        path: str,
        body: Any,
        patch_type: PatchType = "merge",
        *,
        field_manager: str | None = None,
        force: bool = False,
    ) -> Any:
        """PATCH with the content type of `patch_type`; ``apply`` is server-side apply.

        Server-side apply needs a field manager; ``force`` takes over fields owned by other
        managers and is only meaningful for apply (the server rejects it otherwise).
        """
        if patch_type == "apply" and not field_manager:
            raise ValueError("server-side apply needs a field_manager")
        if force and patch_type != "apply":
            raise ValueError("force is only valid for server-side apply")
        params: dict[str, str | int | bool | None] = {"fieldManager": field_manager}
        if patch_type == "apply":
            params["force"] = force
        response = await self._send(
            "patch",
            "PATCH",
            path,
            params=params,
            body=body,
            content_type=PATCH_CONTENT_TYPES[patch_type],
        )
        return self._decode(response)

    async def apply(
        self, path: str, body: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> Any:
        """Server-side apply of `body` (a full intent with apiVersion/kind/metadata.name) at `path`."""
        return await self.patch(path, dict(body), "apply", field_manager=field_manager, force=force)

    async def apply_status(
        self, path: str, body: Mapping[str, Any], *, field_manager: str, force: bool = False
    ) -> Any:
        """Server-side apply to the ``/status`` subresource of the object at `path`."""
        return await self.apply(f"{path.rstrip('/')}/status", body, field_manager=field_manager, force=force)

    async def watch(
        self,
        path: str,
        *,
        resource_version: str,
        label_selector: str | None = None,
        field_selector: str | None = None,
        timeout_seconds: int,
        allow_bookmarks: bool = True,
        read_timeout: float = 70.0,
    ) -> AsyncGenerator[dict[str, Any], None]:
        """Stream watch events (``{"type": ..., "object": ...}``) until the server ends the watch.

        `read_timeout` bounds the silence on the socket, so a connection that died without a FIN
        raises ``httpx.ReadTimeout`` instead of hanging; with bookmarks the server speaks at least
        about once a minute. ``ERROR`` events (a 410 among them) are yielded, not raised: the caller
        decides. Close the iterator (``contextlib.aclosing``) to drop the connection early.
        """
        params: dict[str, str | int | bool | None] = {
            "watch": True,
            "resourceVersion": resource_version,
            "labelSelector": label_selector,
            "fieldSelector": field_selector,
            "timeoutSeconds": timeout_seconds,
            "allowWatchBookmarks": True if allow_bookmarks else None,
        }
        timeout = httpx.Timeout(self._timeout, read=read_timeout)
        response = await self._send("watch", "GET", path, params=params, timeout=timeout, stream=True)
        try:
            async with aclosing(parse_watch_stream(response.aiter_bytes())) as events:
                async for event in events:
                    yield event
        finally:
            await response.aclose()
