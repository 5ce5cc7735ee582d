"""What one API request costs the controller in CPU, by HTTP stack.

    python bench/http_client.py --requests 300      (root; the local cluster is started if needed)

The controller's CPU at scale goes mostly to HTTP: a pod create and a pod delete per run, and
every watch event (docs/performance.md). This measures one request's CPU four ways, each a GET
of the same small object (the `default` Namespace) from the local cluster's API server, one
after another on one kept-alive TLS connection, with the same TLS context and client certificate:

- KubeClient: volprobe's client as the controller runs it (httpx's client and models, volprobe's
  transports, its HTTP/1.1 pool `runtime.kube.http11`);
- transports: the same stack below `httpx.AsyncClient` (what `build_transport` makes);
- httpcore: httpx's own transport (httpcore, anyio, h11), which volprobe used before its own
  pool and still uses through a proxy;
- asyncio: the HTTP/1.1 exchange over asyncio's own TLS stream, parsed by hand. Not a client
  (no chunked bodies, no errors, no pool): the floor.

Printed: user and system CPU time per request, from the process's own accounting.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from volprobe.runtime.budget import ApiBudget  # noqa: E402
from volprobe.runtime.kube import KubeClient  # noqa: E402
from volprobe.runtime.kube.config import ConnectionConfig, load_config  # noqa: E402
from volprobe.runtime.kube.transport import build_transport  # noqa: E402

PATH = "/api/v1/namespaces/default"


async def cpu_per_call(call: Callable[[], Awaitable[object]], count: int) -> tuple[float, float]:
    """(user, system) CPU milliseconds per call, after one call to open the connection."""
    await call()
    before = os.times()
    for _ in range(count):
        await call()
    after = os.times()
    return 1000 * (after.user - before.user) / count, 1000 * (after.system - before.system) / count


async def by_hand(config: ConnectionConfig, count: int) -> tuple[float, float]:
    credential = await config.credentials.current()
    url = httpx.URL(config.server)
    host, port = url.host, url.port or 443
    reader, writer = await asyncio.open_connection(
        host, port, ssl=config.tls.ssl_context(credential.certificate), server_hostname=host
    )
    auth = f"Authorization: Bearer {credential.token}\r\n" if credential.token else ""
    request = f"GET {PATH} HTTP/1.1\r\nHost: {host}\r\nAccept: application/json\r\n{auth}\r\n".encode()

    async def get() -> object:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        return json.loads(await reader.readexactly(length))

    try:
        return await cpu_per_call(get, count)
    finally:
        writer.close()


async def through(
    transport: httpx.AsyncBaseTransport, config: ConnectionConfig, headers: dict[str, str], count: int
) -> tuple[float, float]:
    """CPU per GET sent straight to `transport`, which is closed afterwards."""

    async def get() -> object:
        request = httpx.Request("GET", config.server.rstrip("/") + PATH, headers=headers)
        response = await transport.handle_async_request(request)
        await response.aread()
        return json.loads(response.content)

    try:
        return await cpu_per_call(get, count)
    finally:
        await transport.aclose()


async def measure(config: ConnectionConfig, count: int) -> dict[str, tuple[float, float]]:
    results: dict[str, tuple[float, float]] = {}
    async with KubeClient(config) as kube:
        results["KubeClient"] = await cpu_per_call(lambda: kube.get(PATH), count)
    results["transports"] = await through(build_transport(config, ApiBudget()), config, {}, count)
    credential = await config.credentials.current()
    httpcore = httpx.AsyncHTTPTransport(
        verify=config.tls.ssl_context(credential.certificate), trust_env=False
    )
    headers = {"Authorization": f"Bearer {credential.token}"} if credential.token else {}
    results["httpcore"] = await through(httpcore, config, headers, count)
    results["asyncio"] = await by_hand(config, count)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    layout = Layout.default()
    localcluster.up(layout, int(os.environ.get("KWOK_NODES", "3")))
    results = asyncio.run(measure(load_config(layout.kubeconfig), args.requests))
    for name, (user, system) in results.items():
        print(f"{name:<11} {user:5.2f} ms user + {system:4.2f} ms system CPU per request")
    return 0


if __name__ == "__main__":
    sys.exit(main())
