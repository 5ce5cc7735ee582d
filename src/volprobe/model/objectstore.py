"""An ObjectStoreProbe as the controller uses it: typed, defaulted, immutable; and where its objects live.

The API server applies the CRD's defaults and validation first (charts/volprobe/crds/
volprobe.io_objectstoreprobes.yaml); the defaults here serve `volprobe check` (which has no
object) and objects written before a schema change. tests/unit/test_objectstore_spec.py checks
that both places agree.

Every object a probe makes lives under one prefix, `<keyPrefix><probe name>/`, so the probe can
find (and delete) what earlier runs left, and deleting the probe can delete all of it.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from volprobe.model.spec import API_GROUP, API_VERSION, SpecError

KIND = "ObjectStoreProbe"
PLURAL = "objectstoreprobes"
PATH = f"/apis/{API_GROUP}/{API_VERSION}/{PLURAL}"

DEFAULT_INTERVAL_SECONDS = 60
DEFAULT_REGION = "us-east-1"
DEFAULT_ADDRESSING = "Path"
DEFAULT_KEY_PREFIX = "volprobe/"
DEFAULT_PAYLOAD_BYTES = 64 * 1024
DEFAULT_TIMEOUTS = {"operationSeconds": 10, "runSeconds": 60}
DEFAULT_CHECKS: dict[str, bool | int] = {
    "canary": True,
    "list": True,
    "listPrefixKeys": 100,
    "conditionalWrite": True,
    "multipart": True,
}
DEFAULT_SECRET_KEYS = {"accessKeyIdKey": "AWS_ACCESS_KEY_ID", "secretAccessKeyKey": "AWS_SECRET_ACCESS_KEY"}


@dataclass(frozen=True)
class SecretRef:
    """Where the key pair is: a Secret in the controller's own namespace, never another one."""

    name: str
    access_key_id_key: str = DEFAULT_SECRET_KEYS["accessKeyIdKey"]
    secret_access_key_key: str = DEFAULT_SECRET_KEYS["secretAccessKeyKey"]
    session_token_key: str = ""


@dataclass(frozen=True)
class TLSSettings:
    ca_bundle: str = ""
    """PEM certificates to trust instead of the system's (empty: the system trust store)."""
    insecure_skip_verify: bool = False


@dataclass(frozen=True)
class Checks:
    canary: bool = bool(DEFAULT_CHECKS["canary"])
    list: bool = bool(DEFAULT_CHECKS["list"])
    list_prefix_keys: int = int(DEFAULT_CHECKS["listPrefixKeys"])
    conditional_write: bool = bool(DEFAULT_CHECKS["conditionalWrite"])
    multipart: bool = bool(DEFAULT_CHECKS["multipart"])


@dataclass(frozen=True)
class Layout:
    """The keys of one probe, all under `base`."""

    base: str

    @property
    def canary(self) -> str:
        return f"{self.base}canary"

    @property
    def seed_prefix(self) -> str:
        return f"{self.base}seed/"

    def seed(self, index: int) -> str:
        return f"{self.seed_prefix}{index:05d}"

    @property
    def runs_prefix(self) -> str:
        return f"{self.base}runs/"

    def run_object(self, run: str) -> str:
        return f"{self.runs_prefix}{run}"

    @property
    def uploads_prefix(self) -> str:
        return f"{self.base}multipart/"

    def upload(self, run: str) -> str:
        return f"{self.uploads_prefix}{run}"


@dataclass(frozen=True)
class ObjectStoreSpec:
    """Everything the controller needs to know about one ObjectStoreProbe."""

    name: str
    endpoint: str
    bucket: str
    credentials: SecretRef
    uid: str = ""
    generation: int = 0
    region: str = DEFAULT_REGION
    virtual_hosted: bool = False
    key_prefix: str = DEFAULT_KEY_PREFIX
    tls: TLSSettings = field(default_factory=TLSSettings)
    interval: float = DEFAULT_INTERVAL_SECONDS
    operation_timeout: float = DEFAULT_TIMEOUTS["operationSeconds"]
    run_timeout: float = DEFAULT_TIMEOUTS["runSeconds"]
    payload_bytes: int = DEFAULT_PAYLOAD_BYTES
    checks: Checks = field(default_factory=Checks)

    @property
    def storage_class(self) -> str:
        """An object store probes no StorageClass: its series leave that label empty."""
        return ""

    def enables(self, kind: str) -> bool:
        """Every kind of the ObjectStoreProbe resource runs (there is one)."""
        return True

    @property
    def layout(self) -> Layout:
        return Layout(f"{self.key_prefix}{self.name}/")

    @property
    def https(self) -> bool:
        return self.endpoint.startswith("https://")

    @property
    def target(self) -> str:
        """The endpoint and bucket as shown to people (status, logs, Events): never a secret."""
        return f"{self.endpoint.rstrip('/')}/{self.bucket}"


def _endpoint(value: object) -> str:
    if not isinstance(value, str):
        raise SpecError("spec.endpoint is required")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path.strip("/") or parts.query:
        raise SpecError(f"spec.endpoint must be http(s)://host[:port], not {value!r}")
    if parts.username or parts.password:
        raise SpecError("spec.endpoint must not carry credentials")
    return f"{parts.scheme}://{parts.netloc}"


def parse(obj: Mapping[str, Any]) -> ObjectStoreSpec:
    """Read an ObjectStoreProbe object (as the API server returns it) into an ObjectStoreSpec."""
    metadata = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    bucket = spec.get("bucket")
    if not isinstance(bucket, str) or not bucket:
        raise SpecError("spec.bucket is required")
    secret = spec.get("credentialsSecret") or {}
    if not isinstance(secret.get("name"), str) or not secret["name"]:
        raise SpecError("spec.credentialsSecret.name is required")
    secret_keys = {**DEFAULT_SECRET_KEYS, **secret}
    tls = spec.get("tls") or {}
    timeouts = {**DEFAULT_TIMEOUTS, **(spec.get("timeouts") or {})}
    checks = {**DEFAULT_CHECKS, **(spec.get("checks") or {})}
    try:
        parsed = ObjectStoreSpec(
            name=str(metadata["name"]),
            uid=str(metadata.get("uid", "")),
            generation=int(metadata.get("generation", 0)),
            endpoint=_endpoint(spec.get("endpoint")),
            bucket=bucket,
            credentials=SecretRef(
                name=str(secret_keys["name"]),
                access_key_id_key=str(secret_keys["accessKeyIdKey"]),
                secret_access_key_key=str(secret_keys["secretAccessKeyKey"]),
                session_token_key=str(secret_keys.get("sessionTokenKey") or ""),
            ),
            region=str(spec.get("region") or DEFAULT_REGION),
            virtual_hosted=str(spec.get("addressingStyle") or DEFAULT_ADDRESSING) == "VirtualHosted",
            key_prefix=str(spec.get("keyPrefix", DEFAULT_KEY_PREFIX)),
            tls=TLSSettings(
                ca_bundle=str(tls.get("caBundle") or ""),
                insecure_skip_verify=bool(tls.get("insecureSkipVerify", False)),
            ),
            interval=float(spec.get("intervalSeconds", DEFAULT_INTERVAL_SECONDS)),
            operation_timeout=float(timeouts["operationSeconds"]),
            run_timeout=float(timeouts["runSeconds"]),
            payload_bytes=int(spec.get("payloadBytes", DEFAULT_PAYLOAD_BYTES)),
            checks=Checks(
                canary=bool(checks["canary"]),
                list=bool(checks["list"]),
                list_prefix_keys=int(checks["listPrefixKeys"]),
                conditional_write=bool(checks["conditionalWrite"]),
                multipart=bool(checks["multipart"]),
            ),
        )
    except (KeyError, TypeError, ValueError) as error:
        raise SpecError(f"unreadable ObjectStoreProbe spec: {error}") from None
    if parsed.tls.insecure_skip_verify and parsed.tls.ca_bundle:
        raise SpecError("spec.tls: set caBundle or insecureSkipVerify, not both")
    if not parsed.https and (parsed.tls.insecure_skip_verify or parsed.tls.ca_bundle):
        raise SpecError("spec.tls applies only to an https:// endpoint")
    if parsed.run_timeout < parsed.operation_timeout:
        raise SpecError("spec.timeouts.runSeconds must be at least operationSeconds")
    return parsed


class CredentialsError(ValueError):
    """The Secret does not hold the key pair the probe names (the message never quotes a value)."""


def credentials_from_secret(secret: Mapping[str, Any] | None, ref: SecretRef) -> tuple[str, str, str]:
    """(access key id, secret access key, session token) from a Secret object as the API returns it."""
    if secret is None:
        raise CredentialsError(f"Secret {ref.name} not found in the controller's namespace")
    data = secret.get("data") or {}
    wanted = [ref.access_key_id_key, ref.secret_access_key_key]
    if ref.session_token_key:
        wanted.append(ref.session_token_key)
    missing = [key for key in wanted if not data.get(key)]
    if missing:
        raise CredentialsError(f"Secret {ref.name} has no (or an empty) {', '.join(missing)}")
    values = []
    for key in wanted:
        try:
            values.append(base64.b64decode(data[key], validate=True).decode().strip())
        except (ValueError, UnicodeDecodeError):
            raise CredentialsError(f"Secret {ref.name}: {key} is not base64-encoded UTF-8") from None
    return values[0], values[1], values[2] if len(values) > 2 else ""
