"""The object-store kind's own I/O: the credentials Secret, read in the controller's namespace only."""

from __future__ import annotations

import base64
import json
import re

import httpx
import pytest

from volprobe.contract.reasons import Phase, Reason, Result
from volprobe.kinds.objectstore import KIND, read_credentials
from volprobe.model.manifests import AgentImage
from volprobe.model.objectstore import CredentialsError, ObjectStoreSpec, SecretRef
from volprobe.model.runs import RunRequest
from volprobe.model.targets import Target
from volprobe.runtime.caches import Caches
from volprobe.runtime.engine import Engine
from volprobe.runtime.kube import ConnectionConfig, KubeClient
from volprobe.runtime.kube.credentials import Credential, StaticCredentials

SPEC = ObjectStoreSpec(
    name="s3", endpoint="http://s3.test:7070", bucket="bucket", credentials=SecretRef("keys")
)


def client(status: int, body: object) -> tuple[KubeClient, list[str]]:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.path)
        return httpx.Response(status, content=json.dumps(body).encode())

    config = ConnectionConfig(
        server="https://k8s.test:6443", credentials=StaticCredentials(Credential(token="t"))
    )
    return KubeClient(config, transport=httpx.MockTransport(handler), max_attempts=1), seen


def encoded(**values: str) -> dict[str, object]:
    return {"kind": "Secret", "data": {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}}


async def test_the_key_pair_is_read_from_the_controllers_namespace() -> None:
    kube, seen = client(200, encoded(AWS_ACCESS_KEY_ID="AKID", AWS_SECRET_ACCESS_KEY="s3cr3t"))
    async with kube:
        credentials = await read_credentials(kube, "volprobe", SPEC)
    assert (credentials.access_key_id, credentials.secret_access_key) == ("AKID", "s3cr3t")
    assert seen == ["/api/v1/namespaces/volprobe/secrets/keys"]


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (404, {"kind": "Status", "code": 404, "reason": "NotFound", "message": "nope"}, "not found"),
        (403, {"kind": "Status", "code": 403, "reason": "Forbidden", "message": "rbac"}, "403 Forbidden"),
        (200, encoded(AWS_ACCESS_KEY_ID="AKID"), "no (or an empty) AWS_SECRET_ACCESS_KEY"),
    ],
)
async def test_a_missing_unreadable_or_incomplete_secret_is_credentials_missing(
    status: int, body: object, message: str
) -> None:
    kube, _ = client(status, body)
    async with kube:
        with pytest.raises(CredentialsError, match=re.escape(message)):
            await read_credentials(kube, "volprobe", SPEC)
        engine = Engine(kube, Caches(kube, "volprobe"), AgentImage("unused"), clock=lambda: 1000.0)
        outcome = await KIND.execute(RunRequest(SPEC, Target("s3", KIND.name), "run-1"), engine)
    assert (outcome.result, outcome.phase, outcome.reason) == (
        Result.FAILURE,
        Phase.CREDENTIALS,
        Reason.CREDENTIALS_MISSING,
    )
    assert outcome.run == "run-1"
    assert message in outcome.message
