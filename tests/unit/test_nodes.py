"""Which nodes a probe covers (NodeSelector semantics) and which it may probe now (eligibility)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.factories import DAY, NOW, node_json, taint
from volprobe.contract.reasons import SkipReason
from volprobe.model.nodes import selected, skip_reason, tolerates, unwell_since
from volprobe.model.views import NodeView, Taint

GRACE = 60.0
ZONE = "topology.kubernetes.io/zone"


def node(name: str = "worker-1", **fields: Any) -> NodeView:
    return NodeView.of(node_json(name, **fields))


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    requirement: dict[str, Any] = {"key": key, "operator": operator}
    if values:
        requirement["values"] = list(values)
    return requirement


def term(*expressions: dict[str, Any], fields: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    found: dict[str, Any] = {}
    if expressions:
        found["matchExpressions"] = list(expressions)
    if fields:
        found["matchFields"] = fields
    return found


def reason(view: NodeView, tolerations: list[dict[str, Any]] | None = None, grace: float = GRACE) -> Any:
    return skip_reason(view, tolerations=tolerations or [], grace=grace, now=NOW)


# -- selection -----------------------------------------------------------------------------------

EU1 = node("eu1", labels={ZONE: "eu-west-1a", "disk": "ssd", "cores": "16"})
EU2 = node("eu2", labels={ZONE: "eu-west-1b", "disk": "hdd", "cores": "4"})
PLAIN = node("plain")
WINDOWS = node("win-1", os="windows", labels={ZONE: "eu-west-1a", "disk": "ssd"})


def test_no_terms_select_every_linux_node() -> None:
    assert all(selected([], view) for view in (EU1, EU2, PLAIN))


def test_node_without_os_label_counts_as_linux() -> None:
    raw = node_json("bare")
    del raw["metadata"]["labels"]["kubernetes.io/os"]
    assert selected([], NodeView.of(raw))


def test_non_linux_node_is_never_selected_without_terms() -> None:
    assert not selected([], WINDOWS)


def test_non_linux_node_is_never_selected_even_when_a_term_matches_it() -> None:
    assert not selected([term(expr(ZONE, "In", "eu-west-1a"))], WINDOWS)
    assert not selected([term(fields=[expr("metadata.name", "In", "win-1")])], WINDOWS)


def test_terms_are_ored() -> None:
    terms = [term(expr("disk", "In", "nvme")), term(expr(ZONE, "In", "eu-west-1b"))]
    assert selected(terms, EU2)
    assert not selected(terms, EU1)


def test_requirements_of_a_term_are_anded() -> None:
    terms = [term(expr(ZONE, "In", "eu-west-1a"), expr("disk", "In", "hdd"))]
    assert not selected(terms, EU1)
    assert not selected(terms, EU2)
    assert selected([term(expr(ZONE, "In", "eu-west-1a"), expr("disk", "In", "ssd"))], EU1)


def test_expressions_and_fields_of_a_term_are_anded() -> None:
    terms = [term(expr("disk", "In", "ssd"), fields=[expr("metadata.name", "In", "eu2")])]
    assert not selected(terms, EU1)
    assert not selected(terms, EU2)


@pytest.mark.parametrize(
    "empty", [{}, {"matchExpressions": []}, {"matchFields": []}, {"matchExpressions": [], "matchFields": []}]
)
def test_empty_term_matches_nothing(empty: dict[str, Any]) -> None:
    assert not selected([empty], EU1)


def test_empty_term_does_not_stop_another_term_from_matching() -> None:
    assert selected([{}, term(expr("disk", "In", "ssd"))], EU1)


def test_in_matches_any_listed_value() -> None:
    assert selected([term(expr(ZONE, "In", "eu-west-1c", "eu-west-1a"))], EU1)
    assert not selected([term(expr(ZONE, "In", "eu-west-1c"))], EU1)


def test_in_never_matches_a_node_without_the_label() -> None:
    assert not selected([term(expr(ZONE, "In", "eu-west-1a"))], PLAIN)


def test_not_in_excludes_listed_values() -> None:
    terms = [term(expr(ZONE, "NotIn", "eu-west-1a"))]
    assert not selected(terms, EU1)
    assert selected(terms, EU2)


def test_not_in_matches_a_node_without_the_label() -> None:
    assert selected([term(expr(ZONE, "NotIn", "eu-west-1a"))], PLAIN)


def test_exists_needs_the_label_whatever_its_value() -> None:
    terms = [term(expr(ZONE, "Exists"))]
    assert selected(terms, EU1)
    assert not selected(terms, PLAIN)


def test_does_not_exist_needs_the_label_absent() -> None:
    terms = [term(expr(ZONE, "DoesNotExist"))]
    assert selected(terms, PLAIN)
    assert not selected(terms, EU1)


def test_gt_compares_integers_strictly() -> None:
    assert selected([term(expr("cores", "Gt", "8"))], EU1)
    assert not selected([term(expr("cores", "Gt", "16"))], EU1)
    assert not selected([term(expr("cores", "Gt", "8"))], EU2)


def test_lt_compares_integers_strictly() -> None:
    assert selected([term(expr("cores", "Lt", "8"))], EU2)
    assert not selected([term(expr("cores", "Lt", "4"))], EU2)


def test_gt_compares_as_numbers_not_as_strings() -> None:
    """As strings "16" < "8"; as integers 16 > 8."""
    assert selected([term(expr("cores", "Gt", "9"))], EU1)


def test_gt_and_lt_never_match_a_missing_label() -> None:
    assert not selected([term(expr("cores", "Gt", "0"))], PLAIN)
    assert not selected([term(expr("cores", "Lt", "100"))], PLAIN)


def test_gt_never_matches_a_non_integer_label() -> None:
    assert not selected([term(expr("disk", "Gt", "0"))], EU1)


def test_unknown_operator_matches_nothing() -> None:
    assert not selected([term(expr(ZONE, "Like", "eu-west-1a"))], EU1)


def test_match_fields_in_selects_by_node_name() -> None:
    terms = [term(fields=[expr("metadata.name", "In", "eu1", "eu3")])]
    assert selected(terms, EU1)
    assert not selected(terms, EU2)


def test_match_fields_not_in_excludes_by_node_name() -> None:
    terms = [term(fields=[expr("metadata.name", "NotIn", "eu1")])]
    assert not selected(terms, EU1)
    assert selected(terms, EU2)


def test_match_fields_use_the_node_name_not_its_hostname_label() -> None:
    view = node("ip-10-0-3-7.eu-west-1.compute.internal", labels={"kubernetes.io/hostname": "ip-10-0-3-7"})
    assert selected(
        [term(fields=[expr("metadata.name", "In", "ip-10-0-3-7.eu-west-1.compute.internal")])], view
    )
    assert not selected([term(fields=[expr("metadata.name", "In", "ip-10-0-3-7")])], view)


def test_match_fields_on_another_field_never_matches_with_in() -> None:
    assert not selected([term(fields=[expr("spec.providerID", "In", "kwok://eu1")])], EU1)


# -- tolerations ---------------------------------------------------------------------------------

DEDICATED = Taint("dedicated", "storage", "NoSchedule")


def test_exists_without_key_tolerates_every_taint() -> None:
    everything = [{"operator": "Exists"}]
    assert tolerates(everything, DEDICATED)
    assert tolerates(everything, Taint("node.kubernetes.io/not-ready", "", "NoExecute"))


def test_exists_with_key_tolerates_only_that_key() -> None:
    assert tolerates([{"key": "dedicated", "operator": "Exists"}], DEDICATED)
    assert not tolerates([{"key": "gpu", "operator": "Exists"}], DEDICATED)


def test_equal_needs_key_and_value() -> None:
    assert tolerates([{"key": "dedicated", "operator": "Equal", "value": "storage"}], DEDICATED)
    assert not tolerates([{"key": "dedicated", "operator": "Equal", "value": "ml"}], DEDICATED)


def test_operator_defaults_to_equal() -> None:
    assert tolerates([{"key": "dedicated", "value": "storage"}], DEDICATED)
    assert not tolerates([{"key": "dedicated"}], DEDICATED)


def test_equal_without_value_tolerates_a_taint_without_value() -> None:
    assert tolerates([{"key": "maintenance", "operator": "Equal"}], Taint("maintenance", "", "NoSchedule"))


def test_toleration_effect_must_match_the_taint_effect() -> None:
    assert tolerates([{"key": "dedicated", "operator": "Exists", "effect": "NoSchedule"}], DEDICATED)
    assert not tolerates([{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}], DEDICATED)


def test_toleration_without_effect_matches_every_effect() -> None:
    toleration = [{"key": "dedicated", "operator": "Equal", "value": "storage"}]
    for effect in ("NoSchedule", "PreferNoSchedule", "NoExecute"):
        assert tolerates(toleration, Taint("dedicated", "storage", effect))


def test_any_of_several_tolerations_is_enough() -> None:
    tolerations = [{"key": "gpu", "operator": "Exists"}, {"key": "dedicated", "operator": "Exists"}]
    assert tolerates(tolerations, DEDICATED)


def test_no_tolerations_tolerate_nothing() -> None:
    assert not tolerates([], DEDICATED)


# -- eligibility ---------------------------------------------------------------------------------

NOT_READY_TAINTS = [
    taint("node.kubernetes.io/not-ready", "NoSchedule"),
    taint("node.kubernetes.io/not-ready", "NoExecute"),
]
CORDON_TAINT = taint("node.kubernetes.io/unschedulable", "NoSchedule")


def test_healthy_old_node_is_eligible() -> None:
    assert reason(node()) is None


def test_deleting_node_is_skipped() -> None:
    assert reason(node(deleting=True)) is SkipReason.DELETING


@pytest.mark.parametrize("ready", ["False", "Unknown"])
def test_not_ready_node_is_skipped(ready: str) -> None:
    assert reason(node(ready=ready, taints=NOT_READY_TAINTS)) is SkipReason.NOT_READY


def test_node_without_ready_condition_is_not_ready() -> None:
    raw = node_json()
    raw["status"]["conditions"] = [c for c in raw["status"]["conditions"] if c["type"] != "Ready"]
    assert reason(NodeView.of(raw)) is SkipReason.NOT_READY


def test_cordoned_node_is_skipped_as_cordoned() -> None:
    assert reason(node(unschedulable=True, taints=[CORDON_TAINT])) is SkipReason.CORDONED


@pytest.mark.parametrize("effect", ["NoSchedule", "NoExecute"])
def test_untolerated_scheduling_taint_skips_node(effect: str) -> None:
    assert reason(node(taints=[taint("dedicated", effect, "ml")])) is SkipReason.TAINTED


def test_prefer_no_schedule_taint_is_ignored() -> None:
    assert reason(node(taints=[taint("dedicated", "PreferNoSchedule", "ml")])) is None


def test_tolerated_taint_leaves_node_eligible() -> None:
    view = node(taints=[taint("dedicated", "NoSchedule", "storage")])
    tolerations = [{"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}]
    assert reason(view, tolerations) is None


def test_one_untolerated_taint_among_tolerated_ones_skips_node() -> None:
    view = node(taints=[taint("dedicated", "NoSchedule", "storage"), taint("gpu", "NoExecute", "a100")])
    assert reason(view, [{"key": "dedicated", "operator": "Exists"}]) is SkipReason.TAINTED


def test_node_younger_than_grace_is_too_new() -> None:
    assert reason(node(created=NOW - 30, ready_since=NOW - 20)) is SkipReason.TOO_NEW


def test_node_exactly_grace_old_is_eligible() -> None:
    assert reason(node(created=NOW - GRACE, ready_since=NOW - GRACE)) is None


def test_node_ready_again_within_grace_is_recovering() -> None:
    assert reason(node(created=NOW - 30 * DAY, ready_since=NOW - 45)) is SkipReason.RECOVERING


def test_zero_grace_makes_new_and_recovering_nodes_eligible() -> None:
    assert reason(node(created=NOW - 1, ready_since=NOW - 1), grace=0) is None
    assert reason(node(created=NOW, ready_since=NOW), grace=0) is None


def test_node_without_creation_timestamp_is_not_too_new() -> None:
    raw = node_json()
    del raw["metadata"]["creationTimestamp"]
    assert reason(NodeView.of(raw)) is None


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (
            {
                "deleting": True,
                "ready": "Unknown",
                "unschedulable": True,
                "taints": [*NOT_READY_TAINTS, CORDON_TAINT],
                "created": NOW - 5,
                "ready_since": NOW - 5,
            },
            SkipReason.DELETING,
        ),
        (
            {"ready": "False", "unschedulable": True, "taints": [*NOT_READY_TAINTS, CORDON_TAINT]},
            SkipReason.NOT_READY,
        ),
        ({"unschedulable": True, "taints": [CORDON_TAINT]}, SkipReason.CORDONED),
        ({"taints": [taint("dedicated", "NoSchedule")], "created": NOW - 5}, SkipReason.TAINTED),
        ({"created": NOW - 5, "ready_since": NOW - 5}, SkipReason.TOO_NEW),
    ],
    ids=["deleting", "not-ready", "cordoned", "tainted", "too-new"],
)
def test_most_fundamental_reason_wins_when_several_apply(
    fields: dict[str, Any], expected: SkipReason
) -> None:
    assert reason(node(**fields)) is expected


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"ready_since": NOW - 100}, None),  # Ready since before the run: it was fit throughout
        ({"ready_since": NOW - 5}, SkipReason.NOT_READY),  # NotReady mid-run, Ready again now
        ({"ready": "False", "ready_since": NOW - 5}, None),  # NotReady now: skip_reason says so
    ],
)
def test_a_node_that_was_not_ready_at_some_time_during_a_run_was_unwell(
    fields: dict[str, Any], expected: SkipReason | None
) -> None:
    assert unwell_since(node(**fields), started=NOW - 10) is expected
