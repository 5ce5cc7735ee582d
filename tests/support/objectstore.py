"""The local cluster's S3 server (versitygw) for tests: reach it, and break it the ways real stores break.

Every fault here is real and undone on exit, also when the test fails: the server process is
frozen with SIGSTOP (and always continued), its Deployment scaled to zero (and back), a stored
object's bytes flipped on disk, a bucket made read-only on disk (its directories, as the
server's non-root user sees them). Tests work in buckets of their own (`bucket()`), so they
never disturb each other's objects.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

from localcluster import objectstore as server
from tests.conftest import Cluster
from tests.support.kubectl import eventually
from volprobe.runtime.s3.client import S3Client, S3Error
from volprobe.runtime.s3.sigv4 import Credentials


@dataclass(frozen=True)
class ObjectStore:
    cluster: Cluster

    @property
    def endpoint(self) -> str:
        return server.ENDPOINT

    @property
    def tls_endpoint(self) -> str:
        return server.TLS_ENDPOINT

    @property
    def credentials(self) -> Credentials:
        return Credentials(*server.credentials(self.cluster.layout))

    @property
    def ca_bundle(self) -> str:
        return server.certificate(self.cluster.layout).read_text()

    @property
    def data(self) -> Path:
        return server.data_dir(self.cluster.layout)

    def client(self, credentials: Credentials | None = None) -> S3Client:
        return S3Client(self.endpoint, server.REGION, credentials or self.credentials)

    def wait_ready(self, timeout: float = 60) -> None:
        """The server pod is Ready and answers a listing; otherwise fail with what the pod shows.

        Not `kubectl rollout status`: that reports how the Deployment's last rollout went (a
        ProgressDeadlineExceeded sticks until the next rollout), not whether the server is up now.
        """
        kubectl = self.cluster.kubectl

        async def answers() -> bool:
            async with self.client() as client:
                try:
                    await client.list_objects(server.BUCKET, "", max_keys=1)
                except (S3Error, httpx.HTTPError):
                    return False
                return True

        def available() -> bool:
            status = kubectl.json("get", "deployment/versitygw", "-n", server.NAMESPACE)["status"]
            return bool(status.get("availableReplicas")) and asyncio.run(answers())

        try:
            eventually("the S3 server to be Ready and answer", available, timeout)
        except AssertionError as error:
            pods = kubectl.run("describe", "pods", "-n", server.NAMESPACE, check=False)
            raise AssertionError(f"{error}\n{pods}") from None

    # -- buckets ------------------------------------------------------------------------------------

    def create_bucket(self, name: str) -> None:
        async def create() -> None:
            async with self.client() as client:
                await client.create_bucket(name)

        asyncio.run(create())

    def remove_bucket(self, name: str) -> None:
        """Delete every object and upload of the bucket, then the bucket (ignore what is gone)."""

        async def remove() -> None:
            async with self.client() as client:
                try:
                    for upload in await client.list_multipart_uploads(name, ""):
                        await client.abort_multipart_upload(name, upload.key, upload.upload_id)
                    while True:
                        page = await client.list_objects(name, "")
                        for key in page.keys:
                            await client.delete_object(name, key)
                        if not page.truncated:
                            break
                    await client.delete_bucket(name)
                except S3Error as error:
                    if error.code != "NoSuchBucket":
                        raise

        asyncio.run(remove())

    @contextlib.contextmanager
    def bucket(self, prefix: str = "it") -> Iterator[str]:
        name = f"{prefix}-{uuid.uuid4().hex[:8]}"
        self.create_bucket(name)
        try:
            yield name
        finally:
            restore_writable(self.data / name)
            self.remove_bucket(name)

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        async def listed() -> list[str]:
            async with self.client() as client:
                found: list[str] = []
                token = ""
                while True:
                    page = await client.list_objects(bucket, prefix, token=token)
                    found.extend(page.keys)
                    if not page.truncated:
                        return found
                    token = page.next_token

        return asyncio.run(listed())

    def uploads(self, bucket: str, prefix: str = "") -> list[str]:
        async def listed() -> list[str]:
            async with self.client() as client:
                return [u.key for u in await client.list_multipart_uploads(bucket, prefix)]

        return asyncio.run(listed())

    # -- faults ---------------------------------------------------------------------------------------

    def server_pid(self, port: int = server.HTTP_PORT) -> int:
        """The versitygw process serving `port` (the plain-HTTP container by default)."""
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                argv = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"versitygw") and f":{port}".encode() in argv:
                found.append(int(entry.name))
        assert len(found) == 1, f"expected one versitygw serving :{port}, found {found}"
        return found[0]

    @contextlib.contextmanager
    def frozen(self) -> Iterator[int]:
        """SIGSTOP the server (connections are still accepted by the kernel, never answered)."""
        pid = self.server_pid()
        os.kill(pid, signal.SIGSTOP)
        try:
            yield pid
        finally:
            os.kill(pid, signal.SIGCONT)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """No server at all: the Service has no endpoints, so connections are refused.

        Waits for the refusal itself, not only for the pod to be gone: until kube-proxy has
        synced the empty EndpointSlice, the Service still forwards to the dead pod's address,
        where a connection attempt is not refused but times out.
        """
        kubectl = self.cluster.kubectl
        kubectl.run("scale", "deployment/versitygw", "-n", server.NAMESPACE, "--replicas=0")
        try:
            eventually("connections to the S3 Service to be refused", _refused, 60)
            yield
        finally:
            kubectl.run("scale", "deployment/versitygw", "-n", server.NAMESPACE, "--replicas=1")
            self.wait_ready()

    @contextlib.contextmanager
    def read_only(self, bucket: str) -> Iterator[None]:
        """Every directory of the bucket read-only on disk: writes fail, reads still work."""
        root = self.data / bucket
        for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
            directory.chmod(stat.S_IMODE(directory.stat().st_mode) & ~0o222)
        try:
            yield
        finally:
            restore_writable(root)

    def flip_byte(self, bucket: str, key: str, offset: int = 0) -> None:
        """Change one byte of a stored object on disk, behind the server's back."""
        path = self.data / bucket / key
        with path.open("r+b") as handle:
            handle.seek(offset)
            byte = handle.read(1)
            handle.seek(offset)
            handle.write(bytes([byte[0] ^ 0xFF]))


def _refused() -> bool:
    try:
        socket.create_connection((server.SERVICE_IP, server.HTTP_PORT), timeout=1).close()
    except ConnectionRefusedError:
        return True
    except OSError:
        return False
    return False


def restore_writable(root: Path) -> None:
    if not root.exists():
        return
    for directory in [root, *(p for p in root.rglob("*") if p.is_dir())]:
        directory.chmod(stat.S_IMODE(directory.stat().st_mode) | 0o200)
