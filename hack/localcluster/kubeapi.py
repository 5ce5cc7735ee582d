"""The smallest API client the cluster scripts need: standard library, admin certificate."""

from __future__ import annotations

import http.client
import json
import ssl
from pathlib import Path
from typing import Any


class KubeAPI:
    def __init__(self, pki: Path, host: str = "127.0.0.1", port: int = 6443) -> None:
        self._context = ssl.create_default_context(cafile=str(pki / "ca.crt"))
        self._context.load_cert_chain(str(pki / "admin.crt"), str(pki / "admin.key"))
        self._host, self._port = host, port

    def request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> tuple[int, Any]:
        connection = http.client.HTTPSConnection(self._host, self._port, context=self._context, timeout=30)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {"Accept": "application/json"}
            if payload is not None:
                headers["Content-Type"] = content_type
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            raw = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(raw) if raw else None
        except ValueError:
            decoded = raw.decode(errors="replace")
        return response.status, decoded

    def get(self, path: str) -> Any:
        status, body = self.request("GET", path)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def apply(self, obj: dict[str, Any], path: str) -> None:
        """Server-side apply `obj` at `path` (the object's URL, name included)."""
        status, body = self.request(
            "PATCH",
            f"{path}?fieldManager=volprobe-localcluster&force=true",
            obj,
            content_type="application/apply-patch+yaml",
        )
        if status not in (200, 201):
            raise RuntimeError(f"apply {path}: {status} {body}")

    def ready_nodes(self) -> tuple[list[str], list[str]]:
        """(ready, not ready) node names."""
        ready: list[str] = []
        not_ready: list[str] = []
        for node in self.get("/api/v1/nodes")["items"]:
            conditions = {c["type"]: c["status"] for c in node.get("status", {}).get("conditions", [])}
            (ready if conditions.get("Ready") == "True" else not_ready).append(node["metadata"]["name"])
        return ready, not_ready
