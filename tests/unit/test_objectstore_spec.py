"""The ObjectStoreProbe CRD and model/objectstore.py state the same defaults; parse() reads every field."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from volprobe.model.objectstore import (
    DEFAULT_ADDRESSING,
    DEFAULT_CHECKS,
    DEFAULT_INTERVAL_SECONDS,
    DEFAULT_KEY_PREFIX,
    DEFAULT_PAYLOAD_BYTES,
    DEFAULT_REGION,
    DEFAULT_SECRET_KEYS,
    DEFAULT_TIMEOUTS,
    Checks,
    CredentialsError,
    ObjectStoreSpec,
    SecretRef,
    TLSSettings,
    credentials_from_secret,
    parse,
)
from volprobe.model.spec import SpecError

CRD = Path(__file__).parents[2] / "charts" / "volprobe" / "crds" / "volprobe.io_objectstoreprobes.yaml"


def schema() -> dict[str, Any]:
    document = yaml.safe_load(CRD.read_text())
    spec: dict[str, Any] = document["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return spec


def defaults(node: dict[str, Any], path: str = "") -> Iterator[tuple[str, Any]]:
    if "default" in node:
        yield path, node["default"]
    for name, child in (node.get("properties") or {}).items():
        yield from defaults(child, f"{path}.{name}" if path else name)


def test_crd_defaults_equal_the_models() -> None:
    assert dict(defaults(schema())) == {
        "region": DEFAULT_REGION,
        "addressingStyle": DEFAULT_ADDRESSING,
        "keyPrefix": DEFAULT_KEY_PREFIX,
        **{f"credentialsSecret.{key}": value for key, value in DEFAULT_SECRET_KEYS.items()},
        "tls.insecureSkipVerify": TLSSettings().insecure_skip_verify,
        "intervalSeconds": DEFAULT_INTERVAL_SECONDS,
        "timeouts": {},
        **{f"timeouts.{key}": value for key, value in DEFAULT_TIMEOUTS.items()},
        "payloadBytes": DEFAULT_PAYLOAD_BYTES,
        "checks": {},
        **{f"checks.{key}": value for key, value in DEFAULT_CHECKS.items()},
    }


def probe(**spec: Any) -> dict[str, Any]:
    body = {"endpoint": "http://10.96.0.80:7070", "bucket": "volprobe", "credentialsSecret": {"name": "s3"}}
    return {"metadata": {"name": "store", "uid": "u-1", "generation": 3}, "spec": {**body, **spec}}


def test_a_minimal_probe_gets_every_default() -> None:
    assert parse(probe()) == ObjectStoreSpec(
        name="store",
        uid="u-1",
        generation=3,
        endpoint="http://10.96.0.80:7070",
        bucket="volprobe",
        credentials=SecretRef("s3"),
    )


def test_every_field_is_read() -> None:
    parsed = parse(
        probe(
            endpoint="https://s3.example.com:9000/",
            region="eu-west-3",
            addressingStyle="VirtualHosted",
            keyPrefix="probes/s3/",
            credentialsSecret={
                "name": "keys",
                "accessKeyIdKey": "id",
                "secretAccessKeyKey": "secret",
                "sessionTokenKey": "token",
            },
            tls={"caBundle": "-----BEGIN CERTIFICATE-----\n…\n-----END CERTIFICATE-----\n"},
            intervalSeconds=15,
            timeouts={"operationSeconds": 3, "runSeconds": 20},
            payloadBytes=4096,
            checks={
                "canary": False,
                "list": False,
                "listPrefixKeys": 0,
                "conditionalWrite": False,
                "multipart": False,
            },
        )
    )
    assert parsed.endpoint == "https://s3.example.com:9000"
    assert parsed.region == "eu-west-3"
    assert parsed.virtual_hosted
    assert parsed.credentials == SecretRef("keys", "id", "secret", "token")
    assert parsed.tls.ca_bundle.startswith("-----BEGIN")
    assert (parsed.interval, parsed.operation_timeout, parsed.run_timeout) == (15.0, 3.0, 20.0)
    assert parsed.payload_bytes == 4096
    assert parsed.checks == Checks(False, False, 0, False, False)
    assert parsed.layout.canary == "probes/s3/store/canary"
    assert parsed.layout.seed(7) == "probes/s3/store/seed/00007"
    assert parsed.layout.run_object("r1") == "probes/s3/store/runs/r1"
    assert parsed.layout.upload("r1") == "probes/s3/store/multipart/r1"
    assert parsed.target == "https://s3.example.com:9000/volprobe"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"bucket": None}, "spec.bucket is required"),
        ({"credentialsSecret": {}}, "credentialsSecret.name is required"),
        ({"endpoint": "s3.example.com"}, "must be http(s)://host[:port]"),
        ({"endpoint": "http://host/path"}, "must be http(s)://host[:port]"),
        ({"endpoint": "http://user:pw@host"}, "must not carry credentials"),
        ({"tls": {"insecureSkipVerify": True}}, "applies only to an https:// endpoint"),
        (
            {"endpoint": "https://h", "tls": {"insecureSkipVerify": True, "caBundle": "x"}},
            "caBundle or insecureSkipVerify, not both",
        ),
        ({"timeouts": {"operationSeconds": 30, "runSeconds": 10}}, "at least operationSeconds"),
        ({"intervalSeconds": "often"}, "unreadable ObjectStoreProbe spec"),
    ],
)
def test_objects_that_bypassed_the_schema_are_refused(spec: dict[str, Any], message: str) -> None:
    with pytest.raises(SpecError, match=re.escape(message)):
        parse(probe(**spec))


def secret(**data: str) -> dict[str, Any]:
    return {"data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()}}


def test_credentials_come_from_the_named_keys() -> None:
    ref = SecretRef("keys", "id", "secret", "token")
    assert credentials_from_secret(secret(id="AKID", secret="s3cr3t\n", token="t"), ref) == (
        "AKID",
        "s3cr3t",
        "t",
    )
    assert credentials_from_secret(
        secret(AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY="b"), SecretRef("keys")
    ) == ("a", "b", "")


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        (None, "Secret keys not found in the controller's namespace"),
        (secret(AWS_ACCESS_KEY_ID="a"), "has no (or an empty) AWS_SECRET_ACCESS_KEY"),
        (
            secret(AWS_ACCESS_KEY_ID="a", AWS_SECRET_ACCESS_KEY=""),
            "has no (or an empty) AWS_SECRET_ACCESS_KEY",
        ),
        ({"data": {"AWS_ACCESS_KEY_ID": "YQ==", "AWS_SECRET_ACCESS_KEY": "not base64!"}}, "is not base64"),
    ],
)
def test_a_missing_or_broken_secret_is_named_without_its_values(
    obj: dict[str, Any] | None, message: str
) -> None:
    with pytest.raises(CredentialsError, match=re.escape(message)) as raised:
        credentials_from_secret(obj, SecretRef("keys"))
    assert "not base64!" not in str(raised.value)
