"""Time to signal: how soon volprobe says something is wrong, per fault, at intervals 20 s and 60 s.

    python bench/detection.py --trials 5            (root; the local cluster is started if needed)

Two StorageProbes on class `standard` (intervals 20 s and 60 s, the real node only), and two
mount-only ones on class `chaos` when a chaos driver fault is chosen, first learn their
baselines (at a 10 s interval), then each fault is injected at a random point of the interval,
`--trials` times:

- provisioner-frozen: local-path-provisioner stopped (SIGSTOP) — the provision probe;
- kubelet-frozen: the real node's kubelet stopped (SIGSTOP) — the mount probe (the node also
  goes NotReady after the node-monitor grace period; a skip is not a signal);
- containerd-frozen: the container runtime stopped (SIGSTOP) — the mount probe;
- data-changed: every payload file of the mount probe's volume overwritten on the host — the
  mount probe's next verification;
- mount-hang: the chaos CSI driver's NodePublishVolume hangs (docs/chaos-csi.md) — the mount probe
  of two more StorageProbes, on class `chaos`;
- io-hang: every read and write of those probes' volumes hangs in the chaos driver (a disk that
  went silent; interruptible, so the agent's watchdog can still report).

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
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster import images, processes  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.support.chaos import STORAGE_CLASS as CHAOS_CLASS  # noqa: E402
from tests.support.chaos import ChaosDriver, Fault  # noqa: E402
from tests.support.controller import ControllerProcess, Samples  # noqa: E402
from tests.support.kubectl import Kubectl, eventually  # noqa: E402
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE  # noqa: E402

NAMESPACE = "volprobe-detection"
LABEL = "volprobe.io/bench-detection"
INTERVALS = (20, 60)
SIGNALS = ("metric", "condition", "event")
CLASS = "standard"


@dataclass(frozen=True)
class FaultSite:
    """Which of the bench's probes meets a fault."""

    kind: str
    storage_class: str = CLASS


FAULTS = {
    "provisioner-frozen": FaultSite("provision"),
    "kubelet-frozen": FaultSite("mount"),
    "containerd-frozen": FaultSite("mount"),
    "data-changed": FaultSite("mount"),
    "mount-hang": FaultSite("mount", CHAOS_CLASS),
    "io-hang": FaultSite("mount", CHAOS_CLASS),
}


def probe_name(interval: int, storage_class: str = CLASS) -> str:
    return f"det-{interval}" if storage_class == CLASS else f"det-{storage_class}-{interval}"


@dataclass
class Bench:
    layout: Layout
    kubectl: Kubectl
    controller: ControllerProcess
    real_node: str
    classes: tuple[str, ...]
    """The StorageClasses probed: `standard`, and `chaos` for the chaos driver's faults."""
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
        kind, storage_class = FAULTS[fault].kind, FAULTS[fault].storage_class
        probes = {interval: probe_name(interval, storage_class) for interval in INTERVALS}
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
        self.recover(kind, storage_class)

    def recover(self, kind: str, storage_class: str) -> None:
        """Wait until both probes pass again and nothing is stalled or degraded."""
        for interval in INTERVALS:
            probe = probe_name(interval, storage_class)
            start = self.successes(probe, kind)
            eventually(
                f"{probe} passing again", partial(self.passed_more, probe, kind, start), 4 * interval + 180
            )
            eventually(f"{probe} not degraded", partial(self.healthy, probe), 2 * interval + 60)

    def probes(self) -> list[str]:
        return [probe_name(interval, c) for c in self.classes for interval in INTERVALS]

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

    def chaos_hang(self, ops: Sequence[str], **options: Any) -> tuple[Callable[[], None], Callable[[], None]]:
        """A hang of the chaos driver's `ops` for the bench's volumes, lifted by the second callable."""
        driver = ChaosDriver.of(self.layout)
        added: list[Fault] = []

        def lift() -> None:
            while added:
                driver.lift(added.pop())

        return lambda: added.append(driver.inject(ops, "hang", namespace=NAMESPACE, **options)), lift

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
            for p in self.probes()
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
def probes(kubectl: Kubectl, classes: Sequence[str]) -> Iterator[None]:
    """A StorageProbe per class and interval on the real node, learning at a 10 s interval first.
    The chaos class's probes only mount: its faults are met by the mount probe."""
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
    names = [probe_name(interval, c) for c in classes for interval in INTERVALS]
    for storage_class in classes:
        for interval in INTERVALS:
            spec: dict[str, Any] = {
                "storageClassName": storage_class,
                "intervalSeconds": 10,
                "nodeGracePeriodSeconds": 0,
                "nodeSelector": real,
            }
            if storage_class != CLASS:
                spec["provision"] = {"enabled": False}
            kubectl.apply(
                {
                    "apiVersion": "volprobe.io/v1alpha1",
                    "kind": "StorageProbe",
                    "metadata": {"name": probe_name(interval, storage_class), "labels": {LABEL: "true"}},
                    "spec": spec,
                }
            )
    try:
        yield
    finally:
        for name in names:
            kubectl.run("delete", "storageprobe", name, "--ignore-not-found", "--wait=true", timeout=300)
        kubectl.run("delete", "namespace", NAMESPACE, "--ignore-not-found", "--wait=false")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("--faults", default=",".join(FAULTS), help="comma-separated subset")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument(
        "--fault-free-seconds",
        type=float,
        default=None,
        help="length of the fault-free stretch (default: as long as the trials took); with "
        "--trials 0, e.g. 3600 for the issue's fault-free hour",
    )
    args = parser.parse_args()
    faults = args.faults.split(",")
    unknown = sorted(set(faults) - set(FAULTS))
    if unknown:
        parser.error(f"unknown faults {unknown}; known: {', '.join(FAULTS)}")
    classes = tuple(dict.fromkeys([CLASS, *(FAULTS[f].storage_class for f in faults if args.trials)]))
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
    with probes(kubectl, classes):
        controller.start().wait_ready(120)
        bench = Bench(layout, kubectl, controller, real_node, classes)
        try:
            for storage_class in classes:
                kinds = ("provision", "mount") if storage_class == CLASS else ("mount",)
                for interval in INTERVALS:
                    name = probe_name(interval, storage_class)
                    for kind in kinds:
                        eventually(
                            f"{name}: 6 {kind} successes", partial(bench.passed_more, name, kind, 5), 300
                        )
                    patch = json.dumps({"spec": {"intervalSeconds": interval}})
                    kubectl.run("patch", "storageprobe", name, "--type=merge", "-p", patch)
            time.sleep(max(INTERVALS))
            for name in bench.probes():  # switching the interval must not leave a probe degraded
                eventually(f"{name} healthy", partial(bench.healthy, name), 300)
            print(
                f"baselines learned in {time.monotonic() - started:.0f}s; {args.trials} trials per fault",
                flush=True,
            )
            plans = {
                "provisioner-frozen": bench.frozen("local-path-provisioner"),
                "kubelet-frozen": bench.frozen("kubelet"),
                "containerd-frozen": bench.frozen("containerd"),
                "data-changed": (bench.change_data, lambda: None),
                "mount-hang": bench.chaos_hang(["NodePublishVolume"]),
                "io-hang": bench.chaos_hang(["data"], interruptible=True),
            }
            trials_started = time.monotonic()
            for fault in faults:
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
