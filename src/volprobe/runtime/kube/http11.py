"""HTTP/1.1 to the API server over asyncio's own streams: the connection pool under the transports.

httpx's own transport (httpcore over anyio and h11) and `httpx.AsyncClient` cost the controller
3.7 ms of CPU per request on the development VM, ten times the exchange itself, and at 1,000
nodes most of the controller's CPU went to HTTP (`bench/http_client.py`, docs/performance.md).
The API server speaks plain HTTP/1.1 with a Content-Length or a chunked body, which is all this
implements, below httpx's transport seam: `httpx.Request`/`Response`, the transports above
(`transport.py`) and every test that replaces the network keep working unchanged.

Used for direct connections only: a proxy (HTTP CONNECT, SOCKS5) keeps httpx's transport.
Errors are httpx's exceptions, raised as its transport would: `ConnectError`, `ReadTimeout`,
`RemoteProtocolError`… A connection goes back to the pool only after its response was read to
the end; anything else (a watch closed early, a cancelled request) closes it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable
from typing import TypeVar

import httpx

T = TypeVar("T")

MAX_HEAD_BYTES = 256 * 1024
READ_CHUNK = 64 * 1024
NO_BODY_STATUSES = frozenset({204, 304})
IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})


class _Unanswered(httpx.RemoteProtocolError):
    """The connection ended before a single byte of the response: the server may never have read
    the request."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @property
    def usable(self) -> bool:
        """Still open: the server closes idle connections, and asyncio sees its FIN as EOF."""
        return not (self.reader.at_eof() or self.writer.is_closing())

    def close(self) -> None:
        self.writer.close()


def _timeouts(request: httpx.Request) -> dict[str, float | None]:
    timeout = request.extensions.get("timeout") or {}
    return {name: timeout.get(name) for name in ("connect", "read", "write", "pool")}


async def _within(
    seconds: float | None,
    work: Awaitable[T],
    on_timeout: type[httpx.TimeoutException],
    on_error: type[httpx.TransportError],
    request: httpx.Request,
) -> T:
    """`work`, with its timeout and its socket errors turned into httpx's exceptions."""
    try:
        async with asyncio.timeout(seconds):
            return await work
    except TimeoutError as error:
        raise on_timeout(f"timed out after {seconds}s", request=request) from error
    except asyncio.IncompleteReadError as error:
        raise httpx.RemoteProtocolError(
            "the server closed the connection mid-message", request=request
        ) from error
    except asyncio.LimitOverrunError as error:
        raise httpx.RemoteProtocolError("a line of the response is too long", request=request) from error
    except OSError as error:  # ssl.SSLError and ConnectionError are OSErrors
        raise on_error(str(error) or type(error).__name__, request=request) from error


class Http11Pool(httpx.AsyncBaseTransport):
    """Kept-alive connections to one server with one TLS context (None for plain http)."""

    def __init__(
        self, ssl_context: ssl.SSLContext | None, *, max_connections: int = 100, max_idle: int = 20
    ) -> None:
        self._ssl = ssl_context
        self._slots = asyncio.Semaphore(max_connections)
        self._idle: list[_Connection] = []
        self._max_idle = max_idle
        self._closed = False

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        timeouts = _timeouts(request)
        try:
            async with asyncio.timeout(timeouts["pool"]):
                await self._slots.acquire()
        except TimeoutError as error:
            raise httpx.PoolTimeout("no free connection in time", request=request) from error
        connection: _Connection | None = None
        try:
            message = _head(request) + await request.aread()
            connection = self._reuse()
            if connection is not None:
                try:
                    status, reason, headers = await self._exchange(connection, request, message, timeouts)
                except (_Unanswered, httpx.NetworkError):
                    # The server closed this idle connection as we sent on it. A request it never
                    # answered is sent again on a new connection if sending twice is harmless.
                    connection.close()
                    if request.method not in IDEMPOTENT:
                        raise
                    connection = None
            if connection is None:
                connection = await self._connect(request, timeouts["connect"])
                status, reason, headers = await self._exchange(connection, request, message, timeouts)
        except BaseException:
            if connection is not None:
                connection.close()
            self._slots.release()
            raise
        body = _Body(self, connection, request, status, headers, read_timeout=timeouts["read"])
        return httpx.Response(
            status,
            headers=headers,
            stream=body,
            extensions={"http_version": b"HTTP/1.1", "reason_phrase": reason},
        )

    @staticmethod
    async def _exchange(
        connection: _Connection, request: httpx.Request, message: bytes, timeouts: dict[str, float | None]
    ) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
        connection.writer.write(message)
        await _within(
            timeouts["write"], connection.writer.drain(), httpx.WriteTimeout, httpx.WriteError, request
        )
        return await _within(
            timeouts["read"],
            _read_head(connection.reader, request),
            httpx.ReadTimeout,
            httpx.ReadError,
            request,
        )

    def _reuse(self) -> _Connection | None:
        while self._idle:
            connection = self._idle.pop()
            if connection.usable:
                return connection
            connection.close()
        return None

    async def _connect(self, request: httpx.Request, seconds: float | None) -> _Connection:
        url = request.url
        port = url.port or (443 if url.scheme == "https" else 80)
        tls = self._ssl if url.scheme == "https" else None
        opening = asyncio.open_connection(
            url.host, port, ssl=tls, server_hostname=url.host if tls else None, limit=MAX_HEAD_BYTES
        )
        reader, writer = await _within(seconds, opening, httpx.ConnectTimeout, httpx.ConnectError, request)
        return _Connection(reader, writer)

    def _release(self, connection: _Connection, reusable: bool) -> None:
        if reusable and not self._closed and connection.usable and len(self._idle) < self._max_idle:
            self._idle.append(connection)
        else:
            connection.close()
        self._slots.release()

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


def _head(request: httpx.Request) -> bytes:
    lines = [request.method.encode(), b" ", request.url.raw_path, b" HTTP/1.1\r\n"]
    for name, value in request.headers.raw:
        lines += [name, b": ", value, b"\r\n"]
    lines.append(b"\r\n")
    return b"".join(lines)


async def _read_head(
    reader: asyncio.StreamReader, request: httpx.Request
) -> tuple[int, bytes, list[tuple[bytes, bytes]]]:
    """Status, reason and headers of the next response that is not an interim (1xx) one."""
    while True:
        try:
            raw = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError as error:
            if error.partial:
                raise
            raise _Unanswered(
                "the server closed the connection without answering", request=request
            ) from error
        status_line, *lines = raw[:-4].split(b"\r\n")
        parts = status_line.split(b" ", 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise httpx.RemoteProtocolError(
                f"not an HTTP/1.1 status line: {status_line[:100]!r}", request=request
            )
        status = int(parts[1])
        if status >= 200 or status == 101:
            break
    headers = []
    for line in lines:
        name, colon, value = line.partition(b":")
        if not colon or not name or name != name.strip():
            raise httpx.RemoteProtocolError(f"malformed header line: {line[:100]!r}", request=request)
        headers.append((name, value.strip()))
    return status, parts[2] if len(parts) > 2 else b"", headers


class _Body(httpx.AsyncByteStream):
    """The body of one response, framed by Content-Length, chunks, or the end of the connection."""

    def __init__(
        self,
        pool: Http11Pool,
        connection: _Connection,
        request: httpx.Request,
        status: int,
        headers: list[tuple[bytes, bytes]],
        *,
        read_timeout: float | None,
    ) -> None:
        self._pool = pool
        self._connection = connection
        self._request = request
        self._read_timeout = read_timeout
        fields = {name.lower(): value for name, value in headers}
        connection_tokens = fields.get(b"connection", b"").lower()
        self._keep_alive = b"close" not in connection_tokens
        self._chunked = b"chunked" in fields.get(b"transfer-encoding", b"").lower()
        self._length: int | None = None
        if request.method == "HEAD" or status in NO_BODY_STATUSES:
            self._length = 0
        elif not self._chunked and b"content-length" in fields:
            try:
                self._length = int(fields[b"content-length"])
            except ValueError:
                self._length = -1
        elif not self._chunked:
            self._keep_alive = False  # the body ends when the server closes the connection
        self._released = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self._length is not None and self._length < 0:
            self._finish(reusable=False)
            raise httpx.RemoteProtocolError("invalid Content-Length", request=self._request)
        try:
            if self._chunked:
                async for chunk in self._chunks():
                    yield chunk
            elif self._length is not None:
                remaining = self._length
                while remaining:
                    data = await self._read(self._connection.reader.read(min(remaining, READ_CHUNK)))
                    if not data:
                        raise httpx.RemoteProtocolError(
                            f"the server closed the connection {remaining} bytes before the body's end",
                            request=self._request,
                        )
                    remaining -= len(data)
                    yield data
            else:
                while data := await self._read(self._connection.reader.read(READ_CHUNK)):
                    yield data
        except BaseException:
            self._finish(reusable=False)
            raise
        self._finish(reusable=self._keep_alive)

    async def _chunks(self) -> AsyncIterator[bytes]:
        reader = self._connection.reader
        while True:
            line = await self._read(reader.readuntil(b"\r\n"))
            try:
                size = int(line.split(b";", 1)[0].strip(), 16)
            except ValueError:
                raise httpx.RemoteProtocolError(
                    f"malformed chunk size: {line[:40]!r}", request=self._request
                ) from None
            if size == 0:
                while await self._read(reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers: the API server sends none, and nothing here would read them
                return
            data = await self._read(reader.readexactly(size + 2))
            if data[-2:] != b"\r\n":
                raise httpx.RemoteProtocolError(
                    "a chunk does not end where its size says", request=self._request
                )
            yield data[:-2]

    async def _read(self, work: Awaitable[T]) -> T:
        return await _within(self._read_timeout, work, httpx.ReadTimeout, httpx.ReadError, self._request)

    def _finish(self, *, reusable: bool) -> None:
        if not self._released:
            self._released = True
            self._pool._release(self._connection, reusable)

    async def aclose(self) -> None:
        """Closing before the end leaves unread bytes on the connection: it cannot be reused."""
        self._finish(reusable=False)
