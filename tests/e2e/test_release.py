"""What a user gets from a release, tried on the local cluster the way a user would: the image
pulled by the node from a registry, the chart from an OCI registry, the wheel in a clean
virtualenv, the krew plugin installed by krew itself. (The chart's own behaviour once installed
from the registry is test_chart.py's, through the `installed` fixture.)"""

from __future__ import annotations

import json
import re
import subprocess
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

import release
from localcluster import registry
from tests.conftest import Cluster
from tests.e2e.conftest import CHART_REF, IMAGE, PROJECT, REGISTRY, REVISION, Helm
from tests.support.kubectl import eventually
from tests.unit.test_release import BROKEN

pytestmark = pytest.mark.e2e

CHECK_TIMEOUT = 300


def controller_pods(cluster: Cluster, namespace: str) -> list[dict[str, Any]]:
    pods: list[dict[str, Any]] = cluster.kubectl.json(
        "get", "pods", "-n", namespace, "-l", "app.kubernetes.io/component=controller"
    )["items"]
    return pods


def test_the_node_pulled_the_controller_image_from_the_registry(cluster: Cluster, installed: str) -> None:
    """Installed with the chart's pull policy (IfNotPresent) onto a node without the image: the
    kubelet pulled it, and containerd resolved the tag at the registry (a HEAD of the manifest;
    blobs already in its content store under another name are not fetched again)."""
    pods = controller_pods(cluster, installed)
    assert pods
    for pod in pods:
        container = pod["spec"]["containers"][0]
        assert (container["image"], container["imagePullPolicy"]) == (IMAGE, "IfNotPresent")
    names = {pod["metadata"]["name"] for pod in pods}

    def pulled() -> list[str]:
        events = cluster.kubectl.json("get", "events", "-n", installed, "--field-selector", "reason=Pulled")
        return [e["message"] for e in events["items"] if e["involvedObject"]["name"] in names]

    messages = eventually("a Pulled event of the controller pod", pulled, 30)
    assert any(m.startswith(f'Successfully pulled image "{IMAGE}"') for m in messages), messages
    log = (cluster.layout.logs / f"{registry.NAME}.log").read_text()
    repository = IMAGE.removeprefix(f"{registry.ADDRESS}/").rsplit(":", 1)[0]
    served = rf'"(HEAD|GET) /v2/{repository}/manifests/{PROJECT.version} HTTP/1\.1" 200 .*"containerd/'
    assert re.search(served, log), f"containerd never asked the registry for {IMAGE} (its log)"


def test_the_pushed_image_carries_the_release_labels(image: str) -> None:
    inspected = json.loads(
        subprocess.run(
            ["skopeo", "inspect", "--tls-verify=false", f"docker://{image}"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    labels = inspected["Labels"]
    assert labels["org.opencontainers.image.version"] == PROJECT.version
    assert labels["org.opencontainers.image.revision"] == REVISION
    assert re.fullmatch(r"[0-9a-f]{40}", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.source"] == PROJECT.source
    assert labels["org.opencontainers.image.licenses"] == "Apache-2.0"
    assert (inspected["Os"], inspected["Architecture"]) == ("linux", "amd64")


def test_the_chart_in_the_registry_names_the_image_beside_it(helm: Helm, chart: list[str]) -> None:
    shown = helm.run("show", "chart", *chart).stdout
    assert yaml.safe_load(shown)["version"] == PROJECT.version
    values = yaml.safe_load(helm.run("show", "values", *chart).stdout)
    assert values["image"] == {"repository": f"{REGISTRY}/volprobe", "tag": "", "pullPolicy": "IfNotPresent"}
    assert chart[0] == CHART_REF == f"oci://{REGISTRY}/charts/volprobe"


def clean_venv(directory: Path) -> Path:
    """A virtualenv of the system's Python, without this checkout's packages or path."""
    subprocess.run(["/usr/bin/python3", "-m", "venv", str(directory)], check=True)
    return directory / "bin"


def test_the_wheel_installs_in_a_clean_venv_and_checks_standard(
    cluster: Cluster, image: str, tmp_path: Path
) -> None:
    built = release.build_python(PROJECT, tmp_path / "dist")
    wheel = next(p for p in built if p.suffix == ".whl")
    assert zipped_names(built) >= {"volprobe/cli.py", "volprobe/py.typed"}
    bin_dir = clean_venv(tmp_path / "venv")
    subprocess.run(
        [str(bin_dir / "pip"), "install", "--quiet", "--disable-pip-version-check", str(wheel)], check=True
    )
    # Only the venv: no PYTHONPATH, not run from the checkout.
    env = {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}

    def volprobe(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(bin_dir / "volprobe"), *args],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
            timeout=timeout,
            check=False,
        )

    version = volprobe("--version")
    assert (version.returncode, version.stdout.strip()) == (0, PROJECT.version), version.stderr
    where = subprocess.run(
        [str(bin_dir / "python"), "-c", "import volprobe; print(volprobe.__file__)"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    assert where.startswith(str(tmp_path / "venv")), where
    usage = volprobe("check", "--help")
    assert usage.returncode == 0, usage.stderr
    assert "--probe-image" in usage.stdout
    result = volprobe(
        "check",
        "standard",
        f"--kubeconfig={cluster.kubeconfig}",
        f"--probe-image={image}",
        "--node-grace=0",
        timeout=CHECK_TIMEOUT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: StorageClass standard" in result.stdout


def zipped_names(built: list[Path]) -> set[str]:
    with zipfile.ZipFile(next(p for p in built if p.suffix == ".whl")) as wheel:
        return set(wheel.namelist())


def test_the_sdist_holds_the_source_and_the_licence(tmp_path: Path) -> None:
    built = release.build_python(PROJECT, tmp_path)
    sdist = next(p for p in built if p.name.endswith(".tar.gz"))
    prefix = f"{PROJECT.name}-{PROJECT.version}/"
    with tarfile.open(sdist) as archive:
        names = {name.removeprefix(prefix) for name in archive.getnames()}
    assert {"pyproject.toml", "README.md", "LICENSE", "src/volprobe/cli.py"} <= names


def test_krew_installs_the_plugin_and_kubectl_runs_it(cluster: Cluster, image: str, tmp_path: Path) -> None:
    """krew's own validator accepts the manifest and krew installs the archive it names (offline:
    `--archive` stands in for the download, checked against the manifest's sha256); kubectl then
    finds `kubectl volprobe`, which runs a real check from the zip application."""
    dist = tmp_path / "dist"
    release.build_python(PROJECT, dist)
    archive, manifest = release.build_krew(PROJECT, dist)
    validator = release.go_tool(cluster.layout, "validate-krew-manifest")
    validated = subprocess.run(
        [str(validator), "-skip-install", "-manifest", str(manifest)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert validated.returncode == 0, validated.stderr

    krew_root = tmp_path / "krew"
    env = {
        "KREW_ROOT": str(krew_root),
        "HOME": str(tmp_path),
        "PATH": f"{krew_root / 'bin'}:{cluster.layout.kubernetes_bin('kubectl').parent}:/usr/bin:/bin",
        "KUBECONFIG": str(cluster.kubeconfig),
    }
    krew = release.go_tool(cluster.layout, "krew")
    installed = subprocess.run(
        [str(krew), "install", f"--manifest={manifest}", f"--archive={archive}"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert installed.returncode == 0, installed.stderr
    receipt = yaml.safe_load((krew_root / "receipts" / "volprobe.yaml").read_text())
    assert receipt["spec"]["version"] == f"v{PROJECT.version}"
    assert (krew_root / "store" / "volprobe" / f"v{PROJECT.version}" / "LICENSE").exists()

    def kubectl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["kubectl", *args], capture_output=True, text=True, env=env, timeout=CHECK_TIMEOUT, check=False
        )

    version = kubectl("volprobe", "--version")
    assert (version.returncode, version.stdout.strip()) == (0, PROJECT.version), version.stderr
    result = kubectl("volprobe", "check", "standard", f"--probe-image={image}", "--node-grace=0")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASSED: StorageClass standard" in result.stdout


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_krews_own_validator_rejects_what_ours_rejects(cluster: Cluster, case: str, tmp_path: Path) -> None:
    """The unit tests' broken manifests, each refused by krew's validate-krew-manifest too, while
    the same manifest unbroken and written the same way passes: the facts our validator encodes
    are krew's."""
    validator = release.go_tool(cluster.layout, "validate-krew-manifest")
    path = tmp_path / "volprobe.yaml"

    def krew_accepts(manifest: dict[str, Any]) -> bool:
        path.write_text(yaml.safe_dump(manifest))
        result = subprocess.run(
            [str(validator), "-skip-install", "-manifest", str(path)], capture_output=True, check=False
        )
        return result.returncode == 0

    manifest = yaml.safe_load(
        release.render_krew_manifest(release.KREW_TEMPLATE.read_text(), PROJECT, "a" * 64)
    )
    assert krew_accepts(manifest)
    BROKEN[case][0](manifest)
    assert not krew_accepts(manifest), f"krew accepted a manifest with {case}"
