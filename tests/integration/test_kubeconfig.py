"""Exec-plugin kubeconfigs against the real local cluster: `volprobe controller`, `volprobe check` and
`kubectl volprobe check` authenticate through a real exec credential plugin.

The plugin (a script written here) does what a cloud provider's plugin does: it gets a fresh,
short-lived credential from an authority — here the TokenRequest API, as `kubectl create token`,
for a ServiceAccount of the test — and prints it as an ExecCredential with a short
``expirationTimestamp``. Each token is bound to a Secret the plugin creates, and the plugin deletes
the previous run's Secret, which really revokes the previous token: a client that kept using an
expired credential would start getting 401s. The plugin counts its runs in a file.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import Cluster
from tests.integration.conftest import TEST_LABEL, ProbeFactory
from tests.support.controller import VOLPROBE, ControllerProcess
from tests.support.kubectl import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(400)]

RUNS = "volprobe_probe_runs_total"
FAILURES = "volprobe_probe_failures_total"
ACCOUNT = "vp-exec"

# argv: state directory. Environment (set by the kubeconfig's exec.env): how to reach the cluster
# as an administrator, which ServiceAccount to mint tokens for, how long they are said to last.
PLUGIN = """\
import datetime, json, os, subprocess, sys
state = sys.argv[1]
runs_file = os.path.join(state, "runs")
runs = int(open(runs_file).read()) + 1 if os.path.exists(runs_file) else 1
open(runs_file, "w").write(str(runs))
with open(os.path.join(state, "exec-info.json"), "w") as out:
    out.write(os.environ["KUBERNETES_EXEC_INFO"])
if os.environ.get("PLUGIN_FAIL"):
    print("vp-exec-plugin: the identity provider refused: account disabled", file=sys.stderr)
    sys.exit(4)
namespace, account = os.environ["PLUGIN_NAMESPACE"], os.environ["PLUGIN_ACCOUNT"]
admin = os.environ["PLUGIN_ADMIN_KUBECONFIG"]
kubectl = [os.environ["PLUGIN_KUBECTL"], "--kubeconfig", admin, "-n", namespace]

def run(*args):
    return subprocess.run(kubectl + list(args), check=True, capture_output=True, text=True).stdout

binding = f"{account}-bound-{os.path.basename(state)}-{runs}"
run("create", "secret", "generic", binding)
token = run("create", "token", account, "--duration=10m", "--bound-object-kind=Secret",
            f"--bound-object-name={binding}").strip()
open(os.path.join(state, f"token-{runs}"), "w").write(token)
if runs > 1:
    run("delete", "secret", f"{account}-bound-{os.path.basename(state)}-{runs - 1}", "--wait=false")
lifetime = float(os.environ["PLUGIN_LIFETIME"])
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=lifetime)
print(json.dumps({
    "apiVersion": "client.authentication.k8s.io/v1",
    "kind": "ExecCredential",
    "status": {"token": token, "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")},
}))
"""


@dataclass
class ExecKubeconfig:
    """A kubeconfig whose user is the plugin; the plugin's state (run count, tokens) next to it."""

    directory: Path
    cluster: Cluster
    namespace: str

    @property
    def state(self) -> Path:
        return self.directory / "state"

    @property
    def plugin(self) -> Path:
        return self.directory / "bin" / "vp-exec-plugin"

    @property
    def runs(self) -> int:
        runs = self.state / "runs"
        return int(runs.read_text()) if runs.exists() else 0

    def token(self, run: int) -> str:
        return (self.state / f"token-{run}").read_text()

    def exec_info(self) -> dict[str, Any]:
        info: dict[str, Any] = json.loads((self.state / "exec-info.json").read_text())
        return info

    def documents(self, *, lifetime: float, fail: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
        """(clusters and users, contexts and current-context): two files that only work merged."""
        admin = yaml.safe_load(self.cluster.kubeconfig.read_text())
        admin_cluster = admin["clusters"][0]["cluster"]
        env = {
            "PLUGIN_NAMESPACE": self.namespace,
            "PLUGIN_ACCOUNT": ACCOUNT,
            "PLUGIN_KUBECTL": str(self.cluster.kubectl.binary),
            "PLUGIN_ADMIN_KUBECONFIG": str(self.cluster.kubeconfig),
            "PLUGIN_LIFETIME": str(lifetime),
            **({"PLUGIN_FAIL": "1"} if fail else {}),
        }
        cluster = {
            key: value
            for key, value in admin_cluster.items()
            if key in ("server", "certificate-authority-data", "certificate-authority")
        }
        cluster["extensions"] = [
            {"name": "client.authentication.k8s.io/exec", "extension": {"audience": "vp"}}
        ]
        users_and_clusters = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": cluster}],
            "users": [
                {
                    "name": "exec-user",
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1",
                            "command": "./bin/vp-exec-plugin",  # relative to this kubeconfig
                            "args": [str(self.state)],
                            "env": [{"name": k, "value": v} for k, v in env.items()],
                            "interactiveMode": "Never",
                            "provideClusterInfo": True,
                        }
                    },
                }
            ],
        }
        contexts = {
            "apiVersion": "v1",
            "kind": "Config",
            "contexts": [
                {
                    "name": "exec",
                    "context": {"cluster": "local", "user": "exec-user", "namespace": self.namespace},
                }
            ],
            "current-context": "exec",
        }
        return users_and_clusters, contexts

    def write(self, *, lifetime: float, fail: bool = False) -> tuple[Path, Path]:
        """Two files (users+clusters, contexts) and the plugin; returns their paths."""
        self.state.mkdir(parents=True, exist_ok=True)
        self.plugin.parent.mkdir(exist_ok=True)
        self.plugin.write_text(f"#!{sys.executable}\n{PLUGIN}")
        self.plugin.chmod(self.plugin.stat().st_mode | stat.S_IXUSR)
        users, contexts = self.documents(lifetime=lifetime, fail=fail)
        users_path, contexts_path = self.directory / "users.yaml", self.directory / "contexts.yaml"
        users_path.write_text(yaml.safe_dump(users))
        contexts_path.write_text(yaml.safe_dump(contexts))
        return users_path, contexts_path

    def single(self, *, lifetime: float, fail: bool = False) -> Path:
        """One kubeconfig file with everything (for --kubeconfig)."""
        self.write(lifetime=lifetime, fail=fail)
        users, contexts = self.documents(lifetime=lifetime, fail=fail)
        path = self.directory / "kubeconfig"
        path.write_text(yaml.safe_dump({**users, **contexts}))
        return path


@pytest.fixture
def service_account(cluster: Cluster, namespace: str) -> Iterator[str]:
    """A ServiceAccount of this test's namespace allowed what the controller and the check do."""
    kubectl = cluster.kubectl
    kubectl.run("create", "serviceaccount", ACCOUNT, "-n", namespace)
    binding = f"vp-exec-{namespace}"
    kubectl.run(
        "create", "clusterrolebinding", binding, "--clusterrole=cluster-admin",
        f"--serviceaccount={namespace}:{ACCOUNT}",
    )  # fmt: skip
    yield f"system:serviceaccount:{namespace}:{ACCOUNT}"
    kubectl.run("delete", "clusterrolebinding", binding, "--ignore-not-found")


@pytest.fixture
def exec_kubeconfig(cluster: Cluster, namespace: str, service_account: str, tmp_path: Path) -> ExecKubeconfig:
    return ExecKubeconfig(tmp_path / "exec", cluster, namespace)


def unauthorized(kubeconfig: ExecKubeconfig, token: str) -> bool:
    """Whether the API server, asked by kubectl with only this token, rejects it.

    The admin kubeconfig would also present its client certificate, which wins: so a kubeconfig
    with the cluster and no user.
    """
    admin = yaml.safe_load(kubeconfig.cluster.kubeconfig.read_text())
    anonymous = kubeconfig.directory / "cluster-only.yaml"
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"][:1],
        "contexts": [{"name": "c", "context": {"cluster": admin["clusters"][0]["name"]}}],
        "current-context": "c",
    }
    anonymous.write_text(yaml.safe_dump(document))
    kubectl = str(kubeconfig.cluster.kubectl.binary)
    result = subprocess.run(
        [kubectl, f"--kubeconfig={anonymous}", f"--token={token}", "get", "--raw", "/api"],
        capture_output=True,
        text=True,
        check=False,
    )
    return result.returncode != 0 and "Unauthorized" in result.stderr


def check(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*args], capture_output=True, text=True, timeout=300, check=False, env={**os.environ, **(env or {})}
    )


def test_controller_with_an_exec_plugin_refreshes_expired_credentials(
    cluster: Cluster,
    exec_kubeconfig: ExecKubeconfig,
    make_probe: ProbeFactory,
    probe_image: str,
    namespace: str,
    test_id: str,
    tmp_path: Path,
) -> None:
    kubeconfig = exec_kubeconfig.single(lifetime=8)
    probe = make_probe("exec", "standard")
    controller = ControllerProcess(
        kubeconfig=kubeconfig,
        namespace=namespace,
        image=probe_image,
        log=tmp_path / "controller.log",
        extra=(f"--probe-selector={TEST_LABEL}={test_id}",),
    ).start()
    try:
        controller.wait_ready()
        started = time.monotonic()

        def runs(kind: str) -> float:
            return controller.scrape().sum(RUNS, probe=probe, kind=kind, result="success")

        eventually("two successful mount runs", lambda: runs("mount") >= 2, 90)
        eventually("a successful provision run", lambda: runs("provision") >= 1, 60)
        # Keep it running past several expiries (8 s each) of the credential.
        time.sleep(max(0.0, started + 30 - time.monotonic()))
        eventually("more mount runs after the credential expired", lambda: runs("mount") >= 3, 60)
        assert controller.alive()
        assert controller.get("/readyz")[0] == 200
        scrape = controller.scrape()
        assert scrape.sum(FAILURES, probe=probe) == 0
        plugin_runs = exec_kubeconfig.runs
        assert plugin_runs >= 4, f"the plugin ran {plugin_runs} times in more than 30 s of 8 s credentials"
        assert not unauthorized(exec_kubeconfig, exec_kubeconfig.token(plugin_runs)), "the newest one works"
        first = exec_kubeconfig.token(1)
        eventually("the first credential to be revoked", lambda: unauthorized(exec_kubeconfig, first), 60)
        # Still working with credentials the plugin minted after the first one was revoked.
        before = runs("mount")
        eventually("a mount run on a refreshed credential", lambda: runs("mount") > before, 60)
        info = exec_kubeconfig.exec_info()
        assert info["spec"]["interactive"] is False
        assert (
            info["spec"]["cluster"]["server"]
            == yaml.safe_load(cluster.kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        )
        assert info["spec"]["cluster"]["config"] == {"audience": "vp"}
        assert "Traceback" not in controller.log_text()
    finally:
        controller.stop()


def test_volprobe_check_with_an_exec_plugin(exec_kubeconfig: ExecKubeconfig, probe_image: str) -> None:
    kubeconfig = exec_kubeconfig.single(lifetime=4)
    result = check(
        str(VOLPROBE), "check", f"--kubeconfig={kubeconfig}", f"--probe-image={probe_image}", "standard"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: StorageClass standard" in result.stdout
    assert exec_kubeconfig.runs >= 2, "a check outlives a 4 s credential: the plugin ran again"


def test_kubectl_volprobe_check_with_merged_kubeconfig_files(
    exec_kubeconfig: ExecKubeconfig, probe_image: str
) -> None:
    """What an SRE runs from a laptop: KUBECONFIG lists files, kubectl finds the plugin on PATH."""
    users, contexts = exec_kubeconfig.write(lifetime=600)
    kubectl = exec_kubeconfig.cluster.kubectl.binary
    env = {
        "KUBECONFIG": os.pathsep.join([str(users), str(exec_kubeconfig.directory / "absent"), str(contexts)]),
        "PATH": f"{VOLPROBE.parent}{os.pathsep}{os.environ['PATH']}",
    }
    result = check(str(kubectl), "volprobe", "check", f"--probe-image={probe_image}", "standard", env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: StorageClass standard" in result.stdout
    assert exec_kubeconfig.runs == 1, "a 10-minute credential is fetched once"


def test_a_failing_plugin_is_a_clear_error(
    exec_kubeconfig: ExecKubeconfig, probe_image: str, namespace: str, tmp_path: Path
) -> None:
    kubeconfig = exec_kubeconfig.single(lifetime=600, fail=True)
    result = check(str(VOLPROBE), "check", f"--kubeconfig={kubeconfig}", "standard")
    assert result.returncode == 2, result.stdout + result.stderr
    assert str(exec_kubeconfig.plugin) in result.stderr
    assert "exit code 4" in result.stderr
    assert "the identity provider refused: account disabled" in result.stderr
    assert "Traceback" not in result.stderr

    users, contexts = exec_kubeconfig.write(lifetime=600, fail=True)
    env = {
        "KUBECONFIG": os.pathsep.join([str(users), str(contexts)]),
        "PATH": f"{VOLPROBE.parent}{os.pathsep}{os.environ['PATH']}",
    }
    kubectl = exec_kubeconfig.cluster.kubectl.binary
    via_kubectl = check(str(kubectl), "volprobe", "check", "standard", env=env)
    assert via_kubectl.returncode == 2
    assert "the identity provider refused: account disabled" in via_kubectl.stderr
    assert "Traceback" not in via_kubectl.stderr

    controller = ControllerProcess(
        kubeconfig=kubeconfig, namespace=namespace, image=probe_image, log=tmp_path / "failing.log"
    ).start()
    try:
        expected = f"exec plugin {exec_kubeconfig.plugin} failed with exit code 4"
        eventually(
            "the controller to log why it cannot authenticate", lambda: expected in controller.log_text(), 30
        )
        assert "the identity provider refused: account disabled" in controller.log_text()
        assert controller.alive(), "it keeps retrying: the plugin may recover"
        assert controller.get("/readyz")[0] != 200
        assert "Traceback" not in controller.log_text()
    finally:
        controller.stop()
