"""`make cluster-down` leaves nothing behind (collected last: it stops the cluster)."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from pathlib import Path

import pytest

from localcluster import host, processes
from localcluster.cluster import OWNER_FILE
from tests.conftest import REPO, Cluster

pytestmark = pytest.mark.integration


def test_cluster_down_leaves_nothing_behind(cluster: Cluster) -> None:
    layout = cluster.layout
    before = host.Snapshot.load(layout.state / "host-snapshot.json")
    state = str(layout.state.resolve())
    assert processes.processes_mentioning(state), "the cluster should be running before the test"
    # A pod with a volume keeps mounts, a netns and a veth alive: the hardest case for `down`.
    cluster.kubectl.run(
        "run",
        "sleeper",
        "--image=localhost/volprobe-base:bookworm-1",
        "--image-pull-policy=Never",
        "--restart=Never",
        '--overrides={"spec":{"nodeSelector":{"volprobe.io/node-type":"real"}}}',
        "--command",
        "--",
        "sleep",
        "600",
    )
    cluster.kubectl.run("wait", "--for=condition=Ready", "pod/sleeper", "--timeout=60s")
    assert host.mounts_under(layout.state), "a running pod should have mounts under the state directory"
    # The local S3 server: a pod on the real node, its data a hostPath under the state directory.
    assert versitygw_processes(), "the local S3 server should be running"

    result = subprocess.run(
        [sys.executable, "-m", "localcluster", "down"],
        cwd=REPO,
        env={"PYTHONPATH": str(REPO / "hack"), "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr

    assert host.leftovers(layout.state, before) == []
    assert processes.processes_mentioning(state) == []
    assert versitygw_processes() == []
    assert host.mounts_under(layout.state) == []
    assert not OWNER_FILE.exists()
    assert sorted(p.name for p in layout.state.iterdir()) == ["logs"]
    for name, value in before.sysctls.items():
        assert host.read_sysctl(name) == value, name


def versitygw_processes() -> list[int]:
    """The local S3 server's processes: they run in containers, so no host path is in their argv."""
    found = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            if entry.name.isdigit() and (entry / "comm").read_text().strip() == "versitygw":
                found.append(int(entry.name))
    return found
