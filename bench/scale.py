"""How the controller behaves with many nodes: API load, pod creation rate, memory, CPU, spread.

    python bench/scale.py --nodes 500 --minutes 5      (root; the local cluster is started if needed)

The nodes are kwok nodes: the control plane, the scheduler, local-path-provisioner and the
controller all do their real work for every node, but kwok simulates the containers, including
the agent's report (a minimal success, see hack/localcluster/manifests/kwok-stages.yaml). So
this measures volprobe's own cost and behaviour at scale, not storage.

Printed: runs per result (failures must be 0: the provisioner is healthy, so any failure would be
one volprobe made itself), API requests per second by verb, pod creations per second against the
budget, throttling, the controller's peak RSS and mean CPU (during the rollout and after it),
how long until every node had a run that passed, the largest backlog of runs queued behind
volume creation, how late runs started against their slots (p50/p90/p99), and how evenly first
passes spread over time (pie fires everything at second 0). The controller is scraped every
`--scrape-seconds` (30, as by the chart's ServiceMonitor): an exposition of a thousand nodes'
series costs it ~0.1 s of CPU.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster import images  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.support.controller import ControllerProcess, Samples  # noqa: E402
from tests.support.kubectl import Kubectl  # noqa: E402
from tests.support.procstats import cpu_seconds, rss_mib  # noqa: E402
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE  # noqa: E402

NAMESPACE = "volprobe-bench"
PROBE = "bench"


def pod_runs(scrape: Samples) -> float:
    """Runs that had a pod (a skip makes no API call and costs next to nothing)."""
    return scrape.sum("volprobe_probe_runs_total") - scrape.sum("volprobe_probe_runs_total", result="skipped")


def quantile(buckets: dict[float, float], q: float) -> float:
    """A quantile from cumulative histogram buckets, interpolated as histogram_quantile does."""
    bounds = sorted(buckets)
    total = buckets[math.inf] if math.inf in buckets else (buckets[bounds[-1]] if bounds else 0)
    if not total:
        return 0.0
    rank, lower, below = q * total, 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * (rank - below) / max(count - below, 1e-9)
        lower, below = bound, count
    return lower


def wait_for_earlier_volumes(kubectl: Kubectl, timeout: float = 1800) -> None:
    """Start on an idle provisioner: the volumes of an earlier run are deleted by the provisioner
    after the run ends, one helper pod each, and new volumes wait behind those deletions (a run
    started while a thousand were deleted had 56 `provisioning_timeout`s, all in those minutes)."""
    started = time.monotonic()
    while True:
        volumes = kubectl.json("get", "persistentvolumes")["items"]
        left = [v for v in volumes if (v["spec"].get("claimRef") or {}).get("namespace") == NAMESPACE]
        if not left:
            break
        if time.monotonic() - started > timeout:
            raise SystemExit(f"{len(left)} volumes of an earlier run are still not deleted")
        print(f"waiting for {len(left)} volumes of an earlier run to be deleted", flush=True)
        time.sleep(15)
    print(f"no volumes of an earlier run left (waited {time.monotonic() - started:.0f}s)", flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--nodes", type=int, default=500, help="kwok nodes to simulate")
    parser.add_argument("--minutes", type=float, default=5, help="how long to measure")
    parser.add_argument("--interval", type=int, default=60, help="the probe's intervalSeconds")
    parser.add_argument("--pod-rate", type=float, default=5, help="--max-pod-creations-per-second")
    parser.add_argument("--request-rate", type=float, default=20, help="--max-api-requests-per-second")
    parser.add_argument(
        "--scrape-seconds",
        type=float,
        default=30,
        help="how often to scrape the controller (default: as the chart's ServiceMonitor); every "
        "scrape costs the controller CPU, so a bench that scrapes more often than Prometheus "
        "would overstates it",
    )
    args = parser.parse_args()
    if args.scrape_seconds >= args.interval:
        parser.error("--scrape-seconds must be shorter than --interval (first runs are read from scrapes)")

    layout = Layout.default()
    started = time.monotonic()
    localcluster.up(layout, args.nodes)
    print(f"cluster with {args.nodes} kwok nodes ready in {time.monotonic() - started:.0f}s")
    localcluster.import_image(layout, images.release_image(layout, DEFAULT_AGENT_IMAGE, REPO))
    kubectl = Kubectl(layout.kubernetes_bin("kubectl"), layout.kubeconfig)
    kubectl.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(REPO / "charts" / "volprobe" / "crds" / "volprobe.io_storageprobes.yaml"),
    )
    kubectl.run("create", "namespace", NAMESPACE, check=False)
    wait_for_earlier_volumes(kubectl)
    kubectl.apply(
        {
            "apiVersion": "volprobe.io/v1alpha1",
            "kind": "StorageProbe",
            "metadata": {"name": PROBE, "labels": {"volprobe.io/bench": "true"}},
            "spec": {
                "storageClassName": "standard",
                "intervalSeconds": args.interval,
                "nodeGracePeriodSeconds": 0,
                "pod": {
                    "tolerations": [
                        {"key": "kwok.x-k8s.io/node", "operator": "Exists", "effect": "NoSchedule"}
                    ]
                },
            },
        }
    )
    log = Path(tempfile.mkdtemp(prefix="volprobe-bench-")) / "controller.log"
    controller = ControllerProcess(
        kubeconfig=layout.kubeconfig,
        namespace=NAMESPACE,
        image=DEFAULT_AGENT_IMAGE,
        log=log,
        extra=(
            "--probe-selector=volprobe.io/bench=true",
            f"--max-pod-creations-per-second={args.pod_rate}",
            f"--max-api-requests-per-second={args.request_rate}",
            "--status-interval=10",
        ),
    ).start()
    assert controller.process is not None
    pid = controller.process.pid
    try:
        controller.wait_ready(120)
        t0, wall0 = time.monotonic(), time.time()
        cpu0 = cpu_seconds(pid)
        peak_rss = 0.0
        first_pass: dict[str, float] = {}
        peak_queued = 0.0
        # (seconds, CPU seconds, pod runs) when the rollout was over: every node has been probed
        # and nothing is queued. What comes after is the steady cost of the interval.
        settled: tuple[float, float, float] | None = None
        while time.monotonic() - t0 < args.minutes * 60:
            time.sleep(args.scrape_seconds)
            scrape = controller.scrape()
            peak_rss = max(peak_rss, rss_mib(pid))
            peak_queued = max(peak_queued, scrape.sum("volprobe_runs_queued"))
            # A node is probed once a run on it passed: a skipped run (a kwok node flapping
            # NotReady) ends too, but probed nothing. The first scrape that has the node shows
            # that run's end: runs start an interval apart and scrapes come more often.
            for labels, value in scrape.matching("volprobe_last_success_timestamp_seconds", kind="mount"):
                if labels["node"] not in first_pass:
                    first_pass[labels["node"]] = value - wall0
            last = scrape
            if settled is None and len(first_pass) > args.nodes and not scrape.sum("volprobe_runs_queued"):
                settled = (time.monotonic() - t0, cpu_seconds(pid), pod_runs(scrape))
        cpu1 = cpu_seconds(pid)
        seconds = time.monotonic() - t0
        results: collections.Counter[tuple[str, str]] = collections.Counter()
        for labels, value in last.matching("volprobe_probe_runs_total"):
            results[(labels["kind"], labels["result"])] += int(value)
        reasons: collections.Counter[str] = collections.Counter()
        for labels, value in last.matching("volprobe_probe_failures_total"):
            reasons[f"{labels['kind']}/{labels['phase']}/{labels['reason']}"] += int(value)
        skips = collections.Counter(labels["reason"] for labels, _ in last.matching("volprobe_node_skipped"))
        verbs: collections.Counter[str] = collections.Counter()
        for labels, value in last.matching("volprobe_api_requests_total"):
            verbs[labels["verb"]] += int(value)
        creates = sum(
            v for labels, v in last.matching("volprobe_api_requests_total", verb="create", code="201")
        )
        print(f"\n== {args.nodes} kwok nodes + 1 real, interval {args.interval}s, measured {seconds:.0f}s")
        print("runs:", json.dumps({f"{k}/{r}": n for (k, r), n in sorted(results.items())}))
        print("failures by kind/phase/reason:", json.dumps(dict(sorted(reasons.items()))))
        print("nodes skipped at the end, by reason:", json.dumps(dict(skips)))
        print(
            f"API requests/s: {sum(verbs.values()) / seconds:.1f} total; by verb:",
            json.dumps({v: round(n / seconds, 2) for v, n in sorted(verbs.items())}),
        )
        print(
            f"objects created/s (pods, claims, events): {creates / seconds:.2f} "
            f"(pod budget {args.pod_rate}/s)"
        )
        print(
            f"throttled by the API server: {last.sum('volprobe_api_throttled_total'):.0f} times; "
            f"budget wait {last.sum('volprobe_api_budget_wait_seconds_total'):.0f}s in total"
        )
        print(
            f"controller: peak RSS {peak_rss:.0f} MiB, "
            f"mean CPU {100 * (cpu1 - cpu0) / seconds:.0f}% of a core"
        )
        if settled is not None and seconds - settled[0] >= 60:
            at, cpu_at, runs_at = settled
            steady = seconds - at
            runs = pod_runs(last) - runs_at
            print(
                f"  during the rollout (first {at:.0f}s): {100 * (cpu_at - cpu0) / at:.0f}% of a core; "
                f"after it ({steady:.0f}s): {100 * (cpu1 - cpu_at) / steady:.0f}% of a core, "
                f"{runs / steady:.1f} pod runs/s, {1000 * (cpu1 - cpu_at) / max(runs, 1):.0f} ms of CPU each"
            )
        print(f"largest backlog of runs queued behind volume creation: {peak_queued:.0f}")
        lag = {
            float(labels["le"]): value
            for labels, value in last.matching("volprobe_run_start_lag_seconds_bucket")
        }
        print(
            "run start lag against slots: "
            + ", ".join(f"p{int(q * 100)} {quantile(lag, q):.1f}s" for q in (0.5, 0.9, 0.99))
        )
        covered = len(first_pass)
        print(
            f"nodes probed (a mount run passed): {covered}/{args.nodes + 1}"
            + (f", the last after {max(first_pass.values()):.0f}s" if first_pass else "")
        )
        starts = sorted(first_pass.values())
        if starts:
            buckets = collections.Counter(int(t // 10) * 10 for t in starts)
            print("first passed runs per 10 s:", " ".join(f"{b}s:{buckets[b]}" for b in sorted(buckets)))
    finally:
        controller.stop()
        kubectl.run("delete", "storageprobe", PROBE, "--ignore-not-found", "--wait=true", timeout=300)
        kubectl.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")
        print(f"controller log: {log}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
