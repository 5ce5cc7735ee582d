"""AWS Signature Version 4 for S3 requests: canonical request, string to sign, Authorization.

Hand-rolled rather than taken from botocore (docs/design.md, "Choosing the S3 client"): it is
the one piece of S3 a probe cannot do without, it is small and fully specified, and it is
tested against botocore's signer and AWS's published examples (tests/unit/test_objectstore_sigv4.py).
Standard library only, so a future in-pod object-store check (agent side) can use it as is.

The signer only computes headers; it never sends anything, reads no clock and no environment.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from urllib.parse import quote

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


@dataclass(frozen=True)
class Credentials:
    """An access key pair. The secret never appears in repr(), so it cannot leak into a log line."""

    access_key_id: str
    secret_access_key: str = field(repr=False)
    session_token: str = field(default="", repr=False)


def uri_encode(text: str, *, keep_slash: bool) -> str:
    """Percent-encode everything but RFC 3986 unreserved characters (S3 never double-encodes)."""
    return quote(text, safe="/~" if keep_slash else "~")


def canonical_query(params: Iterable[tuple[str, str]]) -> str:
    """Sorted by encoded name, then encoded value; a flag such as `?uploads` becomes `uploads=`."""
    encoded = sorted((uri_encode(k, keep_slash=False), uri_encode(v, keep_slash=False)) for k, v in params)
    return "&".join(f"{k}={v}" for k, v in encoded)


def _trim(value: str) -> str:
    return " ".join(value.strip().split())


def canonical_request(
    method: str,
    path: str,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
) -> tuple[str, str]:
    """(the canonical request, the signed-headers list). `path` is the already encoded path."""
    lowered = sorted((name.lower(), _trim(value)) for name, value in headers.items())
    signed = ";".join(name for name, _ in lowered)
    lines = [
        method.upper(),
        path or "/",
        canonical_query(params),
        *(f"{name}:{value}" for name, value in lowered),
        "",
        signed,
        payload_hash,
    ]
    return "\n".join(lines), signed


def signing_key(secret: str, day: str, region: str, service: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), day.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def sign(
    method: str,
    host: str,
    path: str,
    *,
    params: Iterable[tuple[str, str]],
    headers: Mapping[str, str],
    payload_hash: str,
    credentials: Credentials,
    region: str,
    when: datetime,
    service: str = "s3",
) -> dict[str, str]:
    """The headers to add to a request so that the server accepts it as signed by `credentials`.

    Signs `host`, `x-amz-date`, `x-amz-content-sha256`, the security token if any, and every
    header in `headers` (the caller passes only headers it wants covered: checksums,
    conditions, metadata). `host` is the Host header as sent (with a non-default port).
    """
    stamp = when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    day = stamp[:8]
    added = {"x-amz-date": stamp, "x-amz-content-sha256": payload_hash}
    if credentials.session_token:
        added["x-amz-security-token"] = credentials.session_token
    covered = {**{k.lower(): v for k, v in headers.items()}, "host": host, **added}
    request, signed = canonical_request(method, path, params, covered, payload_hash)
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = "\n".join([ALGORITHM, stamp, scope, hashlib.sha256(request.encode()).hexdigest()])
    key = signing_key(credentials.secret_access_key, day, region, service)
    signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    added["authorization"] = (
        f"{ALGORITHM} Credential={credentials.access_key_id}/{scope}, "
        f"SignedHeaders={signed}, Signature={signature}"
    )
    return added
