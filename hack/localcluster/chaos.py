"""The chaos CSI driver and its sidecars in the local cluster (a test tool: docs/chaos-csi.md).

`chaoscsi` (hack/chaoscsi) serves the CSI Identity, Controller and Node services of the real
node from one host process and registers itself with the kubelet through the kubelet's plugin
registration socket directory (no node-driver-registrar here). The sidecars run on the host too,
each with the admin kubeconfig: external-provisioner and external-attacher (so provisioning and
attaching go through the same objects and controllers as on a real cluster), snapshot-controller
and csi-snapshotter (with the VolumeSnapshot CRDs of the same release).

Sidecar settings that matter for tests, each longer or shorter than its default on purpose:

* provisioner `--timeout=30s` (default 10 s): longer than the provision deadline tests use, so
  a hung CreateVolume reads as a hang (no ProvisioningFailed "DeadlineExceeded" event yet);
* attacher `--timeout=10s` (default 15 s): a hung ControllerPublish becomes a VolumeAttachment
  error, hence a FailedAttachVolume event, well within a short mount deadline;
* `--retry-interval-max=10s` everywhere (default 5 min): after a fault is lifted, work that
  failed (a volume left to delete) is retried within seconds, not minutes.

Volumes are files under `.cluster/chaoscsi/`; the driver's mounts live under the kubelet's
directory and `.cluster/chaoscsi/mnt/`, its loop devices are backed by files under `.cluster/`,
so `down` (unmount and detach everything under the state directory) and `leftovers` cover them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path

from . import processes
from .components import REAL_NODE
from .config import HACK_DIR, Layout
from .kubeapi import KubeAPI

DRIVER = "chaos.csi.volprobe.io"
STORAGE_CLASS = "chaos"
SNAPSHOT_CLASS = "chaos"
MANIFEST = HACK_DIR / "localcluster" / "manifests" / "chaos.yaml"
COMPONENTS = ("chaoscsi", "csi-provisioner", "csi-attacher", "csi-snapshotter", "csi-sanity")
"""What hack/localcluster/build.py builds for it: the driver, its sidecars (the snapshotter also
ships the snapshot controller and CRDs) and the CSI conformance suite its tests run."""
DAEMONS = ("chaoscsi", "csi-provisioner", "csi-attacher", "snapshot-controller", "csi-snapshotter")
"""Start order after the rest of the cluster; `down` stops them first, the driver last of them."""
SIDECAR_RETRY = "--retry-interval-max=10s"

Kubectl = Callable[..., str]
"""`cluster.kubectl`: (layout, *args, stdin=...) -> stdout."""


def state_dir(layout: Layout) -> Path:
    """Backing images, snapshots and the driver's private mounts."""
    return layout.state / "chaoscsi"


def csi_socket(layout: Layout) -> Path:
    return layout.kubelet_root / "plugins" / DRIVER / "csi.sock"


def control_socket(layout: Layout) -> Path:
    """The driver's control interface (HTTP, root only): tests/support/chaos.py talks to it."""
    return layout.run / "chaoscsi.sock"


def commands(layout: Layout, built: Mapping[str, Path]) -> dict[str, list[str]]:
    """Command line of each daemon, in start order; `built` maps component -> directory."""
    kubeconfig = f"--kubeconfig={layout.kubeconfig}"
    address = f"--csi-address={csi_socket(layout)}"
    snapshotter = built["csi-snapshotter"]
    return {
        "chaoscsi": [
            str(built["chaoscsi"] / "chaoscsi"),
            f"--driver-name={DRIVER}",
            f"--node-id={REAL_NODE}",
            f"--csi-socket={csi_socket(layout)}",
            f"--registration-dir={layout.kubelet_root / 'plugins_registry'}",
            f"--control-socket={control_socket(layout)}",
            f"--state-dir={state_dir(layout)}",
        ],
        "csi-provisioner": [
            str(built["csi-provisioner"] / "csi-provisioner"),
            kubeconfig,
            address,
            "--extra-create-metadata",
            "--timeout=30s",
            SIDECAR_RETRY,
            "--v=2",
        ],
        "csi-attacher": [
            str(built["csi-attacher"] / "csi-attacher"),
            kubeconfig,
            address,
            "--timeout=10s",
            SIDECAR_RETRY,
            "--v=2",
        ],
        "snapshot-controller": [str(snapshotter / "snapshot-controller"), kubeconfig, SIDECAR_RETRY, "--v=2"],
        "csi-snapshotter": [
            str(snapshotter / "csi-snapshotter"),
            kubeconfig,
            address,
            SIDECAR_RETRY,
            "--v=2",
        ],
    }


def start(layout: Layout, built: Mapping[str, Path], kubectl: Kubectl) -> None:
    """Start the driver, install its API objects, then start the sidecars."""
    argv = commands(layout, built)
    processes.start(layout, "chaoscsi", argv["chaoscsi"])
    apply = ("apply", "--server-side", "--force-conflicts", "--field-manager=volprobe-localcluster")
    crds = sorted((built["csi-snapshotter"] / "crds").glob("*.yaml"))
    kubectl(layout, *apply, *(f"--filename={crd}" for crd in crds))
    names = [f"crd/{crd.name.split('_', 1)[1].removesuffix('.yaml')}.snapshot.storage.k8s.io" for crd in crds]
    kubectl(layout, "wait", "--for=condition=Established", "--timeout=60s", *names)
    kubectl(layout, *apply, f"--filename={MANIFEST}")
    for name in DAEMONS[1:]:
        processes.start(layout, name, argv[name])


def registered(api: KubeAPI) -> bool:
    """The kubelet took the driver: the real node's CSINode lists it."""
    status, body = api.request("GET", f"/apis/storage.k8s.io/v1/csinodes/{REAL_NODE}")
    if status != 200:
        return False
    return any(driver.get("name") == DRIVER for driver in body["spec"].get("drivers") or [])


def wait_ready(layout: Layout) -> float:
    """Wait until the kubelet registered the driver; returns the seconds waited."""
    api = KubeAPI(layout.pki)
    started = time.monotonic()
    processes.wait_for(
        f"{DRIVER} registered with the kubelet",
        lambda: registered(api),
        60,
        interval=0.2,
        log=layout.logs / "chaoscsi.log",
    )
    return time.monotonic() - started
