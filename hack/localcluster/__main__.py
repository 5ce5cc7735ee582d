"""`python -m localcluster {build,up,down,status,leftovers}` (run from hack/, as root)."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from . import cluster, host, images, objectstore
from .config import REPO_DIR, Layout

sys.path.insert(0, str(REPO_DIR / "src"))
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE


def main() -> int:
    parser = argparse.ArgumentParser(prog="localcluster", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build or find every binary and image (no cluster started)")
    up = sub.add_parser("up", help="start the cluster (idempotent)")
    up.add_argument("--kwok-nodes", type=int, default=int(os.environ.get("KWOK_NODES", "3")))
    sub.add_parser("down", help="stop the cluster and remove everything it made")
    sub.add_parser("status", help="print daemons and node readiness as JSON")
    sub.add_parser("image", help="build volprobe's image from the Containerfile and import it into the node")
    sub.add_parser("leftovers", help="list anything of the cluster still on the host (exit 1 if any)")
    args = parser.parse_args()
    if os.geteuid() != 0:
        parser.error("must run as root (it starts a kubelet and containerd)")
    layout = Layout.default()
    if args.command == "build":
        started = time.monotonic()
        bins = cluster.binaries(layout)
        images.cluster_images(layout)
        objectstore.image(layout, bins.versitygw)
        print(f"cluster: build done in {time.monotonic() - started:.1f}s", file=sys.stderr)
    elif args.command == "up":
        cluster.up(layout, args.kwok_nodes)
    elif args.command == "down":
        started = time.monotonic()
        remaining = cluster.down(layout)
        if remaining:
            print("cluster: down left these behind:\n  " + "\n  ".join(remaining), file=sys.stderr)
            return 1
        print(f"cluster: down in {time.monotonic() - started:.1f}s, nothing left behind", file=sys.stderr)
    elif args.command == "image":
        started = time.monotonic()
        archive = images.release_image(layout, DEFAULT_AGENT_IMAGE, REPO_DIR)
        cluster.import_image(layout, archive)
        print(
            f"cluster: image {DEFAULT_AGENT_IMAGE} ready in {time.monotonic() - started:.1f}s",
            file=sys.stderr,
        )
    elif args.command == "status":
        print(json.dumps(cluster.status(layout), indent=2))
    elif args.command == "leftovers":
        snapshot_file = layout.state / "host-snapshot.json"
        before = host.Snapshot.load(snapshot_file) if snapshot_file.exists() else None
        remaining = host.leftovers(layout.state, before)
        print("\n".join(remaining))
        return 1 if remaining else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
