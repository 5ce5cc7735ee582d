"""The CRD schema and spec.py state the same defaults, and parse_probe() reads every field of a probe."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.crd import (
    NAME_FIELDS,
    NameField,
    crd,
    examples,
    locally_evaluable,
    probe_spec,
    program,
    rules,
    spec_schema,
    violations,
)
from volprobe.model.spec import (
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_IO,
    DEFAULT_NODE_GRACE_SECONDS,
    DEFAULT_RESOURCES,
    DEFAULT_TIMEOUTS,
    DEFAULT_VOLUME,
    PodSettings,
    ProbeSpec,
    SpecError,
    Timeouts,
    Volume,
    parse_probe,
)


def defaults(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    """Every `default` in the schema below `node`, keyed by its dotted field path."""
    if "default" in node:
        yield path, node["default"]
    for name, child in (node.get("properties") or {}).items():
        yield from defaults(child, f"{path}.{name}" if path else name)
    if isinstance(node.get("items"), dict):
        yield from defaults(node["items"], f"{path}[]")


SPEC_DEFAULTS: dict[str, Any] = {
    "intervalSeconds": DEFAULT_INTERVAL_SECONDS,
    "nodeGracePeriodSeconds": DEFAULT_NODE_GRACE_SECONDS,
    "timeouts": {},
    **{f"timeouts.{key}": value for key, value in DEFAULT_TIMEOUTS.items()},
    "provision": {},
    "provision.enabled": ProbeSpec("", "", 0, "x").enables("provision"),
    "mount": {},
    "mount.enabled": ProbeSpec("", "", 0, "x").enables("mount"),
    "volume": {},
    **{f"volume.{key}": value for key, value in DEFAULT_VOLUME.items()},
    "io": {},
    **{f"io.{key}": value for key, value in DEFAULT_IO.items()},
    "pod": {},
    "pod.resources": DEFAULT_RESOURCES,
}
"""Each CRD default and the value spec.py uses when the field is absent."""


def minimal(**spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "volprobe.io/v1alpha1",
        "kind": "StorageProbe",
        "metadata": {"name": "fast-ssd", "uid": "1d4a5b6c-7e8f-4a0b-9c1d-2e3f4a5b6c7d", "generation": 4},
        "spec": {"storageClassName": "fast-ssd", **spec},
    }


# -- CRD defaults against spec.py ------------------------------------------------------------------


def test_every_crd_default_has_a_spec_py_counterpart() -> None:
    assert set(dict(defaults(spec_schema()))) == set(SPEC_DEFAULTS)


@pytest.mark.parametrize("path", sorted(SPEC_DEFAULTS))
def test_crd_default_equals_spec_py_default(path: str) -> None:
    assert dict(defaults(spec_schema()))[path] == SPEC_DEFAULTS[path]


def test_dataclass_defaults_equal_the_module_defaults() -> None:
    timeouts = Timeouts()
    assert [timeouts.provision, timeouts.schedule, timeouts.mount, timeouts.io, timeouts.cleanup] == [
        DEFAULT_TIMEOUTS[key]
        for key in ("provisionSeconds", "scheduleSeconds", "mountSeconds", "ioSeconds", "cleanupSeconds")
    ]
    assert (Volume().size, Volume().mode, Volume().access_mode) == tuple(DEFAULT_VOLUME.values())
    assert PodSettings().resources == DEFAULT_RESOURCES


def test_default_block_size_is_allowed_and_divides_the_default_payload() -> None:
    io = spec_schema()["properties"]["io"]["properties"]
    assert DEFAULT_IO["blockBytes"] in io["blockBytes"]["enum"]
    assert DEFAULT_IO["payloadBytes"] % DEFAULT_IO["blockBytes"] == 0


# -- parse -----------------------------------------------------------------------------------------------


def test_minimal_object_gets_every_default() -> None:
    spec = parse_probe(minimal())
    assert spec == ProbeSpec(
        name="fast-ssd",
        uid="1d4a5b6c-7e8f-4a0b-9c1d-2e3f4a5b6c7d",
        generation=4,
        storage_class="fast-ssd",
    )
    assert spec.interval == DEFAULT_INTERVAL_SECONDS
    assert spec.node_grace == DEFAULT_NODE_GRACE_SECONDS
    assert spec.timeouts == Timeouts(120, 60, 120, 60, 120)
    assert spec.volume == Volume("64Mi", "Filesystem", "ReadWriteOnce")
    assert (spec.payload_bytes, spec.block_bytes) == (4194304, 1048576)
    assert spec.pod.resources == DEFAULT_RESOURCES
    assert spec.disabled_kinds == frozenset()
    assert spec.node_selector_terms == ()


def test_object_defaulted_by_the_api_server_parses_like_a_minimal_one() -> None:
    """What the API server stores after applying the CRD defaults to a minimal object."""
    crd_defaults = dict(defaults(spec_schema()))
    spec: dict[str, Any] = {}
    for path, value in crd_defaults.items():
        *parents, leaf = path.split(".")
        place = spec
        for parent in parents:
            place = place.setdefault(parent, {})
        place.setdefault(leaf, copy.deepcopy(value))
    assert parse_probe(minimal(**spec)) == parse_probe(minimal())


FULL_SPEC: dict[str, Any] = {
    "nodeSelector": {
        "nodeSelectorTerms": [
            {"matchExpressions": [{"key": "node-role.kubernetes.io/storage", "operator": "Exists"}]},
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["worker-9"]}]},
        ]
    },
    "intervalSeconds": 300,
    "timeouts": {
        "provisionSeconds": 600,
        "scheduleSeconds": 30,
        "mountSeconds": 240,
        "ioSeconds": 90,
        "cleanupSeconds": 180,
    },
    "provision": {"enabled": False},
    "mount": {"enabled": True},
    "nodeGracePeriodSeconds": 0,
    "volume": {"size": "1Gi", "volumeMode": "Block", "accessMode": "ReadWriteOncePod"},
    "io": {"payloadBytes": 16777216, "blockBytes": 65536},
    "pod": {
        "resources": {"requests": {"cpu": "20m", "memory": "48Mi"}, "limits": {"memory": "96Mi"}},
        "tolerations": [
            {"key": "dedicated", "operator": "Equal", "value": "storage", "effect": "NoSchedule"}
        ],
        "priorityClassName": "system-node-critical",
        "imagePullSecrets": [{"name": "regcred"}, {"name": "mirror"}],
        "labels": {"team": "storage"},
        "annotations": {"example.com/owner": "sre"},
    },
}


def test_full_object_reads_every_field() -> None:
    spec = parse_probe(minimal(**FULL_SPEC))
    assert spec.node_selector_terms == tuple(FULL_SPEC["nodeSelector"]["nodeSelectorTerms"])
    assert spec.interval == 300
    assert spec.timeouts == Timeouts(provision=600, schedule=30, mount=240, io=90, cleanup=180)
    assert spec.disabled_kinds == {"provision"}
    assert spec.node_grace == 0
    assert spec.volume == Volume(size="1Gi", mode="Block", access_mode="ReadWriteOncePod")
    assert spec.volume.block
    assert (spec.payload_bytes, spec.block_bytes) == (16777216, 65536)
    assert spec.pod == PodSettings(
        resources=FULL_SPEC["pod"]["resources"],
        tolerations=tuple(FULL_SPEC["pod"]["tolerations"]),
        priority_class_name="system-node-critical",
        image_pull_secrets=("regcred", "mirror"),
        labels={"team": "storage"},
        annotations={"example.com/owner": "sre"},
    )


def test_partial_timeouts_keep_the_other_defaults() -> None:
    assert parse_probe(minimal(timeouts={"ioSeconds": 30})).timeouts == Timeouts(io=30)


def test_numbers_are_read_as_floats_for_timing() -> None:
    spec = parse_probe(minimal(intervalSeconds=90))
    assert isinstance(spec.interval, float)
    assert isinstance(spec.timeouts.io, float)


@pytest.mark.parametrize(
    "spec",
    [{}, {"storageClassName": ""}, {"storageClassName": None}, {"storageClassName": 7}],
    ids=["missing", "empty", "null", "number"],
)
def test_storage_class_is_required(spec: dict[str, Any]) -> None:
    obj = minimal()
    obj["spec"] = {key: value for key, value in obj["spec"].items() if key != "storageClassName"} | spec
    with pytest.raises(SpecError, match="storageClassName"):
        parse_probe(obj)


def test_object_without_spec_raises_spec_error() -> None:
    with pytest.raises(SpecError):
        parse_probe({"metadata": {"name": "fast-ssd"}})


@pytest.mark.parametrize(
    "obj",
    [
        {"spec": {"storageClassName": "fast-ssd"}},
        minimal(intervalSeconds="often"),
        minimal(timeouts={"ioSeconds": None}),
        minimal(pod={"imagePullSecrets": [{"secret": "regcred"}]}),
    ],
    ids=["no-name", "bad-interval", "null-timeout", "secret-without-name"],
)
def test_unreadable_object_raises_spec_error_only(obj: dict[str, Any]) -> None:
    with pytest.raises(SpecError):
        parse_probe(obj)


# -- timeouts ----------------------------------------------------------------------------------------


def io_bounds() -> tuple[int, int]:
    io = spec_schema()["properties"]["timeouts"]["properties"]["ioSeconds"]
    return io["minimum"], io["maximum"]


def test_agent_deadline_is_below_the_io_timeout_for_every_allowed_value() -> None:
    low, high = io_bounds()
    for seconds in range(low, high + 1):
        assert Timeouts(io=seconds).agent_deadline < seconds, seconds


def test_agent_deadline_is_four_fifths_of_the_default_io_timeout() -> None:
    assert Timeouts().agent_deadline == 48.0


def test_agent_deadline_is_at_least_three_seconds() -> None:
    assert Timeouts(io=1).agent_deadline == 3.0


# -- names: every field naming a Kubernetes object takes only what Kubernetes accepts as that name -----


def name_like_fields(schema: dict[str, Any], path: str = "") -> Iterator[str]:
    """Paths of string fields called `*Name`, `name` or `key`, and of the label and annotation maps."""
    for name, child in (schema.get("properties") or {}).items():
        where = f"{path}.{name}" if path else name
        if child.get("type") == "string" and (name.endswith("Name") or name in ("name", "key")):
            yield where
        if name in ("labels", "annotations"):
            yield f"{where} (keys)"
        yield from name_like_fields(child, where)
        if isinstance(child.get("items"), dict):
            yield from name_like_fields(child["items"], f"{where}[]")


NOT_NAMES = {
    "nodeSelector.nodeSelectorTerms[].matchFields[].key": "must be exactly metadata.name (its own rule)",
}


def test_every_name_like_field_is_validated_as_a_name() -> None:
    covered = {field.field for field in NAME_FIELDS}
    assert set(name_like_fields(spec_schema())) - set(NOT_NAMES) <= covered


def test_every_rule_but_transition_and_quantity_rules_is_checked_locally() -> None:
    all_rules = list(rules(crd()))
    local = [rule for rule in all_rules if locally_evaluable(rule)]
    assert len(local) >= len(NAME_FIELDS)
    for rule in local:
        program(rule)  # compiles
    left_to_the_api_server = [rule for rule in all_rules if not locally_evaluable(rule)]
    assert all("oldSelf" in rule or "uantity(" in rule for rule in left_to_the_api_server)


@pytest.mark.parametrize(
    ("field", "name", "accepted"),
    list(examples()),
    ids=[f"{field.field}-{'ok' if ok else 'bad'}-{name[:20]!r}" for field, name, ok in examples()],
)
def test_name_fields_take_what_kubernetes_takes(field: NameField, name: str, accepted: bool) -> None:
    messages = [violation.message for violation in violations(probe_spec(field, name))]
    if accepted:
        assert messages == []
    else:
        assert any(m.startswith((field.message, "Too long")) for m in messages), messages


def test_the_full_example_is_valid() -> None:
    assert violations({"storageClassName": "fast-ssd", **FULL_SPEC}) == []


def test_an_empty_priority_class_means_the_cluster_default() -> None:
    assert violations({"storageClassName": "fast-ssd", "pod": {"priorityClassName": ""}}) == []


def test_an_empty_storage_class_is_rejected() -> None:
    assert violations({"storageClassName": ""}) != []


@pytest.mark.parametrize(
    ("values", "valid"), [(["worker-1"], True), (["worker-1", "worker-2"], False), ([], False)]
)
def test_match_fields_take_exactly_one_node_name_as_in_a_pod(values: list[str], valid: bool) -> None:
    term = {"matchFields": [{"key": "metadata.name", "operator": "In", "values": values}]}
    found = violations({"storageClassName": "fast-ssd", "nodeSelector": {"nodeSelectorTerms": [term]}})
    assert (found == []) is valid
    if not valid:
        assert [v.message for v in found] == [
            "matchFields requirements take exactly one node name, as in a pod's node affinity: "
            "use one term per node to select several"
        ]


@pytest.mark.parametrize(
    ("toleration", "message"),
    [
        ({"operator": "Exists"}, None),
        ({"key": "", "operator": "Exists", "effect": "NoSchedule"}, None),
        ({"operator": "Equal", "value": "x"}, "a toleration without a key must have operator Exists"),
        ({"value": ""}, "a toleration without a key must have operator Exists"),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 30}, None),
        ({"key": "k", "operator": "Exists", "tolerationSeconds": 30}, "tolerationSeconds is allowed only"),
        (
            {"key": "k", "operator": "Exists", "effect": "NoSchedule", "tolerationSeconds": 30},
            "tolerationSeconds",
        ),
    ],
)
def test_tolerations_are_valid_pod_tolerations(toleration: dict[str, Any], message: str | None) -> None:
    found = [
        v.message for v in violations({"storageClassName": "fast-ssd", "pod": {"tolerations": [toleration]}})
    ]
    if message is None:
        assert found == []
    else:
        assert len(found) == 1, found
        assert found[0].startswith(message)
