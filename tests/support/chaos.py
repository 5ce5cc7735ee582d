"""Drive the chaos CSI driver (hack/chaoscsi, docs/chaos-csi.md) from tests.

The driver listens for control requests (JSON over HTTP) on a unix socket of the local cluster.
Faults apply from the next matching operation on and hold until lifted; lifting a fault
releases every operation it holds. `fault()` lifts on exit, also when the test fails, so a test
can never leave storage broken for the next one.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from localcluster import chaos
from localcluster.config import Layout

STORAGE_CLASS = chaos.STORAGE_CLASS
SNAPSHOT_CLASS = chaos.SNAPSHOT_CLASS
DRIVER = chaos.DRIVER


class ChaosError(RuntimeError):
    pass


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: Path, timeout: float) -> None:
        super().__init__("chaoscsi", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(str(self._path))
        self.sock = sock


@dataclass(frozen=True)
class Fault:
    """One injected fault, as the driver reported it when it was added."""

    id: str
    spec: dict[str, Any]


@dataclass(frozen=True)
class ChaosDriver:
    socket: Path

    @classmethod
    def of(cls, layout: Layout) -> ChaosDriver:
        return cls(chaos.control_socket(layout))

    def _request(self, method: str, path: str, body: Any = None) -> Any:
        connection = _UnixConnection(self.socket, timeout=30)
        try:
            payload = None if body is None else json.dumps(body).encode()
            connection.request(method, path, body=payload, headers={"Content-Type": "application/json"})
            response = connection.getresponse()
            data = json.loads(response.read() or b"null")
        finally:
            connection.close()
        if response.status >= 400:
            raise ChaosError(f"{method} {path}: {response.status} {data}")
        return data

    def healthz(self) -> dict[str, Any]:
        result: dict[str, Any] = self._request("GET", "/healthz")
        return result

    def inject(
        self,
        ops: Sequence[str],
        action: str,
        *,
        namespace: str = "",
        volume: str = "",
        node: str = "",
        code: str = "",
        message: str = "",
        errno: str = "",
        delay_ms: int = 0,
        interruptible: bool = False,
        count: int = 0,
    ) -> Fault:
        """Add a fault; see hack/chaoscsi/faults.go for what each field means."""
        spec: dict[str, Any] = {"ops": list(ops), "action": action}
        optional = {
            "namespace": namespace,
            "volume": volume,
            "node": node,
            "code": code,
            "message": message,
            "errno": errno,
            "delayMs": delay_ms,
            "interruptible": interruptible,
            "count": count,
        }
        spec.update({key: value for key, value in optional.items() if value})
        added = self._request("POST", "/faults", spec)
        return Fault(str(added["id"]), spec)

    def lift(self, fault: Fault) -> None:
        self._request("DELETE", f"/faults/{fault.id}")

    def lift_all(self) -> int:
        lifted: int = self._request("DELETE", "/faults")["lifted"]
        return lifted

    def faults(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self._request("GET", "/faults")
        return active

    def hits(self, fault: Fault) -> int:
        """How many operations the fault has hit so far (0 once it was lifted)."""
        return next((int(f["hits"]) for f in self.faults() if f["id"] == fault.id), 0)

    def state(self) -> dict[str, Any]:
        """Volumes, snapshots and what is staged on the node, as the driver sees them."""
        found: dict[str, Any] = self._request("GET", "/volumes")
        return found

    def volumes(self, namespace: str | None = None) -> list[dict[str, Any]]:
        volumes: list[dict[str, Any]] = self.state()["volumes"]
        return [v for v in volumes if namespace is None or v.get("pvcNamespace") == namespace]

    def staged(self) -> list[dict[str, Any]]:
        staged: list[dict[str, Any]] = self.state()["staged"] or []
        return staged

    def replace_backing(self, volume: str) -> None:
        """Swap the volume's backing store for an empty one (effective when next staged)."""
        self._request("POST", f"/volumes/{volume}/replace")

    def corrupt(self, volume: str, offset: int, length: int) -> bool:
        """Invert `length` bytes of the volume's backing store from `offset` on.

        False while the volume is staged (a run in flight could overwrite the damage before
        anyone reads it): call again, e.g. with `eventually`.
        """
        try:
            self._request("POST", f"/volumes/{volume}/corrupt", {"offset": offset, "length": length})
        except ChaosError as error:
            if " 409 " in str(error):
                return False
            raise
        return True

    @contextmanager
    def fault(self, ops: Sequence[str], action: str, **options: Any) -> Iterator[Fault]:
        """A fault for the duration of a `with` block."""
        added = self.inject(ops, action, **options)
        try:
            yield added
        finally:
            with contextlib.suppress(ChaosError):  # the test may have lifted it already
                self.lift(added)
