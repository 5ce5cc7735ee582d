"""The object-store probe: one S3 bucket, exercised end to end by the controller itself.

One target per ObjectStoreProbe (its own resource, not a facet of a StorageProbe), no node and
no pod: a run is a sequence of signed S3 requests made from the controller
(`volprobe.runtime.s3.check`), so it costs no API writes. Each run reads the key pair from the
probe's Secret in the controller's namespace (a rotated key is used at the next run), verifies
the canary an earlier run wrote, and hands back the run's `Outcome` (phase = the operation that
failed) together with what only object-store runs have (per-operation results, the canary to
record in status, the certificate's expiry).

Not registered in `volprobe.kinds.REGISTRY` yet: the planner's seam is per StorageProbe (targets
from `ProbeSpec` and nodes, status and Events of StorageProbes); what it needs to carry this kind
is listed in docs/objectstore.md ("Wiring into the controller").
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from volprobe.contract.reasons import Phase, Reason
from volprobe.model.objectstore import (
    CredentialsError,
    ObjectStoreSpec,
    credentials_from_secret,
)
from volprobe.model.objectstore_checks import CanaryRecord, ObjectStoreRun, failed, judge, to_outcome
from volprobe.model.outcome import Outcome
from volprobe.model.targets import Target
from volprobe.runtime.kube import ApiError, KubeClient
from volprobe.runtime.s3.check import client_for, purge, run_once
from volprobe.runtime.s3.sigv4 import Credentials

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectStoreRequest:
    """One run to make: the probe as the API server has it, the run's name, the canary to expect."""

    spec: ObjectStoreSpec
    target: Target
    run: str
    canary: CanaryRecord | None


@dataclass(frozen=True)
class ObjectStoreResult:
    outcome: Outcome
    run: ObjectStoreRun


@dataclass(frozen=True)
class ObjectStoreKind:
    name: str = "objectstore"
    short: str = "o"
    description: str = (
        "An S3 bucket, from the controller: a fresh object written with a verified checksum, read back, "
        "listed, refused as an overwrite and deleted; a canary verified; a multipart upload aborted."
    )

    def lasting_claims(self, target: Target) -> tuple[str, ...]:
        return ()

    async def execute(
        self,
        request: ObjectStoreRequest,
        client: KubeClient,
        namespace: str,
        *,
        clock: Callable[[], float] = time.time,
    ) -> ObjectStoreResult:
        spec = request.spec
        if spec.tls.insecure_skip_verify:
            log.warning(
                "ObjectStoreProbe %s does not verify the TLS certificate of %s (tls.insecureSkipVerify)",
                spec.name,
                spec.endpoint,
            )
        try:
            credentials = await read_credentials(client, namespace, spec)
        except CredentialsError as error:
            now = clock()
            operations = (failed(Phase.CREDENTIALS, Reason.CREDENTIALS_MISSING, str(error), 0.0),)
            run = ObjectStoreRun(request.run, now, now, operations, judge(operations), request.canary)
            return ObjectStoreResult(to_outcome(request.target, run), run)
        run = await run_once(spec, credentials, request.canary, run=request.run, clock=clock)
        return ObjectStoreResult(to_outcome(request.target, run), run)

    async def forget(self, spec: ObjectStoreSpec, client: KubeClient, namespace: str) -> int:
        """The probe was deleted: delete its canary, seeds and leftovers (how many)."""
        credentials = await read_credentials(client, namespace, spec)
        async with client_for(spec, credentials) as s3:
            return await purge(s3, spec)


async def read_credentials(client: KubeClient, namespace: str, spec: ObjectStoreSpec) -> Credentials:
    """The key pair from the probe's Secret, in the controller's namespace and nowhere else."""
    path = f"/api/v1/namespaces/{namespace}/secrets/{spec.credentials.name}"
    try:
        secret = await client.get(path)
    except ApiError as error:
        if error.not_found:
            secret = None
        else:
            raise CredentialsError(
                f"reading Secret {spec.credentials.name} in {namespace}: {error.status} {error.reason}"
            ) from None
    except (httpx.TransportError, OSError) as error:
        raise CredentialsError(f"reading Secret {spec.credentials.name}: {error!r}") from None
    key_id, secret_key, token = credentials_from_secret(secret, spec.credentials)
    return Credentials(key_id, secret_key, token)


KIND = ObjectStoreKind()
