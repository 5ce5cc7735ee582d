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

from volprobe.runtime.kube import ConfigError, FileToken, load_config, load_incluster, load_kubeconfig
from volprobe.runtime.kube.config import default_kubeconfig_path


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


def test_inline_data_loads_and_leaves_no_files(tmp_path: Path, pki: Pki, private_tmp: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config",
        {"server": "https://10.0.0.1:6443/", "certificate-authority-data": pki.b64(pki.ca)},
        {"client-certificate-data": pki.b64(pki.cert), "client-key-data": pki.b64(pki.key)},
    )
    config = load_kubeconfig(path)
    assert config.server == "https://10.0.0.1:6443"
    assert config.namespace == "team"
    assert config.token is None
    assert config.auth_headers() == {}
    assert config.ssl_context is not None
    assert config.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert config.ssl_context.check_hostname
    assert ((("commonName", "test-ca"),),) in ca_subjects(config.ssl_context)
    assert list(private_tmp.iterdir()) == []


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


def test_file_references_are_relative_to_the_kubeconfig(tmp_path: Path, pki: Pki) -> None:
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
    assert config.ssl_context is not None
    assert ((("commonName", "test-ca"),),) in ca_subjects(config.ssl_context)


def test_token_and_named_context(tmp_path: Path) -> None:
    path = write_kubeconfig(
        tmp_path / "config", {"server": "https://k", "insecure-skip-tls-verify": True}, {"token": "abc"}
    )
    config = load_kubeconfig(path, context="second")
    assert config.server == "https://o"
    assert config.namespace == "default"
    assert config.auth_headers() == {"Authorization": "Bearer abc"}
    insecure = load_kubeconfig(path)
    assert insecure.ssl_context is not None
    assert insecure.ssl_context.verify_mode == ssl.CERT_NONE


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


def test_kubeconfig_token_file(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("from-file")
    path = write_kubeconfig(tmp_path / "config", {"server": "https://k"}, {"tokenFile": "tok"})
    assert load_kubeconfig(path).auth_headers() == {"Authorization": "Bearer from-file"}


@pytest.mark.parametrize(
    ("user", "message"),
    [
        ({"exec": {"command": "aws"}}, "not supported"),
        ({"client-certificate-data": "Zm9v"}, "both the certificate and its key"),
        ({"client-key-data": "!!!"}, "not valid base64"),
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


def test_default_kubeconfig_path(tmp_path: Path) -> None:
    joined = os.pathsep.join([str(tmp_path / "a"), str(tmp_path / "b")])
    assert default_kubeconfig_path({"KUBECONFIG": joined}) == tmp_path / "a"
    assert default_kubeconfig_path({}) == Path.home() / ".kube" / "config"


@pytest.fixture
def account(tmp_path: Path, pki: Pki) -> Path:
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text("sa-token")
    (directory / "ca.crt").write_bytes(pki.ca.read_bytes())
    (directory / "namespace").write_text("volprobe\n")
    return directory


def test_incluster(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "10.96.0.1", "KUBERNETES_SERVICE_PORT": "443"}
    config = load_incluster(environ=environ, account_dir=account)
    assert config.server == "https://10.96.0.1:443"
    assert config.namespace == "volprobe"
    assert config.auth_headers() == {"Authorization": "Bearer sa-token"}
    assert config.ssl_context is not None
    assert ((("commonName", "test-ca"),),) in ca_subjects(config.ssl_context)


def test_incluster_ipv6_and_missing_env(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443"}
    assert load_incluster(environ=environ, account_dir=account).server == "https://[fd00::1]:443"
    with pytest.raises(ConfigError, match="not in a cluster"):
        load_incluster(environ={}, account_dir=account)


def test_incluster_token_rotates(account: Path) -> None:
    environ = {"KUBERNETES_SERVICE_HOST": "h", "KUBERNETES_SERVICE_PORT": "1"}
    config = load_incluster(environ=environ, account_dir=account, token_refresh_interval=0)
    (account / "token").write_text("rotated")
    assert config.auth_headers() == {"Authorization": "Bearer rotated"}


def test_load_config_prefers_an_explicit_kubeconfig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.96.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", "443")
    path = write_kubeconfig(tmp_path / "config", {"server": "https://explicit"}, {})
    assert load_config(path).server == "https://explicit"
