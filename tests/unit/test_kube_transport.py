"""The transport stack against real TLS on loopback: tls-server-name, client certificates that rotate,
HTTP CONNECT and SOCKS5 proxies (small proxies written here), and the budget shared by any client."""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.kube import (
    ApiError,
    ClientCertificate,
    ConnectionConfig,
    Credential,
    KubeClient,
    StaticCredentials,
    TlsConfig,
    build_transport,
)

SERVER_NAME = "api.internal"


@dataclass(frozen=True)
class Pem:
    server_cert: Path
    server_key: Path
    clients: dict[str, ClientCertificate]


def openssl(cwd: Path, *args: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def self_signed(cwd: Path, name: str, *extra: str) -> tuple[Path, Path]:
    openssl(
        cwd, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN={name}", "-days", "1", *extra,
    )  # fmt: skip
    return cwd / f"{name}.crt", cwd / f"{name}.key"


@pytest.fixture(scope="module")
def pem(tmp_path_factory: pytest.TempPathFactory) -> Pem:
    """A server certificate valid only for api.internal (not for 127.0.0.1), two client certificates."""
    root = tmp_path_factory.mktemp("tls")
    server_cert, server_key = self_signed(root, "server", "-addext", f"subjectAltName=DNS:{SERVER_NAME}")
    clients = {}
    for name in ("first", "second"):
        cert, key = self_signed(root, name)
        clients[name] = ClientCertificate(cert.read_bytes(), key.read_bytes())
    return Pem(server_cert, server_key, clients)


@dataclass
class ApiServer:
    """An HTTPS server that answers JSON saying who asked: SNI, client CN, Authorization."""

    pem: Pem
    accept_clients: tuple[str, ...] = ()
    seen: list[dict[str, Any]] = field(default_factory=list)
    names: list[str | None] = field(default_factory=list)
    port: int = 0

    def _sni(self, _: ssl.SSLObject, name: str | None, __: ssl.SSLContext) -> None:
        self.names.append(name)

    def context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.pem.server_cert, self.pem.server_key)
        context.sni_callback = self._sni
        if self.accept_clients:
            context.verify_mode = ssl.CERT_OPTIONAL
            for client in self.pem.clients.values():
                context.load_verify_locations(cadata=client.certificate.decode())
        return context

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            ssl_object = writer.get_extra_info("ssl_object")
            peer = ssl_object.getpeercert() if ssl_object else None
            cn = dict(entry[0] for entry in peer["subject"])["commonName"] if peer else None
            headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
            seen = {
                "sni": self.names[-1] if self.names else None,
                "client": cn,
                "authorization": headers.get("Authorization"),
            }
            self.seen.append(seen)
            ok = not self.accept_clients or cn in self.accept_clients
            body = json.dumps(seen if ok else {"kind": "Status", "code": 401}).encode()
            status = "200 OK" if ok else "401 Unauthorized"
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
                "Connection: close\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        writer.close()


@contextlib.asynccontextmanager
async def serving(server: ApiServer) -> AsyncIterator[ApiServer]:
    listener = await asyncio.start_server(server.handle, "127.0.0.1", 0, ssl=server.context())
    server.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield server


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


@dataclass
class Proxy:
    """An HTTP CONNECT or SOCKS5 (no authentication) proxy that records where it was asked to go."""

    kind: str
    targets: list[str] = field(default_factory=list)
    port: int = 0

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.kind == "http":
            request = (await reader.readuntil(b"\r\n\r\n")).decode()
            target = request.split()[1]
            host, port = target.rsplit(":", 1)
            reply = b"HTTP/1.1 200 Connection established\r\n\r\n"
        else:
            _, methods = await reader.readexactly(2)
            await reader.readexactly(methods)
            writer.write(b"\x05\x00")
            _, _, _, kind = await reader.readexactly(4)
            if kind == 1:
                host = ".".join(str(b) for b in await reader.readexactly(4))
            else:
                host = (await reader.readexactly((await reader.readexactly(1))[0])).decode()
            port = str(int.from_bytes(await reader.readexactly(2), "big"))
            reply = b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        self.targets.append(f"{host}:{port}")
        upstream_reader, upstream_writer = await asyncio.open_connection(host, int(port))
        writer.write(reply)
        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))


@contextlib.asynccontextmanager
async def proxying(kind: str) -> AsyncIterator[Proxy]:
    proxy = Proxy(kind)
    listener = await asyncio.start_server(proxy.handle, "127.0.0.1", 0)
    proxy.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield proxy


def config_for(server: ApiServer, **fields: Any) -> ConnectionConfig:
    tls = fields.pop("tls", TlsConfig(ca_file=server.pem.server_cert, server_name=SERVER_NAME))
    return ConnectionConfig(server=f"https://127.0.0.1:{server.port}", tls=tls, **fields)


async def test_tls_server_name_is_checked_and_sent_as_sni(pem: Pem) -> None:
    async with serving(ApiServer(pem)) as server:
        async with KubeClient(config_for(server)) as client:
            answer = await client.get("/version")
        assert answer["sni"] == SERVER_NAME
        without = config_for(server, tls=TlsConfig(ca_file=pem.server_cert))
        async with KubeClient(without) as client:
            with pytest.raises(httpx.ConnectError, match=r"IP address mismatch|doesn't match"):
                await client.get("/version")


@pytest.mark.parametrize("kind", ["http", "socks5"])
async def test_proxy_url_with_tls_server_name(pem: Pem, kind: str) -> None:
    async with serving(ApiServer(pem)) as server, proxying(kind) as proxy:
        config = config_for(server, proxy=f"{kind}://127.0.0.1:{proxy.port}")
        async with KubeClient(config) as client:
            answer = await client.get("/version")
        assert proxy.targets == [f"127.0.0.1:{server.port}"]
        assert answer["sni"] == SERVER_NAME, "the server name survives the tunnel"


class Rotating:
    """Credentials that hand out the first client certificate until the server rejects it."""

    def __init__(self, pem: Pem) -> None:
        self.pem = pem
        self.current_name = "first"

    async def current(self) -> Credential:
        return Credential(token="t", certificate=self.pem.clients[self.current_name])

    async def rejected(self, credential: Credential) -> bool:
        self.current_name = "second"
        return True


async def test_client_certificates_rotate_onto_new_connections(pem: Pem) -> None:
    async with serving(ApiServer(pem, accept_clients=("second",))) as server:
        async with KubeClient(config_for(server, credentials=Rotating(pem))) as client:
            answer = await client.get("/api/v1/namespaces")
            again = await client.get("/api/v1/namespaces")
        assert [seen["client"] for seen in server.seen] == ["first", "second", "second"]
        assert answer["authorization"] == again["authorization"] == "Bearer t"


async def test_a_static_client_certificate(pem: Pem) -> None:
    async with serving(ApiServer(pem, accept_clients=("first",))) as server:
        credentials = StaticCredentials(Credential(certificate=pem.clients["first"]))
        async with KubeClient(config_for(server, credentials=credentials)) as client:
            assert (await client.get("/x"))["client"] == "first"
        async with KubeClient(config_for(server)) as anonymous:
            with pytest.raises(ApiError) as caught:
                await anonymous.get("/x")
        assert caught.value.status == 401


async def test_any_httpx_client_on_the_stack_shares_the_budget() -> None:
    answers = [httpx.Response(429, headers={"Retry-After": "0"}), httpx.Response(200, json={})]

    def handler(request: httpx.Request) -> httpx.Response:
        return answers.pop(0) if answers else httpx.Response(201, json={})

    budget = ApiBudget(BudgetConfig(request_rate=100))
    config = ConnectionConfig(server="https://k8s.test", credentials=StaticCredentials(Credential("tok")))
    transport = build_transport(config, budget, connection=httpx.MockTransport(handler))
    async with httpx.AsyncClient(base_url=config.server, transport=transport) as plain:
        response = await plain.get("/healthz")
        assert response.status_code == 200
        assert response.request.headers["Authorization"] == "Bearer tok"
        await plain.post("/api/v1/namespaces/a/pods", json={})
    async with KubeClient(config, transport=httpx.MockTransport(handler), budget=budget) as client:
        await client.create("/api/v1/namespaces/a/pods", {})
    assert budget.stats.throttle_events == 1
    assert budget.stats.granted == {"request": 4, "pod_create": 2}
