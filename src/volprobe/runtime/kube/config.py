"""Where the API server is and how to prove who we are: kubeconfig files and in-cluster service accounts.

Kubeconfigs are read the way kubectl reads them:

* ``--kubeconfig`` names one file, which must exist; otherwise ``$KUBECONFIG`` lists files (``:``
  separated) that are merged — missing ones are skipped, the first file to define a cluster, user or
  context by name wins it whole, the first ``current-context`` wins — and without ``$KUBECONFIG``
  it is ``~/.kube/config``;
* file references (``certificate-authority``, ``client-certificate``, ``client-key``,
  ``tokenFile``, an exec ``command`` containing a ``/``) are relative to the file that holds them;
  ``*-data`` fields override the file they stand for;
* a user's ``token``/``tokenFile`` or client certificate wins over its ``exec`` plugin, and
  ``tokenFile`` over ``token`` (it is re-read, see `FileToken`);
* cluster: ``server``, ``certificate-authority(-data)``, ``insecure-skip-tls-verify``,
  ``tls-server-name``, ``proxy-url`` (``http``, ``https``, ``socks5``); without ``proxy-url`` the
  ``HTTPS_PROXY``/``HTTP_PROXY``/``NO_PROXY`` variables apply, never to loopback addresses.

Refused with a clear error instead of being half-supported: ``auth-provider`` (kubectl removed those
in 1.26; the providers ship exec plugins), basic authentication and impersonation (``as``…).

`load_config` picks the source: an explicit kubeconfig or context, then ``$KUBECONFIG``, then the
pod's service account, then ``~/.kube/config``.
"""

from __future__ import annotations

import base64
import ipaddress
import logging
import os
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from volprobe.runtime.kube.credentials import (
    EXEC_EXTENSION,
    ClientCertificate,
    ConfigError,
    Credential,
    Credentials,
    ExecConfig,
    ExecPlugin,
    FileToken,
    StaticCredentials,
)

logger = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
PROXY_SCHEMES = ("http", "https", "socks5")
UNSUPPORTED_USER_FIELDS = {
    "auth-provider": "auth-provider plugins were removed from kubectl in 1.26; use the provider's exec "
    "credential plugin instead (gke-gcloud-auth-plugin, kubelogin, …)",
    "username": "basic authentication is not supported",
    "password": "basic authentication is not supported",
    "as": "impersonation is not supported",
    "as-uid": "impersonation is not supported",
    "as-groups": "impersonation is not supported",
    "as-user-extra": "impersonation is not supported",
}


class _ServerNameContext(ssl.SSLContext):
    """A TLS context that checks (and sends as SNI) ``server_name`` instead of the URL's host.

    That is ``tls-server-name``. httpx hands the URL's host to every TLS handshake it starts —
    direct, through an HTTP CONNECT tunnel, or through SOCKS — by calling ``wrap_bio``; replacing
    it here covers all three, which a per-request SNI setting does not.
    """

    server_name: str | None = None

    def wrap_bio(
        self,
        incoming: ssl.MemoryBIO,
        outgoing: ssl.MemoryBIO,
        server_side: bool = False,
        server_hostname: str | bytes | None = None,
        session: ssl.SSLSession | None = None,
    ) -> ssl.SSLObject:
        name = self.server_name or server_hostname
        return super().wrap_bio(incoming, outgoing, server_side, name, session)


@dataclass(frozen=True)
class TlsConfig:
    """How to verify the API server (and whom to expect)."""

    ca_file: Path | None = None
    ca_data: bytes | None = field(default=None, repr=False)
    insecure: bool = False
    server_name: str | None = None

    def ssl_context(self, certificate: ClientCertificate | None = None) -> ssl.SSLContext:
        """A client context presenting `certificate`; raises ConfigError when something does not load."""
        context = _ServerNameContext(ssl.PROTOCOL_TLS_CLIENT)
        context.server_name = self.server_name
        try:
            if self.insecure:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            elif self.ca_file is not None or self.ca_data is not None:
                context.load_verify_locations(
                    cafile=str(self.ca_file) if self.ca_data is None and self.ca_file else None,
                    cadata=self.ca_data.decode() if self.ca_data is not None else None,
                )
            else:
                context.load_default_certs()
            if certificate is not None:
                certificate.load_into(context)
        except (OSError, ValueError) as error:  # ssl.SSLError is an OSError
            raise ConfigError(f"cannot set up TLS: {error}") from error
        return context

    def ca_bytes(self) -> bytes | None:
        if self.ca_data is not None:
            return self.ca_data
        return self.ca_file.read_bytes() if self.ca_file is not None else None


@dataclass(frozen=True)
class ConnectionConfig:
    """Everything `KubeClient` needs to reach and authenticate to one API server."""

    server: str
    tls: TlsConfig = field(default_factory=TlsConfig)
    credentials: Credentials = field(default_factory=StaticCredentials)
    proxy: str | None = None
    namespace: str = "default"

    def proxy_url(self, environ: Mapping[str, str] = os.environ) -> str | None:
        """``proxy-url``, else the proxy the environment names for this server (kubectl's rule)."""
        return self.proxy if self.proxy else environment_proxy(self.server, environ)


# -- proxies from the environment -------------------------------------------------------------------


def environment_proxy(server: str, environ: Mapping[str, str] = os.environ) -> str | None:
    """``HTTPS_PROXY`` (``HTTP_PROXY`` for http) unless ``NO_PROXY`` matches or the host is loopback."""
    url = httpx.URL(server)
    names = ("HTTPS_PROXY", "https_proxy") if url.scheme == "https" else ("HTTP_PROXY", "http_proxy")
    proxy = next((environ[name] for name in names if environ.get(name)), None)
    if not proxy or _loopback(url.host):
        return None
    no_proxy = environ.get("NO_PROXY") or environ.get("no_proxy") or ""
    if any(_bypasses(entry.strip(), url.host, url.port) for entry in no_proxy.split(",") if entry.strip()):
        return None
    return proxy


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _bypasses(entry: str, host: str, port: int | None) -> bool:
    """One ``NO_PROXY`` entry: ``*``, an IP or CIDR, or a domain matching itself and its subdomains."""
    if entry == "*":
        return True
    try:
        return ipaddress.ip_address(host) in ipaddress.ip_network(entry, strict=False)
    except ValueError:
        pass
    name, _, entry_port = entry.rpartition(":") if entry.count(":") == 1 else (entry, "", "")
    if entry_port and entry_port != str(port):
        return False
    name = name.lower().lstrip(".").removeprefix("*.")
    host = host.lower()
    return host == name or host.endswith("." + name)


# -- kubeconfig files --------------------------------------------------------------------------------


def kubeconfig_paths(environ: Mapping[str, str] = os.environ) -> list[Path]:
    """The files ``$KUBECONFIG`` lists, or ``~/.kube/config``."""
    listed = [Path(entry).expanduser() for entry in environ.get("KUBECONFIG", "").split(os.pathsep) if entry]
    return listed or [Path.home() / ".kube" / "config"]


@dataclass(frozen=True)
class _Named:
    """A cluster, user or context entry and the file it came from (for relative paths)."""

    value: dict[str, Any]
    origin: Path


@dataclass
class _Merged:
    files: list[Path] = field(default_factory=list)
    clusters: dict[str, _Named] = field(default_factory=dict)
    users: dict[str, _Named] = field(default_factory=dict)
    contexts: dict[str, _Named] = field(default_factory=dict)
    current_context: str | None = None

    def add(self, path: Path, document: Mapping[str, Any]) -> None:
        """Merge one file: whatever an earlier file defined stays (kubectl's rule)."""
        self.files.append(path)
        for key, section, into in (
            ("clusters", "cluster", self.clusters),
            ("users", "user", self.users),
            ("contexts", "context", self.contexts),
        ):
            entries = document.get(key) or []
            if not isinstance(entries, list):
                raise ConfigError(f"kubeconfig {path}: {key} is not a list")
            for entry in entries:
                if not isinstance(entry, Mapping) or not entry.get("name"):
                    raise ConfigError(f"kubeconfig {path}: every entry of {key} needs a name")
                value = entry.get(section)
                into.setdefault(
                    str(entry["name"]), _Named(dict(value) if isinstance(value, Mapping) else {}, path)
                )
        if not self.current_context and document.get("current-context"):
            self.current_context = str(document["current-context"])

    def named(self, what: str, entries: Mapping[str, _Named], name: str) -> _Named:
        if name not in entries:
            raise ConfigError(f"{self.where()} has no {what} named {name!r}")
        return entries[name]

    def where(self) -> str:
        return "kubeconfig " + ", ".join(str(path) for path in self.files)


def _read(path: Path) -> Mapping[str, Any]:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"cannot read kubeconfig {path}: {error}") from error
    if document is None:
        return {}
    if not isinstance(document, Mapping):
        raise ConfigError(f"kubeconfig {path} is not a mapping")
    return document


def _merge(path: Path | None, environ: Mapping[str, str]) -> _Merged:
    merged = _Merged()
    if path is not None:
        merged.add(path, _read(path))
        return merged
    candidates = kubeconfig_paths(environ)
    for candidate in candidates:
        if candidate.exists():
            merged.add(candidate, _read(candidate))
    if not merged.files:
        raise ConfigError(f"no kubeconfig found (looked at {', '.join(str(c) for c in candidates)})")
    return merged


def _data(section: Mapping[str, Any], key: str) -> bytes | None:
    value = section.get(f"{key}-data")
    if not value:
        return None
    try:
        return base64.b64decode(value, validate=True)
    except ValueError as error:
        raise ConfigError(f"{key}-data is not valid base64") from error


def _file(section: Mapping[str, Any], key: str, base: Path) -> Path | None:
    value = section.get(key)
    return base / Path(str(value)).expanduser() if value else None


def _bytes(data: bytes | None, path: Path | None, what: str) -> bytes | None:
    if data is not None or path is None:
        return data
    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"cannot read {what} {path}: {error}") from error


def _proxy(cluster: Mapping[str, Any]) -> str | None:
    proxy = cluster.get("proxy-url")
    if not proxy:
        return None
    scheme = httpx.URL(str(proxy)).scheme
    if scheme not in PROXY_SCHEMES:
        raise ConfigError(f"proxy-url {proxy!r}: the scheme must be one of {', '.join(PROXY_SCHEMES)}")
    return str(proxy)


def _exec_cluster_info(server: str, cluster: Mapping[str, Any], tls: TlsConfig) -> dict[str, Any]:
    """``spec.cluster`` of the ExecCredential a plugin gets with ``provideClusterInfo``."""
    ca = tls.ca_bytes() if not tls.insecure else None
    extension = next(
        (
            entry.get("extension")
            for entry in cluster.get("extensions") or []
            if isinstance(entry, Mapping) and entry.get("name") == EXEC_EXTENSION
        ),
        None,
    )
    info: dict[str, Any] = {
        "server": server,
        "tls-server-name": tls.server_name,
        "insecure-skip-tls-verify": tls.insecure or None,
        "certificate-authority-data": base64.b64encode(ca).decode() if ca else None,
        "proxy-url": cluster.get("proxy-url"),
        "disable-compression": bool(cluster.get("disable-compression")) or None,
        "config": extension,
    }
    return {key: value for key, value in info.items() if value is not None}


def _credentials(user: Mapping[str, Any], base: Path, exec_cluster: dict[str, Any]) -> Credentials:
    for field_name, why in UNSUPPORTED_USER_FIELDS.items():
        if user.get(field_name):
            raise ConfigError(f"kubeconfig user field {field_name!r}: {why}")
    cert = _bytes(
        _data(user, "client-certificate"), _file(user, "client-certificate", base), "client certificate"
    )
    key = _bytes(_data(user, "client-key"), _file(user, "client-key", base), "client key")
    if (cert is None) != (key is None):
        raise ConfigError("a client certificate needs both the certificate and its key")
    certificate = ClientCertificate(cert, key) if cert is not None and key is not None else None
    token = str(user["token"]) if user.get("token") else None
    token_file = _file(user, "tokenFile", base)
    if token_file is not None:
        source = FileToken(token_file, fallback=token, certificate=certificate)
        source.token()
        return source
    if token is not None or certificate is not None:
        return StaticCredentials(Credential(token, certificate))
    if user.get("exec"):
        section = user["exec"]
        if not isinstance(section, Mapping):
            raise ConfigError("kubeconfig user field 'exec' is not a mapping")
        return ExecPlugin(ExecConfig.from_kubeconfig(section, base=base, cluster=exec_cluster))
    return StaticCredentials()


def load_kubeconfig(
    path: Path | None = None, *, context: str | None = None, environ: Mapping[str, str] = os.environ
) -> ConnectionConfig:
    """Settings of `context` (default: ``current-context``) from the kubeconfig at `path`, or from
    the files ``$KUBECONFIG`` lists (merged), or from ``~/.kube/config``."""
    merged = _merge(path, environ)
    context_name = context or merged.current_context
    if not context_name:
        raise ConfigError(f"{merged.where()} has no current-context")
    ctx = merged.named("context", merged.contexts, context_name).value
    cluster_entry = merged.named("cluster", merged.clusters, str(ctx.get("cluster")))
    cluster = cluster_entry.value
    server = cluster.get("server")
    if not server:
        raise ConfigError(f"cluster {ctx.get('cluster')!r} of context {context_name!r} has no server")
    cluster_base = cluster_entry.origin.resolve().parent
    tls = TlsConfig(
        ca_file=_file(cluster, "certificate-authority", cluster_base),
        ca_data=_data(cluster, "certificate-authority"),
        insecure=bool(cluster.get("insecure-skip-tls-verify", False)),
        server_name=str(cluster["tls-server-name"]) if cluster.get("tls-server-name") else None,
    )
    if tls.insecure and (tls.ca_file or tls.ca_data):
        raise ConfigError(
            f"cluster {ctx.get('cluster')!r}: insecure-skip-tls-verify cannot be combined "
            "with a certificate authority"
        )
    tls.ssl_context()  # fail now, not at the first request, if the CA does not load
    server = str(server).rstrip("/")
    credentials: Credentials = StaticCredentials()
    if ctx.get("user"):
        user_entry = merged.named("user", merged.users, str(ctx["user"]))
        base = user_entry.origin.resolve().parent
        credentials = _credentials(user_entry.value, base, _exec_cluster_info(server, cluster, tls))
    if isinstance(credentials, StaticCredentials) and credentials.credential.certificate is not None:
        tls.ssl_context(credentials.credential.certificate)
    return ConnectionConfig(
        server=server,
        tls=tls,
        credentials=credentials,
        proxy=_proxy(cluster),
        namespace=str(ctx.get("namespace") or "default"),
    )


# -- in a pod ------------------------------------------------------------------------------------------


def in_cluster(environ: Mapping[str, str] = os.environ) -> bool:
    return bool(environ.get("KUBERNETES_SERVICE_HOST") and environ.get("KUBERNETES_SERVICE_PORT"))


def load_incluster(
    *,
    environ: Mapping[str, str] = os.environ,
    account_dir: Path | None = None,
    token_refresh_interval: float = 60.0,
) -> ConnectionConfig:
    """Settings of the pod's own service account (its token is re-read as the kubelet rotates it)."""
    account_dir = account_dir or SERVICE_ACCOUNT_DIR
    if not in_cluster(environ):
        raise ConfigError("not in a cluster: KUBERNETES_SERVICE_HOST/PORT are not set")
    host, port = environ["KUBERNETES_SERVICE_HOST"], environ["KUBERNETES_SERVICE_PORT"]
    if ":" in host:
        host = f"[{host}]"
    token = FileToken(account_dir / "token", refresh_interval=token_refresh_interval)
    token.token()
    namespace_file = account_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.exists() else "default"
    tls = TlsConfig(ca_file=account_dir / "ca.crt")
    tls.ssl_context()
    return ConnectionConfig(server=f"https://{host}:{port}", tls=tls, credentials=token, namespace=namespace)


def load_config(
    kubeconfig: Path | None = None, *, context: str | None = None, environ: Mapping[str, str] = os.environ
) -> ConnectionConfig:
    """An explicit kubeconfig or context, else ``$KUBECONFIG``, else the pod's service account, else
    ``~/.kube/config`` (the order controller-runtime uses)."""
    if kubeconfig is None and context is None and not environ.get("KUBECONFIG") and in_cluster(environ):
        return load_incluster(environ=environ)
    return load_kubeconfig(kubeconfig, context=context, environ=environ)
