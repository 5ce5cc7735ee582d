"""Container images built on this machine and imported into containerd; nothing is pulled.

An image is a set of layer tarballs plus an OCI config, wrapped into an OCI image-layout
archive that `ctr images import` accepts. Each archive is cached under `<cache>/images/` with a
key derived from its recipe, so it is built once per recipe change.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .config import Layout, read_versions

PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

PAUSE_SOURCE = """package main

// The pod sandbox's init: holds the namespaces open, reaps orphans, exits on SIGINT/SIGTERM.

import (
\t"os"
\t"os/signal"
\t"syscall"
)

func main() {
\tsignals := make(chan os.Signal, 8)
\tsignal.Notify(signals, syscall.SIGINT, syscall.SIGTERM, syscall.SIGCHLD)
\tfor sig := range signals {
\t\tif sig != syscall.SIGCHLD {
\t\t\tos.Exit(0)
\t\t}
\t\tfor {
\t\t\tvar status syscall.WaitStatus
\t\t\tpid, err := syscall.Wait4(-1, &status, syscall.WNOHANG, nil)
\t\t\tif pid <= 0 || err != nil {
\t\t\t\tbreak
\t\t\t}
\t\t}
\t}
}
"""


@dataclass(frozen=True)
class ImageConfig:
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    env: list[str] = field(default_factory=lambda: [PATH_ENV])
    user: str = ""
    workdir: str = "/"


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def tar_directory(source: Path, out: Path) -> None:
    """A layer tarball of `source`, owners kept numeric (uids inside the image, not ours)."""
    subprocess.run(
        ["tar", "--numeric-owner", "--sort=name", "--xattrs", "-C", str(source), "-cf", str(out), "."],
        check=True,
    )


def write_oci_archive(layers: list[Path], config: ImageConfig, ref: str, out: Path) -> None:
    """Write an OCI image-layout tar holding one image named `ref` (e.g. `localhost/x:tag`)."""
    with tempfile.TemporaryDirectory(dir=out.parent) as scratch:
        root = Path(scratch)
        blobs = root / "blobs" / "sha256"
        blobs.mkdir(parents=True)

        def add_blob(data: bytes) -> str:
            digest = hashlib.sha256(data).hexdigest()
            (blobs / digest).write_bytes(data)
            return digest

        layer_descriptors = []
        diff_ids = []
        for layer in layers:
            digest = _sha256_file(layer)
            shutil.copyfile(layer, blobs / digest)
            diff_ids.append(f"sha256:{digest}")
            layer_descriptors.append(
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": f"sha256:{digest}",
                    "size": layer.stat().st_size,
                }
            )
        image_config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": config.env,
                "Entrypoint": config.entrypoint or None,
                "Cmd": config.cmd or None,
                "User": config.user,
                "WorkingDir": config.workdir,
            },
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
            # Builders (buildah) match history entries to layers; one entry per layer.
            "history": [{"created_by": f"volprobe localcluster: {layer.name}"} for layer in layers],
        }
        config_bytes = json.dumps(image_config, sort_keys=True).encode()
        config_digest = add_blob(config_bytes)
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": f"sha256:{config_digest}",
                "size": len(config_bytes),
            },
            "layers": layer_descriptors,
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        manifest_digest = add_blob(manifest_bytes)
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": f"sha256:{manifest_digest}",
                    "size": len(manifest_bytes),
                    "annotations": {
                        "io.containerd.image.name": ref,
                        "org.opencontainers.image.ref.name": ref.rsplit(":", 1)[-1],
                    },
                }
            ],
        }
        (root / "index.json").write_text(json.dumps(index))
        (root / "oci-layout").write_text(json.dumps({"imageLayoutVersion": "1.0.0"}))
        partial = out.with_suffix(".partial")
        with tarfile.open(partial, "w") as archive:
            for name in ("oci-layout", "index.json", "blobs"):
                archive.add(root / name, arcname=name)
        partial.rename(out)


ARCHIVE_FORMAT = "2"
"""Bump when write_oci_archive's output changes, so cached archives are rebuilt."""


def _recipe_key(*parts: str) -> str:
    return hashlib.sha256("\0".join((ARCHIVE_FORMAT, *parts)).encode()).hexdigest()[:12]


def _cached(layout: Layout, name: str, key: str, build: Callable[[Path, Path], None]) -> Path:
    """Run `build(work_dir, archive)` unless an archive with this key already exists."""
    layout.images.mkdir(parents=True, exist_ok=True)
    archive = layout.images / f"{name}-{key}.tar"
    if archive.exists():
        return archive
    work = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=layout.images))
    try:
        build(work, archive)
    finally:
        _remove_tree(work)
    for stale in layout.images.glob(f"{name}-*.tar"):
        if stale != archive:
            stale.unlink()  # an older recipe's archive: only the newest is ever used
    return archive


def _remove_tree(path: Path) -> None:
    """Remove a build tree; debootstrap may leave /proc mounted inside it if it was interrupted."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for mount in sorted((m for m in mounts if m.startswith(str(path) + "/")), reverse=True):
        subprocess.run(["umount", "-l", mount], check=False)
    shutil.rmtree(path, ignore_errors=True)


def pause_image(layout: Layout, ref: str) -> Path:
    def build(work: Path, archive: Path) -> None:
        (work / "src").mkdir()
        (work / "src" / "main.go").write_text(PAUSE_SOURCE)
        (work / "src" / "go.mod").write_text("module volprobe.local/pause\n\ngo 1.22\n")
        rootfs = work / "rootfs"
        rootfs.mkdir()
        subprocess.run(
            ["go", "build", "-trimpath", "-ldflags", "-s -w", "-o", str(rootfs / "pause"), "."],
            cwd=work / "src",
            check=True,
            env={**os.environ, "CGO_ENABLED": "0", "GOTOOLCHAIN": "local"},
        )
        tar_directory(rootfs, work / "layer.tar")
        write_oci_archive(
            [work / "layer.tar"], ImageConfig(entrypoint=["/pause"], user="65535:65535"), ref, archive
        )

    return _cached(layout, "pause", _recipe_key(ref, PAUSE_SOURCE), build)


def helper_image(layout: Layout, ref: str) -> Path:
    """busybox-static: what local-path-provisioner's helper pods need (sh, mkdir, rm)."""
    busybox = Path("/bin/busybox")

    def build(work: Path, archive: Path) -> None:
        rootfs = work / "rootfs"
        (rootfs / "bin").mkdir(parents=True)
        (rootfs / "tmp").mkdir(mode=0o1777)
        shutil.copy2(busybox, rootfs / "bin" / "busybox")
        applets = subprocess.run([str(busybox), "--list"], check=True, capture_output=True, text=True).stdout
        for applet in applets.split():
            if applet != "busybox":
                (rootfs / "bin" / applet).symlink_to("busybox")
        tar_directory(rootfs, work / "layer.tar")
        write_oci_archive([work / "layer.tar"], ImageConfig(cmd=["/bin/sh"]), ref, archive)

    return _cached(layout, "helper", _recipe_key(ref, _sha256_file(busybox)), build)


BASE_PACKAGES = ("python3", "ca-certificates")
BASE_TRIM = (
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "var/cache/apt",
    "var/lib/apt/lists",
    "var/log",
)


def base_image(layout: Layout, ref: str) -> Path:
    """Debian minbase with Python: runs volprobe's agent (stdlib only) and its controller."""
    versions = read_versions()
    suite, mirror = versions["DEBIAN_SUITE"], versions["DEBIAN_MIRROR"]

    def build(work: Path, archive: Path) -> None:
        rootfs = work / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                f"--include={','.join(BASE_PACKAGES)}",
                suite,
                str(rootfs),
                mirror,
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for relative in BASE_TRIM:
            target = rootfs / relative
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True, exist_ok=True)
        tar_directory(rootfs, work / "layer.tar")
        config = ImageConfig(
            cmd=["/usr/bin/python3"], env=[PATH_ENV, "LANG=C.UTF-8", "PYTHONDONTWRITEBYTECODE=1"]
        )
        write_oci_archive([work / "layer.tar"], config, ref, archive)

    return _cached(layout, "base", _recipe_key(ref, suite, mirror, *BASE_PACKAGES, *BASE_TRIM), build)


RELEASE_INPUTS = ("Containerfile", "pyproject.toml", "README.md")
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")


def release_image(layout: Layout, ref: str, repo: Path, labels: Mapping[str, str] | None = None) -> Path:
    """volprobe's own image, built from the Containerfile with buildah on the cluster's base image.

    No Docker engine or registry: the base archive is loaded into buildah's storage, the
    Containerfile is built there (its pip install reaches PyPI; the host's CA bundle is mounted
    for the build so a TLS-inspecting proxy is trusted, nothing of it stays in the image), and
    the result is written as an OCI archive for containerd. `labels` (a release's version,
    revision …) are part of the cache key and given to buildah with --label, which it applies
    when it commits the image: buildah 1.28 with --layers reuses a cached LABEL step of the
    Containerfile whatever its build args are (the step's text is its cache key).
    """
    extra = dict(sorted((labels or {}).items()))
    sources = [repo / name for name in RELEASE_INPUTS]
    sources += sorted(p for p in (repo / "src").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    digest = hashlib.sha256()
    for path in sources:
        digest.update(str(path.relative_to(repo)).encode() + b"\0" + path.read_bytes())
    base_ref = read_versions()["BASE_IMAGE"]
    base = base_image(layout, base_ref)

    def build(work: Path, archive: Path) -> None:
        loaded = subprocess.run(
            ["buildah", "pull", "-q", f"oci-archive:{base}"], check=True, capture_output=True, text=True
        ).stdout.split()[-1]
        subprocess.run(["buildah", "tag", loaded, base_ref], check=True)
        volumes = ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"] if CA_BUNDLE.exists() else []
        subprocess.run(
            [
                "buildah",
                "bud",
                "--isolation",
                "chroot",
                "--network",
                "host",
                "--layers",
                "-q",
                *volumes,
                "--pull-never",
                "--build-arg",
                f"BASE_IMAGE={base_ref}",
                *(f"--label={name}={value}" for name, value in extra.items()),
                "-f",
                "Containerfile",
                "-t",
                ref,
                ".",
            ],
            cwd=repo,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        subprocess.run(["buildah", "push", "-q", ref, f"oci-archive:{archive}:{ref}"], check=True)

    key = _recipe_key(ref, base.name, digest.hexdigest(), *(f"{n}={v}" for n, v in extra.items()))
    return _cached(layout, "volprobe", key, build)


def cluster_images(layout: Layout) -> list[Path]:
    """Every image the cluster itself needs, built or taken from the cache."""
    versions = read_versions()
    return [
        pause_image(layout, versions["PAUSE_IMAGE"]),
        helper_image(layout, versions["HELPER_IMAGE"]),
        base_image(layout, versions["BASE_IMAGE"]),
    ]
