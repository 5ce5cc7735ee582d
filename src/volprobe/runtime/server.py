"""The controller's HTTP endpoints: /metrics, /healthz (liveness) and /readyz (readiness).

They answer different questions on purpose. Liveness: is the event loop still turning (a stuck
loop is the one failure a restart fixes)? Readiness: are the caches synced and is this replica
the leader (only the leader has probe results, so only it should receive scrapes through the
Service)? The server runs in its own thread so that a wedged event loop is still reported as
such instead of merely timing out.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from volprobe.runtime.controller import Health


def make_registry(*collectors: object) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    for collector in collectors:
        registry.register(collector)  # type: ignore[arg-type]
    return registry


class _Handler(BaseHTTPRequestHandler):
    registry: CollectorRegistry
    health: Health

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            self._send(200, generate_latest(self.registry), CONTENT_TYPE_LATEST)
        elif path == "/healthz":
            alive = self.health.alive()
            self._send(200 if alive else 503, b"ok\n" if alive else b"event loop stalled\n")
        elif path == "/readyz":
            ready = self.health.ready()
            reason = (
                b"ok\n"
                if ready
                else (b"caches not synced\n" if not self.health.synced else b"not the leader\n")
            )
            self._send(200 if ready else 503, reason)
        else:
            self._send(404, b"not found\n")

    def _send(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Scrapes every few seconds would drown the log."""


def serve(address: str, registry: CollectorRegistry, health: Health) -> ThreadingHTTPServer:
    """Start serving in a daemon thread; `address` is `host:port` (host may be empty)."""
    host, _, port = address.rpartition(":")
    handler = type("Handler", (_Handler,), {"registry": registry, "health": health})
    server = ThreadingHTTPServer((host or "0.0.0.0", int(port)), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="http", daemon=True).start()
    return server
