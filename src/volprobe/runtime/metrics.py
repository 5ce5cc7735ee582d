"""Every metric volprobe exports, defined once, and the state behind them.

`METRICS` is the single list of names, types, help texts and label sets: the code records
through it, and the docs, alert rules and dashboard are checked against it by a test. Label
values come only from Kubernetes object names and from `reasons` (never error strings), so
series stay bounded.

The values live in plain dictionaries exposed by a custom collector rather than in
prometheus_client's metric objects: that makes "the node left, drop its series" a dictionary
delete, and lets the agent's own latency histogram (bucket counts computed in the pod) be
exported exactly. Counters follow the blackbox exporter's lesson kept by pie: every run moves
`volprobe_probe_runs_total`, including runs that never got a pod, so a total outage shows.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from volprobe import __version__
from volprobe.contract.reasons import Kind, Result
from volprobe.contract.report import IO_OPS, LATENCY_BUCKETS
from volprobe.model.runs import Outcome

MetricType = Literal["counter", "gauge", "histogram"]

PROBE_LABELS = ("probe", "storage_class", "node", "kind")
PHASE_BUCKETS: tuple[float, ...] = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600)


@dataclass(frozen=True)
class MetricSpec:
    name: str
    type: MetricType
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()


RUNS = MetricSpec(
    "volprobe_probe_runs_total",
    "counter",
    "Probe runs by how they ended (success, failure, timeout, skipped). Moves even when no pod could start.",
    (*PROBE_LABELS, "result"),
)
FAILURES = MetricSpec(
    "volprobe_probe_failures_total",
    "counter",
    "Failed or timed-out runs by the phase that failed and a reason from the fixed set (docs/reasons.md).",
    (*PROBE_LABELS, "phase", "reason"),
)
SUCCESS = MetricSpec(
    "volprobe_probe_success",
    "gauge",
    "1 if the latest completed (not skipped) run of this target succeeded, else 0.",
    PROBE_LABELS,
)
LAST_SUCCESS = MetricSpec(
    "volprobe_last_success_timestamp_seconds",
    "gauge",
    "Unix time at which the latest successful run of this target finished.",
    PROBE_LABELS,
)
LAST_RUN = MetricSpec(
    "volprobe_last_run_timestamp_seconds",
    "gauge",
    "Unix time at which the latest run (of any result) of this target finished.",
    PROBE_LABELS,
)
CONSECUTIVE_FAILURES = MetricSpec(
    "volprobe_probe_consecutive_failures",
    "gauge",
    "Failed or timed-out runs of this target in a row: 0 after a success; skipped runs leave it as it is.",
    PROBE_LABELS,
)
FAILING_SINCE = MetricSpec(
    "volprobe_probe_failing_since_timestamp_seconds",
    "gauge",
    "Unix time at which the first run of the current failure streak of this target finished; absent while "
    "it passes.",
    PROBE_LABELS,
)
RUN_DURATION = MetricSpec(
    "volprobe_probe_duration_seconds",
    "gauge",
    "Duration of the latest completed run of this target, creation to clean-up.",
    PROBE_LABELS,
)
PHASE_DURATION = MetricSpec(
    "volprobe_phase_duration_seconds",
    "histogram",
    "Time spent in each phase of a run (provision, schedule, mount, io, cleanup).",
    ("storage_class", "kind", "phase"),
    PHASE_BUCKETS,
)
IO_LATENCY = MetricSpec(
    "volprobe_io_latency_seconds",
    "histogram",
    "Latency of each write, fsync and read the agent made, measured inside the probe pod.",
    ("storage_class", "op"),
    LATENCY_BUCKETS,
)
IO_THROUGHPUT = MetricSpec(
    "volprobe_io_throughput_bytes_per_second",
    "gauge",
    "Write and read throughput of the latest successful mount run on this node.",
    ("probe", "storage_class", "node", "op"),
)
NODE_SKIPPED = MetricSpec(
    "volprobe_node_skipped",
    "gauge",
    "1 while a covered node is skipped, labelled with why (not_ready, cordoned, tainted, deleting, too_new, "
    "recovering).",
    ("probe", "node", "reason"),
)
NODES = MetricSpec(
    "volprobe_nodes",
    "gauge",
    "Nodes covered by a probe by state of their mount probe (selected, passing, failing, skipped, pending).",
    ("probe", "storage_class", "state"),
)
IN_FLIGHT = MetricSpec("volprobe_runs_in_flight", "gauge", "Runs currently in progress.", ("probe", "kind"))
INTERVAL = MetricSpec(
    "volprobe_probe_interval_seconds",
    "gauge",
    "The probe's intervalSeconds: each target runs once per interval (alerts scale their windows with it).",
    ("probe", "storage_class"),
)
API_REQUESTS = MetricSpec(
    "volprobe_api_requests_total",
    "counter",
    "Requests the controller made to the API server, by verb and code.",
    ("verb", "code"),
)
API_THROTTLED = MetricSpec(
    "volprobe_api_throttled_total",
    "counter",
    "Times the API server throttled us (429 or Retry-After); each halves our request budget for a while.",
)
BUDGET_WAIT = MetricSpec(
    "volprobe_api_budget_wait_seconds_total",
    "counter",
    "Seconds requests spent waiting for the client-side API budget (requests and pod creations).",
)
LEADER = MetricSpec("volprobe_leader", "gauge", "1 if this replica is the leader and runs probes.")
BUILD_INFO = MetricSpec(
    "volprobe_build_info", "gauge", "Always 1; the version label says which build runs.", ("version",)
)

METRICS: tuple[MetricSpec, ...] = (
    RUNS,
    FAILURES,
    SUCCESS,
    LAST_SUCCESS,
    LAST_RUN,
    CONSECUTIVE_FAILURES,
    FAILING_SINCE,
    RUN_DURATION,
    PHASE_DURATION,
    IO_LATENCY,
    IO_THROUGHPUT,
    NODE_SKIPPED,
    NODES,
    IN_FLIGHT,
    INTERVAL,
    API_REQUESTS,
    API_THROTTLED,
    BUDGET_WAIT,
    LEADER,
    BUILD_INFO,
)

Labels = tuple[str, ...]


class Histogram:
    """Cumulative bucket counts, sum and count for one label set."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.cumulative = [0] * len(self.bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        for index, bound in enumerate(self.bounds):
            if value <= bound:
                self.cumulative[index] += 1
        self.count += 1
        self.total += value

    def merge(self, cumulative: Sequence[int], count: int, total: float) -> None:
        """Add a histogram measured elsewhere (the agent's) over the same bounds."""
        for index, value in enumerate(cumulative[: len(self.bounds)]):
            self.cumulative[index] += value
        self.count += count
        self.total += total

    def buckets(self) -> list[tuple[str, float]]:
        pairs = [
            (_bound(bound), float(value)) for bound, value in zip(self.bounds, self.cumulative, strict=True)
        ]
        return [*pairs, ("+Inf", float(self.count))]


def _bound(value: float) -> str:
    return repr(float(value))


class ProbeMetrics(Collector):
    """The controller's metric state; safe to update from the event loop while a scrape reads it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[MetricSpec, dict[Labels, float]] = defaultdict(dict)
        self._gauges: dict[MetricSpec, dict[Labels, float]] = defaultdict(dict)
        self._histograms: dict[MetricSpec, dict[Labels, Histogram]] = defaultdict(dict)

    # -- recording -----------------------------------------------------------------------------

    def record(self, outcome: Outcome, storage_class: str) -> None:
        """Count one finished run (success, failure, timeout or skip)."""
        target = outcome.target
        node = outcome.target.node
        base = (target.probe, storage_class, node, target.kind.value)
        with self._lock:
            self._add(RUNS, (*base, outcome.result.value))
            self._gauges[LAST_RUN][base] = outcome.finished
            if outcome.result is Result.SKIPPED:
                return
            if outcome.phase is not None and outcome.reason is not None:
                self._add(FAILURES, (*base, outcome.phase.value, outcome.reason.value))
            self._gauges[SUCCESS][base] = 1.0 if outcome.passed else 0.0
            self._gauges[RUN_DURATION][base] = outcome.seconds
            if outcome.passed:
                self._gauges[LAST_SUCCESS][base] = outcome.finished
                self._gauges[CONSECUTIVE_FAILURES][base] = 0.0
                self._gauges[FAILING_SINCE].pop(base, None)
            else:
                streak = self._gauges[CONSECUTIVE_FAILURES]
                streak[base] = streak.get(base, 0.0) + 1.0
                self._gauges[FAILING_SINCE].setdefault(base, outcome.finished)
            for phase, seconds in outcome.durations.items():
                self._observe(PHASE_DURATION, (storage_class, target.kind.value, phase.value), seconds)
            report = outcome.report
            if report is None:
                return
            for op, stats in report.ops.items():
                if stats.buckets:
                    histogram = self._histogram(IO_LATENCY, (storage_class, op))
                    histogram.merge(stats.buckets, stats.count, stats.total)
            if outcome.passed and target.kind is Kind.MOUNT:
                for op in IO_OPS:
                    if op in report.throughput:
                        self._gauges[IO_THROUGHPUT][(target.probe, storage_class, node, op)] = (
                            report.throughput[op]
                        )

    def set_skipped(self, probe: str, node: str, reason: str | None) -> None:
        with self._lock:
            series = self._gauges[NODE_SKIPPED]
            for labels in [k for k in series if k[:2] == (probe, node)]:
                del series[labels]
            if reason is not None:
                series[(probe, node, reason)] = 1.0

    def set_node_counts(self, probe: str, storage_class: str, counts: dict[str, int]) -> None:
        with self._lock:
            for state, value in counts.items():
                self._gauges[NODES][(probe, storage_class, state)] = float(value)

    def set_in_flight(self, counts: dict[tuple[str, Kind], int]) -> None:
        """Replace every in-flight series: (probe, kind) pairs that no longer exist disappear."""
        with self._lock:
            self._gauges[IN_FLIGHT] = {(probe, kind.value): float(n) for (probe, kind), n in counts.items()}

    def set_intervals(self, intervals: dict[str, tuple[str, float]]) -> None:
        """probe -> (storage class, interval); replaces every series."""
        with self._lock:
            self._gauges[INTERVAL] = {(probe, sc): seconds for probe, (sc, seconds) in intervals.items()}

    def api_request(self, verb: str, code: int) -> None:
        with self._lock:
            self._add(API_REQUESTS, (verb, str(code)))

    def set_api_budget(self, throttled: int, waited: float) -> None:
        """Mirror the budget's own counters (it keeps the totals; we only expose them)."""
        with self._lock:
            self._counters[API_THROTTLED][()] = float(throttled)
            self._counters[BUDGET_WAIT][()] = waited

    def set_leader(self, leading: bool) -> None:
        with self._lock:
            self._gauges[LEADER][()] = 1.0 if leading else 0.0

    # -- forgetting ----------------------------------------------------------------------------

    def forget(self, probe: str, node: str | None = None) -> None:
        """Drop every series of a probe (or of one node of it): deleted things stop existing."""

        def matches(spec: MetricSpec, labels: Labels) -> bool:
            if "probe" not in spec.labels:
                return False
            if labels[spec.labels.index("probe")] != probe:
                return False
            return node is None or ("node" in spec.labels and labels[spec.labels.index("node")] == node)

        with self._lock:
            for store in (self._counters, self._gauges):
                for spec, series in store.items():
                    for labels in [k for k in series if matches(spec, k)]:
                        del series[labels]

    def reset_probe_series(self) -> None:
        """A replica that stops leading exports no probe results (the new leader does)."""
        with self._lock:
            for store in (self._counters, self._gauges):
                for spec, series in store.items():
                    if "probe" in spec.labels:
                        series.clear()
            for spec in (PHASE_DURATION, IO_LATENCY):
                self._histograms[spec].clear()

    # -- reading -------------------------------------------------------------------------------

    def value(self, spec: MetricSpec, **labels: str) -> float | None:
        """One series' current value (tests and `check` read the state through this)."""
        key = tuple(labels.get(name, "") for name in spec.labels)
        with self._lock:
            store = self._counters if spec.type == "counter" else self._gauges
            return store[spec].get(key)

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            for spec in METRICS:
                if spec is BUILD_INFO:
                    family = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
                    family.add_metric([__version__], 1.0)
                    yield family
                elif spec.type == "counter":
                    counter = CounterMetricFamily(
                        spec.name.removesuffix("_total"), spec.help, labels=spec.labels
                    )
                    for labels, value in sorted(self._counters[spec].items()):
                        counter.add_metric(list(labels), value)
                    yield counter
                elif spec.type == "gauge":
                    gauge = GaugeMetricFamily(spec.name, spec.help, labels=spec.labels)
                    for labels, value in sorted(self._gauges[spec].items()):
                        gauge.add_metric(list(labels), value)
                    yield gauge
                else:
                    histogram = HistogramMetricFamily(spec.name, spec.help, labels=spec.labels)
                    for labels, hist in sorted(self._histograms[spec].items()):
                        histogram.add_metric(list(labels), hist.buckets(), hist.total)
                    yield histogram

    # -- helpers (lock held) -------------------------------------------------------------------

    def _add(self, spec: MetricSpec, labels: Labels, amount: float = 1.0) -> None:
        series = self._counters[spec]
        series[labels] = series.get(labels, 0.0) + amount

    def _histogram(self, spec: MetricSpec, labels: Labels) -> Histogram:
        series = self._histograms[spec]
        if labels not in series:
            series[labels] = Histogram(spec.buckets)
        return series[labels]

    def _observe(self, spec: MetricSpec, labels: Labels, value: float) -> None:
        self._histogram(spec, labels).observe(value)
