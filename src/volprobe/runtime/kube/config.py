"""Where the API server is and how to prove who we are: kubeconfig files and in-cluster service accounts.

Only what volprobe needs is supported: the current (or a named) context of one kubeconfig file with
certificate or bearer-token authentication, and the in-cluster service account. ``exec`` and
``auth-provider`` plugins are rejected with a clear error instead of being half-supported.

Bound service-account tokens expire and the kubelet rewrites the token file well before that, so
the token is re-read from its file every `FileToken.refresh_interval` seconds rather than cached for
the life of the process (client-go does the same).

`ssl.SSLContext.load_cert_chain` only takes file names; inline ``client-*-data`` is written to a
private temporary directory for the duration of that one call and removed right after, since the
context keeps the loaded key in memory.
"""

from __future__ import annotations

import base64
import logging
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")


class ConfigError(Exception):
    """The connection settings are missing, inconsistent or use an unsupported feature."""


class TokenSource(Protocol):
    """Anything that can produce the current bearer token (or None for certificate-only auth)."""

    def token(self) -> str | None: ...


@dataclass(frozen=True)
class StaticToken:
    value: str

    def token(self) -> str | None:
        return self.value


@dataclass
class FileToken:
    """A token re-read from its file at most every `refresh_interval` seconds.

    If a re-read fails (the kubelet swaps the file atomically, but be defensive) the last good token
    is kept; the server will say 401 if it really expired.
    """

    path: Path
    refresh_interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _value: str | None = field(default=None, init=False, repr=False)
    _read_at: float = field(default=float("-inf"), init=False, repr=False)

    def token(self) -> str | None:
        now = self.clock()
        if self._value is None or now - self._read_at >= self.refresh_interval:
            try:
                self._value = self.path.read_text().strip()
                self._read_at = now
            except OSError as error:
                if self._value is None:
                    raise ConfigError(f"cannot read token file {self.path}: {error}") from error
                logger.warning("keeping the previous token: cannot re-read %s: %s", self.path, error)
        return self._value


@dataclass(frozen=True)
class ConnectionConfig:
    """Everything `KubeClient` needs to reach and authenticate to one API server."""

    server: str
    ssl_context: ssl.SSLContext | None = None
    token: TokenSource | None = None
    namespace: str = "default"

    def auth_headers(self) -> dict[str, str]:
        value = self.token.token() if self.token else None
        return {"Authorization": f"Bearer {value}"} if value else {}


def build_ssl_context(
    *,
    ca_file: Path | None = None,
    ca_data: bytes | None = None,
    cert_file: Path | None = None,
    cert_data: bytes | None = None,
    key_file: Path | None = None,
    key_data: bytes | None = None,
    insecure: bool = False,
) -> ssl.SSLContext:
    """A client TLS context: server verification by the cluster CA, optional client certificate."""
    if insecure:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    elif ca_file is not None or ca_data is not None:
        context = ssl.create_default_context(
            cafile=str(ca_file) if ca_file else None,
            cadata=ca_data.decode() if ca_data is not None else None,
        )
    else:
        context = ssl.create_default_context()
    has_cert = cert_file is not None or cert_data is not None
    has_key = key_file is not None or key_data is not None
    if has_cert != has_key:
        raise ConfigError("a client certificate needs both the certificate and its key")
    if has_cert:
        _load_cert_chain(context, cert_file, cert_data, key_file, key_data)
    return context


def _load_cert_chain(
    context: ssl.SSLContext,
    cert_file: Path | None,
    cert_data: bytes | None,
    key_file: Path | None,
    key_data: bytes | None,
) -> None:
    if cert_data is None and key_data is None:
        context.load_cert_chain(str(cert_file), str(key_file))
        return
    with tempfile.TemporaryDirectory(prefix="volprobe-tls-") as private:
        cert_path = cert_file or _write_private(Path(private) / "client.crt", cert_data or b"")
        key_path = key_file or _write_private(Path(private) / "client.key", key_data or b"")
        context.load_cert_chain(str(cert_path), str(key_path))


def _write_private(path: Path, data: bytes) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return path


def default_kubeconfig_path(environ: Mapping[str, str] = os.environ) -> Path:
    """``$KUBECONFIG`` (its first entry; merging several files is not supported) or ``~/.kube/config``."""
    listed = [entry for entry in environ.get("KUBECONFIG", "").split(os.pathsep) if entry]
    return Path(listed[0]) if listed else Path.home() / ".kube" / "config"


def _named(entries: Any, name: str, what: str) -> dict[str, Any]:
    for entry in entries or []:
        if isinstance(entry, dict) and entry.get("name") == name:
            value = entry.get(what)
            return value if isinstance(value, dict) else {}
    raise ConfigError(f"kubeconfig has no {what} named {name!r}")


def _data(section: Mapping[str, Any], key: str) -> bytes | None:
    value = section.get(f"{key}-data")
    if value is None:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as error:
        raise ConfigError(f"{key}-data is not valid base64") from error


def _file(section: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = section.get(key)
    return None if value is None else base / Path(str(value)).expanduser()


def load_kubeconfig(path: Path | None = None, *, context: str | None = None) -> ConnectionConfig:
    """Settings of `context` (default: ``current-context``) from the kubeconfig at `path`.

    Relative file names inside the kubeconfig are relative to the kubeconfig's directory, as in
    kubectl.
    """
    path = path or default_kubeconfig_path()
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read kubeconfig {path}: {error}") from error
    if not isinstance(document, dict):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    context_name = context or document.get("current-context")
    if not context_name:
        raise ConfigError(f"kubeconfig {path} has no current-context")
    ctx = _named(document.get("contexts"), context_name, "context")
    cluster = _named(document.get("clusters"), str(ctx.get("cluster")), "cluster")
    user = _named(document.get("users"), str(ctx.get("user")), "user") if ctx.get("user") else {}
    if "exec" in user or "auth-provider" in user:
        raise ConfigError("kubeconfig exec and auth-provider plugins are not supported")
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster of context {context_name!r} has no server")
    base = path.resolve().parent
    ssl_context = build_ssl_context(
        ca_file=_file(cluster, "certificate-authority", base),
        ca_data=_data(cluster, "certificate-authority"),
        cert_file=_file(user, "client-certificate", base),
        cert_data=_data(user, "client-certificate"),
        key_file=_file(user, "client-key", base),
        key_data=_data(user, "client-key"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
    )
    token: TokenSource | None = None
    if user.get("token"):
        token = StaticToken(str(user["token"]))
    elif user.get("tokenFile"):
        token = FileToken(base / Path(str(user["tokenFile"])).expanduser())
    return ConnectionConfig(
        server=str(server).rstrip("/"),
        ssl_context=ssl_context,
        token=token,
        namespace=str(ctx.get("namespace") or "default"),
    )


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"))


def load_incluster(
    *,
    environ: Mapping[str, str] = os.environ,
    account_dir: Path = SERVICE_ACCOUNT_DIR,
    token_refresh_interval: float = 60.0,
) -> ConnectionConfig:
    """Settings of the pod's own service account."""
    if not in_cluster(environ):
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    host, port = environ["KUBERNETES_SERVICE_HOST"], environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    token = FileToken(account_dir / "token", refresh_interval=token_refresh_interval)
    token.token()
    namespace_file = account_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    return ConnectionConfig(
        server=f"https://{host}:{port}",
        ssl_context=build_ssl_context(ca_file=account_dir / "ca.crt"),
        token=token,
        namespace=namespace,
    )


def load_config(kubeconfig: Path | None = None, *, context: str | None = None) -> ConnectionConfig:
    """An explicit kubeconfig wins; otherwise the service account in a pod, else the default kubeconfig."""
    if kubeconfig is None and context is None and in_cluster():
        return load_incluster()
    return load_kubeconfig(kubeconfig, context=context)
