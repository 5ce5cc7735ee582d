"""An in-memory S3 for unit tests of the object-store run, behind `httpx.MockTransport`.

It speaks just enough S3 for `volprobe.runtime.s3.client` (objects, listing, conditional PUT,
multipart upload and abort, XML errors) and lets a test break it in the ways real servers
break: errors for chosen operations, hangs, ignored conditions, silent corruption, objects
that never show up in a listing. Integration tests use the real server (versitygw) instead.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

Fault = tuple[int, str]
"""(HTTP status, S3 error code)."""


@dataclass
class StoredObject:
    body: bytes
    metadata: dict[str, str]
    checksum: str


@dataclass
class FakeS3:
    buckets: set[str] = field(default_factory=lambda: {"bucket"})
    objects: dict[tuple[str, str], StoredObject] = field(default_factory=dict)
    uploads: dict[str, tuple[str, str, dict[int, bytes]]] = field(default_factory=dict)
    faults: dict[str, Fault] = field(default_factory=dict)
    """Operation name (PutObject, GetObject, …) → the error every such request gets."""
    hang: set[str] = field(default_factory=set)
    """Operations that never answer."""
    ignore_conditions: bool = False
    unlisted: bool = False
    """New objects never appear in listings."""
    keep_deleted: bool = False
    """DELETE answers 204 but keeps the object."""
    corrupt: Callable[[str, bytes], bytes] | None = None
    """Applied to every GET body (key, body) → what the client receives."""
    requests: list[str] = field(default_factory=list)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    @staticmethod
    def _error(status: int, code: str, method: str) -> httpx.Response:
        if method == "HEAD":
            return httpx.Response(status)
        body = f"<?xml version='1.0'?><Error><Code>{code}</Code><Message>fake</Message></Error>"
        return httpx.Response(status, content=body.encode())

    @staticmethod
    def _operation(method: str, key: str, query: dict[str, str]) -> str:
        if "uploads" in query:
            return "CreateMultipartUpload" if method == "POST" else "ListMultipartUploads"
        if "uploadId" in query:
            return {"PUT": "UploadPart", "GET": "ListParts", "DELETE": "AbortMultipartUpload"}[method]
        if not key:
            return {"GET": "ListObjectsV2", "PUT": "CreateBucket", "DELETE": "DeleteBucket"}[method]
        return {"PUT": "PutObject", "GET": "GetObject", "HEAD": "HeadObject", "DELETE": "DeleteObject"}[
            method
        ]

    async def handle(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["authorization"].startswith("AWS4-HMAC-SHA256 Credential=")
        url = urlsplit(str(request.url))
        bucket, _, key = unquote(url.path).lstrip("/").partition("/")
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        method = request.method
        operation = self._operation(method, key, query)
        self.requests.append(operation)
        if operation in self.hang:
            await asyncio.sleep(3600)
        if operation in self.faults:
            return self._error(*self.faults[operation], method)
        if bucket not in self.buckets:
            return self._error(404, "NoSuchBucket", method)
        body = await request.aread()
        handler = getattr(self, f"_{operation}")
        response: httpx.Response = handler(request, bucket, key, query, body)
        return response

    def _PutObject(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        checksum = request.headers.get("x-amz-checksum-sha256", "")
        if checksum and checksum != base64.b64encode(hashlib.sha256(body).digest()).decode():
            return self._error(400, "BadDigest", "PUT")
        conditional = request.headers.get("if-none-match") == "*" and not self.ignore_conditions
        if conditional and (bucket, key) in self.objects:
            return self._error(412, "PreconditionFailed", "PUT")
        metadata = {
            name[len("x-amz-meta-") :]: value
            for name, value in request.headers.items()
            if name.startswith("x-amz-meta-")
        }
        self.objects[(bucket, key)] = StoredObject(body, metadata, checksum)
        return httpx.Response(200, headers={"etag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _headers(self, stored: StoredObject) -> dict[str, str]:
        headers = {"content-length": str(len(stored.body)), "x-amz-checksum-sha256": stored.checksum}
        headers.update({f"x-amz-meta-{k}": v for k, v in stored.metadata.items()})
        return headers

    def _GetObject(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        stored = self.objects.get((bucket, key))
        if stored is None:
            return self._error(404, "NoSuchKey", "GET")
        content = self.corrupt(key, stored.body) if self.corrupt else stored.body
        headers = self._headers(stored)
        headers.pop("content-length")
        return httpx.Response(200, headers=headers, content=content)

    def _HeadObject(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        stored = self.objects.get((bucket, key))
        if stored is None:
            return httpx.Response(404)
        return httpx.Response(200, headers=self._headers(stored))

    def _DeleteObject(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        if not self.keep_deleted:
            self.objects.pop((bucket, key), None)
        return httpx.Response(204)

    def _ListObjectsV2(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        prefix = query.get("prefix", "")
        limit = int(query.get("max-keys", "1000"))
        start = query.get("continuation-token", "")
        keys = sorted(k for b, k in self.objects if b == bucket and k.startswith(prefix) and k > start)
        if self.unlisted:
            keys = [k for k in keys if "/runs/" not in k]
        page, truncated = keys[:limit], len(keys) > limit
        contents = "".join(f"<Contents><Key>{k}</Key></Contents>" for k in page)
        token = f"<NextContinuationToken>{page[-1]}</NextContinuationToken>" if truncated else ""
        xml = (
            "<ListBucketResult xmlns='http://s3.amazonaws.com/doc/2006-03-01/'>"
            f"<IsTruncated>{str(truncated).lower()}</IsTruncated>{contents}{token}</ListBucketResult>"
        )
        return httpx.Response(200, content=xml.encode())

    def _CreateMultipartUpload(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        upload_id = f"upload-{next(self._ids)}"
        self.uploads[upload_id] = (bucket, key, {})
        xml = (
            f"<InitiateMultipartUploadResult><UploadId>{upload_id}</UploadId></InitiateMultipartUploadResult>"
        )
        return httpx.Response(200, content=xml.encode())

    def _UploadPart(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        if query["uploadId"] not in self.uploads:
            return self._error(404, "NoSuchUpload", "PUT")
        self.uploads[query["uploadId"]][2][int(query["partNumber"])] = body
        return httpx.Response(200, headers={"etag": f'"{hashlib.md5(body).hexdigest()}"'})

    def _ListParts(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        upload = self.uploads.get(query["uploadId"])
        if upload is None:
            return self._error(404, "NoSuchUpload", "GET")
        parts = "".join(f"<Part><PartNumber>{n}</PartNumber></Part>" for n in sorted(upload[2]))
        return httpx.Response(200, content=f"<ListPartsResult>{parts}</ListPartsResult>".encode())

    def _AbortMultipartUpload(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        if self.uploads.pop(query["uploadId"], None) is None:
            return self._error(404, "NoSuchUpload", "DELETE")
        return httpx.Response(204)

    def _ListMultipartUploads(
        self, request: httpx.Request, bucket: str, key: str, query: dict[str, str], body: bytes
    ) -> httpx.Response:
        prefix = query.get("prefix", "")
        uploads = "".join(
            f"<Upload><Key>{k}</Key><UploadId>{upload_id}</UploadId></Upload>"
            for upload_id, (b, k, _) in sorted(self.uploads.items())
            if b == bucket and k.startswith(prefix)
        )
        xml = f"<ListMultipartUploadsResult>{uploads}</ListMultipartUploadsResult>"
        return httpx.Response(200, content=xml.encode())
