"""`make cluster-down` leaves nothing behind (collected last: it stops the cluster)."""

from __future__ import annotations

import subprocess
import sys

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
    assert host.mounts_under(layout.state) == []
    assert not OWNER_FILE.exists()
    assert sorted(p.name for p in layout.state.iterdir()) == ["logs"]
    for name, value in before.sysctls.items():
        assert host.read_sysctl(name) == value, name
