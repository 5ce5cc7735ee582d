"""What an ObjectStoreProbe's run adds to the metrics, and that it goes when the probe goes."""

from __future__ import annotations

from volprobe.contract.reasons import Phase, Reason
from volprobe.model.objectstore_checks import (
    ObjectStoreRun,
    OperationResult,
    failed,
    judge,
    not_run,
    passed,
    to_outcome,
)
from volprobe.model.targets import Target
from volprobe.runtime.metrics import (
    FAILURES,
    OBJECTSTORE_CERTIFICATE,
    OBJECTSTORE_INSECURE,
    OBJECTSTORE_LEFTOVERS,
    OBJECTSTORE_SUCCESS,
    OBJECTSTORE_VISIBILITY,
    RUNS,
    ProbeMetrics,
)

T0 = 1_800_000_000.0


def run_of(*operations: OperationResult, leftovers: dict[str, int] | None = None) -> ObjectStoreRun:
    ops = tuple(operations)
    return ObjectStoreRun(
        "r1",
        T0,
        T0 + 1,
        ops,
        judge(ops),
        None,
        certificate_not_after=T0 + 86400,
        leftovers=leftovers or {"objects": 0, "uploads": 0},
        visibility_seconds=0.012,
    )


def duration_count(metrics: ProbeMetrics, operation: str) -> float | None:
    return metrics.registry.get_sample_value(
        "volprobe_objectstore_operation_duration_seconds_count", {"probe": "s3", "operation": operation}
    )


def test_each_operations_result_and_latency_are_exported_and_not_run_ones_vanish() -> None:
    metrics = ProbeMetrics()
    first = run_of(passed(Phase.CANARY, 0.02), passed(Phase.PUT, 0.03), passed(Phase.MULTIPART, 0.05))
    metrics.record_objectstore("s3", first, insecure=False)
    assert metrics.value(OBJECTSTORE_SUCCESS, probe="s3", operation="put") == 1
    assert duration_count(metrics, "put") == 1
    second = run_of(
        passed(Phase.CANARY, 0.02),
        failed(Phase.PUT, Reason.ACCESS_DENIED, "refused", 0.01),
        not_run(Phase.MULTIPART, "the server stopped answering"),
    )
    metrics.record_objectstore("s3", second, insecure=False)
    assert metrics.value(OBJECTSTORE_SUCCESS, probe="s3", operation="put") == 0
    assert metrics.value(OBJECTSTORE_SUCCESS, probe="s3", operation="canary") == 1
    assert metrics.value(OBJECTSTORE_SUCCESS, probe="s3", operation="multipart") is None
    assert duration_count(metrics, "put") == 2
    assert duration_count(metrics, "multipart") == 1


def test_certificate_visibility_leftovers_and_insecure_mode() -> None:
    metrics = ProbeMetrics()
    metrics.record_objectstore("s3", run_of(passed(Phase.PUT, 0.01)), insecure=True)
    assert metrics.value(OBJECTSTORE_CERTIFICATE, probe="s3") == T0 + 86400
    assert metrics.value(OBJECTSTORE_VISIBILITY, probe="s3") == 0.012
    assert metrics.value(OBJECTSTORE_LEFTOVERS, probe="s3", what="objects") == 0
    assert metrics.value(OBJECTSTORE_INSECURE, probe="s3") == 1
    later = run_of(passed(Phase.PUT, 0.01), leftovers={"objects": 2, "uploads": 1})
    metrics.record_objectstore("s3", later, insecure=False)
    assert metrics.value(OBJECTSTORE_LEFTOVERS, probe="s3", what="objects") == 2
    assert metrics.value(OBJECTSTORE_LEFTOVERS, probe="s3", what="uploads") == 1
    assert metrics.value(OBJECTSTORE_INSECURE, probe="s3") is None


def test_the_outcome_moves_the_common_families_with_the_operation_as_phase() -> None:
    metrics = ProbeMetrics()
    run = run_of(passed(Phase.CANARY, 0.02), failed(Phase.PUT, Reason.TIMEOUT, "no answer", 10.0))
    metrics.record(to_outcome(Target("s3", "objectstore"), run), "")
    labels = {"probe": "s3", "storage_class": "", "node": "", "kind": "objectstore"}
    assert metrics.value(RUNS, **labels, result="timeout") == 1
    assert metrics.value(FAILURES, **labels, phase="put", reason="timeout") == 1


def test_forgetting_the_probe_drops_its_object_store_series() -> None:
    metrics = ProbeMetrics()
    metrics.record_objectstore("s3", run_of(passed(Phase.PUT, 0.01)), insecure=True)
    metrics.forget("s3")
    assert metrics.value(OBJECTSTORE_SUCCESS, probe="s3", operation="put") is None
    assert metrics.value(OBJECTSTORE_CERTIFICATE, probe="s3") is None
    assert duration_count(metrics, "put") is None
