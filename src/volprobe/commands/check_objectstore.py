"""`volprobe check-objectstore NAME`: an ObjectStoreProbe's checks, now, from here; then clean up.

The smoke test for an object store after an upgrade or a change: it reads the ObjectStoreProbe
(endpoint, bucket, TLS, deadlines, checks) and its credentials Secret, and runs the
controller's own checks (`volprobe.runtime.s3.check`) from this machine. Runs happen under a
prefix of their own (`<keyPrefix>check-<random>/`), so the controller's canary and seeds are
never touched, and everything under it is deleted before the command exits, also on Ctrl-C.
Two runs by default: the second verifies the canary the first wrote.

Exit codes: 0 every run passed; 1 a run failed or timed out; 2 bad usage, cluster access, or
credentials; 130 interrupted (after cleaning up).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import uuid
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TextIO

import httpx

from volprobe import __version__
from volprobe.model.objectstore import PATH, CredentialsError, ObjectStoreSpec, credentials_from_secret, parse
from volprobe.model.objectstore_checks import CanaryRecord, ObjectStoreRun
from volprobe.model.spec import SpecError
from volprobe.runtime.kube import ApiError, ConfigError, KubeClient, load_config
from volprobe.runtime.s3.check import client_for, purge, run_once
from volprobe.runtime.s3.client import ProtocolError, S3Error
from volprobe.runtime.s3.sigv4 import Credentials

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
OUTPUT_VERSION = 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="volprobe check-objectstore",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("probe", help="the ObjectStoreProbe whose endpoint, bucket and settings to use")
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument(
        "--namespace", default="volprobe", help="where the credentials Secret is (the controller's namespace)"
    )
    p.add_argument("--runs", type=int, default=2, help="runs in a row (2: write the canary, then verify it)")
    p.add_argument("--output", choices=["table", "json"], default="table")
    return p


def render_table(spec: ObjectStoreSpec, runs: list[ObjectStoreRun]) -> str:
    lines = [f"object store {spec.target} (probe {spec.name})", ""]
    header = f"{'run':<4} {'operation':<16} {'result':<9} {'seconds':>8}  reason / message"
    lines.append(header)
    for index, run in enumerate(runs, 1):
        for op in run.operations:
            result = op.result.value if op.result is not None else "not run"
            detail = op.reason.value if op.reason else ""
            if op.message:
                detail = f"{detail}: {op.message}" if detail else op.message
            lines.append(f"{index:<4} {op.operation.value:<16} {result:<9} {op.seconds:>8.3f}  {detail}")
    verdicts = [run.verdict for run in runs]
    failed = [v for v in verdicts if v.phase is not None]
    lines.append("")
    lines.append(
        "PASSED" if not failed else f"FAILED: {failed[0].phase} {failed[0].reason}: {failed[0].message}"
    )
    return "\n".join(lines)


def to_json(spec: ObjectStoreSpec, runs: list[ObjectStoreRun]) -> dict[str, Any]:
    """The `--output json` document: one entry per run, one per operation (docs/objectstore.md)."""
    return {
        "version": OUTPUT_VERSION,
        "endpoint": spec.endpoint,
        "bucket": spec.bucket,
        "passed": all(run.verdict.phase is None for run in runs),
        "runs": [
            {
                "run": run.run,
                "result": run.verdict.result.value,
                "phase": run.verdict.phase.value if run.verdict.phase else None,
                "reason": run.verdict.reason.value if run.verdict.reason else None,
                "message": run.verdict.message,
                "certificateNotAfter": run.certificate_not_after,
                "operations": [
                    {
                        "name": op.operation.value,
                        "result": op.result.value if op.result else None,
                        "reason": op.reason.value if op.reason else None,
                        "seconds": round(op.seconds, 4),
                        "message": op.message,
                    }
                    for op in run.operations
                ],
            }
            for run in runs
        ],
    }


async def load(args: argparse.Namespace) -> tuple[ObjectStoreSpec, Credentials]:
    async with KubeClient(load_config(args.kubeconfig), user_agent=f"volprobe-check/{__version__}") as kube:
        probe = await kube.get(f"{PATH}/{args.probe}")
        spec = parse(probe)
        try:
            secret = await kube.get(f"/api/v1/namespaces/{args.namespace}/secrets/{spec.credentials.name}")
        except ApiError as error:
            if not error.not_found:
                raise
            secret = None
    key_id, secret_key, token = credentials_from_secret(secret, spec.credentials)
    # Runs of the check live next to the probe's objects, never on them.
    return replace(spec, name=f"check-{uuid.uuid4().hex[:8]}"), Credentials(key_id, secret_key, token)


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    spec, credentials = await load(args)
    if spec.tls.insecure_skip_verify:
        print("WARNING: TLS verification is off for this probe (tls.insecureSkipVerify)", file=err)
    print(f"checking {spec.target} under {spec.layout.base} …", file=err, flush=True)
    runs: list[ObjectStoreRun] = []
    canary: CanaryRecord | None = None
    try:
        for _ in range(max(1, args.runs)):
            result = await run_once(spec, credentials, canary)
            runs.append(result)
            canary = result.canary
    finally:
        async with client_for(spec, credentials) as client:
            try:
                await purge(client, spec)
            except (
                S3Error,
                ProtocolError,
                httpx.HTTPError,
                OSError,
            ) as error:  # report, never hide the result
                print(f"cleaning up {spec.layout.base} failed: {error}", file=err)
    if args.output == "json":
        print(json.dumps(to_json(spec, runs), indent=2), file=out)
    else:
        print(render_table(spec, runs), file=out)
    return EXIT_OK if all(r.verdict.phase is None for r in runs) else EXIT_FAILED


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    try:
        return asyncio.run(run(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("interrupted; the check's objects were deleted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (CredentialsError, SpecError, ConfigError) as error:
        print(f"volprobe check-objectstore: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ApiError, OSError, httpx.TransportError) as error:
        print(f"volprobe check-objectstore: cannot talk to the cluster: {error}", file=sys.stderr)
        return EXIT_USAGE
