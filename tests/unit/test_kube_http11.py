"""The HTTP/1.1 pool against a scripted server on loopback: framing, keep-alive and what ends it,
timeouts, errors and the pool's limit. TLS, SNI and client certificates: test_kube_transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import httpx
import pytest

from volprobe.runtime.kube.http11 import Http11Pool


@dataclass
class Reply:
    """What the server does with one request: send `raw`, then maybe stall or hang up."""

    raw: bytes = b""
    close: bool = False
    stall: bool = False


def ok(body: bytes = b"{}", *extra: str) -> Reply:
    headers = "".join(f"{h}\r\n" for h in extra)
    return Reply(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n%s\r\n" % (len(body), headers.encode()) + body)


@dataclass
class Server:
    replies: list[Reply]
    connections: int = 0
    requests: list[bytes] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    (
                        int(line.split(b":")[1])
                        for line in head.lower().split(b"\r\n")
                        if line.startswith(b"content-length:")
                    ),
                    0,
                )
                self.requests.append(head + await reader.readexactly(length))
                reply = self.replies.pop(0)
                writer.write(reply.raw)
                await writer.drain()
                if reply.stall:
                    await asyncio.sleep(3600)
                if reply.close:
                    break
        writer.close()


@contextlib.asynccontextmanager
async def serving(*replies: Reply) -> AsyncIterator[Server]:
    server = Server(list(replies))
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0)
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server
        listener.close()


@contextlib.asynccontextmanager
async def client(server: Server, **pool: int) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{server.port}", transport=Http11Pool(None, **pool), timeout=2
    ) as http:
        yield http


async def test_a_connection_is_kept_alive_and_reused() -> None:
    async with serving(ok(b'{"a":1}'), ok(b'{"b":2}')) as server, client(server) as http:
        assert (await http.get("/one")).json() == {"a": 1}
        assert (await http.get("/two?x=1")).json() == {"b": 2}
    assert server.connections == 1
    assert server.requests[1].startswith(b"GET /two?x=1 HTTP/1.1\r\n")


async def test_a_request_body_is_sent_with_its_length() -> None:
    async with serving(ok()) as server, client(server) as http:
        await http.post("/things", json={"name": "x"})
    assert server.requests[0].endswith(b'\r\n\r\n{"name":"x"}')
    assert b"content-length: 12\r\n" in server.requests[0].lower()


async def test_chunked_bodies_are_joined_and_the_connection_reused() -> None:
    chunked = Reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b'4\r\n{"a"\r\n3;ext=1\r\n:1}\r\n0\r\nTrailer: x\r\n\r\n'
    )
    async with serving(chunked, ok()) as server, client(server) as http:
        assert (await http.get("/")).json() == {"a": 1}
        await http.get("/")
    assert server.connections == 1


async def test_a_streamed_chunked_body_arrives_chunk_by_chunk() -> None:
    watch = Reply(
        b'HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{"n":1}\r\n7\r\n{"n":2}\r\n', stall=True
    )
    async with serving(watch) as server, client(server) as http, http.stream("GET", "/watch") as response:
        received = []
        async for chunk in response.aiter_raw():
            received.append(chunk)
            if len(received) == 2:
                break
    assert received == [b'{"n":1}', b'{"n":2}']


async def test_a_body_without_length_ends_with_the_connection_which_is_not_reused() -> None:
    async with (
        serving(Reply(b"HTTP/1.1 200 OK\r\n\r\n{}", close=True), ok()) as server,
        client(server) as http,
    ):
        assert (await http.get("/")).json() == {}
        await http.get("/")
    assert server.connections == 2


async def test_connection_close_is_honoured() -> None:
    async with serving(ok(b"{}", "Connection: close"), ok()) as server, client(server) as http:
        await http.get("/")
        await http.get("/")
    assert server.connections == 2


async def test_a_response_closed_before_its_end_does_not_leave_its_bytes_for_the_next() -> None:
    async with serving(ok(b"x" * 200_000), ok(b'{"next":true}')) as server, client(server) as http:
        async with http.stream("GET", "/big") as response:
            async for _ in response.aiter_raw():
                break
        assert (await http.get("/")).json() == {"next": True}
    assert server.connections == 2


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    async with serving(Reply(ok().raw, close=True), ok()) as server, client(server) as http:
        await http.get("/")
        await asyncio.sleep(0.1)  # the FIN reaches the client while the connection is idle
        await http.get("/")
    assert server.connections == 2


async def test_a_request_the_server_hung_up_on_is_sent_again_only_if_that_is_harmless() -> None:
    hang_up = Reply(close=True)  # read the request, closed without a word
    async with serving(ok(), hang_up, ok(b'{"again":1}'), hang_up) as server, client(server) as http:
        await http.get("/")
        assert (await http.get("/")).json() == {"again": 1}
        with pytest.raises(httpx.RemoteProtocolError, match="without answering"):
            await http.post("/pods", json={})
    assert server.connections == 2
    assert [r.split(b" ")[0] for r in server.requests] == [b"GET", b"GET", b"GET", b"POST"]


async def test_no_body_after_204_or_head_and_interim_responses_are_skipped() -> None:
    replies = (
        Reply(b"HTTP/1.1 204 No Content\r\n\r\n"),
        Reply(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}"),
        Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n"),
    )
    async with serving(*replies) as server, client(server) as http:
        assert (await http.delete("/")).status_code == 204
        assert (await http.get("/")).json() == {}
        assert (await http.head("/")).headers["content-length"] == "100"
    assert server.connections == 1


async def test_a_server_silent_mid_body_is_a_read_timeout() -> None:
    stalling = Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{", stall=True)
    async with serving(stalling) as server, client(server) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.get("/", timeout=httpx.Timeout(2, read=0.2))


async def test_a_server_that_hangs_up_mid_body_is_a_protocol_error() -> None:
    async with (
        serving(Reply(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n{", close=True)) as server,
        client(server) as http,
    ):
        with pytest.raises(httpx.RemoteProtocolError, match="9 bytes before"):
            await http.get("/")


async def test_garbage_instead_of_a_status_line_is_a_protocol_error() -> None:
    async with serving(Reply(b"SSH-2.0-OpenSSH\r\n\r\n", close=True)) as server, client(server) as http:
        with pytest.raises(httpx.RemoteProtocolError, match="status line"):
            await http.get("/")


async def test_nobody_listening_is_a_connect_error() -> None:
    async with serving() as server:
        port = server.port
    async with httpx.AsyncClient(transport=Http11Pool(None), timeout=2) as http:
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/")


async def test_the_pool_limit_waits_and_a_cancelled_request_gives_its_connection_back() -> None:
    async with (
        serving(Reply(stall=True), ok(b'{"second":1}')) as server,
        client(server, max_connections=1) as http,
    ):
        first = asyncio.create_task(http.get("/stalls"))
        await asyncio.sleep(0.1)
        with pytest.raises(httpx.PoolTimeout):
            await http.get("/", timeout=httpx.Timeout(2, pool=0.1))
        first.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first
        assert (await http.get("/")).json() == {"second": 1}
    assert server.connections == 2
