"""Who we are to the API server: a bearer token and/or a client certificate, from the kubeconfig, a
token file that rotates, or an ``exec`` credential plugin.

Every source answers two questions, asynchronously so that a plugin run never blocks the event loop:
`Credentials.current` (what to send now) and `Credentials.rejected` (the server answered 401 to this
credential: is there a different one to retry with?).

The exec plugin follows the Kubernetes spec for client-go credential plugins
(client.authentication.k8s.io ``v1`` and ``v1beta1``), as kubectl does:

* the command is looked up on ``PATH`` unless it contains a ``/``; a relative path is relative to the
  kubeconfig that names it (resolved by `ExecConfig.from_kubeconfig`);
* it inherits our environment plus the configured ``env``, and gets ``KUBERNETES_EXEC_INFO``: an
  ``ExecCredential`` whose ``spec.interactive`` says whether it may use standard input, and whose
  ``spec.cluster`` describes the cluster when ``provideClusterInfo`` is set;
* ``interactiveMode``: ``Never`` never gets standard input; ``IfAvailable`` gets it when it is a
  terminal; ``Always`` is refused unless it is one (required in v1, ``IfAvailable`` by default in
  v1beta1);
* it prints an ``ExecCredential`` of the configured apiVersion with a token, a PEM client
  certificate and key, or both; the result is cached until ``status.expirationTimestamp`` (forever
  without one), and the plugin runs again once when the server answers 401 to it. One run at a time:
  concurrent requests wait for the same run.

What kubectl does not do and we add: a timeout (a hung plugin would otherwise hang every request),
and errors that name the plugin and quote what it printed on standard error (in interactive mode its
standard error goes to ours as it runs, so prompts are seen).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import ssl
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Protocol, TextIO

import httpx

logger = logging.getLogger(__name__)

EXEC_INFO_ENV = "KUBERNETES_EXEC_INFO"
EXEC_API_VERSIONS = ("client.authentication.k8s.io/v1", "client.authentication.k8s.io/v1beta1")
InteractiveMode = Literal["Never", "IfAvailable", "Always"]
INTERACTIVE_MODES: tuple[InteractiveMode, ...] = ("Never", "IfAvailable", "Always")
# The cluster extension whose content a plugin gets as spec.cluster.config (reserved by the spec).
EXEC_EXTENSION = "client.authentication.k8s.io/exec"
STDERR_TAIL = 2000


class ConfigError(Exception):
    """The connection settings are missing, inconsistent or use an unsupported feature."""


class CredentialError(ConfigError, httpx.TransportError):
    """No credential could be obtained (an exec plugin failed, hung or printed nonsense).

    It is also a transport error on purpose: it happens while sending a request, and every caller
    that copes with an unreachable server — reflectors and leader election back off and retry, the
    CLIs print the message and exit — copes with it the same way.
    """


@dataclass(frozen=True)
class ClientCertificate:
    """A PEM client certificate (chain) and its key, held in memory."""

    certificate: bytes
    key: bytes = field(repr=False)

    def load_into(self, context: ssl.SSLContext) -> None:
        """Present this certificate from `context`.

        `ssl.SSLContext.load_cert_chain` only takes file names, so both are written to a private
        temporary directory for the duration of that one call and removed right after: the context
        keeps the loaded key in memory.
        """
        with tempfile.TemporaryDirectory(prefix="volprobe-tls-") as private:
            cert_path = _write_private(Path(private) / "client.crt", self.certificate)
            key_path = _write_private(Path(private) / "client.key", self.key)
            context.load_cert_chain(str(cert_path), str(key_path))


def _write_private(path: Path, data: bytes) -> Path:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(data)
    return path


@dataclass(frozen=True)
class Credential:
    """What one request presents: a bearer token, a client certificate, both or neither."""

    token: str | None = field(default=None, repr=False)
    certificate: ClientCertificate | None = None


class Credentials(Protocol):
    """A source of credentials that may change while the process runs."""

    async def current(self) -> Credential:
        """The credential to send now (may run a plugin; raises `CredentialError`)."""
        ...

    async def rejected(self, credential: Credential) -> bool:
        """The server answered 401 to `credential`: True if a different one is now current."""
        ...


@dataclass(frozen=True)
class StaticCredentials:
    """Credentials written in the kubeconfig itself; a 401 cannot be helped."""

    credential: Credential = field(default_factory=Credential)

    async def current(self) -> Credential:
        return self.credential

    async def rejected(self, credential: Credential) -> bool:
        return False


@dataclass
class FileToken:
    """A bearer token re-read from its file at most every `refresh_interval` seconds, and at once after a 401.

    Bound service-account tokens expire and the kubelet rewrites the file well before that; tools
    that hand out kubeconfigs with ``tokenFile`` rotate it the same way. client-go re-reads it every
    minute too. If a re-read fails (the kubelet swaps the file atomically, but be defensive) the last
    good token is kept, or `fallback` (the kubeconfig's ``token``, which ``tokenFile`` overrides when
    it can be read).
    """

    path: Path
    refresh_interval: float = 60.0
    clock: Callable[[], float] = time.monotonic
    fallback: str | None = field(default=None, repr=False)
    certificate: ClientCertificate | None = None
    _value: str | None = field(default=None, init=False, repr=False)
    _read_at: float = field(default=float("-inf"), init=False, repr=False)

    def token(self) -> str | None:
        now = self.clock()
        if self._value is None or now - self._read_at >= self.refresh_interval:
            self._read(now)
        return self._value

    def _read(self, now: float) -> None:
        try:
            self._value = self.path.read_text().strip()
            self._read_at = now
        except OSError as error:
            if self._value is None and self.fallback is None:
                raise ConfigError(f"cannot read token file {self.path}: {error}") from error
            self._value = self._value or self.fallback
            logger.warning("keeping the previous token: cannot re-read %s: %s", self.path, error)

    async def current(self) -> Credential:
        return Credential(self.token(), self.certificate)

    async def rejected(self, credential: Credential) -> bool:
        self._read(self.clock())
        return self._value != credential.token


@dataclass(frozen=True)
class ExecConfig:
    """The ``user.exec`` section of a kubeconfig, validated, plus the cluster it authenticates to."""

    command: str
    api_version: str
    args: tuple[str, ...] = ()
    env: tuple[tuple[str, str], ...] = ()
    interactive_mode: InteractiveMode = "IfAvailable"
    provide_cluster_info: bool = False
    install_hint: str = ""
    cluster: Mapping[str, Any] | None = None  # spec.cluster for KUBERNETES_EXEC_INFO

    @classmethod
    def from_kubeconfig(
        cls, section: Mapping[str, Any], *, base: Path, cluster: Mapping[str, Any] | None = None
    ) -> ExecConfig:
        """Validate a kubeconfig ``exec`` section as client-go does; `base` is the kubeconfig's directory."""
        command = section.get("command")
        if not isinstance(command, str) or not command:
            raise ConfigError("exec plugin: command is required")
        api_version = section.get("apiVersion")
        if api_version not in EXEC_API_VERSIONS:
            raise ConfigError(
                f"exec plugin {command}: apiVersion {api_version!r} is not supported "
                f"(use one of {', '.join(EXEC_API_VERSIONS)}; v1alpha1 was removed in Kubernetes 1.24)"
            )
        mode = section.get("interactiveMode")
        if mode is None and api_version.endswith("/v1"):
            raise ConfigError(f"exec plugin {command}: interactiveMode is required in {api_version}")
        mode = mode or "IfAvailable"
        if mode not in INTERACTIVE_MODES:
            raise ConfigError(
                f"exec plugin {command}: interactiveMode {mode!r} is not one of "
                f"{', '.join(INTERACTIVE_MODES)}"
            )
        env: list[tuple[str, str]] = []
        for entry in section.get("env") or []:
            if not isinstance(entry, Mapping) or not entry.get("name"):
                raise ConfigError(f"exec plugin {command}: every env entry needs a name")
            env.append((str(entry["name"]), str(entry.get("value") or "")))
        if os.sep in command and not os.path.isabs(command):
            command = str(base / command)
        return cls(
            command=command,
            api_version=api_version,
            args=tuple(str(arg) for arg in section.get("args") or []),
            env=tuple(env),
            interactive_mode=mode,
            provide_cluster_info=bool(section.get("provideClusterInfo", False)),
            install_hint=str(section.get("installHint") or ""),
            cluster=cluster,
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _stdin_is_terminal() -> bool:
    try:
        return sys.stdin is not None and sys.stdin.isatty()
    except (OSError, ValueError):  # closed or detached
        return False


class ExecPlugin:
    """Credentials from an exec plugin, cached until they expire or are rejected (see the module doc)."""

    def __init__(
        self,
        config: ExecConfig,
        *,
        timeout: float = 60.0,
        interactive_timeout: float = 300.0,
        now: Callable[[], datetime] = _utcnow,
        stdin_is_terminal: Callable[[], bool] = _stdin_is_terminal,
        stderr: TextIO | None = None,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.interactive_timeout = interactive_timeout
        self.runs = 0
        self._now = now
        self._stdin_is_terminal = stdin_is_terminal
        self._stderr = stderr
        self._cached: Credential | None = None
        self._expires: datetime | None = None
        self._lock = asyncio.Lock()

    @property
    def name(self) -> str:
        return self.config.command

    def _expired(self) -> bool:
        return self._expires is not None and self._now() >= self._expires

    async def current(self) -> Credential:
        async with self._lock:
            if self._cached is None or self._expired():
                await self._refresh()
            assert self._cached is not None
            return self._cached

    async def rejected(self, credential: Credential) -> bool:
        async with self._lock:
            if credential == self._cached:
                logger.info("exec plugin %s: the server rejected its credential; running it again", self.name)
                await self._refresh()
            return self._cached != credential

    # -- running the plugin --------------------------------------------------------------------

    def _interactive(self) -> bool:
        mode = self.config.interactive_mode
        if mode == "Never":
            return False
        terminal = self._stdin_is_terminal()
        if mode == "Always" and not terminal:
            raise CredentialError(
                f"exec plugin {self.name} needs standard input (interactiveMode: Always), "
                "but standard input is not a terminal"
            )
        return terminal

    def _exec_info(self, interactive: bool) -> str:
        spec: dict[str, Any] = {"interactive": interactive}
        if self.config.provide_cluster_info and self.config.cluster is not None:
            spec["cluster"] = dict(self.config.cluster)
        return json.dumps({"apiVersion": self.config.api_version, "kind": "ExecCredential", "spec": spec})

    async def _refresh(self) -> None:
        interactive = self._interactive()
        environment = {**os.environ, **dict(self.config.env), EXEC_INFO_ENV: self._exec_info(interactive)}
        timeout = self.interactive_timeout if interactive else self.timeout
        self.runs += 1
        started = time.monotonic()
        try:
            process = await asyncio.create_subprocess_exec(
                self.config.command,
                *self.config.args,
                env=environment,
                stdin=None if interactive else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                # Its own process group, so a timeout also ends what it started; an interactive
                # plugin stays in ours, which owns the terminal it prompts on.
                start_new_session=not interactive,
            )
        except OSError as error:
            raise CredentialError(self._not_found(error)) from None
        assert process.stdout is not None
        assert process.stderr is not None
        errors = bytearray()
        try:
            async with asyncio.timeout(timeout):
                output, _ = await asyncio.gather(
                    process.stdout.read(), self._drain(process.stderr, errors, tee=interactive)
                )
                code = await process.wait()
        except TimeoutError:
            raise CredentialError(
                f"exec plugin {self.name} did not finish within {timeout:g}s{_quote(errors)}"
            ) from None
        finally:
            if process.returncode is None:
                _kill(process, group=not interactive)
                await process.wait()
        if code != 0:
            raise CredentialError(f"exec plugin {self.name} failed with exit code {code}{_quote(errors)}")
        if errors.strip() and not interactive:
            logger.warning("exec plugin %s: %s", self.name, errors.decode(errors="replace").strip())
        try:
            credential, expires = parse_exec_credential(output, self.config.api_version)
        except ValueError as error:
            raise CredentialError(f"exec plugin {self.name} {error}{_quote(errors)}") from None
        self._cached, self._expires = credential, expires
        logger.debug(
            "exec plugin %s ran in %.2fs; credential valid until %s",
            self.name,
            time.monotonic() - started,
            expires.isoformat() if expires else "the server rejects it",
        )

    async def _drain(self, stream: asyncio.StreamReader, into: bytearray, *, tee: bool) -> None:
        while chunk := await stream.read(4096):
            into.extend(chunk)
            if tee:
                out = self._stderr or sys.stderr
                out.write(chunk.decode(errors="replace"))
                out.flush()

    def _not_found(self, error: OSError) -> str:
        message = f"exec plugin {self.name} could not be run: {error.strerror or error}"
        if self.config.install_hint:
            message += f"\n\n{self.config.install_hint.strip()}"
        return message


def _kill(process: asyncio.subprocess.Process, *, group: bool) -> None:
    with contextlib.suppress(ProcessLookupError):
        if group:
            os.killpg(process.pid, signal.SIGKILL)
        else:
            process.kill()


def _quote(stderr: bytes | bytearray) -> str:
    text = bytes(stderr).decode(errors="replace").strip()
    if not text:
        return ""
    if len(text) > STDERR_TAIL:
        text = "…" + text[-STDERR_TAIL:]
    return f"; its standard error said:\n{text}"


def parse_exec_credential(output: bytes, api_version: str) -> tuple[Credential, datetime | None]:
    """The credential and its expiry from a plugin's standard output; ValueError says what is wrong."""
    try:
        document = json.loads(output)
    except ValueError:
        raise ValueError("did not print an ExecCredential (its output is not JSON)") from None
    if not isinstance(document, dict) or document.get("kind") != "ExecCredential":
        raise ValueError("did not print an ExecCredential")
    if document.get("apiVersion") != api_version:
        raise ValueError(
            f"is configured to use {api_version} but printed apiVersion {document.get('apiVersion')!r}"
        )
    status = document.get("status")
    if not isinstance(status, dict):
        raise ValueError("did not return a status field")
    token, cert, key = (status.get(name) for name in ("token", "clientCertificateData", "clientKeyData"))
    for name, value in (("token", token), ("clientCertificateData", cert), ("clientKeyData", key)):
        if value is not None and not isinstance(value, str):
            raise ValueError(f"returned a {name} that is not a string")
    if not token and not cert and not key:
        raise ValueError("did not return a token or a client certificate and key")
    if bool(cert) != bool(key):
        raise ValueError("returned only a client certificate or only its key, not both")
    certificate = ClientCertificate(cert.encode(), key.encode()) if cert and key else None
    if certificate is not None:
        try:
            certificate.load_into(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
        except ssl.SSLError as error:
            raise ValueError(f"returned a client certificate and key that do not load: {error}") from None
    expires = None
    if status.get("expirationTimestamp"):
        try:
            expires = datetime.fromisoformat(str(status["expirationTimestamp"]))
        except ValueError:
            raise ValueError(
                f"returned an expirationTimestamp that is not RFC 3339: {status['expirationTimestamp']!r}"
            ) from None
        if expires.tzinfo is None:
            raise ValueError("returned an expirationTimestamp without a time zone")
    return Credential(token or None, certificate), expires
