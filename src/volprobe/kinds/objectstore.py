"""The object-store probe: one S3 bucket, exercised end to end by the controller itself.

One target per ObjectStoreProbe (its own resource, not a facet of a StorageProbe), no node and
no pod: a run is a sequence of signed S3 requests made from the controller
(`volprobe.runtime.s3.check`), so it costs no API writes. Each run reads the key pair from the
probe's Secret in the controller's namespace (a rotated key is used at the next run), verifies
the canary an earlier run wrote — the previous run's, or the one the probe's status names after
a restart — and returns the run's `Outcome` with the per-operation results as its details
(status, metrics). A deleted probe's objects in the bucket are removed (`retire`).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from volprobe.contract.reasons import Phase, Reason, SkipReason
from volprobe.model.kind import Placement
from volprobe.model.objectstore import (
    PLURAL,
    CredentialsError,
    ObjectStoreSpec,
    credentials_from_secret,
    parse,
)
from volprobe.model.objectstore_checks import CanaryRecord, ObjectStoreRun, failed, judge, to_outcome
from volprobe.model.objectstore_status import build
from volprobe.model.outcome import Outcome
from volprobe.model.probe import Probe
from volprobe.model.resource import Missing, ProbeView, StatusUpdate
from volprobe.model.runs import RunRequest
from volprobe.model.targets import Target
from volprobe.model.views import ClassView, NodeView
from volprobe.runtime.engine import Engine
from volprobe.runtime.kube import ApiError, KubeClient
from volprobe.runtime.metrics import ProbeMetrics
from volprobe.runtime.s3.check import client_for, purge, run_once
from volprobe.runtime.s3.sigv4 import Credentials

log = logging.getLogger(__name__)


def object_store(spec: Probe) -> ObjectStoreSpec:
    if not isinstance(spec, ObjectStoreSpec):
        raise TypeError(f"an object-store run needs an ObjectStoreProbe, not {type(spec).__name__}")
    return spec


def run_details(outcome: Outcome | None) -> ObjectStoreRun | None:
    details = outcome.details if outcome is not None else None
    return details if isinstance(details, ObjectStoreRun) else None


def expected_canary(request: RunRequest) -> CanaryRecord | None:
    """The canary this run must find: the previous run's, or (a new leader) the status's."""
    previous = run_details(request.previous)
    if previous is not None:
        return previous.canary
    return CanaryRecord.from_status((request.status or {}).get("canary"))


@dataclass(frozen=True)
class ObjectStoreKind:
    name: str = "objectstore"
    short: str = "o"
    placement: Placement = Placement.CONTROLLER
    resource: str = PLURAL
    description: str = (
        "An S3 bucket, from the controller: a fresh object written with a verified checksum, read back, "
        "listed, refused as an overwrite and deleted; a canary verified; a multipart upload aborted."
    )

    def lasting_claims(self, target: Target) -> tuple[str, ...]:
        return ()

    async def execute(self, request: RunRequest, engine: Engine) -> Outcome:
        spec = object_store(request.spec)
        if spec.tls.insecure_skip_verify:
            log.warning(
                "ObjectStoreProbe %s does not verify the TLS certificate of %s (tls.insecureSkipVerify)",
                spec.name,
                spec.endpoint,
            )
        canary = expected_canary(request)
        try:
            credentials = await read_credentials(engine.client, engine.namespace, spec)
        except CredentialsError as error:
            now = engine.clock()
            operations = (failed(Phase.CREDENTIALS, Reason.CREDENTIALS_MISSING, str(error), 0.0),)
            run = ObjectStoreRun(request.pod_name, now, now, operations, judge(operations), canary)
        else:
            run = await run_once(spec, credentials, canary, run=request.pod_name, clock=engine.clock)
        return to_outcome(request.target, run)

    def observe(self, metrics: ProbeMetrics, outcome: Outcome, spec: Probe) -> None:
        run = run_details(outcome)
        if run is not None:
            insecure = object_store(spec).tls.insecure_skip_verify
            metrics.record_objectstore(outcome.target.probe, run, insecure=insecure)

    async def retire(self, spec: Probe, engine: Engine) -> None:
        """The probe was deleted: delete its canary, seeds and leftovers from the bucket."""
        store = object_store(spec)
        credentials = await read_credentials(engine.client, engine.namespace, store)
        async with client_for(store, credentials) as s3:
            removed = await purge(s3, store)
        log.info(
            "ObjectStoreProbe %s is gone: removed %d objects of it from %s", store.name, removed, store.target
        )


@dataclass(frozen=True)
class ObjectStoreResource:
    plural: str = PLURAL
    api_kind: str = "ObjectStoreProbe"

    def parse(self, obj: Mapping[str, Any]) -> ObjectStoreSpec:
        return parse(obj)

    def covers(self, spec: ObjectStoreSpec, node: NodeView) -> bool:
        return False

    def node_skip(self, spec: ObjectStoreSpec, node: NodeView | None, now: float) -> SkipReason | None:
        return None

    def skip_settles(self, spec: ObjectStoreSpec, node: NodeView) -> float:
        return -math.inf

    def prerequisite(self, spec: ObjectStoreSpec, classes: Mapping[str, ClassView]) -> Missing | None:
        return None

    def status(self, view: ProbeView, previous: Mapping[str, Any] | None, now: float) -> StatusUpdate:
        spec = object_store(view.spec)
        latest = next((t.last for t in view.targets if t.last is not None), None)
        run = run_details(latest)
        canary = run.canary if run is not None else CanaryRecord.from_status((previous or {}).get("canary"))
        document = build(
            spec,
            latest,
            run,
            canary=canary,
            last_success=view.last_success.get(KIND.name),
            previous=previous,
            now=now,
        )
        return StatusUpdate(document)


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
RESOURCE = ObjectStoreResource()
