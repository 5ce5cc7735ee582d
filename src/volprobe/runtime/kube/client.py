"""A small asyncio Kubernetes API client on httpx: raw JSON dicts in and out, no generated models.

Why not an existing client: generated models are slow and heavy for thousands of nodes and pods,
and what volprobe needs is narrow (CRUD, paged lists, watches, server-side apply). Keeping it here
also puts every request behind one `ApiBudget`, which is the point of the project.

Design notes:

* The transport is the seam for tests (``httpx.MockTransport``): nothing here needs a network.
* Every attempt first takes a ``request`` token from the budget; a pod creation (POST to a ``pods``
  collection) also takes one ``pod_create`` token per call.
* 429 (max-in-flight or API Priority and Fairness) and 503 with ``Retry-After`` mean the server did
  not process the request, so every verb is retried, a bounded number of times; the throttle is
  reported to the budget, which halves the rates and pauses *all* requests until ``Retry-After``.
* Errors are `ApiError` built from the server's ``Status``; 404, 409 and 410 have subclasses so
  callers can catch exactly the case they handle.
* Transport failures surface as ``httpx.TransportError`` (timeouts included): callers that loop,
  like the reflector, decide how to back off.
* ``timeout=`` arguments are the HTTP timeout of each attempt, not a deadline for the call: a call
  may also wait for the budget and retry after throttling. Wrap it in ``asyncio.timeout`` for that.
* ``on_response(verb, code, seconds)`` is called once per attempt (code 0 when no response came);
  for watches the time is until the response headers, not the life of the stream.
"""

from __future__ import annotations

import email.utils
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterable, Callable, Mapping
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

import httpx

from volprobe import __version__
from volprobe.runtime.budget import ApiBudget
from volprobe.runtime.kube.config import ConnectionConfig

logger = logging.getLogger(__name__)

PatchType = Literal["merge", "json", "strategic", "apply"]
PATCH_CONTENT_TYPES: dict[str, str] = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "apply": "application/apply-patch+yaml",
}
ResponseHook = Callable[[str, int, float], None]
DEFAULT_USER_AGENT = f"volprobe/{__version__}"
Params = Mapping[str, str | int | bool | None]


class ApiError(Exception):
    """The API server answered with an error ``Status``."""

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Any = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = body
        self.retry_after = retry_after

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        """409: a stale resourceVersion, a failed precondition, or the name is taken."""
        return self.status == 409

    @property
    def already_exists(self) -> bool:
        return self.status == 409 and self.reason == "AlreadyExists"

    @property
    def gone(self) -> bool:
        """410: the resourceVersion (or continue token) is older than the server keeps."""
        return self.status == 410

    @property
    def throttled(self) -> bool:
        """The server refused to process the request now and wants it retried later."""
        return self.status == 429 or (self.status == 503 and self.retry_after is not None)


class NotFoundError(ApiError):
    """404."""


class ConflictError(ApiError):
    """409."""


class GoneError(ApiError):
    """410."""


_ERROR_CLASSES: dict[int, type[ApiError]] = {404: NotFoundError, 409: ConflictError, 410: GoneError}


def error_from_status(status: Mapping[str, Any], *, code: int | None = None) -> ApiError:
    """Build the right `ApiError` subclass from a ``Status`` object (a response or a watch ERROR)."""
    number = int(status.get("code") or code or 0)
    details = status.get("details")
    retry_after = None
    if isinstance(details, Mapping) and details.get("retryAfterSeconds") is not None:
        retry_after = float(details["retryAfterSeconds"])
    return _ERROR_CLASSES.get(number, ApiError)(
        number,
        str(status.get("reason") or ""),
        str(status.get("message") or ""),
        body=dict(status),
        retry_after=retry_after,
    )


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds: either delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _error_from_response(response: httpx.Response) -> ApiError:
    header_retry = parse_retry_after(response.headers.get("Retry-After"))
    try:
        decoded = response.json()
    except ValueError:
        decoded = None
    if isinstance(decoded, dict) and decoded.get("kind") == "Status":
        error = error_from_status(decoded, code=response.status_code)
        error.status = response.status_code
        if header_retry is not None:
            error.retry_after = header_retry
        return error
    return _ERROR_CLASSES.get(response.status_code, ApiError)(
        response.status_code,
        response.reason_phrase,
        response.text[:1000],
        body=decoded if decoded is not None else response.text,
        retry_after=header_retry,
    )


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
        self._on_response = on_response
        self._timeout = timeout
        self._max_attempts = max(1, max_attempts)
        self._http = httpx.AsyncClient(
            base_url=config.server,
            transport=transport,
            verify=config.ssl_context or True,
            timeout=timeout,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=20),
            headers={"User-Agent": user_agent, "Accept": "application/json"},
        )

    async def aclose(self) -> None:
        await self._http.aclose()

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

    def _report(self, verb: str, code: int, started: float) -> None:
        if self._on_response is None:
            return
        try:
            self._on_response(verb, code, time.monotonic() - started)
        except Exception:
            logger.exception("on_response hook failed")

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
        headers = self.config.auth_headers()
        content = None
        if body is not None:
            content = json.dumps(body, separators=(",", ":")).encode()
            headers["Content-Type"] = content_type or "application/json"
        query = {key: value for key, value in (params or {}).items() if value is not None}
        if method == "POST" and path.rstrip("/").endswith("/pods"):
            await self.budget.acquire("pod_create")
        for attempt in range(1, self._max_attempts + 1):
            await self.budget.acquire("request")
            request = self._http.build_request(
                method,
                path,
                params=query,
                content=content,
                headers=headers,
                timeout=self._timeout if timeout is None else timeout,
            )
            started = time.monotonic()
            try:
                response = await self._http.send(request, stream=True)
                if not stream or response.is_error:
                    await response.aread()
            except httpx.TransportError:
                self._report(verb, 0, started)
                raise
            self._report(verb, response.status_code, started)
            if not response.is_error:
                return response
            error = _error_from_response(response)
            if not error.throttled:
                raise error
            self.budget.throttled(error.retry_after)
            if attempt == self._max_attempts:
                raise error
            logger.info(
                "%s %s throttled (%s, retry after %s s), attempt %d of %d",
                method,
                path,
                error.status,
                error.retry_after,
                attempt,
                self._max_attempts,
            )
        raise AssertionError("unreachable: the last attempt returns or raises")

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
