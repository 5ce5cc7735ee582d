"""What the leader holds in memory per node, without a cluster: a projection for node counts the
one-machine test bed cannot run (docs/performance.md: 1,000 kwok nodes already saturate it).

    python bench/memory.py --nodes 1000 5000

For each size, in a fresh process, the state a leader keeps for one StorageProbe covering every
node is built from realistic API objects (`tests.unit.factories`): the cached views of every node,
its bound claim, a run's pod in flight on each node; the planner after one interval of
ticks; and every node's Prometheus series after a run. Printed: the process's RSS after the
imports, after building that state, and the difference per node. The real controller adds the
HTTP client, the watch buffers and its tasks, which do not grow with nodes: calibrate against
`bench/scale.py`'s measured RSS at 1,000 nodes.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.support.fleet import CLASS, fleet  # noqa: E402
from tests.support.procstats import rss_mib  # noqa: E402
from tests.unit.factories import mount_outcome  # noqa: E402
from volprobe.contract.reasons import Phase  # noqa: E402
from volprobe.runtime.metrics import ProbeMetrics  # noqa: E402


def measure(nodes: int) -> tuple[float, float]:
    """(RSS after the imports, RSS with the state of `nodes` nodes), in MiB."""
    before = rss_mib()
    bench = fleet(nodes, runs_in_flight=True)
    planner = bench.warmed_planner()
    metrics = ProbeMetrics()
    durations = {Phase.PROVISION: 2.0, Phase.MOUNT: 1.0, Phase.IO: 0.5}
    for name in bench.world.nodes:
        metrics.record(mount_outcome(name, probe=bench.spec.name, durations=durations), CLASS)
    after = rss_mib()
    # The planner's state is part of what is measured, so it must still be alive here.
    assert len(planner.targets) >= nodes
    return before, after


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one is not None:
        before, after = measure(args.one)
        print(f"{before} {after}")
        return 0
    for nodes in args.nodes:
        # A fresh process per size: freed memory is not given back to the system reliably.
        out = subprocess.run(
            [sys.executable, __file__, "--one", str(nodes)], check=True, capture_output=True, text=True
        ).stdout
        before, after = map(float, out.split())
        print(
            f"{nodes:>6} nodes: RSS {before:.0f} MiB after the imports, {after:.0f} MiB with the "
            f"state; {1024 * (after - before) / nodes:.1f} KiB per node"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
