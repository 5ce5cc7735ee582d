"""A real OCI registry for the local cluster: Debian's `docker-registry` (CNCF distribution 2.8).

Users of volprobe push its image and chart to a registry and their nodes pull from it; the
local cluster does the same instead of importing the image into containerd behind the
kubelet's back. The registry listens on loopback only, over plain HTTP: the real node's
containerd runs on this host, so loopback is where it pulls from, and nothing off the machine
can reach the registry.

containerd is told to use plain HTTP for this one host through a `hosts.toml` in the CRI
plugin's `config_path` (the way containerd 1.6 documents; `registry.mirrors` is deprecated).
Data lives under `.cluster/registry/`, so `cluster-down` removes it with the rest of the state.

Why the Debian package and not distribution v3 from the Go module proxy: 2.8 stores and serves
OCI image manifests, indexes and artifacts (Helm charts) as the distribution spec describes,
which is all this cluster needs, and it installs in seconds instead of a Go build.
"""

from __future__ import annotations

import fcntl
import socket
import urllib.request
from pathlib import Path

from . import processes
from .config import Layout

NAME = "registry"
"""The daemon's name: its pid file, its log (`.cluster/logs/registry.log`)."""
BINARY = Path("/usr/bin/docker-registry")
HOST = "127.0.0.1"
PORT = 5001
"""Not 5000: that is the Debian package's own service (stopped by hack/install-deps.sh)."""
ADDRESS = f"{HOST}:{PORT}"
"""How images and charts in this registry are named: `127.0.0.1:5001/volprobe:0.1.0`."""
URL = f"http://{ADDRESS}"


def state_dir(layout: Layout) -> Path:
    return layout.state / "registry"


def data_dir(layout: Layout) -> Path:
    return state_dir(layout) / "data"


def hosts_dir(layout: Layout) -> Path:
    """containerd's registry `config_path`: one directory per registry host."""
    return state_dir(layout) / "hosts.d"


def containerd_hosts(layout: Layout) -> Path:
    """Write the hosts.toml that lets containerd pull from this registry over plain HTTP."""
    directory = hosts_dir(layout) / ADDRESS
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "hosts.toml").write_text(
        f'server = "{URL}"\n\n[host."{URL}"]\n  capabilities = ["pull", "resolve"]\n'
    )
    return hosts_dir(layout)


def config(layout: Layout) -> Path:
    """The registry's configuration: filesystem storage under the state directory, loopback only.

    Deletes are enabled so a test can remove what it pushed; no upload purging (the registry
    lives as long as the cluster, minutes to hours).
    """
    path = state_dir(layout) / "config.yml"
    path.parent.mkdir(parents=True, exist_ok=True)
    data_dir(layout).mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""version: 0.1
log:
  level: info
  formatter: text
storage:
  filesystem:
    rootdirectory: {data_dir(layout)}
  delete:
    enabled: true
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: {ADDRESS}
  headers:
    X-Content-Type-Options: [nosniff]
"""
    )
    return path


def argv(layout: Layout) -> list[str]:
    return [str(BINARY), "serve", str(config(layout))]


def serving() -> bool:
    """The registry answers the distribution API's version check."""
    try:
        with urllib.request.urlopen(f"{URL}/v2/", timeout=2) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def _port_taken() -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((HOST, PORT)) == 0


def ensure(layout: Layout) -> None:
    """Start the registry unless it runs; wait until it serves (idempotent, safe to race).

    `up` on a running cluster calls this too: the cluster fixture of every test session does,
    under a shared lock, so two may get here at once; a file lock keeps it to one start.
    """
    layout.run.mkdir(parents=True, exist_ok=True)
    with (layout.run / f"{NAME}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if processes.pid_of(layout, NAME) is None:
            if not BINARY.exists():
                raise SystemExit("cluster: docker-registry is not installed; run `make deps`")
            if _port_taken():
                raise SystemExit(f"cluster: {ADDRESS} is taken by another process; the registry needs it")
            processes.start(layout, NAME, argv(layout))
        processes.wait_for(NAME, serving, 30, log=layout.logs / f"{NAME}.log")
