"""Connection settings from kubeconfig files and from an in-cluster service account."""

from __future__ import annotations

import base64
import os
import ssl
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from volprobe.runtime.kube import (
    ConfigError,
    ConnectionConfig,
    Credential,
    ExecPlugin,
    FileToken,
    StaticCredentials,
    load_config,
    load_incluster,
    load_kubeconfig,
)
from volprobe.runtime.kube.config import environment_proxy, kubeconfig_paths


@dataclass(frozen=True)
class Pki:
    ca: Path
    cert: Path
    key: Path

    def b64(self, path: Path) -> str:
        return base64.b64encode(path.read_bytes()).decode()


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A self-signed CA and a client certificate signed by it (EC keys: fast)."""
    root = tmp_path_factory.mktemp("pki")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=root, check=True, capture_output=True)

    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "ca.key")
    openssl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=test-ca", "-days", "2", "-out", "ca.crt")
    openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", "client.key")
    openssl("req", "-new", "-key", "client.key", "-subj", "/CN=admin/O=system:masters", "-out", "client.csr")
    openssl(
        "x509", "-req", "-in", "client.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
        "-days", "2", "-out", "client.crt",
    )  # fmt: skip
    return Pki(root / "ca.crt", root / "client.crt", root / "client.key")


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point tempfile at an empty directory so a test can see what is left behind."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    return scratch


def write_kubeconfig(path: Path, cluster: dict[str, Any], user: dict[str, Any], **extra: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "c", "cluster": cluster},
            {"name": "other", "cluster": {"server": "https://o"}},
        ],
        "users": [{"name": "u", "user": user}],
        "contexts": [
            {"name": "main", "context": {"cluster": "c", "user": "u", "namespace": "team"}},
            {"name": "second", "context": {"cluster": "other", "user": "u"}},
        ],
        "current-context": "main",
        **extra,
    }
    path.write_text(yaml.safe_dump(document))
    return path


def ca_subjects(context: ssl.SSLContext) -> list[Any]:
    return [cert["subject"] for cert in context.get_ca_certs()]


async def credential(config: ConnectionConfig) -> Credential:
    return await config.credentials.current()


async def test_inline_data_loads_and_leaves_no_files(tmp_path: Path, pki: Pki, private_tmp: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://10.0.0.1:6443/", "certificate-authority-data": pki.b64(pki.ca)},
        {"client-certificate-data": pki.b64(pki.cert), "client-key-data": pki.b64(pki.key)},
    )
    config = load_kubeconfig(path)
    assert config.server == "https://10.0.0.1:6443"
    assert config.namespace == "team"
    presented = await credential(config)
    assert presented.token is None
    assert presented.certificate is not None
    assert presented.certificate.certificate == pki.cert.read_bytes()
    context = config.tls.ssl_context(presented.certificate)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    assert ((("commonName", "test-ca"),),) in ca_subjects(context)
    assert os.listdir(private_tmp) == []


def test_private_files_are_mode_0600_while_they_exist(
    tmp_path: Path, pki: Pki, private_tmp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    modes: list[int] = []
    original = ssl.SSLContext.load_cert_chain

    def spy(self: ssl.SSLContext, certfile: str, keyfile: str | None = None, password: Any = None) -> None:
        modes.extend(os.stat(name).st_mode & 0o777 for name in (certfile, keyfile) if name)
        modes.append(os.stat(Path(certfile).parent).st_mode & 0o777)
        original(self, certfile, keyfile)

    monkeypatch.setattr(ssl.SSLContext, "load_cert_chain", spy)
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://k", "certificate-authority-data": pki.b64(pki.ca)},
        {"client-certificate-data": pki.b64(pki.cert), "client-key-data": pki.b64(pki.key)},
    )
    load_kubeconfig(path)
    assert modes == [0o600, 0o600, 0o700]


async def test_file_references_are_relative_to_the_kubeconfig(tmp_path: Path, pki: Pki) -> None:
    here = tmp_path / "kube"
    here.mkdir()
    for source in (pki.ca, pki.cert, pki.key):
        (here / source.name).write_bytes(source.read_bytes())
    path = write_kubeconfig(
        here / "config",
        {"server": "https://k", "certificate-authority": "ca.crt"},
        {"client-certificate": "client.crt", "client-key": str(here / "client.key")},
    )
    config = load_kubeconfig(path)
    assert ((("commonName", "test-ca"),),) in ca_subjects(config.tls.ssl_context())
    assert (await credential(config)).certificate is not None


async def test_token_and_named_context(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", {"server": "https://k", "insecure-skip-tls-verify": True}, {"token": "abc"}
    )
    config = load_kubeconfig(path, context="second")
    assert config.server == "https://o"
    assert config.namespace == "default"
    assert await credential(config) == Credential(token="abc")
    insecure = load_kubeconfig(path)
    assert insecure.tls.ssl_context().verify_mode == ssl.CERT_NONE


def test_token_file_is_read_again_after_the_refresh_interval(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("one\n")
    now = [0.0]
    token = FileToken(token_file, refresh_interval=60, clock=lambda: now[0])
    assert token.token() == "one"
    token_file.write_text("two")
    now[0] = 59
    assert token.token() == "one"
    now[0] = 60
    assert token.token() == "two"
    token_file.unlink()
    now[0] = 200
    assert token.token() == "two", "a failed re-read keeps the last good token"


async def test_kubeconfig_token_file_wins_over_token_while_it_can_be_read(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file")
    path = write_kubeconfig(
        tmp_path / "config", {"server": "https://k"}, {"tokenFile": "tok", "token": "inline"}
    )
    config = load_kubeconfig(path)
    assert await credential(config) == Credential(token="from-file")
    assert isinstance(config.credentials, FileToken)
    (tmp_path / "tok").write_text("rotated")
    assert await config.credentials.rejected(Credential(token="from-file")), "a 401 re-reads the file at once"
    assert await credential(config) == Credential(token="rotated")
    assert not await config.credentials.rejected(Credential(token="rotated")), "same token: no retry"
    (tmp_path / "tok").unlink()
    fallback = load_kubeconfig(path)
    assert await credential(fallback) == Credential(token="inline")


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"auth-provider": {"name": "gcp"}}, "use the provider's exec credential plugin"),
        ({"username": "u", "password": "p"}, "basic authentication is not supported"),
        ({"token": "t", "as": "admin"}, "impersonation is not supported"),
        ({"client-certificate-data": "Zm9v"}, "both the certificate and its key"),
        ({"client-key-data": "!!!"}, "not valid base64"),
        ({"client-certificate-data": "Zm9v", "client-key-data": "YmFy"}, "cannot set up TLS"),
        ({"exec": {"command": "aws"}}, "apiVersion None is not supported"),
        (
            {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1alpha1"}},
            "v1alpha1 was removed",
        ),
        (
            {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1"}},
            "interactiveMode is required",
        ),
        (
            {
                "exec": {
                    "command": "aws",
                    "apiVersion": "client.authentication.k8s.io/v1beta1",
                    "interactiveMode": "Sometimes",
                }
            },
            "is not one of Never, IfAvailable, Always",
        ),
    ],
)
def test_unsupported_or_broken_users(tmp_path: Path, user: dict[str, Any], message: str) -> None:
    path = write_kubeconfig(tmp_path / "config", {"server": "https://k"}, user)
    with pytest.raises(ConfigError, match=message):
        load_kubeconfig(path)


def test_missing_pieces(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_kubeconfig(tmp_path / "absent")
    path = write_kubeconfig(tmp_path / "config", {"server": "https://k"}, {})
    with pytest.raises(ConfigError, match="no context named 'nope'"):
        load_kubeconfig(path, context="nope")
    no_server = write_kubeconfig(tmp_path / "config2", {}, {})
    with pytest.raises(ConfigError, match="has no server"):
        load_kubeconfig(no_server)


def test_kubeconfig_paths(tmp_path: Path) -> None:
    joined = os.pathsep.join([str(tmp_path / "a"), "", str(tmp_path / "b")])
    assert kubeconfig_paths({"KUBECONFIG": joined}) == [tmp_path / "a", tmp_path / "b"]
    assert kubeconfig_paths({}) == [Path.home() / ".kube" / "config"]


@pytest.fixture
def account(tmp_path: Path, pki: Pki) -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("sa-token")
    (directory / "ca.crt").write_bytes(pki.ca.read_bytes())
    (directory / "namespace").write_text("volprobe\n")
    return directory


async def test_incluster(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_incluster(environ=environ, account_dir=account)
    assert config.server == "https://10.96.0.1:443"
    assert config.namespace == "volprobe"
    assert await credential(config) == Credential(token="sa-token")
    assert ((("commonName", "test-ca"),),) in ca_subjects(config.tls.ssl_context())


def test_incluster_ipv6_and_missing_env(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_incluster(environ=environ, account_dir=account).server == "https://[fd00::1]:443"
    with pytest.raises(ConfigError, match="not in a cluster"):
        load_incluster(environ={}, account_dir=account)


async def test_incluster_token_rotates(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}
    config = load_incluster(environ=environ, account_dir=account, token_refresh_interval=0)
    (account / "token").write_text("rotated")
    assert await credential(config) == Credential(token="rotated")


def test_load_config_order(tmp_path: Path, account: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Explicit kubeconfig, then $KUBECONFIG, then the pod's service account, then ~/.kube/config."""
    pod = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    monkeypatch.setattr("volprobe.runtime.kube.config.SERVICE_ACCOUNT_DIR", account)
    explicit = write_kubeconfig(tmp_path / "explicit", {"server": "https://explicit"}, {})
    listed = write_kubeconfig(tmp_path / "listed", {"server": "https://listed"}, {})
    home = tmp_path / "home"
    (home / ".kube").mkdir(parents=True)
    write_kubeconfig(home / ".kube" / "config", {"server": "https://home"}, {})
    monkeypatch.setenv("HOME", str(home))
    assert load_config(explicit, environ={**pod, "KUBECONFIG": str(listed)}).server == "https://explicit"
    assert load_config(environ={**pod, "KUBECONFIG": str(listed)}).server == "https://listed"
    assert load_config(environ=pod).server == "https://10.96.0.1:443"
    assert load_config(environ={}).server == "https://home"


def kubeconfig(path: Path, **document: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"apiVersion": "v1", "kind": "Config", **document}))
    return path


def named(kind: str, name: str, value: dict[str, Any]) -> dict[str, Any]:
    return {"name": name, kind: value}


async def test_kubeconfig_files_merge_as_kubectl_merges_them(tmp_path: Path) -> None:
    """First file to define a name wins it whole; first current-context wins; missing files are skipped;
    relative paths stay relative to the file that holds them."""
    first = kubeconfig(
        tmp_path / "one" / "config",
        clusters=[named("cluster", "shared", {"server": "https://first"})],
        users=[named("user", "me", {"tokenFile": "token"})],
        contexts=[named("context", "work", {"cluster": "shared", "user": "me", "namespace": "ns1"})],
    )
    (tmp_path / "one" / "token").write_text("first-token")
    second = kubeconfig(
        tmp_path / "two" / "config",
        clusters=[
            named("cluster", "shared", {"server": "https://second", "insecure-skip-tls-verify": True}),
            named("cluster", "extra", {"server": "https://extra"}),
        ],
        users=[named("user", "me", {"token": "second-token"})],
        contexts=[named("context", "other", {"cluster": "extra", "user": "me"})],
        **{"current-context": "work"},
    )
    third = kubeconfig(tmp_path / "three", **{"current-context": "other"})
    listed = os.pathsep.join([str(tmp_path / "absent"), str(first), str(second), str(third)])
    config = load_kubeconfig(environ={"KUBECONFIG": listed})
    assert config.server == "https://first", "the first definition of 'shared' wins whole"
    assert not config.tls.insecure, "fields of a later 'shared' are not mixed in"
    assert config.namespace == "ns1"
    assert await credential(config) == Credential(token="first-token"), "tokenFile relative to file one"
    other = load_kubeconfig(context="other", environ={"KUBECONFIG": listed})
    assert other.server == "https://extra"
    with pytest.raises(ConfigError, match="no kubeconfig found"):
        load_kubeconfig(environ={"KUBECONFIG": str(tmp_path / "absent")})
    with pytest.raises(ConfigError, match="has no current-context"):
        load_kubeconfig(environ={"KUBECONFIG": str(first)})
    with pytest.raises(ConfigError, match="cannot read kubeconfig"):
        load_kubeconfig(tmp_path / "absent", environ={"KUBECONFIG": listed})


def test_a_broken_file_in_the_list_is_an_error(tmp_path: Path) -> None:
    good = write_kubeconfig(tmp_path / "good", {"server": "https://k"}, {})
    broken = tmp_path / "broken"
    broken.write_text("clusters: [unclosed")
    with pytest.raises(ConfigError, match=f"cannot read kubeconfig {broken}"):
        load_kubeconfig(environ={"KUBECONFIG": os.pathsep.join([str(good), str(broken)])})


def exec_section(**fields: Any) -> dict[str, Any]:
    return {"apiVersion": "client.authentication.k8s.io/v1", "interactiveMode": "Never", **fields}


def test_exec_user_becomes_a_plugin_with_cluster_info(tmp_path: Path, pki: Pki) -> None:
    cluster = {
        "server": "https://k:6443",
        "certificate-authority": str(pki.ca),
        "tls-server-name": "api.internal",
        "proxy-url": "http://proxy:3128",
        "extensions": [
            {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "k8s"}},
            {"name": "other", "extension": {"ignored": True}},
        ],
    }
    user = {
        "exec": exec_section(
            command="./bin/get-token",
            args=["--cluster", "c"],
            env=[{"name": "REGION", "value": "eu"}],
            provideClusterInfo=True,
            installHint="install get-token",
        )
    }
    config = load_kubeconfig(write_kubeconfig(tmp_path / "kube" / "config", cluster, user))
    plugin = config.credentials
    assert isinstance(plugin, ExecPlugin)
    assert plugin.config.command == str(tmp_path / "kube" / "bin" / "get-token"), "relative to the kubeconfig"
    assert plugin.config.args == ("--cluster", "c")
    assert plugin.config.env == (("REGION", "eu"),)
    assert plugin.config.interactive_mode == "Never"
    assert plugin.config.install_hint == "install get-token"
    assert plugin.config.cluster == {
        "server": "https://k:6443",
        "tls-server-name": "api.internal",
        "certificate-authority-data": pki.b64(pki.ca),
        "proxy-url": "http://proxy:3128",
        "config": {"audience": "k8s"},
    }
    assert config.proxy == "http://proxy:3128"
    assert config.tls.server_name == "api.internal"


def test_exec_command_without_a_slash_is_looked_up_on_path(tmp_path: Path) -> None:
    user = {"exec": {"command": "aws", "apiVersion": "client.authentication.k8s.io/v1beta1"}}
    config = load_kubeconfig(write_kubeconfig(tmp_path / "config", {"server": "https://k"}, user))
    assert isinstance(config.credentials, ExecPlugin)
    assert config.credentials.config.command == "aws"
    assert config.credentials.config.interactive_mode == "IfAvailable", "the v1beta1 default"


def test_a_token_in_the_kubeconfig_wins_over_its_exec_plugin(tmp_path: Path) -> None:
    user = {"token": "static", "exec": exec_section(command="never-run")}
    config = load_kubeconfig(write_kubeconfig(tmp_path / "config", {"server": "https://k"}, user))
    assert config.credentials == StaticCredentials(Credential(token="static"))


def test_tls_server_name_and_insecure_with_a_ca(tmp_path: Path, pki: Pki) -> None:
    path = write_kubeconfig(
        tmp_path / "config", {"server": "https://10.0.0.1", "tls-server-name": "kubernetes"}, {}
    )
    context = load_kubeconfig(path).tls.ssl_context()
    assert getattr(context, "server_name", None) == "kubernetes"
    both = write_kubeconfig(
        tmp_path / "both",
        {"server": "https://k", "insecure-skip-tls-verify": True, "certificate-authority": str(pki.ca)},
        {},
    )
    with pytest.raises(ConfigError, match="cannot be combined"):
        load_kubeconfig(both)
    bad_proxy = write_kubeconfig(tmp_path / "proxy", {"server": "https://k", "proxy-url": "ftp://p"}, {})
    with pytest.raises(ConfigError, match="http, https, socks5"):
        load_kubeconfig(bad_proxy)


@pytest.mark.parametrize(
    ("server", "environ", "proxy"),
    [
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://k8s.example:6443", {"https_proxy": "http://lower:3128"}, "http://lower:3128"),
        ("https://k8s.example:6443", {"HTTP_PROXY": "http://p:3128"}, None),
        ("http://k8s.example:8080", {"HTTP_PROXY": "http://p:3128"}, "http://p:3128"),
        ("https://127.0.0.1:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://localhost:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://[::1]:6443", {"HTTPS_PROXY": "http://p:3128"}, None),
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "other.example"}, "http://p"),
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "x, .example"}, None),
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p", "no_proxy": "k8s.example:6443"}, None),
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "k8s.example:443"}, "http://p"),
        ("https://10.1.2.3:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "10.0.0.0/8"}, None),
        ("https://11.1.2.3:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "10.0.0.0/8"}, "http://p"),
        ("https://k8s.example:6443", {"HTTPS_PROXY": "http://p", "NO_PROXY": "*"}, None),
    ],
)
def test_environment_proxy(server: str, environ: dict[str, str], proxy: str | None) -> None:
    assert environment_proxy(server, environ) == proxy


def test_proxy_url_wins_over_the_environment(tmp_path: Path) -> None:
    path = write_kubeconfig(tmp_path / "config", {"server": "https://k", "proxy-url": "socks5://s:1080"}, {})
    assert load_kubeconfig(path).proxy_url({"HTTPS_PROXY": "http://env:3128"}) == "socks5://s:1080"
