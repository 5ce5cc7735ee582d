"""Certificates and kubeconfigs for the local cluster, made with the openssl command.

Everything is regenerated on each `up` (it takes well under a second with EC keys), so there is
no certificate state to rotate or leak between runs.
"""

from __future__ import annotations

import base64
import subprocess
from dataclasses import dataclass
from pathlib import Path

import yaml


@dataclass(frozen=True)
class Identity:
    """A client certificate: `cn` is the user name and `orgs` the groups the API server sees."""

    name: str
    cn: str
    orgs: tuple[str, ...] = ()


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _key(path: Path) -> None:
    _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path.name, cwd=path.parent)


def make_ca(pki: Path) -> None:
    pki.mkdir(parents=True, exist_ok=True)
    _key(pki / "ca.key")
    _openssl(
        "req",
        "-x509",
        "-new",
        "-key",
        "ca.key",
        "-subj",
        "/CN=volprobe-local-ca",
        "-days",
        "30",
        "-out",
        "ca.crt",
        cwd=pki,
    )


def _sign(pki: Path, name: str, subject: str, extensions: str) -> None:
    _key(pki / f"{name}.key")
    (pki / f"{name}.ext").write_text(extensions)
    _openssl("req", "-new", "-key", f"{name}.key", "-subj", subject, "-out", f"{name}.csr", cwd=pki)
    _openssl(
        "x509",
        "-req",
        "-in",
        f"{name}.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "30",
        "-extfile",
        f"{name}.ext",
        "-out",
        f"{name}.crt",
        cwd=pki,
    )
    (pki / f"{name}.csr").unlink()
    (pki / f"{name}.ext").unlink()


def make_client_cert(pki: Path, identity: Identity) -> None:
    subject = "".join(f"/O={org}" for org in identity.orgs) + f"/CN={identity.cn}"
    _sign(
        pki,
        identity.name,
        subject,
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=clientAuth\n",
    )


def make_serving_cert(pki: Path, name: str, cn: str, dns: list[str], ips: list[str]) -> None:
    alt = ",".join([f"DNS:{d}" for d in dns] + [f"IP:{ip}" for ip in ips])
    _sign(
        pki,
        name,
        f"/CN={cn}",
        "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
        f"extendedKeyUsage=serverAuth,clientAuth\nsubjectAltName={alt}\n",
    )


def make_service_account_keys(pki: Path) -> None:
    _key(pki / "sa.key")
    _openssl("ec", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=pki)


def write_kubeconfig(path: Path, *, server: str, pki: Path, identity: str, embed: bool = True) -> None:
    """A kubeconfig for `identity`'s certificate; embedded data so the file stands alone."""

    def data(name: str) -> str:
        return base64.b64encode((pki / name).read_bytes()).decode()

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "volprobe", "cluster": {"server": server, "certificate-authority-data": data("ca.crt")}}
        ],
        "users": [
            {
                "name": identity,
                "user": {
                    "client-certificate-data": data(f"{identity}.crt"),
                    "client-key-data": data(f"{identity}.key"),
                }
                if embed
                else {
                    "client-certificate": str(pki / f"{identity}.crt"),
                    "client-key": str(pki / f"{identity}.key"),
                },
            }
        ],
        "contexts": [{"name": "volprobe", "context": {"cluster": "volprobe", "user": identity}}],
        "current-context": "volprobe",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
