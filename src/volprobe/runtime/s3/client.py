"""A small asyncio S3 client on httpx: exactly the operations the object-store probe makes.

Why not botocore/aiobotocore (docs/design.md, "Choosing the S3 client"): a probe must see a
stall as a stall, so it needs one request per call, a deadline per call, and the request bytes
it chose. botocore retries by default (legacy mode retries even with max_attempts 1), its
timeouts apply per socket read rather than per call, and since 1.36 it streams `aws-chunked`
bodies with CRC32 trailers that many S3-compatible servers reject.

Design notes:

* One HTTP request per method call, never a retry; deadlines are the caller's
  (`asyncio.timeout`), the httpx timeout is only a backstop.
* The transport is the seam for unit tests (``httpx.MockTransport``).
* Every payload is signed (its SHA-256 goes into the signature), so a body changed in flight
  is refused by the server, and PUTs also carry ``x-amz-checksum-sha256`` which the server
  verifies and stores.
* Errors the server returns raise `S3Error` with the S3 error code; transport failures surface
  as ``httpx.TransportError`` (timeouts included) for the caller to classify.
* The TLS peer certificate's expiry is remembered from every response (`certificate_not_after`).
"""

from __future__ import annotations

import base64
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from hashlib import sha256
from types import TracebackType
from urllib.parse import urlsplit

import httpx

from volprobe import __version__
from volprobe.model.objectstore_tls import not_after
from volprobe.runtime.s3.sigv4 import Credentials, canonical_query, sign, uri_encode

USER_AGENT = f"volprobe/{__version__}"
METADATA_PREFIX = "x-amz-meta-"
MAX_ERROR_BODY = 64 * 1024
"""Error documents are a few hundred bytes; anything longer is cut before parsing."""


class S3Error(Exception):
    """The server answered with an error status (the S3 `Code` when it sent one)."""

    def __init__(self, operation: str, status: int, code: str, message: str = "", request_id: str = ""):
        self.operation = operation
        self.status = status
        self.code = code
        self.message = message
        self.request_id = request_id
        super().__init__(f"{operation}: HTTP {status} {code}" + (f": {message}" if message else ""))


class ProtocolError(Exception):
    """A success status with a body that is not what S3 sends (truncated or foreign XML)."""


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    etag: str
    checksum_sha256: str = ""
    """Base64 SHA-256 the server stored for the object, if it keeps checksums."""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredObject:
    info: ObjectInfo
    body: bytes


@dataclass(frozen=True)
class ListPage:
    keys: tuple[str, ...]
    truncated: bool
    next_token: str = ""


@dataclass(frozen=True)
class Upload:
    key: str
    upload_id: str


def checksum_header(data: bytes) -> str:
    """The value of `x-amz-checksum-sha256` for `data` (base64 of the raw digest)."""
    return base64.b64encode(sha256(data).digest()).decode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> list[ET.Element]:
    return [child for child in element if _local(child.tag) == name]


def _text(element: ET.Element, name: str) -> str:
    found = _children(element, name)
    return (found[0].text or "") if found else ""


def _document(operation: str, body: bytes, root: str) -> ET.Element:
    try:
        element = ET.fromstring(body)
    except ET.ParseError as error:
        raise ProtocolError(f"{operation}: unreadable XML: {error}") from None
    if _local(element.tag) != root:
        raise ProtocolError(f"{operation}: expected <{root}>, got <{_local(element.tag)}>")
    return element


def error_from(operation: str, response: httpx.Response) -> S3Error:
    """An `S3Error` from an error response; HEAD responses have no body, so the status says it."""
    code, message, request_id = "", "", response.headers.get("x-amz-request-id", "")
    body = response.content[:MAX_ERROR_BODY]
    if body.strip():
        try:
            element = ET.fromstring(body)
        except ET.ParseError:
            element = None
        if element is not None and _local(element.tag) == "Error":
            code, message = _text(element, "Code"), _text(element, "Message")
            request_id = _text(element, "RequestId") or request_id
    if not code:
        code = {404: "NotFound", 403: "Forbidden", 412: "PreconditionFailed"}.get(response.status_code, "")
    return S3Error(operation, response.status_code, code, message[:200], request_id)


def _info(response: httpx.Response) -> ObjectInfo:
    headers = response.headers
    return ObjectInfo(
        size=int(headers.get("content-length", "0") or 0),
        etag=headers.get("etag", "").strip('"'),
        checksum_sha256=headers.get("x-amz-checksum-sha256", ""),
        metadata={
            name[len(METADATA_PREFIX) :]: value
            for name, value in headers.items()
            if name.lower().startswith(METADATA_PREFIX)
        },
    )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class S3Client:
    """Signed S3 requests to one endpoint with one key pair.

    `endpoint` is `http(s)://host[:port]`; buckets are addressed path-style
    (`endpoint/bucket/key`, the only style that works with an IP address) unless
    `virtual_hosted` asks for `bucket.host/key`.
    """

    def __init__(
        self,
        endpoint: str,
        region: str,
        credentials: Credentials,
        *,
        virtual_hosted: bool = False,
        verify: ssl.SSLContext | bool = True,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 60.0,
        clock: Callable[[], datetime] = _utcnow,
    ) -> None:
        parts = urlsplit(endpoint)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) endpoint: {endpoint!r}")
        self.scheme = parts.scheme
        self.netloc = parts.netloc
        self.region = region
        self.credentials = credentials
        self.virtual_hosted = virtual_hosted
        self.clock = clock
        self.certificate_not_after: float | None = None
        """Expiry (Unix time) of the server certificate seen on the latest TLS response."""
        self._http = httpx.AsyncClient(
            transport=transport,
            verify=verify,
            timeout=httpx.Timeout(timeout),
            headers={"user-agent": USER_AGENT},
            follow_redirects=False,
            trust_env=False,
        )

    async def __aenter__(self) -> S3Client:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the request -------------------------------------------------------------------------------

    def _where(self, bucket: str, key: str) -> tuple[str, str]:
        """(Host header, encoded path) for an object (key "") or a bucket (bucket "" too: service)."""
        encoded_key = uri_encode(key, keep_slash=True)
        if self.virtual_hosted and bucket:
            return f"{bucket}.{self.netloc}", f"/{encoded_key}"
        if not bucket:
            return self.netloc, "/"
        return self.netloc, f"/{bucket}/{encoded_key}" if key else f"/{bucket}"

    async def request(
        self,
        operation: str,
        method: str,
        bucket: str,
        key: str = "",
        *,
        params: Sequence[tuple[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        body: bytes = b"",
        ok: frozenset[int] = frozenset({200}),
    ) -> httpx.Response:
        """Send one signed request; raise `S3Error` unless the status is in `ok`."""
        host, path = self._where(bucket, key)
        extra = dict(headers or {})
        signed = sign(
            method,
            host,
            path,
            params=params,
            headers=extra,
            payload_hash=sha256(body).hexdigest(),
            credentials=self.credentials,
            region=self.region,
            when=self.clock(),
        )
        query = canonical_query(params)
        url = f"{self.scheme}://{host}{path}" + (f"?{query}" if params else "")
        response = await self._http.request(
            method, url, headers={**extra, **signed, "host": host}, content=body or None
        )
        self._remember_certificate(response)
        if response.status_code not in ok:
            raise error_from(operation, response)
        return response

    def _remember_certificate(self, response: httpx.Response) -> None:
        stream = response.extensions.get("network_stream")
        if stream is None or self.scheme != "https":
            return
        ssl_object = stream.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
        if der:
            self.certificate_not_after = not_after(der)

    # -- operations ----------------------------------------------------------------------------------

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: bytes,
        *,
        metadata: Mapping[str, str] | None = None,
        if_none_match: bool = False,
    ) -> str:
        """PUT with a SHA-256 checksum the server must verify; returns the ETag."""
        headers = {"x-amz-checksum-sha256": checksum_header(body)}
        headers.update({f"{METADATA_PREFIX}{name}": value for name, value in (metadata or {}).items()})
        if if_none_match:
            headers["if-none-match"] = "*"
        response = await self.request("PutObject", "PUT", bucket, key, headers=headers, body=body)
        return str(response.headers.get("etag", "")).strip('"')

    async def head_object(self, bucket: str, key: str) -> ObjectInfo:
        response = await self.request(
            "HeadObject", "HEAD", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"}
        )
        return _info(response)

    async def get_object(self, bucket: str, key: str) -> StoredObject:
        response = await self.request(
            "GetObject", "GET", bucket, key, headers={"x-amz-checksum-mode": "ENABLED"}
        )
        return StoredObject(_info(response), response.content)

    async def delete_object(self, bucket: str, key: str) -> None:
        await self.request("DeleteObject", "DELETE", bucket, key, ok=frozenset({200, 204}))

    async def list_objects(
        self, bucket: str, prefix: str, *, max_keys: int = 1000, token: str = ""
    ) -> ListPage:
        params = [("list-type", "2"), ("prefix", prefix), ("max-keys", str(max_keys))]
        if token:
            params.append(("continuation-token", token))
        response = await self.request("ListObjectsV2", "GET", bucket, params=params)
        root = _document("ListObjectsV2", response.content, "ListBucketResult")
        keys = tuple(_text(item, "Key") for item in _children(root, "Contents"))
        truncated = _text(root, "IsTruncated").strip().lower() == "true"
        return ListPage(keys, truncated, _text(root, "NextContinuationToken"))

    async def create_multipart_upload(self, bucket: str, key: str) -> str:
        response = await self.request("CreateMultipartUpload", "POST", bucket, key, params=[("uploads", "")])
        upload_id = _text(
            _document("CreateMultipartUpload", response.content, "InitiateMultipartUploadResult"), "UploadId"
        )
        if not upload_id:
            raise ProtocolError("CreateMultipartUpload: no UploadId in the response")
        return upload_id

    async def upload_part(self, bucket: str, key: str, upload_id: str, number: int, body: bytes) -> str:
        response = await self.request(
            "UploadPart",
            "PUT",
            bucket,
            key,
            params=[("partNumber", str(number)), ("uploadId", upload_id)],
            headers={"x-amz-checksum-sha256": checksum_header(body)},
            body=body,
        )
        return str(response.headers.get("etag", "")).strip('"')

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self.request(
            "AbortMultipartUpload",
            "DELETE",
            bucket,
            key,
            params=[("uploadId", upload_id)],
            ok=frozenset({200, 204}),
        )

    async def list_parts(self, bucket: str, key: str, upload_id: str) -> int:
        """How many parts the upload has (raises `S3Error` NoSuchUpload once it is aborted)."""
        response = await self.request("ListParts", "GET", bucket, key, params=[("uploadId", upload_id)])
        return len(_children(_document("ListParts", response.content, "ListPartsResult"), "Part"))

    async def list_multipart_uploads(self, bucket: str, prefix: str) -> tuple[Upload, ...]:
        response = await self.request(
            "ListMultipartUploads", "GET", bucket, params=[("uploads", ""), ("prefix", prefix)]
        )
        root = _document("ListMultipartUploads", response.content, "ListMultipartUploadsResult")
        return tuple(Upload(_text(u, "Key"), _text(u, "UploadId")) for u in _children(root, "Upload"))

    async def create_bucket(self, bucket: str) -> None:
        """Create a bucket (tests and the demo; the probe itself never creates buckets)."""
        await self.request("CreateBucket", "PUT", bucket)

    async def delete_bucket(self, bucket: str) -> None:
        await self.request("DeleteBucket", "DELETE", bucket, ok=frozenset({200, 204}))
