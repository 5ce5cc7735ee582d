"""Where things live and which versions they are: the only module that knows paths."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

HACK_DIR = Path(__file__).resolve().parent.parent
REPO_DIR = HACK_DIR.parent
VERSIONS_FILE = HACK_DIR / "versions.env"


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """Parse the shell-style KEY=VALUE pin file (comments and blank lines ignored)."""
    versions: dict[str, str] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        versions[key.strip()] = value.strip()
    return versions


@dataclass(frozen=True)
class Layout:
    """Directories of one cluster.

    Built artefacts are cached outside the repository (keyed by version) so that a fresh clone
    reuses them; everything a running cluster writes lives under the checkout's `.cluster/`, so
    `make cluster-down` can remove it all and a test can check that nothing is left.
    """

    cache: Path
    state: Path

    @classmethod
    def default(cls) -> Layout:
        cache = Path(os.environ.get("VOLPROBE_CACHE", Path.home() / ".cache" / "volprobe"))
        state = Path(os.environ.get("VOLPROBE_CLUSTER_DIR", REPO_DIR / ".cluster"))
        return cls(cache=cache, state=state)

    @property
    def bin(self) -> Path:
        return self.cache / "bin"

    @property
    def images(self) -> Path:
        return self.cache / "images"

    def kubernetes_bin(self, name: str) -> Path:
        """A Kubernetes binary of the pinned version (kubectl, kube-proxy …)."""
        return self.bin / f"kubernetes-{read_versions()['KUBERNETES_VERSION']}" / name

    @property
    def kubeconfig(self) -> Path:
        return self.state / "kubeconfig"

    @property
    def pki(self) -> Path:
        return self.state / "pki"

    @property
    def logs(self) -> Path:
        return self.state / "logs"

    @property
    def run(self) -> Path:
        return self.state / "run"

    @property
    def kubelet_root(self) -> Path:
        """The real node's kubelet `--root-dir` (pods' volumes, CSI plugin sockets)."""
        return self.state / "kubelet"

    @property
    def storage(self) -> Path:
        """Host directory where local-path-provisioner puts volumes."""
        return self.state / "storage"
