"""Every metric volprobe exports, defined once, and the prometheus_client objects behind them.

`METRICS` is the single list of names, types, help texts, label sets and buckets: every metric
object is built from it, and the docs, alert rules and dashboard are checked against it by a
test. Label values come only from Kubernetes object names and from `reasons` (never error
strings), so series stay bounded.

Each `ProbeMetrics` owns its own `CollectorRegistry` (never the global one: tests and the
one-shot check create many instances). Counters, gauges and the phase histogram are
prometheus_client's own types; "the node left, drop its series" is `remove_by_labels`. Only the
IO latency histogram has a collector of its own, because its bucket counts are computed by the
agent in the probe pod and merged here, which prometheus_client's `Histogram` (one observation
at a time) cannot take. Counters follow the blackbox exporter's lesson kept by pie: every run
moves `volprobe_probe_runs_total`, including runs that never got a pod, so a total outage shows.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from volprobe import __version__
from volprobe.contract.reasons import Result
from volprobe.contract.report import IO_OPS, LATENCY_BUCKETS
from volprobe.model.objectstore_checks import ObjectStoreRun
from volprobe.model.outcome import Outcome
from volprobe.model.targets import Target

# `_created` samples would double the number of series and nothing reads them. The switch is
# process-wide; volprobe is the only exporter in its processes.
disable_created_metrics()  # type: ignore[no-untyped-call]

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
STALLED = MetricSpec(
    "volprobe_probe_stalled",
    "gauge",
    "1 while the run in flight of this target has been in `phase` far longer than this probe's successful "
    "runs take (its learned baseline); absent otherwise. Long before the phase's hard deadline.",
    (*PROBE_LABELS, "phase"),
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
QUEUED = MetricSpec(
    "volprobe_runs_queued",
    "gauge",
    "Targets whose slot came while their StorageClass already had as many new volumes in the making as "
    "the provisioner keeps up with: they start as room frees (a rollout's backlog; not a failure).",
    ("probe", "kind"),
)
START_LAG = MetricSpec(
    "volprobe_run_start_lag_seconds",
    "histogram",
    "How late each run's pod was created after its slot (queues, API budget waits): a probe that cannot "
    "hold its interval shows here.",
    ("probe",),
    (0.5, 1, 2, 5, 10, 20, 30, 60, 120, 300, 600, 1800),
)
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
# ObjectStoreProbes also move the families above (kind="objectstore", storage_class="", node="",
# phase = the operation that failed). What only they have: a result and a latency per operation,
# in milliseconds-fine buckets (PHASE_BUCKETS start at 100 ms), and the endpoint's certificate.
OBJECTSTORE_BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
OBJECTSTORE_DURATION = MetricSpec(
    "volprobe_objectstore_operation_duration_seconds",
    "histogram",
    "Time each operation of an ObjectStoreProbe's runs took (put, get, list_prefix, ...), failed ones "
    "included: a timeout counts its deadline.",
    ("probe", "operation"),
    OBJECTSTORE_BUCKETS,
)
OBJECTSTORE_SUCCESS = MetricSpec(
    "volprobe_objectstore_operation_success",
    "gauge",
    "1 if the operation passed in the latest run of this ObjectStoreProbe, 0 if it failed; absent if it did "
    "not run. Writes failing while reads pass shows here.",
    ("probe", "operation"),
)
OBJECTSTORE_CERTIFICATE = MetricSpec(
    "volprobe_objectstore_certificate_expiry_timestamp_seconds",
    "gauge",
    "Unix time at which the TLS certificate of an ObjectStoreProbe's https endpoint expires.",
    ("probe",),
)
OBJECTSTORE_LEFTOVERS = MetricSpec(
    "volprobe_objectstore_leftovers_deleted_total",
    "counter",
    "Objects and multipart uploads (what: objects, uploads) that earlier runs of an ObjectStoreProbe left "
    "and a later run deleted.",
    ("probe", "what"),
)
OBJECTSTORE_VISIBILITY = MetricSpec(
    "volprobe_objectstore_list_visibility_seconds",
    "gauge",
    "How long the latest run's new object took to show up in a LIST.",
    ("probe",),
)
OBJECTSTORE_INSECURE = MetricSpec(
    "volprobe_objectstore_tls_verification_disabled",
    "gauge",
    "1 for an ObjectStoreProbe with tls.insecureSkipVerify: its traffic can be read and changed on the path.",
    ("probe",),
)

METRICS: tuple[MetricSpec, ...] = (
    RUNS,
    FAILURES,
    SUCCESS,
    LAST_SUCCESS,
    LAST_RUN,
    CONSECUTIVE_FAILURES,
    FAILING_SINCE,
    STALLED,
    RUN_DURATION,
    PHASE_DURATION,
    IO_LATENCY,
    IO_THROUGHPUT,
    NODE_SKIPPED,
    NODES,
    IN_FLIGHT,
    QUEUED,
    START_LAG,
    INTERVAL,
    API_REQUESTS,
    API_THROTTLED,
    BUDGET_WAIT,
    LEADER,
    BUILD_INFO,
    OBJECTSTORE_DURATION,
    OBJECTSTORE_SUCCESS,
    OBJECTSTORE_CERTIFICATE,
    OBJECTSTORE_LEFTOVERS,
    OBJECTSTORE_VISIBILITY,
    OBJECTSTORE_INSECURE,
)

Labels = tuple[str, ...]
Scope = tuple[tuple[str, str], ...]
Instrument = Counter | Gauge | Histogram


def _build(spec: MetricSpec, registry: CollectorRegistry) -> Instrument:
    if spec.type == "counter":
        return Counter(spec.name, spec.help, spec.labels, registry=registry)
    if spec.type == "gauge":
        return Gauge(spec.name, spec.help, spec.labels, registry=registry)
    return Histogram(spec.name, spec.help, spec.labels, registry=registry, buckets=spec.buckets)


def _series(metric: Collector, name: str) -> Iterator[tuple[dict[str, str], float]]:
    """(labels, value) of each sample called `name` that `metric` exports now."""
    for family in metric.collect():
        for sample in family.samples:
            if sample.name == name:
                yield sample.labels, sample.value


def _read(metric: Counter | Gauge, name: str) -> float:
    """The value of a child (or unlabelled) counter or gauge: prometheus_client has no getter."""
    return next(value for _, value in _series(metric, name))


@dataclass
class _Buckets:
    cumulative: list[int]
    count: int = 0
    total: float = 0.0


class MergedHistogram(Collector):
    """A histogram whose bucket counts were computed elsewhere (the agent's, over `spec.buckets`)."""

    def __init__(self, spec: MetricSpec) -> None:
        self.spec = spec
        self._lock = threading.Lock()
        self._series: dict[Labels, _Buckets] = {}

    def merge(self, labels: Labels, cumulative: Sequence[int], count: int, total: float) -> None:
        with self._lock:
            series = self._series.setdefault(labels, _Buckets([0] * len(self.spec.buckets)))
            for index, value in enumerate(cumulative[: len(self.spec.buckets)]):
                series.cumulative[index] += value
            series.count += count
            series.total += total

    def clear(self) -> None:
        with self._lock:
            self._series.clear()

    def describe(self) -> Iterable[Metric]:
        return [HistogramMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)]

    def collect(self) -> Iterable[Metric]:
        family = HistogramMetricFamily(self.spec.name, self.spec.help, labels=self.spec.labels)
        bounds = [repr(float(bound)) for bound in self.spec.buckets]
        with self._lock:
            for labels, series in self._series.items():
                buckets = [(bound, float(n)) for bound, n in zip(bounds, series.cumulative, strict=True)]
                family.add_metric(list(labels), [*buckets, ("+Inf", float(series.count))], series.total)
        return [family]


class ProbeMetrics(Collector):
    """The controller's metrics, in a registry of their own.

    Updated from the event loop; a scrape (another thread) reads through prometheus_client's
    own locking. The instance is itself a collector of that registry's contents, so a server
    registry can combine it with others.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._counters: dict[MetricSpec, Counter] = {}
        self._gauges: dict[MetricSpec, Gauge] = {}
        self._histograms: dict[MetricSpec, Histogram] = {}
        self._io_latency = MergedHistogram(IO_LATENCY)
        self._replaced: dict[tuple[MetricSpec, Scope], set[Labels]] = {}
        """The series `_replace` set, by gauge and scope: what it may have to remove next time.
        Looking them up here instead of collecting the gauge keeps a skip on one node of
        thousands from costing a pass over every node's series."""
        for spec in METRICS:
            if spec is IO_LATENCY:
                self.registry.register(self._io_latency)
                continue
            metric = _build(spec, self.registry)
            if isinstance(metric, Counter):
                self._counters[spec] = metric
            elif isinstance(metric, Gauge):
                self._gauges[spec] = metric
            else:
                self._histograms[spec] = metric
        self._gauges[BUILD_INFO].labels(__version__).set(1)

    # -- recording -----------------------------------------------------------------------------

    def record(self, outcome: Outcome, storage_class: str) -> None:
        """Count one finished run (success, failure, timeout or skip)."""
        target = outcome.target
        node = target.node
        base = (target.probe, storage_class, node, target.kind)
        self._counters[RUNS].labels(*base, outcome.result.value).inc()
        self._gauges[LAST_RUN].labels(*base).set(outcome.finished)
        if outcome.result is Result.SKIPPED:
            return
        if outcome.phase is not None and outcome.reason is not None:
            self._counters[FAILURES].labels(*base, outcome.phase.value, outcome.reason.value).inc()
        self._gauges[SUCCESS].labels(*base).set(1 if outcome.passed else 0)
        self._gauges[RUN_DURATION].labels(*base).set(outcome.seconds)
        streak = self._gauges[CONSECUTIVE_FAILURES].labels(*base)
        if outcome.passed:
            self._gauges[LAST_SUCCESS].labels(*base).set(outcome.finished)
            streak.set(0)
            self._gauges[FAILING_SINCE].remove(*base)
        else:
            streak.inc()
            if _read(streak, CONSECUTIVE_FAILURES.name) == 1:
                self._gauges[FAILING_SINCE].labels(*base).set(outcome.finished)
        for phase, seconds in outcome.durations.items():
            self._histograms[PHASE_DURATION].labels(storage_class, target.kind, phase.value).observe(seconds)
        report = outcome.report
        if report is None:
            return
        for op, stats in report.ops.items():
            if stats.buckets:
                self._io_latency.merge((storage_class, op), stats.buckets, stats.count, stats.total)
        # Throughput describes one node's storage: only runs pinned to a node (per-node kinds) say it.
        if outcome.passed and node:
            for op in IO_OPS:
                if op in report.throughput:
                    self._gauges[IO_THROUGHPUT].labels(target.probe, storage_class, node, op).set(
                        report.throughput[op]
                    )

    def set_skipped(self, probe: str, node: str, reason: str | None) -> None:
        wanted: dict[Labels, float] = {} if reason is None else {(probe, node, reason): 1.0}
        self._replace(NODE_SKIPPED, wanted, probe=probe, node=node)

    def set_stalled(self, target: Target, storage_class: str, phase: str | None) -> None:
        """The run in flight of `target` is stalled in `phase` (None: it is not)."""
        base = (target.probe, storage_class, target.node, target.kind)
        wanted: dict[Labels, float] = {} if phase is None else {(*base, phase): 1.0}
        self._replace(STALLED, wanted, probe=target.probe, node=target.node, kind=target.kind)

    def record_objectstore(self, probe: str, run: ObjectStoreRun, *, insecure: bool) -> None:
        """What only an ObjectStoreProbe's run has; its Outcome goes through `record` like any run."""
        results = {op.operation.value: op for op in run.operations if op.result is not None}
        for name, op in results.items():
            self._histograms[OBJECTSTORE_DURATION].labels(probe, name).observe(op.seconds)
        self._replace(
            OBJECTSTORE_SUCCESS,
            {(probe, name): 1.0 if op.passed else 0.0 for name, op in results.items()},
            probe=probe,
        )
        if run.certificate_not_after is not None:
            self._gauges[OBJECTSTORE_CERTIFICATE].labels(probe).set(run.certificate_not_after)
        for what, count in run.leftovers.items():
            # Both series exist from the first run, so increase() sees the first leftover.
            self._counters[OBJECTSTORE_LEFTOVERS].labels(probe, what).inc(count)
        if run.visibility_seconds is not None:
            self._gauges[OBJECTSTORE_VISIBILITY].labels(probe).set(run.visibility_seconds)
        self._replace(OBJECTSTORE_INSECURE, {(probe,): 1.0} if insecure else {}, probe=probe)

    def set_node_counts(self, probe: str, storage_class: str, counts: dict[str, int]) -> None:
        for state, value in counts.items():
            self._gauges[NODES].labels(probe, storage_class, state).set(value)

    def set_in_flight(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace every in-flight series: (probe, kind) pairs that no longer exist disappear."""
        self._replace(IN_FLIGHT, {(probe, kind): float(n) for (probe, kind), n in counts.items()})

    def set_queued(self, counts: Mapping[tuple[str, str], int]) -> None:
        """Replace every backlog series, like `set_in_flight`."""
        self._replace(QUEUED, {(probe, kind): float(n) for (probe, kind), n in counts.items()})

    def start_lag(self, probe: str, seconds: float) -> None:
        self._histograms[START_LAG].labels(probe).observe(max(0.0, seconds))

    def set_intervals(self, intervals: dict[str, tuple[str, float]]) -> None:
        """probe -> (storage class, interval); replaces every series."""
        self._replace(INTERVAL, {(probe, sc): seconds for probe, (sc, seconds) in intervals.items()})

    def api_request(self, verb: str, code: int) -> None:
        self._counters[API_REQUESTS].labels(verb, str(code)).inc()

    def set_api_budget(self, throttled: int, waited: float) -> None:
        """Mirror the budget's own totals (it keeps them; we only expose them)."""
        for spec, total in ((API_THROTTLED, float(throttled)), (BUDGET_WAIT, waited)):
            counter = self._counters[spec]
            counter.inc(max(0.0, total - _read(counter, spec.name)))

    def set_leader(self, leading: bool) -> None:
        self._gauges[LEADER].set(1 if leading else 0)

    # -- forgetting ----------------------------------------------------------------------------

    def forget(self, probe: str, node: str | None = None) -> None:
        """Drop every series of a probe (or of one node of it): deleted things stop existing."""
        match = {"probe": probe} if node is None else {"probe": probe, "node": node}
        for spec, metric in self._labelled():
            if set(match) <= set(spec.labels):
                metric.remove_by_labels(match)
        for (spec, _), series in self._replaced.items():
            if not set(match) <= set(spec.labels):
                continue
            positions = [(spec.labels.index(key), value) for key, value in match.items()]
            series -= {labels for labels in series if all(labels[i] == v for i, v in positions)}

    def reset_probe_series(self) -> None:
        """A replica that stops leading exports no probe results (the new leader does).

        Probe results are the series labelled by probe or storage class; the process's own
        metrics (API traffic, leadership, build) stay.
        """
        for spec, metric in self._labelled():
            if {"probe", "storage_class"} & set(spec.labels):
                metric.clear()
        for (spec, _), series in self._replaced.items():
            if {"probe", "storage_class"} & set(spec.labels):
                series.clear()
        self._io_latency.clear()

    # -- reading -------------------------------------------------------------------------------

    def value(self, spec: MetricSpec, **labels: str) -> float | None:
        """One counter's or gauge's current value, None if the series does not exist (for tests)."""
        return self.registry.get_sample_value(spec.name, {name: labels.get(name, "") for name in spec.labels})

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()

    # -- helpers -------------------------------------------------------------------------------

    def _labelled(self) -> Iterator[tuple[MetricSpec, Instrument]]:
        for store in (self._counters, self._gauges, self._histograms):
            for spec, metric in store.items():
                if spec.labels:
                    yield spec, metric

    def _replace(self, spec: MetricSpec, wanted: dict[Labels, float], **scope: str) -> None:
        """Make the gauge's series within `scope` exactly `wanted`.

        New values are set before stale series go, so a scrape in between never misses a series
        that stays (a series missing from one scrape is marked stale by Prometheus).
        """
        gauge = self._gauges[spec]
        for labels, value in wanted.items():
            gauge.labels(*labels).set(value)
        series = self._replaced.setdefault((spec, tuple(sorted(scope.items()))), set())
        for labels in series - wanted.keys():
            gauge.remove(*labels)
        series.clear()
        series.update(wanted)
