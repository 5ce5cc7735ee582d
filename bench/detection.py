"""Time to signal: how soon volprobe says something is wrong, per fault, at intervals 20 s and 60 s.

    python bench/detection.py --trials 5            (root; the local cluster is started if needed)

Two StorageProbes on class `standard` (intervals 20 s and 60 s, the real node only) first learn
their baselines (at a 10 s interval), then each fault is injected at a random point of the
interval, `--trials` times:

- provisioner-frozen: local-path-provisioner stopped (SIGSTOP) — the provision probe;
- kubelet-frozen: the real node's kubelet stopped (SIGSTOP) — the mount probe (the node also
  goes NotReady after the node-monitor grace period; a skip is not a signal);
- containerd-frozen: the container runtime stopped (SIGSTOP) — the mount probe;
- data-changed: every payload file of the mount probe's volume overwritten on the host — the
  mount probe's next verification.

For each, time from the fault to the first signal of three kinds: the metric (the kind's
`volprobe_probe_stalled` or a new failure counted), the condition (`Degraded=True`) and an Event
(`ProbeStalled` or `ProbeFailed`). After the trials, a fault-free stretch as long as all trials
together (or `--fault-free-seconds`; `--trials 0 --fault-free-seconds 3600` is the fault-free
hour alone) counts false signals. Median and p95 per fault and interval are printed.

Every process it stops it started through `make cluster`, and it resumes them on any exit.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster import images, processes  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.support.controller import ControllerProcess, Samples  # noqa: E402
from tests.support.kubectl import Kubectl, eventually  # noqa: E402
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE  # noqa: E402

NAMESPACE = "volprobe-detection"
LABEL = "volprobe.io/bench-detection"
INTERVALS = (20, 60)
SIGNALS = ("metric", "condition", "event")
FAULT_KIND = {
    "provisioner-frozen": "provision",
    "kubelet-frozen": "mount",
    "containerd-frozen": "mount",
    "data-changed": "mount",
}


def probe_name(interval: int) -> str:
    return f"det-{interval}"


@dataclass
class Bench:
    layout: Layout
    kubectl: Kubectl
    controller: ControllerProcess
    real_node: str
    results: dict[tuple[str, int], dict[str, list[float | None]]] = field(default_factory=dict)

    # -- what the controller says ----------------------------------------------------------------

    def failures(self, scrape: Samples, probe: str, kind: str) -> float:
        return scrape.sum("volprobe_probe_failures_total", probe=probe, kind=kind)

    def successes(self, probe: str, kind: str) -> float:
        return self.controller.scrape().sum(
            "volprobe_probe_runs_total", probe=probe, kind=kind, result="success"
        )

    def degraded(self, probe: str) -> bool:
        obj = self.kubectl.get("storageprobe", probe) or {}
        conditions = (obj.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Degraded" and c.get("status") == "True" for c in conditions)

    def events_since(self, probe: str, since: float) -> bool:
        items = self.kubectl.json(
            "get", "events", "-n", "default", "--field-selector", f"involvedObject.name={probe}"
        )["items"]
        for event in items:
            if event.get("reason") not in ("ProbeStalled", "ProbeFailed"):
                continue
            stamp = event.get("lastTimestamp") or event.get("eventTime") or ""
            with contextlib.suppress(ValueError):
                if time.mktime(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone >= since - 1:
                    return True
        return False

    # -- one trial -------------------------------------------------------------------------------

    def trial(self, fault: str, inject: Callable[[], None], lift: Callable[[], None], limit: float) -> None:
        kind = FAULT_KIND[fault]
        probes = {interval: probe_name(interval) for interval in INTERVALS}
        before = self.controller.scrape()
        failed_before = {i: self.failures(before, p, kind) for i, p in probes.items()}
        time.sleep(random.uniform(0, max(INTERVALS)))
        wall, t0 = time.time(), time.monotonic()
        found: dict[int, dict[str, float | None]] = {i: dict.fromkeys(SIGNALS) for i in INTERVALS}
        inject()
        try:
            while time.monotonic() - t0 < limit and any(None in f.values() for f in found.values()):
                scrape = self.controller.scrape()
                elapsed = time.monotonic() - t0
                for interval, probe in probes.items():
                    seen = found[interval]
                    stalled = scrape.sum("volprobe_probe_stalled", probe=probe, kind=kind) > 0
                    if seen["metric"] is None and (
                        stalled or self.failures(scrape, probe, kind) > failed_before[interval]
                    ):
                        seen["metric"] = elapsed
                    if seen["condition"] is None and self.degraded(probe):
                        seen["condition"] = elapsed
                    if seen["event"] is None and self.events_since(probe, wall):
                        seen["event"] = elapsed
                time.sleep(1)
        finally:
            lift()
        for interval in INTERVALS:
            for name, seconds in found[interval].items():
                self.results.setdefault((fault, interval), {}).setdefault(name, []).append(seconds)
        print(
            f"  {fault}: "
            + json.dumps(
                {i: {k: round(v, 1) if v else None for k, v in f.items()} for i, f in found.items()}
            ),
            flush=True,
        )
        self.recover(kind)

    def recover(self, kind: str) -> None:
        """Wait until both probes pass again and nothing is stalled or degraded."""
        for interval in INTERVALS:
            probe = probe_name(interval)
            start = self.successes(probe, kind)
            eventually(
                f"{probe} passing again", partial(self.passed_more, probe, kind, start), 4 * interval + 180
            )
            eventually(f"{probe} not degraded", partial(self.healthy, probe), 2 * interval + 60)

    def passed_more(self, probe: str, kind: str, than: float) -> bool:
        return self.successes(probe, kind) > than

    def healthy(self, probe: str) -> bool:
        return not self.degraded(probe)

    # -- the faults ------------------------------------------------------------------------------

    def signal_daemon(self, name: str, sig: signal.Signals) -> None:
        pid = processes.pid_of(self.layout, name)
        assert pid is not None, f"{name} is not running"
        os.kill(pid, sig)

    def frozen(self, name: str) -> tuple[Callable[[], None], Callable[[], None]]:
        return (
            lambda: self.signal_daemon(name, signal.SIGSTOP),
            lambda: self.signal_daemon(name, signal.SIGCONT),
        )

    def change_data(self) -> None:
        """Overwrite every payload file of both probes' node volumes on the host (a bad disk)."""
        for volume in self.layout.storage.glob(f"*_{NAMESPACE}_*"):
            for payload in (volume / ".volprobe").glob("payload-*"):
                size = payload.stat().st_size
                with payload.open("r+b") as file:
                    file.write(os.urandom(min(size, 4096)))
                    file.flush()
                    os.fsync(file.fileno())

    def false_signals(self, seconds: float) -> dict[str, int]:
        """New failures, stalls and Degraded transitions in a fault-free stretch."""
        counts = dict.fromkeys(("failures", "stalled", "degraded"), 0)
        before = self.controller.scrape()
        failed = {
            p: self.failures(before, p, "provision") + self.failures(before, p, "mount")
            for p in map(probe_name, INTERVALS)
        }
        was_stalled = dict.fromkeys(failed, False)
        was_degraded = dict.fromkeys(failed, False)
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            scrape = self.controller.scrape()
            for probe in failed:
                stalled = scrape.sum("volprobe_probe_stalled", probe=probe) > 0
                counts["stalled"] += int(stalled and not was_stalled[probe])
                was_stalled[probe] = stalled
                degraded = self.degraded(probe)
                counts["degraded"] += int(degraded and not was_degraded[probe])
                was_degraded[probe] = degraded
            time.sleep(2)
        after = self.controller.scrape()
        counts["failures"] = int(
            sum(
                self.failures(after, p, "provision") + self.failures(after, p, "mount") - n
                for p, n in failed.items()
            )
        )
        return counts


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


@contextlib.contextmanager
def probes(kubectl: Kubectl) -> Iterator[None]:
    kubectl.run(
        "apply",
        "--server-side",
        "--force-conflicts",
        "-f",
        str(REPO / "charts/volprobe/crds/volprobe.io_storageprobes.yaml"),
    )
    kubectl.run("create", "namespace", NAMESPACE, check=False)
    real = {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "volprobe.io/node-type", "operator": "In", "values": ["real"]}]}
        ]
    }
    for interval in INTERVALS:
        kubectl.apply(
            {
                "apiVersion": "volprobe.io/v1alpha1",
                "kind": "StorageProbe",
                "metadata": {"name": probe_name(interval), "labels": {LABEL: "true"}},
                "spec": {
                    "storageClassName": "standard",
                    "intervalSeconds": 10,
                    "nodeGracePeriodSeconds": 0,
                    "nodeSelector": real,
                },
            }
        )
    try:
        yield
    finally:
        for interval in INTERVALS:
            kubectl.run(
                "delete",
                "storageprobe",
                probe_name(interval),
                "--ignore-not-found",
                "--wait=true",
                timeout=300,
            )
        kubectl.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--faults", default=",".join(FAULT_KIND), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--fault-free-seconds",
        type=float,
        default=None,
        help="length of the fault-free stretch (default: as long as the trials took); with "
        "--trials 0, e.g. 3600 for the issue's fault-free hour",
    )
    args = parser.parse_args()
    random.seed(args.seed)
    layout = Layout.default()
    localcluster.up(layout, 3)
    localcluster.import_image(layout, images.release_image(layout, DEFAULT_AGENT_IMAGE, REPO))
    kubectl = Kubectl(layout.kubernetes_bin("kubectl"), layout.kubeconfig)
    real_node = "volprobe-node"
    log = Path(tempfile.mkdtemp(prefix="volprobe-detection-")) / "controller.log"
    controller = ControllerProcess(
        kubeconfig=layout.kubeconfig,
        namespace=NAMESPACE,
        image=DEFAULT_AGENT_IMAGE,
        log=log,
        extra=(f"--probe-selector={LABEL}=true", "--status-interval=2"),
    )
    started = time.monotonic()
    with probes(kubectl):
        controller.start().wait_ready(120)
        bench = Bench(layout, kubectl, controller, real_node)
        try:
            for interval in INTERVALS:
                for kind in ("provision", "mount"):
                    eventually(
                        f"{probe_name(interval)}: 6 {kind} successes",
                        partial(bench.passed_more, probe_name(interval), kind, 5),
                        300,
                    )
                kubectl.run(
                    "patch",
                    "storageprobe",
                    probe_name(interval),
                    "--type=merge",
                    "-p",
                    json.dumps({"spec": {"intervalSeconds": interval}}),
                )
            time.sleep(max(INTERVALS))
            for interval in INTERVALS:  # switching the interval must not leave a probe degraded
                eventually(
                    f"{probe_name(interval)} healthy", partial(bench.healthy, probe_name(interval)), 300
                )
            print(
                f"baselines learned in {time.monotonic() - started:.0f}s; {args.trials} trials per fault",
                flush=True,
            )
            plans = {
                "provisioner-frozen": bench.frozen("local-path-provisioner"),
                "kubelet-frozen": bench.frozen("kubelet"),
                "containerd-frozen": bench.frozen("containerd"),
                "data-changed": (bench.change_data, lambda: None),
            }
            trials_started = time.monotonic()
            for fault in args.faults.split(","):
                inject, lift = plans[fault]
                for _ in range(args.trials):
                    bench.trial(fault, inject, lift, limit=4 * max(INTERVALS) + 150)
            stretch = args.fault_free_seconds or time.monotonic() - trials_started
            print(f"fault-free stretch of {stretch:.0f}s ...", flush=True)
            false = bench.false_signals(stretch)
        finally:
            controller.stop()
            print(f"controller log: {log}")
    print("\n== time to signal (seconds from the fault): median / p95 over the trials; '-' = no signal")
    print("| fault | interval | metric | condition | Event |\n|---|---|---|---|---|")
    for (fault, interval), signals in sorted(bench.results.items()):
        cells = []
        for name in SIGNALS:
            seen = [s for s in signals.get(name, []) if s is not None]
            missed = len(signals.get(name, [])) - len(seen)
            cell = f"{statistics.median(seen):.0f} / {p95(seen):.0f}" if seen else "-"
            cells.append(cell + (f" ({missed} missed)" if missed and seen else ""))
        print(f"| {fault} | {interval} s | " + " | ".join(cells) + " |")
    print(f"\nfalse signals in {stretch:.0f}s without faults: {json.dumps(false)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
