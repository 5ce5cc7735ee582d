"""The agent's start-up inside the release image, in real pods on the real node.

    python bench/agent_in_pod.py [--pods 7]      (root; the local cluster is started if needed)

bench/agent_vs_fio.py measures start-up on the host; what counts is the probe pod: the
release image (compiled bytecode, read-only root), the pod's CPU limit (the StorageProbe
default, 500m) and its memory limit. Each pod runs

    sh -c 'date +%s.%N; exec volprobe probe mount --path /volume'

so the first log line is the wall-clock time just before the agent's `exec`, and the report's
`start` is the wall-clock time of its first IO on the volume (same host, same clock). Their
difference is interpreter start, imports, argument parsing and preparation — everything before
the storage is touched. Printed: each pod's figure, median, min and max (target ≤ 150 ms).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster import images  # noqa: E402
from localcluster.components import NODE_TYPE_LABEL  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.support.kubectl import Kubectl, eventually  # noqa: E402
from volprobe.contract.pod import MOUNT_PATH  # noqa: E402
from volprobe.contract.report import decode_report  # noqa: E402
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE  # noqa: E402
from volprobe.model.spec import DEFAULT_RESOURCES  # noqa: E402

NAMESPACE = "volprobe-bench-startup"


def pod(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "nodeSelector": {NODE_TYPE_LABEL: "real"},
            "automountServiceAccountToken": False,
            "containers": [
                {
                    "name": "agent",
                    "image": DEFAULT_AGENT_IMAGE,
                    "imagePullPolicy": "Never",
                    "command": ["sh", "-c", f"date +%s.%N; exec volprobe probe mount --path {MOUNT_PATH}"],
                    "resources": DEFAULT_RESOURCES,
                    "securityContext": {"readOnlyRootFilesystem": True, "allowPrivilegeEscalation": False},
                    "volumeMounts": [{"name": "volume", "mountPath": MOUNT_PATH}],
                }
            ],
            "volumes": [{"name": "volume", "emptyDir": {}}],
        },
    }


def startup_seconds(kubectl: Kubectl, name: str) -> float:
    """Run one pod to completion; seconds from just before `exec` to the agent's first IO."""
    kubectl.apply(pod(name), namespace=NAMESPACE)

    def finished() -> dict[str, Any] | None:
        obj = kubectl.get("pod", name, NAMESPACE)
        phase = (obj or {}).get("status", {}).get("phase")
        if phase == "Failed":
            raise RuntimeError(f"pod {name} failed: {obj['status']}")
        return obj if phase == "Succeeded" else None

    done = eventually(f"pod {name} to finish", finished, 120)
    message = done["status"]["containerStatuses"][0]["state"]["terminated"]["message"]
    report = decode_report(message)
    before_exec = float(kubectl.run("logs", "-n", NAMESPACE, name).splitlines()[0])
    kubectl.delete("pod", name, NAMESPACE, wait=False)
    if not report.passed:
        raise RuntimeError(f"pod {name}: the check did not pass: {report}")
    return report.started - before_exec


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pods", type=int, default=7, help="how many pods to measure")
    args = parser.parse_args()

    layout = Layout.default()
    localcluster.up(layout, int(os.environ.get("KWOK_NODES", "3")))
    localcluster.import_image(layout, images.release_image(layout, DEFAULT_AGENT_IMAGE, REPO))
    kubectl = Kubectl(layout.kubernetes_bin("kubectl"), layout.kubeconfig)
    kubectl.run("create", "namespace", NAMESPACE, check=False)
    eventually(
        "the namespace's service account", lambda: kubectl.get("serviceaccount", "default", NAMESPACE), 30
    )
    figures: list[float] = []
    try:
        for index in range(args.pods):
            seconds = startup_seconds(kubectl, f"startup-{index}-{int(time.time())}")
            figures.append(seconds)
            print(f"pod {index + 1}: exec to first IO {seconds * 1000:.0f} ms")
    finally:
        kubectl.delete("namespace", NAMESPACE, wait=False)
    limits = DEFAULT_RESOURCES["limits"]
    median = statistics.median(figures)
    print(
        f"\nagent start-up in the release image ({DEFAULT_AGENT_IMAGE}), {len(figures)} pods, "
        f"limits cpu={limits['cpu']} memory={limits['memory']}: median {median * 1000:.0f} ms, "
        f"min {min(figures) * 1000:.0f} ms, max {max(figures) * 1000:.0f} ms (target ≤ 150 ms)"
    )
    return 0 if median <= 0.150 else 1


if __name__ == "__main__":
    sys.exit(main())
