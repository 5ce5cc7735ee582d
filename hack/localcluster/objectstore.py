"""A real S3 server in the local cluster: versitygw (Apache-2.0) on the POSIX backend.

Built from the Go module proxy like every other component (pinned in hack/versions.env, cached
by version), packed into a one-binary image, and run as a Deployment pinned to the real node,
behind a Service with a fixed ClusterIP: pods (the controller) and host processes (`volprobe
check`, the tests) both reach it there, and nothing needs cluster DNS, which this cluster has not.

Two containers share one data directory:

* `s3` serves plain HTTP (`ENDPOINT`), the everyday target;
* `s3-tls` serves HTTPS (`TLS_ENDPOINT`) with a self-signed certificate made at `up`, so that
  a probe without the CA bundle fails with `tls_error` and one with it passes.

The data directory is a hostPath under `.cluster/objectstore/data`, owned by the server's
non-root user, so tests can flip bytes of a stored object or make a bucket read-only on disk
(as root on the host) and `cluster-down` removes it with the rest of the state. There is no
liveness probe on purpose: the outage this server exists to imitate (seed 000) was a gateway
killed by its liveness probe in the middle of the work that made it slow.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from . import images
from .config import HACK_DIR, Layout, read_versions

NAMESPACE = "volprobe-s3"
SERVICE_IP = "10.96.0.80"
"""In the static band of the service range (10.96.0.0/24), which dynamic allocation avoids."""
HTTP_PORT = 7070
HTTPS_PORT = 7443
ENDPOINT = f"http://{SERVICE_IP}:{HTTP_PORT}"
TLS_ENDPOINT = f"https://{SERVICE_IP}:{HTTPS_PORT}"
REGION = "us-east-1"
BUCKET = "volprobe"
"""A bucket that exists from the start (for the demo); tests make their own."""
ACCESS_KEY_ID = "volprobe-local"
SERVER_UID = 10001
MANIFEST = HACK_DIR / "localcluster" / "manifests" / "objectstore.yaml"
PACKAGE = "github.com/versity/versitygw/cmd/versitygw"


def state_dir(layout: Layout) -> Path:
    return layout.state / "objectstore"


def data_dir(layout: Layout) -> Path:
    """The server's POSIX root: each directory is a bucket, each file below it an object."""
    return state_dir(layout) / "data"


def certificate(layout: Layout) -> Path:
    """The HTTPS container's self-signed certificate (also the CA bundle that trusts it)."""
    return state_dir(layout) / "tls" / "tls.crt"


def credentials(layout: Layout) -> tuple[str, str]:
    """(access key id, secret key) of the server's root account, made at `up`."""
    return ACCESS_KEY_ID, (state_dir(layout) / "secret-key").read_text().strip()


def image_ref() -> str:
    return read_versions()["VERSITYGW_IMAGE"]


def image(layout: Layout, binary_dir: Path) -> Path:
    """An OCI archive holding only the static versitygw binary (cached per binary)."""
    binary = binary_dir / "versitygw"
    ref = image_ref()

    def build(work: Path, archive: Path) -> None:
        rootfs = work / "rootfs"
        (rootfs / "usr" / "local" / "bin").mkdir(parents=True)
        (rootfs / "tmp").mkdir(mode=0o1777)
        shutil.copy2(binary, rootfs / "usr" / "local" / "bin" / "versitygw")
        images.tar_directory(rootfs, work / "layer.tar")
        config = images.ImageConfig(
            entrypoint=["/usr/local/bin/versitygw"], user=f"{SERVER_UID}:{SERVER_UID}"
        )
        images.write_oci_archive([work / "layer.tar"], config, ref, archive)

    key = images._recipe_key(ref, images._sha256_file(binary))
    return images._cached(layout, "versitygw", key, build)


def _self_signed(directory: Path) -> None:
    """A fresh EC key and a self-signed certificate naming the Service's address (30 days)."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            "tls.key",
            "-out",
            "tls.crt",
            "-days",
            "30",
            "-subj",
            "/CN=volprobe-s3",
            "-addext",
            f"subjectAltName=IP:{SERVICE_IP},DNS:versitygw.{NAMESPACE}.svc,IP:127.0.0.1",
        ],
        cwd=directory,
        check=True,
        capture_output=True,
    )
    (directory / "tls.key").chmod(0o600)


def _prepare_host(layout: Layout) -> None:
    """Data directory (with the demo bucket), certificate and root secret, made once per cluster."""
    root = state_dir(layout)
    data = data_dir(layout)
    (data / BUCKET).mkdir(parents=True, exist_ok=True)
    for directory in (data, data / BUCKET):
        os.chown(directory, SERVER_UID, SERVER_UID)
    if not certificate(layout).exists():
        _self_signed(certificate(layout).parent)
    secret = root / "secret-key"
    if not secret.exists():
        secret.write_text(secrets.token_urlsafe(24) + "\n")
        secret.chmod(0o600)


def manifest(layout: Layout) -> str:
    """The namespace, secrets, Deployment and Service, with this cluster's paths and keys filled in."""
    tls = certificate(layout).parent
    _, secret_key = credentials(layout)
    values = {
        "@NAMESPACE@": NAMESPACE,
        "@IMAGE@": image_ref(),
        "@DATA_DIR@": str(data_dir(layout).resolve()),
        "@SERVICE_IP@": SERVICE_IP,
        "@HTTP_PORT@": str(HTTP_PORT),
        "@HTTPS_PORT@": str(HTTPS_PORT),
        "@REGION@": REGION,
        "@UID@": str(SERVER_UID),
        "@ACCESS_KEY_ID@": ACCESS_KEY_ID,
        "@SECRET_KEY@": secret_key,
        "@TLS_CRT@": (tls / "tls.crt").read_text().replace("\n", "\\n"),
        "@TLS_KEY@": (tls / "tls.key").read_text().replace("\n", "\\n"),
    }
    text = MANIFEST.read_text()
    for placeholder, value in values.items():
        text = text.replace(placeholder, value)
    return text


def install(layout: Layout, apply: Callable[[str], object]) -> None:
    """Prepare the host side and apply the manifests (idempotent: `up` on a running cluster too)."""
    _prepare_host(layout)
    apply(manifest(layout))
