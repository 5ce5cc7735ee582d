"""The httpx transports every request to the API server goes through, outermost first:

1. `AuthTransport` adds the current credential (bearer token header; client certificate as a
   request extension for the connection below) and, when the server answers 401, asks the
   credentials for a new one and sends the request once more;
2. `BudgetTransport` takes the API budget's tokens for each attempt — a ``request`` token, and a
   ``pod_create`` token too for a POST to a pods collection — and retries what the server throttled
   (429, 503 with a ``Retry-After``) a bounded number of times, after reporting it to the budget,
   which pauses and slows down everybody;
3. `ConnectionTransport` is the network: TLS as the kubeconfig says (CA, ``tls-server-name``,
   ``insecure-skip-tls-verify``), the proxy, and one connection pool per client certificate
   (`http11.Http11Pool`, or httpx's own transport through a proxy).

`build_transport` stacks them. Anything that sends through that stack shares the budget:
`KubeClient` calls it directly, and any httpx client built on it does too. Tests replace
`ConnectionTransport` with ``httpx.MockTransport`` and keep the other two.

Every attempt is reported to an optional hook as ``(verb, code, seconds)``: the verb comes from
the request extension `VERB` (the client's vocabulary: ``list``, ``watch``…), else the method; the
code is 0 when no response came; for a streamed response the time is until its headers.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import httpx

from volprobe.runtime.budget import ApiBudget
from volprobe.runtime.kube.config import ConnectionConfig
from volprobe.runtime.kube.credentials import ClientCertificate, Credential, Credentials
from volprobe.runtime.kube.errors import error_from_response
from volprobe.runtime.kube.http11 import Http11Pool

logger = logging.getLogger(__name__)

VERB = "volprobe.verb"
CLIENT_CERTIFICATE = "volprobe.client_certificate"
ResponseHook = Callable[[str, int, float], None]


class ConnectionTransport(httpx.AsyncBaseTransport):
    """Connections to one API server, with the TLS settings and proxy of its `ConnectionConfig`.

    An exec plugin may hand out a new client certificate; a TLS connection keeps the certificate it
    was opened with, so each certificate gets its own pool. Like client-go, new requests never use
    connections opened with an older certificate; unlike client-go, the pool of the previous one is
    not closed at once (a request may still be using it) but when the next certificate arrives.
    """

    KEPT_POOLS = 2
    MAX_IDLE = 20

    def __init__(self, config: ConnectionConfig, *, max_connections: int = 100) -> None:
        self._config = config
        self._proxy = config.proxy_url()
        self._max_connections = max_connections
        self._pools: dict[ClientCertificate | None, httpx.AsyncBaseTransport] = {}

    def _pool(self, certificate: ClientCertificate | None) -> httpx.AsyncBaseTransport:
        pool = self._pools.get(certificate)
        if pool is None:
            context = self._config.tls.ssl_context(certificate)
            if self._proxy is None:
                pool = Http11Pool(context, max_connections=self._max_connections, max_idle=self.MAX_IDLE)
            else:
                pool = httpx.AsyncHTTPTransport(
                    verify=context,
                    proxy=self._proxy,
                    limits=httpx.Limits(
                        max_connections=self._max_connections, max_keepalive_connections=self.MAX_IDLE
                    ),
                    trust_env=False,  # the proxy was chosen above, by kubectl's rules
                )
            self._pools[certificate] = pool
        return pool

    async def _retire_old_pools(self) -> None:
        while len(self._pools) > self.KEPT_POOLS:
            oldest = next(iter(self._pools))
            await self._pools.pop(oldest).aclose()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        certificate = request.extensions.get(CLIENT_CERTIFICATE)
        pool = self._pool(certificate)
        await self._retire_old_pools()
        return await pool.handle_async_request(request)

    async def aclose(self) -> None:
        pools, self._pools = list(self._pools.values()), {}
        for pool in pools:
            await pool.aclose()


class AuthTransport(httpx.AsyncBaseTransport):
    """Presents the current credential; after a 401 retries once if the credentials found a new one."""

    def __init__(self, inner: httpx.AsyncBaseTransport, credentials: Credentials) -> None:
        self._inner = inner
        self._credentials = credentials

    async def _send(self, request: httpx.Request, credential: Credential) -> httpx.Response:
        if credential.token:
            request.headers["Authorization"] = f"Bearer {credential.token}"
        else:
            request.headers.pop("Authorization", None)
        request.extensions[CLIENT_CERTIFICATE] = credential.certificate
        return await self._inner.handle_async_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        credential = await self._credentials.current()
        response = await self._send(request, credential)
        if response.status_code != 401:
            return response
        try:
            renewed = await self._credentials.rejected(credential)
        except BaseException:
            await response.aclose()
            raise
        if not renewed:
            return response
        await response.aclose()
        return await self._send(request, await self._credentials.current())

    async def aclose(self) -> None:
        await self._inner.aclose()


class BudgetTransport(httpx.AsyncBaseTransport):
    """Every attempt waits for the budget; throttled attempts are reported to it and retried."""

    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        budget: ApiBudget,
        *,
        max_attempts: int = 5,
        on_response: ResponseHook | None = None,
    ) -> None:
        self._inner = inner
        self.budget = budget
        self._max_attempts = max(1, max_attempts)
        self._on_response = on_response

    def _report(self, request: httpx.Request, code: int, started: float) -> None:
        if self._on_response is None:
            return
        verb = str(request.extensions.get(VERB) or request.method.lower())
        try:
            self._on_response(verb, code, time.monotonic() - started)
        except Exception:
            logger.exception("on_response hook failed")

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "POST" and request.url.path.rstrip("/").endswith("/pods"):
            await self.budget.acquire("pod_create")
        for attempt in range(1, self._max_attempts + 1):
            await self.budget.acquire("request")
            started = time.monotonic()
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError:
                self._report(request, 0, started)
                raise
            self._report(request, response.status_code, started)
            if response.status_code not in (429, 503):
                return response
            await response.aread()
            error = error_from_response(response)
            if not error.throttled:
                return response
            self.budget.throttled(error.retry_after)
            if attempt == self._max_attempts:
                return response
            logger.info(
                "%s %s throttled (%s, retry after %s s), attempt %d of %d",
                request.method,
                request.url.path,
                error.status,
                error.retry_after,
                attempt,
                self._max_attempts,
            )
        raise AssertionError("unreachable: the last attempt returns")

    async def aclose(self) -> None:
        await self._inner.aclose()


def build_transport(
    config: ConnectionConfig,
    budget: ApiBudget,
    *,
    connection: httpx.AsyncBaseTransport | None = None,
    max_attempts: int = 5,
    on_response: ResponseHook | None = None,
    max_connections: int = 100,
) -> httpx.AsyncBaseTransport:
    """Credentials over budget over the connection (`connection` replaces the network, for tests)."""
    network = connection or ConnectionTransport(config, max_connections=max_connections)
    budgeted = BudgetTransport(network, budget, max_attempts=max_attempts, on_response=on_response)
    return AuthTransport(budgeted, config.credentials)
