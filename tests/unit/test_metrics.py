"""What a scrape of the controller shows: exact names, labels and values after recorded outcomes."""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from tests.unit.factories import NOW, PROBE, STORAGE_CLASS, mount_outcome, provision_outcome, skipped_outcome
from volprobe import __version__
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.contract.report import LATENCY_BUCKETS, OpStats, Report
from volprobe.model.outcome import Outcome
from volprobe.runtime.metrics import METRICS, NODES, PHASE_BUCKETS, ProbeMetrics

Labels = frozenset[tuple[str, str]]


class Scrape:
    """One exposition, as text and as {(sample name, labels): value}."""

    def __init__(self, metrics: ProbeMetrics) -> None:
        registry = CollectorRegistry()
        registry.register(metrics)
        self.text = generate_latest(registry).decode()
        self.samples: dict[tuple[str, Labels], float] = {}
        for family in text_string_to_metric_families(self.text):
            for sample in family.samples:
                self.samples[(sample.name, frozenset(sample.labels.items()))] = sample.value

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, frozenset(labels.items())))

    def names(self) -> set[str]:
        return {name for name, _ in self.samples}

    def series(self, name: str) -> list[dict[str, str]]:
        return [dict(labels) for sample, labels in self.samples if sample == name]


def target_labels(node: str = "worker-1", kind: str = "mount", probe: str = PROBE) -> dict[str, str]:
    return {"probe": probe, "storage_class": STORAGE_CLASS, "node": node, "kind": kind}


def recorded(*outcomes: Outcome) -> ProbeMetrics:
    metrics = ProbeMetrics()
    for outcome in outcomes:
        metrics.record(outcome, STORAGE_CLASS)
    return metrics


def agent_report(write_samples: list[float], *, throughput: float = 9.5e8) -> Report:
    return Report(
        run="vp-fast-ssd-m-1",
        verdict=Result.SUCCESS,
        started=NOW - 3,
        elapsed=0.5,
        ops={"write": OpStats.from_samples(write_samples), "fsync": OpStats.from_samples([0.003, 0.004])},
        throughput={"write": throughput, "read": 1.2e9},
    )


# -- exposition format ------------------------------------------------------------------------------


def test_every_metric_has_help_and_type_even_when_empty() -> None:
    text = Scrape(ProbeMetrics()).text
    for spec in METRICS:
        assert f"# HELP {spec.name} " in text
        assert f"# TYPE {spec.name} {spec.type}\n" in text


def test_counter_names_end_in_total() -> None:
    counters = [spec for spec in METRICS if spec.type == "counter"]
    assert counters
    assert all(spec.name.endswith("_total") for spec in counters)


def test_counter_samples_are_exposed_under_their_total_name() -> None:
    text = Scrape(recorded(mount_outcome("worker-1"))).text
    assert (
        'volprobe_probe_runs_total{kind="mount",node="worker-1",probe="fast-ssd",result="success",'
        'storage_class="fast-ssd"} 1.0\n'
    ) in text
    assert "volprobe_probe_runs_total_total" not in text


def test_build_info_carries_the_version() -> None:
    assert Scrape(ProbeMetrics()).value("volprobe_build_info", version=__version__) == 1.0


def test_instances_have_registries_of_their_own_and_leave_the_global_one_alone() -> None:
    global_names = {family.name for family in REGISTRY.collect()}
    first, second = ProbeMetrics(), ProbeMetrics()
    first.record(mount_outcome("worker-1"), STORAGE_CLASS)
    assert first.registry is not second.registry
    assert Scrape(second).series("volprobe_probe_runs_total") == []
    assert len(Scrape(first).series("volprobe_probe_runs_total")) == 1
    assert {family.name for family in REGISTRY.collect()} == global_names


def test_the_own_registry_exposes_what_the_collector_does() -> None:
    metrics = populated()
    assert generate_latest(metrics.registry).decode() == Scrape(metrics).text


def test_no_created_samples() -> None:
    assert "_created" not in Scrape(populated()).text


def test_every_series_has_exactly_the_labels_of_its_definition() -> None:
    scrape = Scrape(populated())
    by_sample = {
        spec.name + suffix: spec
        for spec in METRICS
        for suffix in (("_bucket", "_sum", "_count") if spec.type == "histogram" else ("",))
    }
    assert scrape.names() <= set(by_sample)
    for name, labels in scrape.samples:
        spec = by_sample[name]
        expected = set(spec.labels) | ({"le"} if name.endswith("_bucket") else set())
        assert {key for key, _ in labels} == expected, name


def test_process_metrics_are_zero_until_set() -> None:
    scrape = Scrape(ProbeMetrics())
    assert scrape.value("volprobe_leader") == 0.0
    assert scrape.value("volprobe_api_throttled_total") == 0.0
    assert scrape.value("volprobe_api_budget_wait_seconds_total") == 0.0


def test_api_budget_counters_mirror_the_budget_totals() -> None:
    metrics = ProbeMetrics()
    metrics.set_api_budget(throttled=1, waited=0.5)
    metrics.set_api_budget(throttled=1, waited=0.5)
    metrics.set_api_budget(throttled=4, waited=2.25)
    scrape = Scrape(metrics)
    assert scrape.value("volprobe_api_throttled_total") == 4.0
    assert scrape.value("volprobe_api_budget_wait_seconds_total") == 2.25


# -- recording outcomes -----------------------------------------------------------------------------


def test_success_sets_success_last_success_last_run_and_duration() -> None:
    scrape = Scrape(recorded(mount_outcome("worker-1", finished=NOW, seconds=4.0)))
    labels = target_labels()
    assert scrape.value("volprobe_probe_runs_total", **labels, result="success") == 1.0
    assert scrape.value("volprobe_probe_success", **labels) == 1.0
    assert scrape.value("volprobe_last_success_timestamp_seconds", **labels) == NOW
    assert scrape.value("volprobe_last_run_timestamp_seconds", **labels) == NOW
    assert scrape.value("volprobe_probe_duration_seconds", **labels) == 4.0
    assert scrape.series("volprobe_probe_failures_total") == []


def test_runs_counter_counts_every_run() -> None:
    scrape = Scrape(recorded(*(mount_outcome("worker-1", finished=NOW + i) for i in range(3))))
    assert scrape.value("volprobe_probe_runs_total", **target_labels(), result="success") == 3.0


def test_failure_is_counted_with_its_phase_and_reason() -> None:
    failure = mount_outcome(
        "worker-1",
        result=Result.FAILURE,
        phase=Phase.READ,
        reason=Reason.CHECKSUM_MISMATCH,
        finished=NOW + 60,
    )
    scrape = Scrape(recorded(mount_outcome("worker-1", finished=NOW), failure))
    labels = target_labels()
    assert scrape.value("volprobe_probe_runs_total", **labels, result="failure") == 1.0
    assert (
        scrape.value("volprobe_probe_failures_total", **labels, phase="read", reason="checksum_mismatch")
        == 1.0
    )
    assert scrape.value("volprobe_probe_success", **labels) == 0.0
    assert scrape.value("volprobe_last_success_timestamp_seconds", **labels) == NOW
    assert scrape.value("volprobe_last_run_timestamp_seconds", **labels) == NOW + 60


def test_timeout_is_counted_as_timeout_and_as_a_failure_reason() -> None:
    timeout = mount_outcome(
        "worker-1", result=Result.TIMEOUT, phase=Phase.MOUNT, reason=Reason.ATTACH_TIMEOUT
    )
    scrape = Scrape(recorded(timeout))
    labels = target_labels()
    assert scrape.value("volprobe_probe_runs_total", **labels, result="timeout") == 1.0
    assert (
        scrape.value("volprobe_probe_failures_total", **labels, phase="mount", reason="attach_timeout") == 1.0
    )


def test_skipped_run_moves_the_runs_counter_only() -> None:
    scrape = Scrape(recorded(skipped_outcome("worker-1", SkipReason.NOT_READY)))
    labels = target_labels()
    assert scrape.value("volprobe_probe_runs_total", **labels, result="skipped") == 1.0
    assert scrape.series("volprobe_probe_success") == []
    assert scrape.series("volprobe_probe_duration_seconds") == []
    assert scrape.series("volprobe_last_success_timestamp_seconds") == []
    assert scrape.series("volprobe_probe_failures_total") == []


def test_skipped_run_leaves_the_previous_success_gauges_alone() -> None:
    scrape = Scrape(
        recorded(
            mount_outcome("worker-1", finished=NOW, seconds=4.0),
            skipped_outcome("worker-1", SkipReason.CORDONED, finished=NOW + 60),
        )
    )
    labels = target_labels()
    assert scrape.value("volprobe_probe_success", **labels) == 1.0
    assert scrape.value("volprobe_last_success_timestamp_seconds", **labels) == NOW
    assert scrape.value("volprobe_probe_duration_seconds", **labels) == 4.0


def failed_run(node: str = "worker-1", *, finished: float = NOW, timeout: bool = False) -> Outcome:
    if timeout:
        return mount_outcome(
            node, result=Result.TIMEOUT, phase=Phase.MOUNT, reason=Reason.ATTACH_TIMEOUT, finished=finished
        )
    return mount_outcome(
        node, result=Result.FAILURE, phase=Phase.MOUNT, reason=Reason.MOUNT_FAILED, finished=finished
    )


def streak(scrape: Scrape, node: str = "worker-1") -> tuple[float | None, float | None]:
    """(consecutive failures, failing since) of one mount target."""
    labels = target_labels(node)
    return (
        scrape.value("volprobe_probe_consecutive_failures", **labels),
        scrape.value("volprobe_probe_failing_since_timestamp_seconds", **labels),
    )


def test_a_target_that_never_failed_has_zero_failures_and_no_failing_since() -> None:
    assert streak(Scrape(recorded(mount_outcome("worker-1")))) == (0.0, None)
    assert (
        Scrape(recorded(mount_outcome("worker-1"))).series("volprobe_probe_failing_since_timestamp_seconds")
        == []
    )


def test_failures_and_timeouts_in_a_row_count_up_from_the_first_one() -> None:
    scrape = Scrape(
        recorded(
            mount_outcome("worker-1", finished=NOW),
            failed_run(finished=NOW + 60),
            failed_run(finished=NOW + 120, timeout=True),
            failed_run(finished=NOW + 180),
        )
    )
    assert streak(scrape) == (3.0, NOW + 60)


def test_a_success_ends_the_streak() -> None:
    scrape = Scrape(
        recorded(
            failed_run(finished=NOW),
            failed_run(finished=NOW + 60),
            mount_outcome("worker-1", finished=NOW + 120),
        )
    )
    assert streak(scrape) == (0.0, None)


def test_a_new_streak_starts_at_its_own_first_failure() -> None:
    scrape = Scrape(
        recorded(
            failed_run(finished=NOW),
            mount_outcome("worker-1", finished=NOW + 60),
            failed_run(finished=NOW + 120),
        )
    )
    assert streak(scrape) == (1.0, NOW + 120)


def test_skipped_runs_neither_extend_nor_end_a_streak() -> None:
    scrape = Scrape(
        recorded(
            failed_run(finished=NOW),
            skipped_outcome("worker-1", SkipReason.CORDONED, finished=NOW + 60),
            failed_run(finished=NOW + 120),
            skipped_outcome("worker-1", SkipReason.NOT_READY, finished=NOW + 180),
        )
    )
    assert streak(scrape) == (2.0, NOW)


def test_a_target_that_was_only_skipped_has_no_streak_series() -> None:
    scrape = Scrape(recorded(skipped_outcome("worker-1", SkipReason.NOT_READY)))
    assert streak(scrape) == (None, None)


def test_streaks_are_per_target() -> None:
    scrape = Scrape(
        recorded(
            failed_run("worker-1", finished=NOW),
            failed_run("worker-2", finished=NOW + 30),
            failed_run("worker-2", finished=NOW + 90),
            mount_outcome("worker-3"),
            provision_outcome(
                result=Result.TIMEOUT, phase=Phase.PROVISION, reason=Reason.PROVISIONING_FAILED
            ),
        )
    )
    assert streak(scrape, "worker-1") == (1.0, NOW)
    assert streak(scrape, "worker-2") == (2.0, NOW + 30)
    assert streak(scrape, "worker-3") == (0.0, None)
    provision = target_labels("", "provision")
    assert scrape.value("volprobe_probe_consecutive_failures", **provision) == 1.0
    assert scrape.value("volprobe_probe_failing_since_timestamp_seconds", **provision) == NOW


def test_provision_runs_have_an_empty_node_label() -> None:
    scrape = Scrape(recorded(provision_outcome(node="worker-3")))
    assert (
        scrape.value("volprobe_probe_runs_total", **target_labels("", "provision"), result="success") == 1.0
    )


def test_phase_durations_are_observed_in_the_phase_histogram() -> None:
    durations = {Phase.PROVISION: 12.0, Phase.SCHEDULE: 3.0, Phase.MOUNT: 6.0, Phase.IO: 4.5}
    scrape = Scrape(recorded(provision_outcome(durations=durations)))
    labels = {"storage_class": STORAGE_CLASS, "kind": "provision", "phase": "provision"}
    assert scrape.value("volprobe_phase_duration_seconds_bucket", **labels, le="10.0") == 0.0
    assert scrape.value("volprobe_phase_duration_seconds_bucket", **labels, le="20.0") == 1.0
    assert scrape.value("volprobe_phase_duration_seconds_bucket", **labels, le="+Inf") == 1.0
    assert scrape.value("volprobe_phase_duration_seconds_count", **labels) == 1.0
    assert scrape.value("volprobe_phase_duration_seconds_sum", **labels) == 12.0
    phases = {series["phase"] for series in scrape.series("volprobe_phase_duration_seconds_count")}
    assert phases == {"provision", "schedule", "mount", "io"}


def test_phase_histogram_uses_the_declared_buckets() -> None:
    scrape = Scrape(recorded(mount_outcome("worker-1", durations={Phase.IO: 0.3})))
    bounds = [s["le"] for s in scrape.series("volprobe_phase_duration_seconds_bucket") if s["le"] != "+Inf"]
    assert sorted(float(b) for b in bounds) == [float(b) for b in PHASE_BUCKETS]


def test_a_duration_on_a_bucket_bound_falls_in_that_bucket() -> None:
    scrape = Scrape(recorded(mount_outcome("worker-1", durations={Phase.MOUNT: 5.0})))
    labels = {"storage_class": STORAGE_CLASS, "kind": "mount", "phase": "mount"}
    assert scrape.value("volprobe_phase_duration_seconds_bucket", **labels, le="5.0") == 1.0
    assert scrape.value("volprobe_phase_duration_seconds_bucket", **labels, le="2.0") == 0.0


def test_io_latency_histogram_is_the_agent_histogram_exactly() -> None:
    report = agent_report([0.00008, 0.0007, 0.0007, 0.0012, 0.03, 12.0])
    scrape = Scrape(recorded(mount_outcome("worker-1", report=report)))
    write = report.ops["write"]
    for bound, count in zip(LATENCY_BUCKETS, write.buckets, strict=True):
        value = scrape.value(
            "volprobe_io_latency_seconds_bucket", storage_class=STORAGE_CLASS, op="write", le=repr(bound)
        )
        assert value == count
    labels = {"storage_class": STORAGE_CLASS, "op": "write"}
    assert scrape.value("volprobe_io_latency_seconds_bucket", **labels, le="+Inf") == 6.0
    assert scrape.value("volprobe_io_latency_seconds_count", **labels) == 6.0
    assert scrape.value("volprobe_io_latency_seconds_sum", **labels) == write.total
    assert scrape.value("volprobe_io_latency_seconds_bucket", **labels, le="0.0001") == 1.0
    assert scrape.value("volprobe_io_latency_seconds_bucket", **labels, le="10.0") == 5.0


def test_io_latency_histograms_of_successive_runs_add_up() -> None:
    first = agent_report([0.0007, 0.0012])
    second = agent_report([0.0007, 0.2])
    scrape = Scrape(
        recorded(mount_outcome("worker-1", report=first), mount_outcome("worker-2", report=second))
    )
    labels = {"storage_class": STORAGE_CLASS, "op": "write"}
    assert scrape.value("volprobe_io_latency_seconds_bucket", **labels, le="0.001") == 2.0
    assert scrape.value("volprobe_io_latency_seconds_bucket", **labels, le="0.25") == 4.0
    assert scrape.value("volprobe_io_latency_seconds_count", **labels) == 4.0


def test_io_latency_is_labelled_by_operation() -> None:
    scrape = Scrape(recorded(mount_outcome("worker-1", report=agent_report([0.001]))))
    ops = {series["op"] for series in scrape.series("volprobe_io_latency_seconds_count")}
    assert ops == {"write", "fsync"}


def test_ops_without_buckets_are_not_merged() -> None:
    report = Report(
        run="r", verdict=Result.SUCCESS, ops={"read": OpStats(count=3, total=0.01, maximum=0.005)}
    )
    scrape = Scrape(recorded(mount_outcome("worker-1", report=report)))
    assert scrape.series("volprobe_io_latency_seconds_count") == []


def test_throughput_is_exported_for_successful_mount_runs() -> None:
    scrape = Scrape(recorded(mount_outcome("worker-1", report=agent_report([0.001], throughput=9.5e8))))
    labels = {"probe": PROBE, "storage_class": STORAGE_CLASS, "node": "worker-1"}
    assert scrape.value("volprobe_io_throughput_bytes_per_second", **labels, op="write") == 9.5e8
    assert scrape.value("volprobe_io_throughput_bytes_per_second", **labels, op="read") == 1.2e9


def test_throughput_is_not_exported_for_failed_runs() -> None:
    failure = mount_outcome(
        "worker-1",
        result=Result.FAILURE,
        phase=Phase.READ,
        reason=Reason.CHECKSUM_MISMATCH,
        report=agent_report([0.001]),
    )
    assert Scrape(recorded(failure)).series("volprobe_io_throughput_bytes_per_second") == []


# -- node gauges ------------------------------------------------------------------------------------


def test_set_skipped_replaces_the_previous_reason() -> None:
    metrics = ProbeMetrics()
    metrics.set_skipped(PROBE, "worker-1", "not_ready")
    metrics.set_skipped(PROBE, "worker-1", "recovering")
    assert Scrape(metrics).series("volprobe_node_skipped") == [
        {"probe": PROBE, "node": "worker-1", "reason": "recovering"}
    ]


def test_set_skipped_none_clears_the_node() -> None:
    metrics = ProbeMetrics()
    metrics.set_skipped(PROBE, "worker-1", "not_ready")
    metrics.set_skipped(PROBE, "worker-2", "cordoned")
    metrics.set_skipped(PROBE, "worker-1", None)
    assert Scrape(metrics).series("volprobe_node_skipped") == [
        {"probe": PROBE, "node": "worker-2", "reason": "cordoned"}
    ]


def test_a_forgotten_node_skipped_again_shows_only_its_new_reason() -> None:
    metrics = ProbeMetrics()
    metrics.set_skipped(PROBE, "worker-1", "not_ready")
    metrics.forget(PROBE, "worker-1")
    metrics.set_skipped(PROBE, "worker-1", "cordoned")
    metrics.set_skipped(PROBE, "worker-1", "tainted")
    metrics.reset_probe_series()
    metrics.set_skipped(PROBE, "worker-1", "deleting")
    metrics.set_skipped(PROBE, "worker-1", "too_new")
    assert Scrape(metrics).series("volprobe_node_skipped") == [
        {"probe": PROBE, "node": "worker-1", "reason": "too_new"}
    ]


def test_node_counts_are_exported_by_state() -> None:
    metrics = ProbeMetrics()
    metrics.set_node_counts(PROBE, STORAGE_CLASS, {"selected": 5, "passing": 3, "failing": 1, "skipped": 1})
    scrape = Scrape(metrics)
    assert scrape.value("volprobe_nodes", probe=PROBE, storage_class=STORAGE_CLASS, state="passing") == 3.0
    assert len(scrape.series("volprobe_nodes")) == 4


def test_api_and_leader_metrics() -> None:
    metrics = ProbeMetrics()
    metrics.api_request("create", 201)
    metrics.api_request("create", 201)
    metrics.api_request("list", 429)
    metrics.set_api_budget(throttled=2, waited=1.5)
    metrics.set_leader(True)
    metrics.set_in_flight({(PROBE, "mount"): 4})
    scrape = Scrape(metrics)
    assert scrape.value("volprobe_api_requests_total", verb="create", code="201") == 2.0
    assert scrape.value("volprobe_api_requests_total", verb="list", code="429") == 1.0
    assert scrape.value("volprobe_api_throttled_total") == 2.0
    assert scrape.value("volprobe_api_budget_wait_seconds_total") == 1.5
    assert scrape.value("volprobe_leader") == 1.0
    assert scrape.value("volprobe_runs_in_flight", probe=PROBE, kind="mount") == 4.0


# -- forgetting -------------------------------------------------------------------------------------


def populated() -> ProbeMetrics:
    """Two probes on two nodes, with skips, node counts, in-flight runs and API traffic."""
    metrics = ProbeMetrics()
    for probe in (PROBE, "slow-hdd"):
        for node in ("worker-1", "worker-2"):
            metrics.record(
                mount_outcome(node, probe=probe, report=agent_report([0.001]), durations={Phase.IO: 0.5}),
                STORAGE_CLASS,
            )
            metrics.record(
                mount_outcome(
                    node, probe=probe, result=Result.FAILURE, phase=Phase.MOUNT, reason=Reason.MOUNT_FAILED
                ),
                STORAGE_CLASS,
            )
            metrics.set_skipped(probe, node, "tainted")
        metrics.record(provision_outcome(probe=probe), STORAGE_CLASS)
        metrics.set_node_counts(probe, STORAGE_CLASS, {"selected": 2})
    metrics.set_in_flight({(probe, "mount"): 1 for probe in (PROBE, "slow-hdd")})
    metrics.api_request("get", 200)
    metrics.set_leader(True)
    return metrics


def series_with(scrape: Scrape, **wanted: str) -> set[tuple[str, Labels]]:
    return {
        (name, labels)
        for name, labels in scrape.samples
        if all((key, value) in labels for key, value in wanted.items())
    }


def test_forget_node_removes_exactly_that_node_of_that_probe() -> None:
    before = Scrape(populated())
    metrics = populated()
    metrics.forget(PROBE, "worker-1")
    after = Scrape(metrics)
    removed = set(before.samples) - set(after.samples)
    assert removed
    assert removed == series_with(before, probe=PROBE, node="worker-1")
    assert set(after.samples) <= set(before.samples)


def test_forget_and_reset_drop_the_failure_streaks() -> None:
    def targets(metrics: ProbeMetrics) -> list[set[tuple[str, str]]]:
        scrape = Scrape(metrics)
        return [
            {(s["probe"], s["node"]) for s in scrape.series(name)}
            for name in (
                "volprobe_probe_consecutive_failures",
                "volprobe_probe_failing_since_timestamp_seconds",
            )
        ]

    metrics = populated()
    failing = {(probe, node) for probe in (PROBE, "slow-hdd") for node in ("worker-1", "worker-2")}
    provisions = {(PROBE, ""), ("slow-hdd", "")}
    assert targets(metrics) == [failing | provisions, failing]
    metrics.forget(PROBE, "worker-1")
    failing.discard((PROBE, "worker-1"))
    assert targets(metrics) == [failing | provisions, failing]
    metrics.forget("slow-hdd")
    assert targets(metrics) == [{(PROBE, "worker-2"), (PROBE, "")}, {(PROBE, "worker-2")}]
    metrics.reset_probe_series()
    assert targets(metrics) == [set(), set()]


def test_forget_node_keeps_the_probe_wide_series() -> None:
    metrics = populated()
    metrics.forget(PROBE, "worker-1")
    scrape = Scrape(metrics)
    assert scrape.value("volprobe_nodes", probe=PROBE, storage_class=STORAGE_CLASS, state="selected") == 2.0
    assert scrape.value("volprobe_runs_in_flight", probe=PROBE, kind="mount") == 1.0
    assert (
        scrape.value("volprobe_probe_runs_total", **target_labels("", "provision"), result="success") == 1.0
    )


def test_forget_probe_removes_every_series_of_that_probe_only() -> None:
    before = Scrape(populated())
    metrics = populated()
    metrics.forget(PROBE)
    after = Scrape(metrics)
    assert set(before.samples) - set(after.samples) == series_with(before, probe=PROBE)
    assert series_with(after, probe="slow-hdd") == series_with(before, probe="slow-hdd")
    assert after.value("volprobe_api_requests_total", verb="get", code="200") == 1.0


def test_forget_probe_does_not_touch_a_probe_whose_name_it_prefixes() -> None:
    metrics = ProbeMetrics()
    metrics.record(mount_outcome("worker-1", probe="db"), STORAGE_CLASS)
    metrics.record(mount_outcome("worker-1", probe="db-2"), STORAGE_CLASS)
    metrics.forget("db")
    assert {s["probe"] for s in Scrape(metrics).series("volprobe_probe_success")} == {"db-2"}


def test_reset_probe_series_drops_every_probe_result_and_keeps_process_metrics() -> None:
    metrics = populated()
    metrics.reset_probe_series()
    scrape = Scrape(metrics)
    assert series_with(scrape, probe=PROBE) == set()
    assert series_with(scrape, probe="slow-hdd") == set()
    assert scrape.series("volprobe_phase_duration_seconds_count") == []
    assert scrape.series("volprobe_io_latency_seconds_count") == []
    assert scrape.value("volprobe_api_requests_total", verb="get", code="200") == 1.0
    assert scrape.value("volprobe_leader") == 1.0
    assert scrape.value("volprobe_build_info", version=__version__) == 1.0


def test_value_reads_one_series() -> None:
    metrics = populated()
    assert metrics.value(NODES, probe=PROBE, storage_class=STORAGE_CLASS, state="selected") == 2.0
    assert metrics.value(NODES, probe="nope", storage_class=STORAGE_CLASS, state="selected") is None


def test_kinds_may_be_plain_names() -> None:
    metrics = ProbeMetrics()
    metrics.set_in_flight({(PROBE, "object"): 1, (PROBE, "mount"): 2})
    scrape = Scrape(metrics)
    assert scrape.value("volprobe_runs_in_flight", probe=PROBE, kind="object") == 1.0
    assert scrape.value("volprobe_runs_in_flight", probe=PROBE, kind="mount") == 2.0


def test_setting_the_same_skip_reason_again_keeps_one_series() -> None:
    metrics = ProbeMetrics()
    metrics.set_skipped(PROBE, "worker-1", "cordoned")
    metrics.set_skipped(PROBE, "worker-1", "cordoned")
    assert Scrape(metrics).series("volprobe_node_skipped") == [
        {"probe": PROBE, "node": "worker-1", "reason": "cordoned"}
    ]


def test_in_flight_and_interval_series_of_vanished_probes_disappear() -> None:
    metrics = ProbeMetrics()
    metrics.set_in_flight({(PROBE, "mount"): 2, (PROBE, "provision"): 1})
    metrics.set_intervals({PROBE: (STORAGE_CLASS, 60.0)})
    metrics.set_in_flight({(PROBE, "provision"): 0})
    metrics.set_intervals({})
    scrape = Scrape(metrics)
    assert scrape.series("volprobe_runs_in_flight") == [{"probe": PROBE, "kind": "provision"}]
    assert scrape.value("volprobe_runs_in_flight", probe=PROBE, kind="provision") == 0.0
    assert scrape.series("volprobe_probe_interval_seconds") == []
