"""What one planner tick costs with many nodes: the leader's pure decisions, without a cluster.

    python bench/planner.py --nodes 1000 5000

The leader ticks up to twice a second (`ExecutorConfig.min_tick_interval`) whenever runs are
due, which with a thousand nodes at a 60 s interval is always, so the CPU time of one tick times
two is the planner's share of a core. One StorageProbe covers every node; two cases per size:

- steady: every node's volume exists (bound claim), runs are launched as their slots come;
- rollout: only a fifth of the nodes have their volume, so most runs wait in the queue behind
  volume creation, and every tick looks at each of them again (may its node be probed now?).

Runs never finish here (the worst case: every run of the interval is in flight). Printed: the
mean CPU time per tick over 240 ticks (two simulated minutes), per case and size.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "src"), str(REPO)]

from tests.support.fleet import fleet  # noqa: E402
from tests.unit.factories import NOW  # noqa: E402

TICKS = 240


def tick_seconds(nodes: int, with_volume: float) -> tuple[float, int]:
    """Mean CPU seconds per tick, and how many runs were queued at the end."""
    bench = fleet(nodes, with_volume=with_volume)
    planner = bench.warmed_planner()
    started = time.process_time()
    for step in range(TICKS):
        now = NOW + 65 + step / 2
        planner.tick(bench.at(now))
        planner.wake_at(now)
    seconds = (time.process_time() - started) / TICKS
    return seconds, sum(state.queued is not None for state in planner.targets.values())


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, nargs="+", default=[1000, 5000])
    args = parser.parse_args()
    for nodes in args.nodes:
        for case, with_volume in (("steady", 1.0), ("rollout", 0.2)):
            seconds, queued = tick_seconds(nodes, with_volume)
            print(
                f"{nodes:>6} nodes, {case:<7} ({queued:>4} queued): {1000 * seconds:6.2f} ms per tick, "
                f"{200 * seconds:5.1f} % of a core at 2 ticks/s"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
