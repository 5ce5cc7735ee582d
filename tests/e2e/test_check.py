"""`volprobe check` against the local cluster: verdicts, exit codes, JSON, and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.conftest import Cluster
from tests.e2e.conftest import IMAGE
from tests.support.controller import VOLPROBE
from tests.support.kubectl import eventually
from volprobe import __version__

pytestmark = pytest.mark.e2e


def check(cluster: Cluster, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VOLPROBE), "check", f"--kubeconfig={cluster.kubeconfig}", f"--probe-image={IMAGE}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def leftovers(cluster: Cluster) -> dict[str, list[str]]:
    """Anything a check could have left: its namespaces, pods and claims (by label), volumes."""
    namespaces = [
        n["metadata"]["name"]
        for n in cluster.kubectl.json("get", "namespaces")["items"]
        if n["metadata"]["name"].startswith("volprobe-check-")
    ]
    pods = [
        p["metadata"]["name"]
        for p in cluster.kubectl.json("get", "pods", "-A", "-l", "app.kubernetes.io/managed-by=volprobe")[
            "items"
        ]
        if p["metadata"]["name"].startswith("vp-check-")
    ]
    claims = [
        c["metadata"]["name"]
        for c in cluster.kubectl.json("get", "pvc", "-A", "-l", "app.kubernetes.io/managed-by=volprobe")[
            "items"
        ]
        if c["metadata"]["name"].startswith("vp-check-")
    ]
    volumes = [
        v["metadata"]["name"]
        for v in cluster.kubectl.json("get", "pv")["items"]
        if (v["spec"].get("claimRef") or {}).get("name", "").startswith("vp-check-")
    ]
    return {"namespaces": namespaces, "pods": pods, "claims": claims, "volumes": volumes}


NOTHING: dict[str, list[str]] = {"namespaces": [], "pods": [], "claims": [], "volumes": []}


def test_check_standard_passes_with_a_table(cluster: Cluster, image: str) -> None:
    result = check(cluster, "standard")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: StorageClass standard" in result.stdout
    lines = [line for line in result.stdout.splitlines() if line.startswith(("mount ", "provision "))]
    assert sum(1 for line in lines if "success" in line) == 3, result.stdout  # provision + two mount runs
    assert "waiting for" in result.stderr or "success in" in result.stderr, "progress is shown while waiting"
    eventually("nothing left behind", lambda: leftovers(cluster) == NOTHING, 60)


def test_check_broken_fails_with_json_naming_the_reason(cluster: Cluster, image: str) -> None:
    result = check(cluster, "broken", "--timeout=10", "--output=json")
    assert result.returncode == 1, result.stderr
    document = json.loads(result.stdout)
    assert document["version"] == 1
    assert document["passed"] is False
    assert document["exitCode"] == 1
    assert document["storageClass"] == "broken"
    kinds = {run["kind"] for run in document["runs"]}
    assert kinds == {"provision", "mount"}
    for run in document["runs"]:
        assert run["result"] == "timeout"
        assert run["phase"] == "provision"
        assert run["reason"] == "provisioning_timeout"
        assert "volprobe.io/does-not-exist" in run["message"]
    assert all(s["reason"] == "tainted" for s in document["skipped"])  # kwok nodes
    eventually("nothing left behind", lambda: leftovers(cluster) == NOTHING, 60)


def test_check_of_a_missing_class_is_a_usage_error(cluster: Cluster, image: str) -> None:
    result = check(cluster, "no-such-class")
    assert result.returncode == 2
    assert "StorageClass 'no-such-class' does not exist" in result.stderr


def test_ctrl_c_mid_run_leaves_nothing_behind(cluster: Cluster, image: str) -> None:
    # `broken` keeps the runs in flight for the whole timeout: interrupt them there.
    process = subprocess.Popen(
        [
            str(VOLPROBE),
            "check",
            f"--kubeconfig={cluster.kubeconfig}",
            f"--probe-image={IMAGE}",
            "broken",
            "--timeout=120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        eventually("the check's pods to exist", lambda: leftovers(cluster)["pods"], 60)
        time.sleep(2)
        process.send_signal(signal.SIGINT)
        _, stderr = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    eventually("nothing left behind after Ctrl-C", lambda: leftovers(cluster) == NOTHING, 90)


def test_kubectl_finds_volprobe_as_a_plugin(cluster: Cluster) -> None:
    """`kubectl volprobe …` is `volprobe …`: kubectl runs `kubectl-volprobe` found on PATH."""
    env = {**os.environ, "PATH": f"{VOLPROBE.parent}:{os.environ['PATH']}"}
    plugins = cluster.kubectl.binary
    listed = subprocess.run(
        [str(plugins), "plugin", "list"], capture_output=True, text=True, env=env, check=False
    )
    assert str(VOLPROBE.parent / "kubectl-volprobe") in listed.stdout
    result = subprocess.run(
        [str(plugins), "volprobe", "version"], capture_output=True, text=True, env=env, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == __version__
