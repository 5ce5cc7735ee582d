"""Build the cluster's Go binaries from the Go module proxy, once per version.

Each component lands in `<cache>/bin/<component>-<version>/` with a `.complete` marker written
last, so an interrupted build is redone and a finished one is never rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .config import HACK_DIR, Layout, read_versions

KUBERNETES_COMMANDS = (
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubelet",
    "kube-proxy",
    "kubectl",
)

ETCD_MAIN = """package main

import (
\t"os"

\t"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() { etcdmain.Main(os.Args) }
"""


def _go_env(layout: Layout) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        CGO_ENABLED="0",
        GOFLAGS="-mod=mod -trimpath",
        GOTOOLCHAIN="local",
        GOPROXY=env.get("GOPROXY", "https://proxy.golang.org"),
    )
    return env


def _run(cmd: Sequence[str], *, cwd: Path, env: dict[str, str], log: Path) -> None:
    with log.open("a") as out:
        out.write(f"$ {' '.join(cmd)}\n")
        out.flush()
        proc = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        tail = log.read_text().splitlines()[-30:]
        raise RuntimeError(f"{' '.join(cmd)} failed (exit {proc.returncode}); see {log}:\n" + "\n".join(tail))


def _target(layout: Layout, component: str, version: str) -> Path:
    return layout.bin / f"{component}-{version}"


def _done(target: Path) -> bool:
    return (target / ".complete").exists()


def _finish(target: Path) -> None:
    (target / ".complete").write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ\n", time.gmtime()))


def _scratch(layout: Layout, name: str) -> Path:
    work = layout.cache / "src" / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    return work


def staging_replacements(kubernetes_gomod: str, minor_version: str) -> list[str]:
    """Turn `k8s.io/x => ./staging/src/k8s.io/x` into `k8s.io/x => k8s.io/x v0.Y.Z`.

    k8s.io/kubernetes cannot be `go install`ed because its go.mod points the staging modules at
    local paths; a scratch module that requires it and maps each of them to its published
    version builds the same code.
    """
    names = re.findall(r"^\s*(k8s\.io/[\w.-]+)\s+=>\s+\./staging/", kubernetes_gomod, re.MULTILINE)
    return [f"\t{name} => {name} {minor_version}" for name in sorted(set(names))]


def build_kubernetes(layout: Layout, version: str, log: Path) -> Path:
    target = _target(layout, "kubernetes", version)
    if _done(target):
        return target
    env = _go_env(layout)
    work = _scratch(layout, f"kubernetes-{version}")
    (work / "go.mod").write_text("module volprobe.local/kubernetes-build\n\ngo 1.24.0\n")
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=work,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    gomod = Path(json.loads(info.stdout)["GoMod"]).read_text()
    major, minor, patch = version.lstrip("v").split(".")
    replaces = staging_replacements(gomod, f"v0.{minor}.{patch}")
    (work / "go.mod").write_text(
        "module volprobe.local/kubernetes-build\n\ngo 1.24.0\n\n"
        f"require k8s.io/kubernetes {version}\n\nreplace (\n" + "\n".join(replaces) + "\n)\n"
    )
    packages = [f"k8s.io/kubernetes/cmd/{cmd}" for cmd in KUBERNETES_COMMANDS]
    # Without an explicit @version, `go get` would upgrade k8s.io/kubernetes to the newest release.
    _run(["go", "get", *(f"{package}@{version}" for package in packages)], cwd=work, env=env, log=log)
    stamp = "k8s.io/component-base/version"
    build_date = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    ldflags = " ".join(
        [
            "-s -w",
            f"-X {stamp}.gitVersion={version}",
            f"-X {stamp}.gitMajor={major}",
            f"-X {stamp}.gitMinor={minor}",
            f"-X {stamp}.gitTreeState=clean",
            f"-X {stamp}.buildDate={build_date}",
        ]
    )
    target.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-ldflags", ldflags, "-o", str(target) + "/", *packages], cwd=work, env=env, log=log)
    _finish(target)
    return target


def build_etcd(layout: Layout, version: str, log: Path) -> Path:
    target = _target(layout, "etcd", version)
    if _done(target):
        return target
    env = _go_env(layout)
    work = _scratch(layout, f"etcd-{version}")
    (work / "go.mod").write_text(
        f"module volprobe.local/etcd-build\n\ngo 1.24.0\n\nrequire go.etcd.io/etcd/server/v3 {version}\n"
    )
    (work / "main.go").write_text(ETCD_MAIN)
    _run(["go", "mod", "tidy"], cwd=work, env=env, log=log)
    target.mkdir(parents=True, exist_ok=True)
    _run(["go", "build", "-ldflags", "-s -w", "-o", str(target / "etcd"), "."], cwd=work, env=env, log=log)
    _finish(target)
    return target


def go_install(layout: Layout, component: str, package: str, version: str, log: Path) -> Path:
    """For modules without replace directives a plain `go install pkg@version` works."""
    target = _target(layout, component, version)
    if _done(target):
        return target
    env = _go_env(layout)
    env["GOFLAGS"] = "-trimpath"
    env["GOBIN"] = str(target)
    target.mkdir(parents=True, exist_ok=True)
    _run(["go", "install", "-ldflags", "-s -w", f"{package}@{version}"], cwd=layout.cache, env=env, log=log)
    _finish(target)
    return target


def module_source(layout: Layout, module: str, version: str) -> Path:
    """The unpacked source of `module@version` in Go's module cache (read-only)."""
    work = layout.cache / "src"
    work.mkdir(parents=True, exist_ok=True)
    info = subprocess.run(
        ["go", "mod", "download", "-json", f"{module}@{version}"],
        cwd=work,
        env=_go_env(layout),
        check=True,
        capture_output=True,
        text=True,
    )
    return Path(json.loads(info.stdout)["Dir"])


def build_module(
    layout: Layout,
    component: str,
    module: str,
    version: str,
    packages: Sequence[str],
    *,
    log: Path,
    extra: Callable[[Path], None] | None = None,
) -> Path:
    """Build commands of a module whose go.mod has replace directives (`go install` refuses).

    The CSI sidecars are such modules: their source is copied out of the module cache and
    built there; a replace that points into the module's own tree (a nested module the proxy
    serves separately) is pointed at that module's release of the same version. `extra` may
    add files to the target before it is marked complete.
    """
    target = _target(layout, component, version)
    if _done(target):
        return target
    env = _go_env(layout)
    source = _scratch(layout, f"{component}-{version}") / "src"
    shutil.copytree(module_source(layout, module, version), source, copy_function=shutil.copyfile)
    for directory in (source, *(path for path in source.rglob("*") if path.is_dir())):
        directory.chmod(0o755)  # the module cache is read-only; `go mod edit` rewrites go.mod
    edits = json.loads(
        subprocess.run(
            ["go", "mod", "edit", "-json"], cwd=source, env=env, check=True, capture_output=True, text=True
        ).stdout
    )
    for replace in edits.get("Replace") or []:
        if replace["New"]["Path"].startswith("."):
            old = replace["Old"]["Path"]
            _run(["go", "mod", "edit", f"-replace={old}={old}@{version}"], cwd=source, env=env, log=log)
    target.mkdir(parents=True, exist_ok=True)
    ldflags = f"-s -w -X main.version={version}"
    _run(
        ["go", "build", "-ldflags", ldflags, "-o", str(target) + "/", *packages], cwd=source, env=env, log=log
    )
    if extra is not None:
        extra(target)
    _finish(target)
    return target


def source_digest(directory: Path) -> str:
    """A short digest of a Go module's source tree: the cache key of something built from it."""
    digest = hashlib.sha256()
    for path in sorted(directory.rglob("*")):
        if path.is_file() and (path.suffix == ".go" or path.name in ("go.mod", "go.sum")):
            digest.update(str(path.relative_to(directory)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:12]


def build_local_module(layout: Layout, component: str, directory: Path, log: Path) -> Path:
    """Build a module of this repository (hack/chaoscsi), cached by the digest of its source."""
    version = source_digest(directory)
    target = _target(layout, component, version)
    if _done(target):
        return target
    env = _go_env(layout)
    # The module's go.sum is committed: never let the build rewrite it.
    env["GOFLAGS"] = "-mod=readonly -trimpath"
    target.mkdir(parents=True, exist_ok=True)
    ldflags = f"-s -w -X main.version={version}"
    _run(
        ["go", "build", "-ldflags", ldflags, "-o", str(target / component), "."],
        cwd=directory,
        env=env,
        log=log,
    )
    _finish(target)
    return target


def copy_snapshot_crds(layout: Layout, version: str, target: Path) -> None:
    """The VolumeSnapshot CRDs ship in the snapshotter's client module, of the same version."""
    source = module_source(layout, "github.com/kubernetes-csi/external-snapshotter/client/v8", version)
    crds = target / "crds"
    crds.mkdir(exist_ok=True)
    for crd in sorted((source / "config" / "crd").glob("snapshot.storage.k8s.io_*.yaml")):
        shutil.copyfile(crd, crds / crd.name)


def build_all(layout: Layout) -> dict[str, Path]:
    """Build (or find cached) every binary the cluster needs; returns component -> directory."""
    versions = read_versions()
    layout.bin.mkdir(parents=True, exist_ok=True)
    log = layout.cache / "build.log"
    steps: dict[str, Callable[[], Path]] = {
        "etcd": lambda: build_etcd(layout, versions["ETCD_VERSION"], log),
        "kwok": lambda: go_install(
            layout, "kwok", "sigs.k8s.io/kwok/cmd/kwok", versions["KWOK_VERSION"], log
        ),
        "helm": lambda: go_install(layout, "helm", "helm.sh/helm/v3/cmd/helm", versions["HELM_VERSION"], log),
        "local-path-provisioner": lambda: go_install(
            layout,
            "local-path-provisioner",
            "github.com/rancher/local-path-provisioner",
            versions["LOCAL_PATH_PROVISIONER_VERSION"],
            log,
        ),
        "kubernetes": lambda: build_kubernetes(layout, versions["KUBERNETES_VERSION"], log),
        # The chaos CSI driver (a test tool, hack/chaoscsi) and the sidecars that drive it.
        "chaoscsi": lambda: build_local_module(layout, "chaoscsi", HACK_DIR / "chaoscsi", log),
        "csi-provisioner": lambda: build_module(
            layout,
            "csi-provisioner",
            "github.com/kubernetes-csi/external-provisioner/v6",
            versions["CSI_PROVISIONER_VERSION"],
            ["./cmd/csi-provisioner"],
            log=log,
        ),
        "csi-attacher": lambda: build_module(
            layout,
            "csi-attacher",
            "github.com/kubernetes-csi/external-attacher/v4",
            versions["CSI_ATTACHER_VERSION"],
            ["./cmd/csi-attacher"],
            log=log,
        ),
        "csi-snapshotter": lambda: build_module(
            layout,
            "csi-snapshotter",
            "github.com/kubernetes-csi/external-snapshotter/v8",
            versions["CSI_SNAPSHOTTER_VERSION"],
            ["./cmd/snapshot-controller", "./cmd/csi-snapshotter"],
            log=log,
            extra=lambda target: copy_snapshot_crds(layout, versions["CSI_SNAPSHOTTER_VERSION"], target),
        ),
        "csi-sanity": lambda: go_install(
            layout,
            "csi-sanity",
            "github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity",
            versions["CSI_SANITY_VERSION"],
            log,
        ),
        "versitygw": lambda: go_install(
            layout,
            "versitygw",
            "github.com/versity/versitygw/cmd/versitygw",
            versions["VERSITYGW_VERSION"],
            log,
        ),
    }
    dirs: dict[str, Path] = {}
    for name, step in steps.items():
        started = time.monotonic()
        dirs[name] = step()
        print(f"build: {name} ready in {time.monotonic() - started:.0f}s -> {dirs[name]}", file=sys.stderr)
    return dirs
