"""An ObjectStoreProbe's status and its run as an Outcome: what `kubectl get -o yaml` shows."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.model.objectstore import ObjectStoreSpec, SecretRef, TLSSettings
from volprobe.model.objectstore_checks import (
    CanaryRecord,
    ObjectStoreRun,
    OperationResult,
    failed,
    judge,
    not_run,
    passed,
    to_outcome,
)
from volprobe.model.objectstore_status import INSECURE_NOTE, build
from volprobe.model.targets import Target

SPEC = ObjectStoreSpec(
    name="store", endpoint="https://s3.example.com", bucket="b", credentials=SecretRef("keys"), generation=4
)
TARGET = Target("store", "objectstore")
T0 = 1_800_000_000.0
CANARY = CanaryRecord("volprobe/store/canary", "ab" * 32, T0 - 3600)


def run_of(*operations: OperationResult, finished: float = T0) -> ObjectStoreRun:
    ops = tuple(operations)
    return ObjectStoreRun(
        "run-1",
        finished - 2,
        finished,
        ops,
        judge(ops),
        CANARY,
    )


HEALTHY = run_of(passed(Phase.CANARY, 0.02), passed(Phase.PUT, 0.03), not_run(Phase.MULTIPART, "disabled"))
WRITE_STALL = run_of(
    passed(Phase.CANARY, 0.02),
    passed(Phase.LIST_PREFIX, 0.05),
    failed(Phase.PUT, Reason.TIMEOUT, "put: no answer within 10.0s", 10.0),
)


def conditions(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in document["conditions"]}


def test_the_outcome_names_the_failed_operation_and_times_every_operation() -> None:
    outcome = to_outcome(TARGET, WRITE_STALL)
    assert (outcome.result, outcome.phase, outcome.reason) == (Result.TIMEOUT, Phase.PUT, Reason.TIMEOUT)
    assert outcome.durations == {Phase.CANARY: 0.02, Phase.LIST_PREFIX: 0.05, Phase.PUT: 10.0}
    assert outcome.node == ""
    assert outcome.seconds == 2
    assert to_outcome(TARGET, HEALTHY).durations == {Phase.CANARY: 0.02, Phase.PUT: 0.03}, (
        "not-run ops have no time"
    )


def test_a_healthy_probe_is_ready_with_its_operations_canary_and_certificate() -> None:
    run = replace(HEALTHY, certificate_not_after=T0 + 86400)
    document = build(
        SPEC, to_outcome(TARGET, run), run, canary=CANARY, last_success=T0, previous=None, now=T0
    )
    found = conditions(document)
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("True", "Passing")
    assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == ("False", "Passing")
    assert found["Ready"]["observedGeneration"] == 4
    assert document["observedGeneration"] == 4
    assert document["lastRun"]["result"] == "success"
    assert document["operations"] == [
        {"name": "canary", "result": "success", "seconds": 0.02},
        {"name": "put", "result": "success", "seconds": 0.03},
        {"name": "multipart", "result": "not_run", "seconds": 0.0},
    ]
    assert document["canary"] == {"key": "volprobe/store/canary", "sha256": "ab" * 32, "written": T0 - 3600}
    assert document["certificateNotAfter"] == "2027-01-16T08:00:00Z"


def test_a_write_stall_is_degraded_with_the_operations_reason_and_says_reads_pass() -> None:
    document = build(
        SPEC,
        to_outcome(TARGET, WRITE_STALL),
        WRITE_STALL,
        canary=CANARY,
        last_success=None,
        previous=None,
        now=T0,
    )
    found = conditions(document)
    assert (found["Degraded"]["status"], found["Degraded"]["reason"]) == ("True", "Timeout")
    assert (found["Ready"]["status"], found["Ready"]["reason"]) == ("False", "OperationsFailing")
    assert found["Degraded"]["message"].startswith(
        "put failed (writes fail while reads pass): put: no answer"
    )
    assert {"name": "put", "result": "timeout", "reason": "timeout", "seconds": 10.0} in document[
        "operations"
    ]


def test_conditions_keep_their_transition_time_until_they_flip() -> None:
    first = build(
        SPEC, to_outcome(TARGET, HEALTHY), HEALTHY, canary=None, last_success=T0, previous=None, now=T0
    )
    later = run_of(passed(Phase.PUT, 0.01), finished=T0 + 60)
    again = build(
        SPEC, to_outcome(TARGET, later), later, canary=None, last_success=T0 + 60, previous=first, now=T0 + 60
    )
    assert (
        conditions(again)["Ready"]["lastTransitionTime"] == conditions(first)["Ready"]["lastTransitionTime"]
    )
    broken = build(
        SPEC,
        to_outcome(TARGET, WRITE_STALL),
        WRITE_STALL,
        canary=None,
        last_success=T0,
        previous=again,
        now=T0 + 120,
    )
    assert conditions(broken)["Ready"]["lastTransitionTime"] == "2027-01-15T08:02:00Z"
    assert "canary" not in broken


def test_before_the_first_run_the_probe_is_pending() -> None:
    document = build(SPEC, None, None, canary=None, last_success=None, previous=None, now=T0)
    assert conditions(document)["Ready"]["reason"] == "Pending"
    assert "lastRun" not in document
    assert "operations" not in document


def test_insecure_mode_is_said_in_the_conditions() -> None:
    insecure = replace(SPEC, tls=TLSSettings(insecure_skip_verify=True))
    document = build(
        insecure, to_outcome(TARGET, HEALTHY), HEALTHY, canary=None, last_success=T0, previous=None, now=T0
    )
    assert INSECURE_NOTE in conditions(document)["Ready"]["message"]
