"""The `status` of an ObjectStoreProbe, computed from its latest run. Pure.

Same conventions as a StorageProbe's (`volprobe.model.status`): conditions `Ready` and
`Degraded` keep their `lastTransitionTime` unless they flip, reasons are CamelCase, messages
name the cause. Besides them: the latest run (`lastRun`), each operation's result
(`operations`, so "writes fail, reads pass" is visible with `kubectl get -o yaml`), the canary
the probe wrote (which later runs, and a restarted controller, must read back exactly), and the
endpoint certificate's expiry. Never a credential: the spec names a Secret, the status nothing
of it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from volprobe.model import status
from volprobe.model.objectstore import ObjectStoreSpec
from volprobe.model.objectstore_checks import CanaryRecord, ObjectStoreRun, writes_fail_reads_pass
from volprobe.model.outcome import Outcome

INSECURE_NOTE = (
    "TLS verification is off (tls.insecureSkipVerify): anyone on the path can read and change this traffic"
)


def _verdicts(
    spec: ObjectStoreSpec, outcome: Outcome | None, run: ObjectStoreRun | None
) -> tuple[tuple[bool, str, str], tuple[bool, str, str]]:
    """(Ready, Degraded) as (status, reason, message)."""
    note = f"; {INSECURE_NOTE}" if spec.tls.insecure_skip_verify else ""
    if outcome is None:
        message = f"no run yet against {spec.target}{note}"
        return (False, "Pending", message), (False, "Pending", message)
    if outcome.passed:
        message = f"every operation passed against {spec.target}{note}"
        return (True, "Passing", message), (False, "Passing", message)
    reason = status.camel(outcome.reason.value if outcome.reason else "failing")
    phase = outcome.phase.value if outcome.phase else "run"
    shape = (
        " (writes fail while reads pass)"
        if run is not None and writes_fail_reads_pass(run.operations)
        else ""
    )
    message = f"{phase} failed{shape}: {outcome.message}{note}"
    return (False, "OperationsFailing", message), (True, reason, message)


def build(
    spec: ObjectStoreSpec,
    outcome: Outcome | None,
    run: ObjectStoreRun | None,
    *,
    canary: CanaryRecord | None,
    last_success: float | None,
    previous: Mapping[str, Any] | None,
    now: float,
) -> dict[str, Any]:
    """The status document for this probe after `outcome` (None: nothing ran yet)."""
    previous_conditions = {
        c.get("type"): c for c in (previous or {}).get("conditions", []) if isinstance(c, dict)
    }
    ready, degraded = _verdicts(spec, outcome, run)
    document: dict[str, Any] = {
        "observedGeneration": spec.generation,
        "conditions": [
            status.condition(
                kind, verdict, generation=spec.generation, previous=previous_conditions.get(kind), now=now
            )
            for kind, verdict in (("Ready", ready), ("Degraded", degraded))
        ],
    }
    last = status.last_run(outcome, last_success)
    if last is not None:
        document["lastRun"] = last
    if run is not None:
        document["operations"] = [
            {
                "name": op.operation.value,
                "result": op.result.value if op.result is not None else "not_run",
                **({"reason": op.reason.value} if op.reason else {}),
                "seconds": round(op.seconds, 4),
            }
            for op in run.operations
        ]
        if run.certificate_not_after is not None:
            document["certificateNotAfter"] = status.rfc3339(run.certificate_not_after)
    if canary is not None:
        document["canary"] = canary.to_status()
    return document
