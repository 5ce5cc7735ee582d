"""Exec credential plugins run for real: small scripts that print ExecCredentials, expire, fail, hang.

Each plugin script counts its runs in a file and records the KUBERNETES_EXEC_INFO, arguments and
environment it was given, so the tests check the plugin's side of the contract, not a mock of it.
"""

from __future__ import annotations

import asyncio
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from volprobe.runtime.kube import (
    ApiError,
    ConnectionConfig,
    Credential,
    CredentialError,
    ExecConfig,
    ExecPlugin,
    FileToken,
    KubeClient,
    NotFoundError,
)
from volprobe.runtime.kube.credentials import parse_exec_credential

V1 = "client.authentication.k8s.io/v1"
V1BETA1 = "client.authentication.k8s.io/v1beta1"
T0 = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)

# The plugin: counts its runs, records what it was given, then does what $PLUGIN_BEHAVIOUR says.
PLUGIN = """\
import json, os, sys, time
state = os.environ["PLUGIN_STATE"]
runs = int(open(f"{state}/runs").read()) + 1 if os.path.exists(f"{state}/runs") else 1
open(f"{state}/runs", "w").write(str(runs))
json.dump(
    {"info": json.loads(os.environ["KUBERNETES_EXEC_INFO"]), "args": sys.argv[1:],
     "region": os.environ.get("REGION"), "stdin_tty": os.isatty(0)},
    open(f"{state}/seen-{runs}.json", "w"),
)
behaviour = os.environ.get("PLUGIN_BEHAVIOUR", "token")
version = os.environ.get("PLUGIN_VERSION", "client.authentication.k8s.io/v1")
status = {"token": f"token-{runs}"}
if os.environ.get("PLUGIN_EXPIRES"):
    status["expirationTimestamp"] = os.environ["PLUGIN_EXPIRES"]
if behaviour == "fail":
    print("error: could not reach the identity provider at idp.example", file=sys.stderr)
    sys.exit(3)
if behaviour == "hang":
    import subprocess
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    open(f"{state}/child", "w").write(str(child.pid))
    print("waiting for the browser login...", file=sys.stderr, flush=True)
    time.sleep(60)
if behaviour == "garbage":
    print("token-1")
    sys.exit(0)
if behaviour == "cert":
    status = {"clientCertificateData": open(os.environ["PLUGIN_CERT"]).read(),
              "clientKeyData": open(os.environ["PLUGIN_KEY"]).read()}
if behaviour == "slow":
    time.sleep(0.5)
print("a harmless warning", file=sys.stderr)
print(json.dumps({"apiVersion": version, "kind": "ExecCredential", "status": status}))
"""


class Plugin:
    """A plugin script in `directory`, its state next to it."""

    def __init__(self, directory: Path) -> None:
        self.state = directory / "state"
        self.state.mkdir(parents=True)
        self.path = directory / "get-token"
        self.path.write_text(f"#!{sys.executable}\n{PLUGIN}")
        self.path.chmod(self.path.stat().st_mode | stat.S_IXUSR)

    def config(self, *, behaviour: str = "token", api_version: str = V1, **fields: Any) -> ExecConfig:
        env = {"PLUGIN_STATE": str(self.state), "PLUGIN_BEHAVIOUR": behaviour, "REGION": "eu-west-1"}
        env |= fields.pop("env", {})
        return ExecConfig(
            command=str(self.path),
            api_version=api_version,
            args=("--cluster", "one"),
            env=tuple(env.items()),
            **{"interactive_mode": "Never", **fields},
        )

    @property
    def runs(self) -> int:
        runs = self.state / "runs"
        return int(runs.read_text()) if runs.exists() else 0

    def seen(self, run: int) -> dict[str, Any]:
        seen: dict[str, Any] = json.loads((self.state / f"seen-{run}.json").read_text())
        return seen


@pytest.fixture
def plugin(tmp_path: Path) -> Plugin:
    return Plugin(tmp_path / "plugin")


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


def env(**values: str) -> dict[str, str]:
    return values


async def test_token_is_cached_until_it_expires(plugin: Plugin) -> None:
    clock = Clock()
    expires = (T0 + timedelta(minutes=5)).isoformat().replace("+00:00", "Z")
    source = ExecPlugin(plugin.config(env=env(PLUGIN_EXPIRES=expires)), now=clock)
    assert await source.current() == Credential(token="token-1")
    clock.now = T0 + timedelta(minutes=4, seconds=59)
    assert await source.current() == Credential(token="token-1")
    assert plugin.runs == 1
    clock.now = T0 + timedelta(minutes=5)
    assert await source.current() == Credential(token="token-2")
    assert plugin.runs == source.runs == 2


async def test_without_expiry_the_token_lasts_until_the_server_rejects_it(plugin: Plugin) -> None:
    clock = Clock()
    source = ExecPlugin(plugin.config(), now=clock)
    first = await source.current()
    clock.now = T0 + timedelta(days=30)
    assert await source.current() == first
    assert await source.rejected(first), "a 401 runs the plugin again"
    assert await source.current() == Credential(token="token-2")
    assert await source.rejected(first), "already replaced: no new run"
    assert plugin.runs == 2


async def test_the_plugin_gets_args_env_and_exec_info(plugin: Plugin) -> None:
    cluster = {"server": "https://k:6443", "certificate-authority-data": "Q0E=", "config": {"a": 1}}
    await ExecPlugin(plugin.config(provide_cluster_info=True, cluster=cluster)).current()
    seen = plugin.seen(1)
    assert seen["args"] == ["--cluster", "one"]
    assert seen["region"] == "eu-west-1"
    assert seen["info"] == {
        "apiVersion": V1,
        "kind": "ExecCredential",
        "spec": {"interactive": False, "cluster": cluster},
    }
    assert not seen["stdin_tty"]


async def test_cluster_info_only_when_asked(plugin: Plugin) -> None:
    await ExecPlugin(plugin.config(cluster={"server": "https://k"})).current()
    assert plugin.seen(1)["info"]["spec"] == {"interactive": False}


@pytest.mark.parametrize(
    ("mode", "terminal", "interactive"),
    [
        ("Never", True, False),
        ("IfAvailable", False, False),
        ("IfAvailable", True, True),
        ("Always", True, True),
    ],
)
async def test_interactive_mode(plugin: Plugin, mode: Any, terminal: bool, interactive: bool) -> None:
    source = ExecPlugin(plugin.config(interactive_mode=mode), stdin_is_terminal=lambda: terminal)
    await source.current()
    assert plugin.seen(1)["info"]["spec"]["interactive"] is interactive


async def test_always_interactive_without_a_terminal_is_refused_before_running(plugin: Plugin) -> None:
    source = ExecPlugin(plugin.config(interactive_mode="Always"), stdin_is_terminal=lambda: False)
    with pytest.raises(CredentialError, match=r"needs standard input \(interactiveMode: Always\)"):
        await source.current()
    assert plugin.runs == 0


async def test_a_failing_plugin_is_named_with_its_stderr(plugin: Plugin) -> None:
    source = ExecPlugin(plugin.config(behaviour="fail"))
    with pytest.raises(CredentialError) as caught:
        await source.current()
    message = str(caught.value)
    assert str(plugin.path) in message
    assert "exit code 3" in message
    assert "could not reach the identity provider at idp.example" in message
    assert isinstance(caught.value, httpx.TransportError), "callers back off as for an unreachable server"
    with pytest.raises(CredentialError):
        await source.current()
    assert plugin.runs == 2, "a failure is not cached: the next request tries again"


async def test_a_missing_plugin_shows_the_install_hint(tmp_path: Path) -> None:
    config = ExecConfig(
        command=str(tmp_path / "nope"),
        api_version=V1,
        interactive_mode="Never",
        install_hint="brew install nope",
    )
    with pytest.raises(CredentialError, match=r"(?s)nope could not be run: No such file.*brew install nope"):
        await ExecPlugin(config).current()


async def eventually(predicate: Callable[[], bool], seconds: float) -> bool:
    for _ in range(int(seconds / 0.05)):
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat").read_text().split()[2]
    return status != "Z"


async def test_a_hung_plugin_times_out_and_is_killed_with_its_children(plugin: Plugin) -> None:
    source = ExecPlugin(plugin.config(behaviour="hang"), timeout=1.0)
    started = time.monotonic()
    with pytest.raises(CredentialError) as caught:
        await source.current()
    assert time.monotonic() - started < 5
    assert "did not finish within 1s" in str(caught.value)
    assert "waiting for the browser login" in str(caught.value), "what it said so far is quoted"
    child = int((plugin.state / "child").read_text())
    assert await eventually(lambda: not alive(child), 5), "the plugin's own children are killed too"


async def test_running_the_plugin_does_not_block_the_event_loop(plugin: Plugin) -> None:
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.02)
            ticks += 1

    task = asyncio.create_task(ticker())
    try:
        await ExecPlugin(plugin.config(behaviour="slow")).current()
    finally:
        task.cancel()
    assert ticks >= 10, f"the loop ran only {ticks} times during a 0.5 s plugin run"


async def test_concurrent_requests_share_one_run(plugin: Plugin) -> None:
    source = ExecPlugin(plugin.config(behaviour="slow"))
    results = await asyncio.gather(*(source.current() for _ in range(10)))
    assert set(results) == {Credential(token="token-1")}
    assert plugin.runs == 1


async def test_cancelling_a_run_kills_the_plugin(plugin: Plugin) -> None:
    task = asyncio.create_task(ExecPlugin(plugin.config(behaviour="hang")).current())
    assert await eventually((plugin.state / "child").exists, 10)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    child = int((plugin.state / "child").read_text())
    assert await eventually(lambda: not alive(child), 5)


async def test_v1beta1_and_a_mismatched_version(plugin: Plugin) -> None:
    assert await ExecPlugin(plugin.config(api_version=V1BETA1, env=env(PLUGIN_VERSION=V1BETA1))).current()
    mismatch = ExecPlugin(plugin.config(api_version=V1BETA1))
    with pytest.raises(CredentialError, match=f"configured to use {V1BETA1} but printed apiVersion '{V1}'"):
        await mismatch.current()


async def test_output_that_is_not_an_exec_credential(plugin: Plugin) -> None:
    with pytest.raises(CredentialError, match=r"did not print an ExecCredential \(its output is not JSON\)"):
        await ExecPlugin(plugin.config(behaviour="garbage")).current()


@pytest.fixture(scope="module")
def client_pem(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("pem")
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", "client.key", "-out", "client.crt", "-subj", "/CN=exec-user", "-days", "1"],
        cwd=root, check=True, capture_output=True,
    )  # fmt: skip
    return root / "client.crt", root / "client.key"


async def test_a_client_certificate_from_the_plugin(plugin: Plugin, client_pem: tuple[Path, Path]) -> None:
    cert, key = client_pem
    source = ExecPlugin(plugin.config(behaviour="cert", env=env(PLUGIN_CERT=str(cert), PLUGIN_KEY=str(key))))
    credential = await source.current()
    assert credential.token is None
    assert credential.certificate is not None
    assert credential.certificate.certificate == cert.read_bytes()
    assert credential.certificate.key == key.read_bytes()
    assert "key" not in repr(credential.certificate).replace("Certificate", ""), "keys stay out of logs"


def exec_credential(**status: Any) -> bytes:
    return json.dumps({"apiVersion": V1, "kind": "ExecCredential", "status": status}).encode()


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (b"[1]", "did not print an ExecCredential"),
        (json.dumps({"apiVersion": V1, "kind": "ExecCredential"}).encode(), "did not return a status field"),
        (exec_credential(), "did not return a token or a client certificate and key"),
        (exec_credential(clientCertificateData="x"), "only a client certificate or only its key"),
        (exec_credential(token=5), "token that is not a string"),
        (exec_credential(clientCertificateData="x", clientKeyData="y"), "do not load"),
        (exec_credential(token="t", expirationTimestamp="tomorrow"), "not RFC 3339"),
        (exec_credential(token="t", expirationTimestamp="2030-01-01T00:00:00"), "without a time zone"),
    ],
)
def test_invalid_exec_credentials(output: bytes, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_exec_credential(output, V1)


def test_expiration_timestamps() -> None:
    _, expires = parse_exec_credential(
        exec_credential(token="t", expirationTimestamp="2018-03-05T17:30:20-08:00"), V1
    )
    assert expires == datetime(2018, 3, 6, 1, 30, 20, tzinfo=UTC)
    _, never = parse_exec_credential(exec_credential(token="t"), V1)
    assert never is None


# -- through the client: a 401 re-runs the plugin once, and the request is sent again ---------------


def apiserver(valid: Callable[[str], bool], seen: list[str]) -> httpx.MockTransport:
    def handler(request: httpx.Request) -> httpx.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        seen.append(token)
        if not valid(token):
            return httpx.Response(401, json={"kind": "Status", "code": 401, "reason": "Unauthorized"})
        return httpx.Response(200, json={"kind": "Namespace"})

    return httpx.MockTransport(handler)


async def test_a_401_runs_the_plugin_again_and_retries_once(plugin: Plugin) -> None:
    seen: list[str] = []
    source = ExecPlugin(plugin.config())
    config = ConnectionConfig(server="https://k8s.test", credentials=source)
    calls: list[tuple[str, int]] = []
    async with KubeClient(
        config,
        transport=apiserver(lambda t: t != "token-1", seen),
        on_response=lambda v, c, s: calls.append((v, c)),
    ) as client:
        assert await client.get("/api/v1/namespaces/default") == {"kind": "Namespace"}
        assert await client.get("/api/v1/namespaces/default") == {"kind": "Namespace"}
    assert seen == ["token-1", "token-2", "token-2"]
    assert plugin.runs == 2
    assert calls == [("get", 401), ("get", 200), ("get", 200)], "the retry took its own budget token"
    assert client.budget.stats.granted["request"] == 3


async def test_a_401_that_persists_is_returned_after_one_retry(plugin: Plugin) -> None:
    seen: list[str] = []
    config = ConnectionConfig(server="https://k8s.test", credentials=ExecPlugin(plugin.config()))
    async with KubeClient(config, transport=apiserver(lambda t: False, seen)) as client:
        with pytest.raises(ApiError) as caught:
            await client.get("/api/v1/namespaces/default")
    assert caught.value.status == 401
    assert seen == ["token-1", "token-2"]


async def test_a_plugin_failure_surfaces_from_the_request(plugin: Plugin) -> None:
    config = ConnectionConfig(
        server="https://k8s.test", credentials=ExecPlugin(plugin.config(behaviour="fail"))
    )
    seen: list[str] = []
    async with KubeClient(config, transport=apiserver(lambda t: True, seen)) as client:
        with pytest.raises(CredentialError, match="exit code 3"):
            await client.get("/api/v1/namespaces/default")
    assert seen == [], "nothing is sent without a credential"


async def test_a_rotated_token_file_is_reread_after_a_401(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("old")
    config = ConnectionConfig(
        server="https://k8s.test", credentials=FileToken(token_file, refresh_interval=3600)
    )
    seen: list[str] = []
    async with KubeClient(config, transport=apiserver(lambda t: t == "new", seen)) as client:
        with pytest.raises(ApiError, match="401"):
            await client.get("/x")
        token_file.write_text("new\n")
        assert await client.get("/x") == {"kind": "Namespace"}
    assert seen == ["old", "old", "new"], "unchanged file: no retry; rotated file: retried with the new token"


async def test_not_found_is_not_an_auth_problem(plugin: Plugin) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json={"kind": "Status", "code": 404, "reason": "NotFound"})

    config = ConnectionConfig(server="https://k8s.test", credentials=ExecPlugin(plugin.config()))
    async with KubeClient(config, transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(NotFoundError):
            await client.get("/x")
    assert plugin.runs == 1
