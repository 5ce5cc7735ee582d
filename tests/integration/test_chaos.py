"""Every failure volprobe classifies, produced through the real kubelet by the chaos CSI driver.

One test per row of issue 10's acceptance table. Each starts a real controller with a probe on
the StorageClass `chaos`, injects the fault while the probe runs (through the driver's control
interface: an RPC fails or hangs, the FUSE data path fails, hangs, slows down or lies, a backing
store is swapped), checks the result, phase and reason the controller exports and writes into
the StorageProbe's status within the failing phase's deadline (plus one interval for the next
run to start, plus 10 s), lifts the fault, sees the probe pass again with the same controller,
and finally deletes the probe and checks that nothing is left: no pod, claim, PersistentVolume,
VolumeAttachment, nor volume in the driver.

Faults select the test's own namespace, so nothing else on the cluster is touched. Probes run
every 10 s with short phase timeouts to keep each test under a minute or so.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.conftest import Cluster
from tests.integration.conftest import (
    ControllerFactory,
    ProbeFactory,
    condition,
    mount_volume,
    owned_items,
    owned_objects,
    probe_status,
)
from tests.support.chaos import STORAGE_CLASS, ChaosDriver, Fault
from tests.support.controller import ControllerProcess
from tests.support.kubectl import eventually

pytestmark = pytest.mark.integration

RUNS = "volprobe_probe_runs_total"
FAILURES = "volprobe_probe_failures_total"
LATENCY = "volprobe_io_latency_seconds"
INTERVAL = 10
SLACK = 10
"""The acceptance table's "+ 10 s" over a phase's deadline."""
START = 15
"""Seconds a run may take to reach the failing phase (claim, attach, mount) before its deadline counts."""
KUBELET_RETRY = 122
"""The kubelet's longest wait between two tries of a failed mount (2m2s). For a CSI driver that
stages volumes the back-off belongs to the volume, not the pod, so after a node RPC failed for a
minute even a new probe pod waits that long before the kubelet tries the fixed driver again."""


@pytest.fixture
def driver(cluster: Cluster, namespace: str) -> Iterator[ChaosDriver]:
    """The chaos driver; whatever this test injected is lifted afterwards, even on failure."""
    driver = ChaosDriver.of(cluster.layout)
    assert driver.healthz()["registered"], "the kubelet has not registered the chaos driver"
    yield driver
    for fault in driver.faults():
        if fault.get("namespace") == namespace:
            driver.lift(Fault(fault["id"], fault))


def runs(controller: ControllerProcess, probe: str, kind: str, result: str) -> float:
    return controller.scrape().sum(RUNS, probe=probe, kind=kind, result=result)


def failures(controller: ControllerProcess, probe: str, kind: str, phase: str, reason: str) -> float:
    return controller.scrape().sum(FAILURES, probe=probe, kind=kind, phase=phase, reason=reason)


def expect_failure(
    cluster: Cluster,
    controller: ControllerProcess,
    probe: str,
    *,
    kind: str,
    phase: str,
    reason: str,
    result: str,
    deadline: float,
    before: float = 0,
) -> dict[str, Any]:
    """The failure is counted, the run that failed took at most `before` (the phases ahead of
    the failing one) + the failing phase's `deadline` + 10 s, clean-up included, and the
    StorageProbe's status names it (returned, for the driver's message).

    From the injection on, the next run may first have to start: one interval more.
    """
    started = time.monotonic()
    eventually(
        f"{kind} {result} in phase {phase} with reason {reason}",
        lambda: failures(controller, probe, kind, phase, reason) >= 1,
        INTERVAL + before + deadline + SLACK,
    )
    waited = time.monotonic() - started
    scrape = controller.scrape()
    took = scrape.sum("volprobe_probe_duration_seconds", probe=probe, kind=kind)
    print(f"time-to-result {probe} {kind} {phase}/{reason}: run {took:.1f}s, {waited:.1f}s after injection")
    assert scrape.sum(RUNS, probe=probe, kind=kind, result=result) >= 1, "the run ended with another result"
    assert scrape.sum("volprobe_probe_success", probe=probe, kind=kind) == 0
    assert 0 < took <= before + deadline + SLACK, f"the failing run took {took:.1f}s"
    return expect_status(cluster, probe, kind, phase, reason)


def expect_status(cluster: Cluster, probe: str, kind: str, phase: str, reason: str) -> dict[str, Any]:
    """The StorageProbe's status names the failing kind's phase and reason, and it is Degraded."""

    def latest() -> dict[str, Any] | None:
        last = probe_status(cluster.kubectl, probe).get(kind) or {}
        return last if last.get("reason") == reason else None

    last = eventually(f"status.{kind}.reason == {reason}", latest, 20)
    assert last["phase"] == phase
    assert condition(cluster.kubectl, probe, "Degraded")["status"] == "True"
    return last


def expect_recovery(controller: ControllerProcess, probe: str, kind: str, within: float = 60) -> None:
    """After the fault is lifted the same controller sees the probe pass again."""
    before = runs(controller, probe, kind, "success")
    eventually(
        f"a {kind} success after the fault was lifted",
        lambda: runs(controller, probe, kind, "success") > before,
        within,
    )
    assert controller.alive()


def expect_nothing_left(cluster: Cluster, driver: ChaosDriver, namespace: str, probe: str) -> None:
    """Deleting the probe removes every pod, claim, volume and attachment it caused."""
    kubectl = cluster.kubectl
    kubectl.run("delete", "storageprobe", probe, "--wait=true", timeout=90)
    eventually(
        "the probe's pods and claims gone",
        lambda: owned_objects(kubectl, namespace, probe) == {"pods": [], "pvc": []},
        90,
    )

    def ours() -> list[str]:
        return [
            pv["metadata"]["name"]
            for pv in kubectl.json("get", "pv")["items"]
            if (pv["spec"].get("claimRef") or {}).get("namespace") == namespace
        ]

    eventually("no PersistentVolume of the namespace", lambda: not ours(), 90)
    eventually("no volume of the namespace in the driver", lambda: not driver.volumes(namespace), 60)
    volumes = {v["id"] for v in driver.volumes()}
    assert not [s for s in driver.staged() if s["volume"] not in volumes], "staged volume without a volume"
    attachments = kubectl.json("get", "volumeattachments")["items"]
    known = {pv["metadata"]["name"] for pv in kubectl.json("get", "pv")["items"]}
    leaked = [
        a["metadata"]["name"]
        for a in attachments
        if a["spec"]["attacher"] == "chaos.csi.volprobe.io"
        and a["spec"]["source"].get("persistentVolumeName") not in known
    ]
    assert not leaked, f"VolumeAttachments of deleted volumes: {leaked}"


def first_success(controller: ControllerProcess, probe: str, kind: str, count: int = 1) -> None:
    eventually(f"{count} {kind} successes", lambda: runs(controller, probe, kind, "success") >= count, 90)


# --- faults present from the first run on: one row each ------------------------------------------


@dataclass(frozen=True)
class Row:
    """A fault injected before the controller starts, and what volprobe must say about it.

    Only the probe kind that meets the fault is enabled. `says` are texts the status message
    must hold (`{id}` is the test's id, which the fault's own message carries too).
    """

    probe: str
    kind: str
    ops: tuple[str, ...]
    action: str
    phase: str
    reason: str
    result: str
    timeouts: dict[str, int]
    deadline: float
    before: float = 0
    fault: dict[str, Any] = field(default_factory=dict)
    says: tuple[str, ...] = ()
    recovery: float = 60


ROWS = [
    pytest.param(
        Row(
            probe="cve",
            kind="provision",
            ops=("CreateVolume",),
            action="error",
            phase="provision",
            reason="provisioning_failed",
            result="timeout",
            timeouts={"provisionSeconds": 10},
            deadline=10,
            fault={"code": "ResourceExhausted", "message": "chaos-{id}: pool exhausted"},
            says=("chaos-{id}: pool exhausted", "ResourceExhausted"),
        ),
        id="CreateVolume-error",
    ),
    # Shorter than the provisioner's 30 s call timeout: the call is still hanging.
    pytest.param(
        Row(
            probe="cvh",
            kind="provision",
            ops=("CreateVolume",),
            action="hang",
            phase="provision",
            reason="provisioning_timeout",
            result="timeout",
            timeouts={"provisionSeconds": 10},
            deadline=10,
        ),
        id="CreateVolume-hang",
    ),
    # The attacher gives up on the call after 10 s (VolumeAttachment error, FailedAttachVolume),
    # within this deadline; the kubelet would wait minutes.
    pytest.param(
        Row(
            probe="cph",
            kind="mount",
            ops=("ControllerPublishVolume",),
            action="hang",
            phase="mount",
            reason="attach_timeout",
            result="timeout",
            timeouts={"mountSeconds": 20},
            deadline=20,
            before=START,
            says=("eadline",),  # DeadlineExceeded, or the attacher's "deadline"
        ),
        id="ControllerPublishVolume-hang",
    ),
    *(
        pytest.param(
            Row(
                probe="nre",
                kind="mount",
                ops=(operation,),
                action="error",
                phase="mount",
                reason="mount_failed",
                result="timeout",
                timeouts={"mountSeconds": 10},
                deadline=10,
                before=START,
                fault={"code": "Internal", "message": f"chaos-{{id}}: {operation} refused, device busy"},
                says=(f"chaos-{{id}}: {operation} refused, device busy",),
                recovery=KUBELET_RETRY + INTERVAL + START,
            ),
            id=f"{operation}-error",
        )
        for operation in ("NodeStageVolume", "NodePublishVolume")
    ),
    # The kubelet waits 2 min for NodePublish before it reports anything.
    pytest.param(
        Row(
            probe="nph",
            kind="mount",
            ops=("NodePublishVolume",),
            action="hang",
            phase="mount",
            reason="mount_timeout",
            result="timeout",
            timeouts={"mountSeconds": 10},
            deadline=10,
            before=START,
            recovery=KUBELET_RETRY + INTERVAL + START,
        ),
        id="NodePublishVolume-hang",
    ),
    # Provision runs start on an empty volume: the verify phase reads nothing, so a read fault
    # first meets the read-back of this run's payload.
    *(
        pytest.param(
            Row(
                probe="eio",
                kind="provision",
                ops=(op,),
                action="errno",
                phase=op,
                reason="io_error",
                result="failure",
                timeouts={"ioSeconds": 10},
                deadline=10,
                before=START,
                fault={"errno": "EIO"},
                says=("EIO",),
            ),
            id=f"EIO-on-{op}",
        )
        for op in ("write", "fsync", "read")
    ),
    pytest.param(
        Row(
            probe="flp",
            kind="provision",
            ops=("read",),
            action="flip",
            phase="read",
            reason="checksum_mismatch",
            result="failure",
            timeouts={"ioSeconds": 10},
            deadline=10,
            before=START,
        ),
        id="flipped-bits-on-read",
    ),
    pytest.param(
        Row(
            probe="nsp",
            kind="provision",
            ops=("write",),
            action="errno",
            phase="write",
            reason="no_space",
            result="failure",
            timeouts={"ioSeconds": 10},
            deadline=10,
            before=START,
            fault={"errno": "ENOSPC"},
            says=("ENOSPC",),
        ),
        id="ENOSPC",
    ),
    # A disk that went silent: the agent's IO thread sits in uninterruptible sleep, so even after
    # its watchdog fired the container cannot exit and its report never leaves the pod; the
    # controller's own IO deadline ends the run. The stuck pod is only gone when the fault is
    # lifted, so the run is counted at the end of its clean-up deadline.
    pytest.param(
        Row(
            probe="hio",
            kind="mount",
            ops=("data",),
            action="hang",
            phase="io",
            reason="timeout",
            result="timeout",
            timeouts={"ioSeconds": 10, "cleanupSeconds": 5},
            deadline=10 + 5,
            before=START,
            fault={"interruptible": False},
            recovery=90,
        ),
        id="IO-hang-uninterruptible",
    ),
    # Storage that gives up on a killed caller (NFS `intr`): the agent's watchdog reports the
    # timeout itself, naming the phase that hung.
    pytest.param(
        Row(
            probe="hio",
            kind="mount",
            ops=("data",),
            action="hang",
            phase="write",
            reason="timeout",
            result="timeout",
            timeouts={"ioSeconds": 10, "cleanupSeconds": 5},
            deadline=10 + 5,
            before=START,
            fault={"interruptible": True},
            recovery=90,
        ),
        id="IO-hang-interruptible",
    ),
    # The whole run comes before its clean-up.
    pytest.param(
        Row(
            probe="dvf",
            kind="provision",
            ops=("DeleteVolume",),
            action="error",
            phase="cleanup",
            reason="pv_not_deleted",
            result="failure",
            timeouts={"cleanupSeconds": 10},
            deadline=10,
            before=2 * START,
            fault={"code": "Internal"},
        ),
        id="DeleteVolume-error",
    ),
]


@pytest.mark.parametrize("row", ROWS)
def test_a_fault_from_the_start_is_reported_with_its_phase_and_reason_and_recovers(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    driver: ChaosDriver,
    namespace: str,
    test_id: str,
    row: Row,
) -> None:
    other = "mount" if row.kind == "provision" else "provision"
    probe = make_probe(row.probe, STORAGE_CLASS, **{other: {"enabled": False}}, timeouts=row.timeouts)
    options = {k: v.format(id=test_id) if isinstance(v, str) else v for k, v in row.fault.items()}
    with driver.fault(list(row.ops), row.action, namespace=namespace, **options) as fault:
        controller = start_controller()
        last = expect_failure(
            cluster,
            controller,
            probe,
            kind=row.kind,
            phase=row.phase,
            reason=row.reason,
            result=row.result,
            deadline=row.deadline,
            before=row.before,
        )
        for text in row.says:
            assert text.format(id=test_id) in last["message"]
        # The verdict may come first: a volume still there at the clean-up deadline is the
        # failure even if the provisioner has not yet tried to delete it. The fault must get its
        # call while it is in place.
        eventually(f"{row.ops} reaching the driver", lambda: driver.hits(fault) >= 1, 60)
    expect_recovery(controller, probe, row.kind, within=row.recovery)
    expect_nothing_left(cluster, driver, namespace, probe)


# --- the data path, after a good run (FUSE between the pod and the volume's ext4) -----------------


def test_filesystem_turned_read_only_is_read_only(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    driver: ChaosDriver,
    namespace: str,
) -> None:
    # The node's volume, after one good run: its root already belongs to the probe's group, so
    # the kubelet changes nothing on mount (on a fresh volume its chown would fail first).
    deadline = 10
    probe = make_probe("rof", STORAGE_CLASS, provision={"enabled": False}, timeouts={"ioSeconds": deadline})
    controller = start_controller()
    first_success(controller, probe, "mount")
    with driver.fault(["mutate"], "errno", namespace=namespace, errno="EROFS") as fault:
        last = expect_failure(
            cluster,
            controller,
            probe,
            kind="mount",
            phase="write",
            reason="read_only",
            result="failure",
            deadline=deadline,
            before=START,
        )
        assert "EROFS" in last["message"]
        assert driver.hits(fault) >= 1
    expect_recovery(controller, probe, "mount")
    expect_nothing_left(cluster, driver, namespace, probe)


# --- the backing store ---------------------------------------------------------------------------


def test_replaced_backing_store_is_data_lost(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    driver: ChaosDriver,
    namespace: str,
) -> None:
    probe = make_probe("rpl", STORAGE_CLASS, provision={"enabled": False}, timeouts={"ioSeconds": 10})
    controller = start_controller()
    first_success(controller, probe, "mount")

    def generation() -> int:
        claims = owned_items(cluster.kubectl, namespace, probe, "pvc")
        annotations = claims[0]["metadata"].get("annotations") or {} if claims else {}
        return int(annotations.get("volprobe.io/generation", "0"))

    eventually("a generation recorded on the node's claim", lambda: generation() >= 1, 30)
    driver.replace_backing(mount_volume(cluster.kubectl, namespace, probe))
    expect_failure(
        cluster,
        controller,
        probe,
        kind="mount",
        phase="verify",
        reason="data_lost",
        result="failure",
        deadline=10,  # the IO deadline; if a run was staged on the old store, the next one finds it
        before=START,
    )
    expect_recovery(controller, probe, "mount")
    expect_nothing_left(cluster, driver, namespace, probe)


# --- healthy but slow ------------------------------------------------------------------------------


def test_added_latency_passes_and_shows_in_the_histogram(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    driver: ChaosDriver,
    namespace: str,
) -> None:
    # A small payload: every read and write syscall now takes 50 ms or more (and may be more
    # than one FUSE request), and a run longer than the interval would skip the next slot.
    probe = make_probe(
        "lat",
        STORAGE_CLASS,
        provision={"enabled": False},
        io={"payloadBytes": 1 << 20, "blockBytes": 256 * 1024},
    )
    controller = start_controller()
    first_success(controller, probe, "mount")
    # One controller per test: its latency histogram holds this probe's IO only.
    fast = 0.025  # a bucket bound below the injected 50 ms

    def histogram() -> tuple[float, float, float]:
        scrape = controller.scrape()
        count = sum(
            scrape.sum(f"{LATENCY}_count", storage_class=STORAGE_CLASS, op=op) for op in ("write", "read")
        )
        total = sum(
            scrape.sum(f"{LATENCY}_sum", storage_class=STORAGE_CLASS, op=op) for op in ("write", "read")
        )
        quick = sum(
            scrape.sum(f"{LATENCY}_bucket", storage_class=STORAGE_CLASS, op=op, le=str(fast))
            for op in ("write", "read")
        )
        return count, total, quick

    with driver.fault(["read", "write", "fsync"], "delay", namespace=namespace, delay_ms=50) as fault:
        # A run in flight when the fault came may have done part of its IO before it: count
        # from the end of the next run on, so every run measured started under the fault.
        successes = runs(controller, probe, "mount", "success")
        eventually(
            "a run under the fault", lambda: runs(controller, probe, "mount", "success") > successes, 30
        )
        successes = runs(controller, probe, "mount", "success")
        before = histogram()
        eventually(
            "two slow but successful runs",
            lambda: runs(controller, probe, "mount", "success") >= successes + 2,
            6 * INTERVAL,
        )
        after = histogram()
        assert driver.hits(fault) >= 1
    count, total, quick = (a - b for a, b in zip(after, before, strict=True))
    assert count > 0
    assert quick == 0, f"{quick:.0f} of {count:.0f} reads and writes were faster than the 50 ms added"
    assert total / count >= 0.05
    scrape = controller.scrape()
    assert scrape.sum(FAILURES, probe=probe) == 0
    assert condition(cluster.kubectl, probe, "Ready")["status"] == "True"
    expect_nothing_left(cluster, driver, namespace, probe)


# --- Block volumes -----------------------------------------------------------------------------------


def test_block_probe_passes_and_detects_corruption(
    cluster: Cluster,
    make_probe: ProbeFactory,
    start_controller: ControllerFactory,
    driver: ChaosDriver,
    namespace: str,
) -> None:
    payload = 1 << 20
    probe = make_probe(
        "blk",
        STORAGE_CLASS,
        volume={"volumeMode": "Block", "size": "16Mi"},
        io={"payloadBytes": payload, "blockBytes": 256 * 1024},
        timeouts={"ioSeconds": 10},
    )
    controller = start_controller()
    # The second mount run verifies, through a new pod, what the first wrote on the raw device.
    first_success(controller, probe, "mount", count=2)
    first_success(controller, probe, "provision")
    volume = mount_volume(cluster.kubectl, namespace, probe)
    assert next(v for v in driver.volumes(namespace) if v["id"] == volume)["block"] is True
    # Both payload slots of the agent's on-device layout (docs/agent.md), below any cache,
    # between two runs (the driver refuses while the volume is staged).
    eventually(
        "the volume corrupted between two runs",
        lambda: driver.corrupt(volume, offset=8192, length=2 * payload),
        2 * INTERVAL,
        interval=0.2,
    )
    expect_failure(
        cluster,
        controller,
        probe,
        kind="mount",
        phase="verify",
        reason="checksum_mismatch",
        result="failure",
        deadline=10,
        before=START,
    )
    expect_recovery(controller, probe, "mount")
    expect_nothing_left(cluster, driver, namespace, probe)
