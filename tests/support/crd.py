"""The StorageProbe schema, checked locally, and the names Kubernetes accepts for each kind of object.

`violations()` walks an object along the CRD's structural schema and reports what the API server
would: the `x-kubernetes-validations` rules, evaluated by cel-python (a CEL implementation whose
`matches` is RE2, like the API server's), and the plain keywords `required`, `enum`,
`minLength`, `maxLength`, `pattern`, `maxItems` and `maxProperties`. What it cannot judge it
leaves to the integration tier, which sends the same objects to the real API server: transition
rules (`oldSelf`), rules calling Kubernetes' own CEL functions (`quantity`, `isQuantity`),
defaulting, types and formats.

The example names (`NAMES`) are shared by both tiers; the integration tier also checks each
verdict against Kubernetes' own validation of a real object of that kind.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

import celpy
import yaml
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

CRD = Path(__file__).resolve().parents[2] / "charts" / "volprobe" / "crds" / "volprobe.io_storageprobes.yaml"

KUBERNETES_ONLY_FUNCTIONS = ("quantity(", "isQuantity(")
"""CEL functions of the Kubernetes library that cel-python lacks; rules using them are not evaluated here."""


@cache
def crd() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(CRD.read_text())
    return document


def spec_schema() -> dict[str, Any]:
    (version,) = crd()["spec"]["versions"]
    spec: dict[str, Any] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


@dataclass(frozen=True)
class Violation:
    path: str
    message: str


@cache
def program(rule: str) -> celpy.Runner:
    environment = celpy.Environment()
    return environment.program(environment.compile(rule))


def rules(node: Any) -> Iterator[str]:
    """Every x-kubernetes-validations rule below `node` (by default, in the whole CRD)."""
    if isinstance(node, dict):
        yield from (rule["rule"] for rule in node.get("x-kubernetes-validations", []))
        for child in node.values():
            yield from rules(child)
    elif isinstance(node, list):
        for child in node:
            yield from rules(child)


def locally_evaluable(rule: str) -> bool:
    return "oldSelf" not in rule and not any(name in rule for name in KUBERNETES_ONLY_FUNCTIONS)


def holds(rule: str, value: Any) -> bool:
    """Evaluate one rule with `self` bound to `value`; a rule that errors is a bug in the CRD."""
    result = program(rule).evaluate({"self": json_to_cel(value)})
    if isinstance(result, CELEvalError):
        raise result
    return bool(result)


def violations(value: Any, schema: dict[str, Any] | None = None, path: str = "spec") -> list[Violation]:
    """What the schema (by default `spec`'s) rejects in `value`, with the paths the API server uses."""
    schema = spec_schema() if schema is None else schema
    found = list(_keywords(value, schema, path))
    for rule in schema.get("x-kubernetes-validations", []):
        if locally_evaluable(rule["rule"]) and not holds(rule["rule"], value):
            found.append(Violation(path, rule["message"]))
    if isinstance(value, dict):
        properties = schema.get("properties")
        for key, child in value.items():
            child_schema = (
                properties.get(key) if properties is not None else schema.get("additionalProperties")
            )
            if isinstance(child_schema, dict):
                found += violations(
                    child, child_schema, f"{path}.{key}" if properties is not None else f"{path}[{key}]"
                )
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += violations(item, schema["items"], f"{path}[{index}]")
    return found


def _keywords(value: Any, schema: dict[str, Any], path: str) -> Iterator[Violation]:
    if "enum" in schema and value not in schema["enum"]:
        yield Violation(path, f"Unsupported value: {value!r}")
    if isinstance(value, str):
        if len(value) < schema.get("minLength", 0):
            yield Violation(path, f"should be at least {schema['minLength']} chars long")
        if len(value) > schema.get("maxLength", len(value)):
            yield Violation(path, f"Too long: may not be more than {schema['maxLength']} bytes")
        if "pattern" in schema and not re.search(schema["pattern"], value):
            yield Violation(path, f"should match {schema['pattern']!r}")
    if isinstance(value, list) and len(value) > schema.get("maxItems", len(value)):
        yield Violation(path, f"Too many: must have at most {schema['maxItems']} items")
    if isinstance(value, dict):
        if len(value) > schema.get("maxProperties", len(value)):
            yield Violation(path, f"Too many: must have at most {schema['maxProperties']} items")
        for name in schema.get("required", []):
            if name not in value:
                yield Violation(f"{path}.{name}", "Required value")


# -- the names Kubernetes accepts -------------------------------------------------------------------


class NameFormat(StrEnum):
    SUBDOMAIN = "DNS-1123 subdomain"
    """Names of StorageClasses, PriorityClasses, Secrets, Nodes: lowercase, '-' and '.', at most 253."""
    LABEL_KEY = "label key"
    """An optional DNS subdomain prefix and '/', then a name of at most 63 characters."""
    ANNOTATION_KEY = "annotation key"
    """A label key whose prefix may use capitals (Kubernetes lowercases it before checking)."""
    LABEL_VALUE = "label value"
    """Empty, or at most 63 letters, digits, '-', '_' and '.', alphanumeric at both ends."""


_SUBDOMAIN_OK = ["a", "0", "fast-ssd", "gold", "ebs.csi.aws.com", "1.2.3.4", "a-1.b-2", "a" * 253]
_SUBDOMAIN_BAD = [
    "Fast-ssd",
    "fast_ssd",
    "-a",
    "a-",
    ".a",
    "a.",
    "a..b",
    "a.-b",
    "a b",
    "a/b",
    "ssd\u00e9",
    "a" * 254,
]
_KEY_OK = [
    "team",
    "Team",
    "a_b",
    "a.b-c",
    "1",
    "example.com/owner",
    "node-role.kubernetes.io/storage",
    "a" * 63,
    f"{'p' * 253}/{'n' * 63}",
]
_KEY_BAD = [
    "/a",
    "a/",
    "a/b/c",
    "_a",
    "a_",
    "a b",
    "ex_ample.com/a",
    "a" * 64,
    f"{'p' * 254}/n",
    f"p/{'n' * 64}",
]

NAMES: dict[NameFormat, tuple[list[str], list[str]]] = {
    NameFormat.SUBDOMAIN: (_SUBDOMAIN_OK, _SUBDOMAIN_BAD),
    NameFormat.LABEL_KEY: (_KEY_OK, [*_KEY_BAD, "Example.com/a"]),
    NameFormat.ANNOTATION_KEY: ([*_KEY_OK, "Example.com/a"], _KEY_BAD),
    NameFormat.LABEL_VALUE: (
        ["", "a", "A-b_c.d", "1" * 63, "storage"],
        ["-a", "a-", "_a", "a b", "a/b", "a:b", "1" * 64],
    ),
}
"""Per format: (names Kubernetes accepts, names it rejects). The integration tier proves each verdict."""


@dataclass(frozen=True)
class NameField:
    """A StorageProbe field that names a Kubernetes object, or holds a label or annotation key/value."""

    field: str
    format: NameFormat
    message: str
    """The start of the message our rule gives (the API server's own wording for length and emptiness)."""
    spec: Callable[[str], dict[str, Any]]
    """A spec (without storageClassName unless it is the field) with `name` in this field."""


def _term(requirement: dict[str, Any]) -> dict[str, Any]:
    return {"nodeSelector": {"nodeSelectorTerms": [requirement]}}


NAME_FIELDS: list[NameField] = [
    NameField(
        "storageClassName",
        NameFormat.SUBDOMAIN,
        "storageClassName must be a valid StorageClass name",
        lambda name: {"storageClassName": name},
    ),
    NameField(
        "pod.priorityClassName",
        NameFormat.SUBDOMAIN,
        "pod.priorityClassName must be a valid PriorityClass name",
        lambda name: {"pod": {"priorityClassName": name}},
    ),
    NameField(
        "pod.imagePullSecrets[].name",
        NameFormat.SUBDOMAIN,
        "pod.imagePullSecrets names must be valid Secret names",
        lambda name: {"pod": {"imagePullSecrets": [{"name": name}]}},
    ),
    NameField(
        "nodeSelector.nodeSelectorTerms[].matchFields[].values[]",
        NameFormat.SUBDOMAIN,
        "matchFields values must be node names",
        lambda name: _term({"matchFields": [{"key": "metadata.name", "operator": "In", "values": [name]}]}),
    ),
    NameField(
        "nodeSelector.nodeSelectorTerms[].matchExpressions[].key",
        NameFormat.LABEL_KEY,
        "matchExpressions keys must be valid label keys",
        lambda name: _term({"matchExpressions": [{"key": name, "operator": "Exists"}]}),
    ),
    NameField(
        "pod.tolerations[].key",
        NameFormat.LABEL_KEY,
        "a toleration key must be a valid taint key",
        lambda name: {"pod": {"tolerations": [{"key": name, "operator": "Exists"}]}},
    ),
    NameField(
        "pod.tolerations[].value",
        NameFormat.LABEL_VALUE,
        "a toleration value must be a valid taint value",
        lambda name: {"pod": {"tolerations": [{"key": "dedicated", "operator": "Equal", "value": name}]}},
    ),
    NameField(
        "pod.labels (keys)",
        NameFormat.LABEL_KEY,
        "pod.labels keys must be valid label keys",
        lambda name: {"pod": {"labels": {name: "x"}}},
    ),
    NameField(
        "pod.labels (values)",
        NameFormat.LABEL_VALUE,
        "pod.labels values must be valid label values",
        lambda name: {"pod": {"labels": {"team": name}}},
    ),
    NameField(
        "pod.annotations (keys)",
        NameFormat.ANNOTATION_KEY,
        "pod.annotations keys must be valid annotation keys",
        lambda name: {"pod": {"annotations": {name: "x"}}},
    ),
]


def probe_spec(field: NameField, name: str) -> dict[str, Any]:
    return {"storageClassName": "standard", **field.spec(name)}


def examples() -> Iterator[tuple[NameField, str, bool]]:
    """Every (field, name, accepted by Kubernetes) to try."""
    for field in NAME_FIELDS:
        accepted, rejected = NAMES[field.format]
        for name in accepted:
            yield field, name, True
        for name in rejected:
            yield field, name, False
