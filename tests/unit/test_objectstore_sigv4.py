"""The SigV4 signer agrees with AWS's published examples and with botocore's signer."""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, datetime

import botocore.auth
import botocore.awsrequest
import botocore.credentials
import pytest

from volprobe.runtime.s3.sigv4 import (
    EMPTY_SHA256,
    Credentials,
    canonical_query,
    canonical_request,
    sign,
    signing_key,
)

# The example key pair of the S3 documentation ("Examples: Signature Calculations").
S3_DOCS = Credentials("AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY")
S3_DOCS_TIME = datetime(2013, 5, 24, tzinfo=UTC)
S3_DOCS_HOST = "examplebucket.s3.amazonaws.com"


def signature_of(headers: dict[str, str]) -> str:
    return headers["authorization"].rsplit("Signature=", 1)[1]


def signed_headers_of(headers: dict[str, str]) -> str:
    return headers["authorization"].split("SignedHeaders=", 1)[1].split(",", 1)[0]


@pytest.mark.parametrize(
    ("method", "path", "params", "headers", "payload_hash", "signed", "signature"),
    [
        pytest.param(
            "GET",
            "/test.txt",
            [],
            {"Range": "bytes=0-9"},
            EMPTY_SHA256,
            "host;range;x-amz-content-sha256;x-amz-date",
            "f0e8bdb87c964420e857bd35b5d6ed310bd44f0170aba48dd91039c6036bdb41",
            id="GET object",
        ),
        pytest.param(
            "PUT",
            "/test%24file.text",
            [],
            {"Date": "Fri, 24 May 2013 00:00:00 GMT", "x-amz-storage-class": "REDUCED_REDUNDANCY"},
            hashlib.sha256(b"Welcome to Amazon S3.").hexdigest(),
            "date;host;x-amz-content-sha256;x-amz-date;x-amz-storage-class",
            "98ad721746da40c64f1a55b78f14c238d841ea1380cd77a1b5971af0ece108bd",
            id="PUT object",
        ),
        pytest.param(
            "GET",
            "/",
            [("lifecycle", "")],
            {},
            EMPTY_SHA256,
            "host;x-amz-content-sha256;x-amz-date",
            "fea454ca298b7da1c68078a5d1bdbfbbe0d65c699e0f91ac7a200a0136783543",
            id="GET bucket lifecycle",
        ),
        pytest.param(
            "GET",
            "/",
            [("max-keys", "2"), ("prefix", "J")],
            {},
            EMPTY_SHA256,
            "host;x-amz-content-sha256;x-amz-date",
            "34b48302e7b5fa45bde8084f4b7868a86f0a534bc59db6670ed5711ef69dc6f7",
            id="GET bucket (list objects)",
        ),
    ],
)
def test_s3_documentation_examples(
    method: str,
    path: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    payload_hash: str,
    signed: str,
    signature: str,
) -> None:
    added = sign(
        method,
        S3_DOCS_HOST,
        path,
        params=params,
        headers=headers,
        payload_hash=payload_hash,
        credentials=S3_DOCS,
        region="us-east-1",
        when=S3_DOCS_TIME,
    )
    assert added["x-amz-date"] == "20130524T000000Z"
    assert added["x-amz-content-sha256"] == payload_hash
    assert signed_headers_of(added) == signed
    assert signature_of(added) == signature
    assert added["authorization"].startswith(
        "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/aws4_request, "
    )


def test_general_signing_example_iam_list_users() -> None:
    """The worked example of the general SigV4 documentation (service iam), step by step."""
    secret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
    key = signing_key(secret, "20150830", "us-east-1", "iam")
    assert key.hex() == "c4afb1cc5771d871763a393e44b703571b55cc28424d1a5e86da6ed3c154a4b9"
    request, signed = canonical_request(
        "GET",
        "/",
        [("Action", "ListUsers"), ("Version", "2010-05-08")],
        {
            "Content-Type": "application/x-www-form-urlencoded; charset=utf-8",
            "Host": "iam.amazonaws.com",
            "X-Amz-Date": "20150830T123600Z",
        },
        EMPTY_SHA256,
    )
    assert signed == "content-type;host;x-amz-date"
    assert (
        hashlib.sha256(request.encode()).hexdigest()
        == "f536975d06c0309214f805bb90ccff089219ecd68b2577efef23edd43b7e1a59"
    )
    to_sign = "\n".join(
        [
            "AWS4-HMAC-SHA256",
            "20150830T123600Z",
            "20150830/us-east-1/iam/aws4_request",
            hashlib.sha256(request.encode()).hexdigest(),
        ]
    )
    assert (
        hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        == "5d672d79c15b13162d9279b0855cfba6789a8edb4c82c400e06b5924a6f2b5d7"
    )


def test_query_flags_and_reserved_characters_are_encoded_once() -> None:
    assert canonical_query([("uploads", "")]) == "uploads="
    assert canonical_query([("prefix", "a b/c"), ("delimiter", "/")]) == "delimiter=%2F&prefix=a%20b%2Fc"
    assert canonical_query([("b", "2"), ("a", "~x")]) == "a=~x&b=2"


def test_header_values_are_trimmed_and_inner_spaces_collapsed() -> None:
    request, _ = canonical_request("GET", "/", [], {"X-Amz-Meta-A": "  one   two  "}, EMPTY_SHA256)
    assert "x-amz-meta-a:one two\n" in request


def test_the_secret_never_appears_in_repr() -> None:
    credentials = Credentials("AKID", "very-secret", "token-secret")
    assert "very-secret" not in repr(credentials)
    assert "token-secret" not in repr(credentials)
    assert "AKID" in repr(credentials)


WHEN = datetime(2026, 12, 1, 10, 30, 15, tzinfo=UTC)
KEY_PAIR = Credentials("volprobe-test", "s3cr3t/with+odd=chars")


def botocore_headers(
    method: str,
    url: str,
    headers: dict[str, str],
    body: bytes,
    credentials: Credentials,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, str]:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda: WHEN.replace(tzinfo=None))
    request = botocore.awsrequest.AWSRequest(method=method, url=url, headers=headers, data=body)
    signer = botocore.auth.S3SigV4Auth(
        botocore.credentials.Credentials(
            credentials.access_key_id, credentials.secret_access_key, credentials.session_token or None
        ),
        "s3",
        "eu-west-3",
    )
    signer.add_auth(request)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize(
    ("method", "host", "path", "params", "headers", "body"),
    [
        ("GET", "10.96.0.80:7070", "/bucket/volprobe/demo/canary", [], {}, b""),
        ("HEAD", "s3.example.com", "/bucket/key%20with%20spaces", [], {}, b""),
        (
            "PUT",
            "10.96.0.80:7070",
            "/bucket/volprobe/run-1",
            [],
            {
                "x-amz-checksum-sha256": "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
                "If-None-Match": "*",
                "x-amz-meta-volprobe-sha256": "abc",
            },
            b"payload bytes",
        ),
        (
            "GET",
            "bucket.s3.example.com",
            "/",
            [("list-type", "2"), ("prefix", "volprobe/seed/"), ("max-keys", "1000")],
            {},
            b"",
        ),
        ("POST", "s3.example.com:9000", "/bucket/mp", [("uploads", "")], {}, b""),
        (
            "PUT",
            "s3.example.com",
            "/bucket/mp",
            [("partNumber", "2"), ("uploadId", "a/b+c=")],
            {},
            b"x" * 100,
        ),
        ("DELETE", "s3.example.com", "/bucket/mp", [("uploadId", "a/b+c=")], {}, b""),
    ],
)
@pytest.mark.parametrize("token", ["", "session/token+="])
def test_agrees_with_botocore(
    method: str,
    host: str,
    path: str,
    params: list[tuple[str, str]],
    headers: dict[str, str],
    body: bytes,
    token: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    credentials = Credentials(KEY_PAIR.access_key_id, KEY_PAIR.secret_access_key, token)
    url = f"http://{host}{path}" + (f"?{canonical_query(params)}" if params else "")
    expected = botocore_headers(method, url, dict(headers), body, credentials, monkeypatch)
    payload_hash = hashlib.sha256(body).hexdigest()
    ours = sign(
        method,
        host,
        path,
        params=params,
        headers=headers,
        payload_hash=payload_hash,
        credentials=credentials,
        region="eu-west-3",
        when=WHEN,
    )
    assert ours["authorization"] == expected["authorization"]
    assert ours["x-amz-date"] == expected["x-amz-date"]
    assert ours["x-amz-content-sha256"] == expected["x-amz-content-sha256"]
    assert ours.get("x-amz-security-token") == expected.get("x-amz-security-token")
