"""Bring the local cluster up and down.

`up` is idempotent: a healthy cluster is left running (kwok nodes are topped up to the number
asked for); a half-started one is torn down and started again. `down` stops every daemon,
removes containers, mounts, network namespaces, the bridge and the iptables chains we added,
restores the kernel settings we changed, and deletes the state directory except its logs.

Only one cluster can run on a machine (fixed ports, one bridge); `/run/volprobe-cluster/owner`
names the checkout that owns it, so a second checkout gets a clear error instead of a clash.
"""

from __future__ import annotations

import concurrent.futures
import json
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

from . import chaos, components, host, images, objectstore, pki, processes, registry
from .build import build_all
from .components import API_PORT, KWOK_TAINT, NODE_TYPE_LABEL, REAL_NODE, Binaries
from .config import HACK_DIR, Layout, read_versions
from .kubeapi import KubeAPI

OWNER_FILE = Path("/run/volprobe-cluster/owner")
MANIFESTS = HACK_DIR / "localcluster" / "manifests"
# Start order; `down` stops them in reverse.
DAEMONS = (
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "containerd",
    "kubelet",
    "kube-proxy",
    "kwok",
    "local-path-provisioner",
    *chaos.DAEMONS,
)


def log(message: str) -> None:
    print(f"cluster: {message}", file=sys.stderr, flush=True)


def host_ip() -> str:
    """The address of the default route's interface: reachable from pods and the host alike."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect(("192.0.2.254", 9))  # no packet is sent for a UDP connect
        address: str = probe.getsockname()[0]
    return address


def binaries(layout: Layout) -> Binaries:
    built = build_all(layout)
    return Binaries(
        kubernetes=built["kubernetes"],
        etcd=built["etcd"],
        kwok=built["kwok"],
        helm=built["helm"],
        local_path_provisioner=built["local-path-provisioner"],
        chaos={name: built[name] for name in chaos.COMPONENTS},
        versitygw=built["versitygw"],
    )


def _claim_ownership(layout: Layout) -> None:
    if OWNER_FILE.exists():
        owner = Path(OWNER_FILE.read_text().strip())
        if owner != layout.state.resolve() and processes.processes_mentioning(str(owner)):
            raise SystemExit(
                f"cluster: another volprobe cluster is running from {owner}; "
                f"run `make cluster-down` in {owner.parent} first"
            )
    OWNER_FILE.parent.mkdir(parents=True, exist_ok=True)
    OWNER_FILE.write_text(f"{layout.state.resolve()}\n")


def healthy(layout: Layout) -> bool:
    if any(processes.pid_of(layout, name) is None for name in DAEMONS):
        return False
    try:
        api = KubeAPI(layout.pki)
        _, not_ready = api.ready_nodes()
        return api.request("GET", "/readyz")[0] == 200 and not not_ready
    except Exception:
        return False


def up(layout: Layout, kwok_nodes: int) -> None:
    started = time.monotonic()
    if healthy(layout):
        bins = binaries(layout)
        _link_tools(layout, bins)
        registry.ensure(layout)
        _ensure_objectstore(layout, bins)
        _ensure_kwok_nodes(KubeAPI(layout.pki), kwok_nodes)
        _wait_nodes_ready(layout, 1 + kwok_nodes)
        log(f"already running; kubeconfig: {layout.kubeconfig}")
        return
    if layout.state.exists() and any(processes.pid_of(layout, name) for name in DAEMONS):
        log("found a partly running cluster; tearing it down first")
        down(layout)
    _claim_ownership(layout)
    bins = binaries(layout)
    _link_tools(layout, bins)
    versions = read_versions()
    archives = [*images.cluster_images(layout), objectstore.image(layout, bins.versitygw)]
    log(f"binaries and images ready after {time.monotonic() - started:.1f}s")

    for directory in (layout.state, layout.logs, layout.run, layout.storage):
        directory.mkdir(parents=True, exist_ok=True)
    snapshot_file = layout.state / "host-snapshot.json"
    if not snapshot_file.exists():
        host.snapshot().save(snapshot_file)
    host.prepare_network()
    address = host_ip()
    _make_pki(layout, address)

    processes.start(layout, "etcd", components.etcd(layout, bins))
    processes.start(layout, "containerd", components.containerd(layout, versions["PAUSE_IMAGE"]))
    registry.ensure(layout)
    _wait_etcd(layout)
    processes.start(layout, "kube-apiserver", components.kube_apiserver(layout, bins, address))
    _wait_containerd(layout)
    with concurrent.futures.ThreadPoolExecutor() as pool:
        imported = pool.submit(_import_images, layout, archives)
        _wait_apiserver(layout)
        processes.start(layout, "kube-controller-manager", components.kube_controller_manager(layout, bins))
        processes.start(layout, "kube-scheduler", components.kube_scheduler(layout, bins))
        imported.result()
    log(f"control plane up after {time.monotonic() - started:.1f}s")

    api = KubeAPI(layout.pki)
    processes.start(layout, "kubelet", components.kubelet(layout, bins, address))
    processes.start(layout, "kube-proxy", components.kube_proxy(layout, bins))
    processes.start(layout, "kwok", components.kwok(layout, bins, MANIFESTS / "kwok-stages.yaml"))
    _install_storage(layout, versions["HELPER_IMAGE"])
    processes.start(
        layout,
        "local-path-provisioner",
        components.local_path_provisioner(layout, bins, versions["HELPER_IMAGE"]),
    )
    objectstore.install(layout, lambda text: _apply(layout, text))
    chaos.start(layout, bins.chaos, kubectl)
    _ensure_kwok_nodes(api, kwok_nodes)
    _wait_nodes_ready(layout, 1 + kwok_nodes)
    _wait_default_service_account(api)
    chaos.wait_ready(layout)
    log(
        f"ready in {time.monotonic() - started:.1f}s: 1 real node ({REAL_NODE}) + {kwok_nodes} kwok nodes; "
        f"kubeconfig: {layout.kubeconfig}"
    )


def _link_tools(layout: Layout, bins: Binaries) -> None:
    """`export PATH=$PWD/.cluster/bin:$PATH` gives the pinned kubectl and helm."""
    tools = layout.state / "bin"
    tools.mkdir(parents=True, exist_ok=True)
    for name, target in (("kubectl", bins.kubernetes / "kubectl"), ("helm", bins.helm / "helm")):
        link = tools / name
        link.unlink(missing_ok=True)
        link.symlink_to(target)


def _make_pki(layout: Layout, address: str) -> None:
    shutil.rmtree(layout.pki, ignore_errors=True)
    pki.make_ca(layout.pki)
    pki.make_service_account_keys(layout.pki)
    pki.make_serving_cert(
        layout.pki,
        "apiserver",
        "kube-apiserver",
        dns=[
            "kubernetes",
            "kubernetes.default",
            "kubernetes.default.svc",
            "kubernetes.default.svc.cluster.local",
            "localhost",
        ],
        ips=["127.0.0.1", "10.96.0.1", address],
    )
    identities = [
        pki.Identity("admin", "volprobe-admin", ("system:masters",)),
        pki.Identity("apiserver-kubelet-client", "kube-apiserver-kubelet-client", ("system:masters",)),
        pki.Identity("controller-manager", "system:kube-controller-manager"),
        pki.Identity("scheduler", "system:kube-scheduler"),
        pki.Identity("kubelet", f"system:node:{REAL_NODE}", ("system:nodes",)),
        pki.Identity("kube-proxy", "system:kube-proxy"),
    ]
    kubeconfigs = layout.state / "kubeconfigs"
    kubeconfigs.mkdir(exist_ok=True)
    server = f"https://{address}:{API_PORT}"
    for identity in identities:
        pki.make_client_cert(layout.pki, identity)
        pki.write_kubeconfig(
            kubeconfigs / identity.name, server=server, pki=layout.pki, identity=identity.name
        )
    shutil.copyfile(kubeconfigs / "admin", layout.kubeconfig)
    layout.kubeconfig.chmod(0o600)


def _wait_etcd(layout: Layout) -> None:
    def check() -> bool:
        with urllib.request.urlopen(f"{components.ETCD_CLIENT}/health", timeout=2) as response:
            return bool(json.load(response).get("health") == "true")

    processes.wait_for("etcd", check, 30, log=layout.logs / "etcd.log")


def _wait_apiserver(layout: Layout) -> None:
    api = KubeAPI(layout.pki)
    processes.wait_for(
        "kube-apiserver",
        lambda: api.request("GET", "/readyz")[0] == 200,
        90,
        log=layout.logs / "kube-apiserver.log",
    )


def _ctr(layout: Layout, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["ctr", "--address", str(components.containerd_socket(layout)), "-n", "k8s.io", *args],
        capture_output=True,
        text=True,
        check=check,
    )


def _wait_containerd(layout: Layout) -> None:
    processes.wait_for(
        "containerd",
        lambda: _ctr(layout, "version", check=False).returncode == 0,
        30,
        log=layout.logs / "containerd.log",
    )


def _import_images(layout: Layout, archives: list[Path]) -> None:
    for archive in archives:
        _ctr(layout, "images", "import", "--no-unpack", str(archive))


def import_image(layout: Layout, archive: Path) -> None:
    """Make an image (an OCI archive) available to pods on the real node."""
    _ctr(layout, "images", "import", "--no-unpack", str(archive))


def _install_storage(layout: Layout, helper_image: str) -> None:
    text = (MANIFESTS / "storage.yaml").read_text()
    text = text.replace("@STORAGE_DIR@", str(layout.storage.resolve())).replace(
        "@HELPER_IMAGE@", helper_image
    )
    kubectl(layout, "apply", "--server-side", "--field-manager=volprobe-localcluster", "-f", "-", stdin=text)


def _ensure_objectstore(layout: Layout, bins: Binaries) -> None:
    """A cluster started before the S3 server existed gets it on the next `up`."""
    archive = objectstore.image(layout, bins.versitygw)
    if objectstore.image_ref() not in _ctr(layout, "images", "list", "-q").stdout.split():
        import_image(layout, archive)
    objectstore.install(layout, lambda text: _apply(layout, text))


def _apply(layout: Layout, text: str) -> None:
    kubectl(layout, "apply", "--server-side", "--field-manager=volprobe-localcluster", "-f", "-", stdin=text)


def kubectl(layout: Layout, *args: str, stdin: str | None = None) -> str:
    result = subprocess.run(
        [str(layout.kubernetes_bin("kubectl")), f"--kubeconfig={layout.kubeconfig}", *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"kubectl {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout


def _ensure_kwok_nodes(api: KubeAPI, count: int) -> None:
    """Make kwok-node-0..count-1 exist and no other kwok-node-N; kwok nodes that tests or
    benchmarks made under other names are theirs to delete (a test adding 100 nodes must not lose
    them to another session's `up`)."""
    existing = {
        node["metadata"]["name"]
        for node in api.get(f"/api/v1/nodes?labelSelector={NODE_TYPE_LABEL}%3Dkwok")["items"]
        if re.fullmatch(r"kwok-node-[0-9]+", node["metadata"]["name"])
    }
    wanted = {f"kwok-node-{index}" for index in range(count)}

    def create(name: str) -> None:
        api.apply(components.kwok_node(name), f"/api/v1/nodes/{name}")

    def delete(name: str) -> None:
        api.request("DELETE", f"/api/v1/nodes/{name}")

    with concurrent.futures.ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, sorted(wanted - existing)))
        list(pool.map(delete, sorted(existing - wanted)))


def _wait_nodes_ready(layout: Layout, expected: int) -> None:
    api = KubeAPI(layout.pki)

    def check() -> bool:
        ready, not_ready = api.ready_nodes()
        return len(ready) >= expected and not not_ready

    # kwok readies nodes at a pace per node (1,000 in ~20 s on this machine): allow 50 ms each.
    timeout = max(120.0, expected * 0.05)
    log = layout.logs / "kubelet.log"
    processes.wait_for(f"{expected} Ready nodes", check, timeout, interval=0.5, log=log)


def _wait_default_service_account(api: KubeAPI) -> None:
    """Pods cannot be created in a namespace until its `default` service account exists."""
    processes.wait_for(
        "default service account",
        lambda: api.request("GET", "/api/v1/namespaces/default/serviceaccounts/default")[0] == 200,
        60,
    )


def _containers(layout: Layout) -> list[str]:
    result = _ctr(layout, "containers", "list", "-q", check=False)
    return result.stdout.split() if result.returncode == 0 else []


def _remove_containers(layout: Layout) -> None:
    """Kill every container our containerd runs and delete it (which unmounts its rootfs)."""
    ids = _containers(layout)
    for container in ids:
        _ctr(layout, "tasks", "kill", "-s", "SIGKILL", container, check=False)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tasks = _ctr(layout, "tasks", "list", "-q", check=False).stdout.split()
        stopped = [t for t in tasks if t in ids]
        for task in stopped:
            _ctr(layout, "tasks", "delete", task, check=False)
        if not _ctr(layout, "tasks", "list", "-q", check=False).stdout.split():
            break
        time.sleep(0.2)
    for container in ids:
        _ctr(layout, "containers", "delete", container, check=False)


def down(layout: Layout) -> list[str]:
    """Stop everything and undo our host changes; returns what could not be removed."""
    snapshot_file = layout.state / "host-snapshot.json"
    before = host.Snapshot.load(snapshot_file) if snapshot_file.exists() else None
    for name in reversed(DAEMONS):
        if name == "containerd":
            continue
        processes.stop(layout, name)
    processes.stop(layout, registry.NAME)
    if processes.pid_of(layout, "containerd") is not None:
        _remove_containers(layout)
        processes.stop(layout, "containerd")
    state = str(layout.state.resolve())
    processes.stop_all_mentioning(state)  # containerd shims and anything a crash orphaned
    kube_proxy = layout.kubernetes_bin("kube-proxy")
    if kube_proxy.exists():
        subprocess.run([str(kube_proxy), "--cleanup"], capture_output=True, check=False)
    host.unmount_under(layout.state)
    host.detach_loops_under(layout.state)
    host.restore(before, layout.state)
    remaining = host.leftovers(layout.state, before)
    if not remaining:
        for child in layout.state.iterdir() if layout.state.exists() else []:
            if child == layout.logs:
                continue
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        if OWNER_FILE.exists() and Path(OWNER_FILE.read_text().strip()) == layout.state.resolve():
            OWNER_FILE.unlink()
    return remaining


def status(layout: Layout) -> dict[str, Any]:
    daemons = {name: processes.pid_of(layout, name) for name in (*DAEMONS, registry.NAME)}
    info: dict[str, Any] = {"state": str(layout.state), "daemons": daemons, "healthy": healthy(layout)}
    if info["healthy"]:
        ready, not_ready = KubeAPI(layout.pki).ready_nodes()
        info["nodes"] = {"ready": len(ready), "not_ready": not_ready}
    return info


__all__ = ["KWOK_TAINT", "down", "import_image", "kubectl", "status", "up"]
