"""The pure parts of `volprobe check`: arguments to a probe spec, the table, the JSON, exit codes."""

from __future__ import annotations

import argparse
import json

import pytest

from tests.unit.factories import mount_outcome, provision_outcome
from volprobe.commands.check import CheckResult, parser, render_table, spec_from_args, to_json
from volprobe.contract.reasons import Phase, Reason, Result, SkipReason
from volprobe.model.spec import DEFAULT_NODE_GRACE_SECONDS, Timeouts


def args(*argv: str) -> argparse.Namespace:
    return parser().parse_args(list(argv))


def test_a_class_alone_gives_the_storageprobe_defaults_and_no_owner() -> None:
    spec = spec_from_args(args("fast"), None)
    assert spec.storage_class == "fast"
    assert spec.uid == "", "objects of a check must not be owned by anything"
    assert spec.name.startswith("check-")
    assert spec.timeouts == Timeouts()
    assert spec.node_grace == DEFAULT_NODE_GRACE_SECONDS
    assert spec.disabled_kinds == frozenset()


def test_options_narrow_and_shorten_the_check() -> None:
    spec = spec_from_args(
        args("fast", "--node", "a", "--node", "b", "--timeout", "15", "--node-grace", "0", "--no-provision"),
        None,
    )
    assert [t["matchFields"][0]["values"] for t in spec.node_selector_terms] == [["a"], ["b"]]
    assert spec.timeouts == Timeouts(15, 15, 15, 15, 15)
    assert spec.node_grace == 0
    assert spec.disabled_kinds == {"provision"}


def test_an_existing_probe_lends_its_settings_but_not_its_identity() -> None:
    probe = {
        "metadata": {"name": "nightly", "uid": "1234", "generation": 4},
        "spec": {"storageClassName": "nfs", "intervalSeconds": 600, "nodeGracePeriodSeconds": 5},
    }
    spec = spec_from_args(args("--probe", "nightly"), probe)
    assert spec.storage_class == "nfs"
    assert spec.node_grace == 5
    assert spec.uid == ""
    assert spec.name != "nightly"


def passing_result() -> CheckResult:
    result = CheckResult("fast", "ns")
    result.outcomes = [mount_outcome("worker-1"), mount_outcome("worker-1"), provision_outcome()]
    result.skipped = {"worker-2": SkipReason.CORDONED}
    return result


def test_all_passing_exits_0_and_the_table_says_passed() -> None:
    result = passing_result()
    assert result.exit_code == 0
    table = render_table(result)
    assert "PASSED: StorageClass fast, 3 runs, 0 failed, 1 nodes skipped" in table
    assert "worker-2" in table
    assert "cordoned" in table


def test_a_failure_exits_1_and_names_phase_and_reason() -> None:
    result = passing_result()
    result.outcomes.append(
        mount_outcome(
            "worker-3",
            result=Result.FAILURE,
            phase=Phase.VERIFY,
            reason=Reason.CHECKSUM_MISMATCH,
            message="offset 4096 differs",
        )
    )
    assert result.exit_code == 1
    table = render_table(result)
    assert "FAILED" in table
    assert "checksum_mismatch" in table
    assert "offset 4096 differs" in table


def test_nothing_probed_exits_3() -> None:
    result = CheckResult("fast", "ns", skipped={"worker-1": SkipReason.TOO_NEW})
    assert result.exit_code == 3
    assert "NOTHING PROBED" in render_table(result)


@pytest.mark.parametrize("failing", [False, True])
def test_json_document_follows_schema_version_1(failing: bool) -> None:
    result = passing_result()
    if failing:
        result.outcomes.append(
            provision_outcome(
                result=Result.TIMEOUT, phase=Phase.PROVISION, reason=Reason.PROVISIONING_TIMEOUT, node=""
            )
        )
    document = json.loads(json.dumps(to_json(result)))
    assert document["version"] == 1
    assert document["passed"] is not failing
    assert document["exitCode"] == (1 if failing else 0)
    assert set(document) == {"version", "storageClass", "passed", "exitCode", "seconds", "runs", "skipped"}
    for run in document["runs"]:
        assert set(run) == {
            "kind",
            "node",
            "pod",
            "result",
            "phase",
            "reason",
            "message",
            "seconds",
            "phases",
            "io",
        }
        assert (run["phase"] is None) == (run["result"] == "success")
    assert document["skipped"] == [{"node": "worker-2", "reason": "cordoned"}]
