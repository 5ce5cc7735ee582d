"""Delete what volprobe made in a namespace and wait until its volumes are gone.

Used by `volprobe check` after its runs (and on Ctrl-C), and by `volprobe cleanup`, which the
Helm chart runs before uninstalling so that no probe pod or claim outlives the release.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

from volprobe import __version__
from volprobe.model.manifests import SELECTOR
from volprobe.runtime.kube import ApiError, ConfigError, KubeClient, load_config


async def delete_owned(
    client: KubeClient, namespace: str, *, selector: str = SELECTOR, wait: float = 120
) -> list[str]:
    """Delete our pods and claims in `namespace`; return the volumes still present after `wait`."""
    base = f"/api/v1/namespaces/{namespace}"
    volumes: set[str] = set()
    for resource in ("pods", "persistentvolumeclaims"):
        with contextlib.suppress(ApiError):
            listed = await client.list(f"{base}/{resource}", label_selector=selector)
            for item in listed.items:
                volumes.add(str((item.get("spec") or {}).get("volumeName") or ""))
                with contextlib.suppress(ApiError):
                    await client.delete(
                        f"{base}/{resource}/{item['metadata']['name']}", grace_period_seconds=0
                    )
    volumes.discard("")
    deadline = time.monotonic() + wait
    while volumes and time.monotonic() < deadline:
        remaining = set()
        for volume in volumes:
            try:
                await client.get(f"/api/v1/persistentvolumes/{volume}")
                remaining.add(volume)
            except ApiError as error:
                if not error.not_found:
                    remaining.add(volume)
        volumes = remaining
        if volumes:
            await asyncio.sleep(1)
    return sorted(volumes)


def main(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="volprobe cleanup", description=__doc__)
    parser.add_argument("--kubeconfig", type=Path)
    parser.add_argument("--namespace", required=True, help="the namespace volprobe's probes ran in")
    parser.add_argument("--wait", type=float, default=120, help="seconds to wait for volumes to be deleted")
    args = parser.parse_args(argv)

    async def run() -> list[str]:
        async with KubeClient(
            load_config(args.kubeconfig), user_agent=f"volprobe-cleanup/{__version__}"
        ) as client:
            return await delete_owned(client, args.namespace, wait=args.wait)

    try:
        left = asyncio.run(run())
    except (ApiError, ConfigError, OSError, httpx.TransportError) as error:
        print(f"volprobe cleanup: {error}", file=sys.stderr)
        return 1
    if left:
        print(
            f"volprobe cleanup: volumes still present after {args.wait:.0f}s: {', '.join(left)}",
            file=sys.stderr,
        )
        return 1
    print(f"volprobe cleanup: nothing of volprobe's left in {args.namespace}")
    return 0
