"""What the object-store probe measures, against the same operations timed directly, and what it costs.

    python bench/objectstore.py latency --runs 100     (root; starts the local cluster if needed)
    python bench/objectstore.py clients                 (no cluster needed for the import cost)

`latency`: the probe's own per-operation durations (PUT, HEAD, GET, LIST, DELETE of a 64 KiB
object) over N runs against the local versitygw, next to the same requests made directly with
botocore's client (a different implementation, retries off) on the same server, same object
size. Prints medians and 90th percentiles per operation and whether the probe's median is
within the stated tolerance of the direct one: TOLERANCE_MS or TOLERANCE_RATIO, whichever is
larger. The probe runs its reads and writes side by side, so it may queue behind itself a
little; the tolerance is about that.

`clients`: start-up time and resident memory of a fresh interpreter that imports each S3 client
and makes one PUT and one GET: volprobe's own (httpx + SigV4) and botocore's.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "hack"), str(REPO / "src"), str(REPO)]

from localcluster import cluster as localcluster  # noqa: E402
from localcluster import objectstore as server  # noqa: E402
from localcluster.config import Layout  # noqa: E402
from tests.conftest import Cluster  # noqa: E402
from tests.support.kubectl import Kubectl  # noqa: E402
from tests.support.objectstore import ObjectStore  # noqa: E402
from volprobe.contract.reasons import Phase, Result  # noqa: E402
from volprobe.model.objectstore import Checks, ObjectStoreSpec, SecretRef  # noqa: E402
from volprobe.runtime.s3.check import run_once  # noqa: E402

PAYLOAD = 64 * 1024
TOLERANCE_MS = 5.0
TOLERANCE_RATIO = 0.5
COMPARED = (Phase.PUT, Phase.HEAD, Phase.GET, Phase.LIST, Phase.DELETE)


def store() -> ObjectStore:
    layout = Layout.default()
    localcluster.up(layout, int(os.environ.get("KWOK_NODES", "3")))
    cluster = Cluster(layout, Kubectl(layout.kubernetes_bin("kubectl"), layout.kubeconfig), "volprobe-node")
    found = ObjectStore(cluster)
    found.wait_ready()
    return found


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def probe_spec(found: ObjectStore, bucket: str) -> ObjectStoreSpec:
    return ObjectStoreSpec(
        name="bench",
        endpoint=found.endpoint,
        bucket=bucket,
        credentials=SecretRef("unused"),
        payload_bytes=PAYLOAD,
        checks=Checks(list_prefix_keys=100),
    )


def botocore_client(found: ObjectStore) -> Any:
    """botocore as a probe would have to configure it: no retries, no aws-chunked trailers."""
    import botocore.config
    import botocore.session

    return botocore.session.get_session().create_client(
        "s3",
        endpoint_url=found.endpoint,
        region_name=server.REGION,
        aws_access_key_id=found.credentials.access_key_id,
        aws_secret_access_key=found.credentials.secret_access_key,
        config=botocore.config.Config(
            retries={"total_max_attempts": 1, "mode": "standard"},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
            s3={"addressing_style": "path"},
        ),
    )


def direct_iteration(client: Any, bucket: str, index: int, seen: dict[Phase, list[float]]) -> None:
    """The probe's write-track operations, one after the other, timed around the same requests
    the probe makes for each (DELETE is DELETE + HEAD answering 404, as in the probe)."""

    @contextlib.contextmanager
    def timed(op: Phase) -> Iterator[None]:
        started = time.perf_counter()
        yield
        seen[op].append(time.perf_counter() - started)

    key = f"direct/{index}"
    body = os.urandom(PAYLOAD)
    checksum = base64.b64encode(hashlib.sha256(body).digest()).decode()
    with timed(Phase.PUT):
        client.put_object(Bucket=bucket, Key=key, Body=body, ChecksumSHA256=checksum)
    with timed(Phase.HEAD):
        client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    with timed(Phase.GET):
        client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"].read()
    with timed(Phase.LIST):
        client.list_objects_v2(Bucket=bucket, Prefix=key, MaxKeys=1)
    with timed(Phase.DELETE):
        client.delete_object(Bucket=bucket, Key=key)
        try:
            client.head_object(Bucket=bucket, Key=key)
        except client.exceptions.ClientError as error:
            if error.response["Error"]["Code"] not in ("404", "NoSuchKey", "NotFound"):
                raise
        else:
            raise RuntimeError(f"{key} still exists after DELETE")


def latency(runs: int) -> int:
    """Probe runs and direct iterations alternate, so both see the same load on the machine."""
    found = store()
    probe: dict[Phase, list[float]] = {op: [] for op in COMPARED}
    direct: dict[Phase, list[float]] = {op: [] for op in COMPARED}
    load = []
    with found.bucket("bench") as bucket:
        spec = probe_spec(found, bucket)
        client = botocore_client(found)

        async def loop() -> None:
            canary = None
            for index in range(runs):
                load.append(os.getloadavg()[0])
                direct_iteration(client, bucket, index, direct)
                result = await run_once(spec, found.credentials, canary)
                assert result.verdict.result is Result.SUCCESS, result.verdict
                canary = result.canary
                for op in result.operations:
                    if op.operation in probe:
                        probe[op.operation].append(op.seconds)

        asyncio.run(loop())
    print(
        f"\n== per-operation latency, {runs} runs, {PAYLOAD // 1024} KiB objects, versitygw {server.ENDPOINT}"
    )
    print(
        f"   (load average during the runs: median {statistics.median(load):.1f} on {os.cpu_count()} cores)"
    )
    print(
        f"{'operation':<10} {'probe p50':>10} {'direct p50':>11} {'probe p90':>10} {'direct p90':>11}  within"
    )
    ok_all = True
    for op in COMPARED:
        p50, d50 = statistics.median(probe[op]) * 1000, statistics.median(direct[op]) * 1000
        p90, d90 = percentile(probe[op], 0.9) * 1000, percentile(direct[op], 0.9) * 1000
        ok = abs(p50 - d50) <= max(TOLERANCE_MS, TOLERANCE_RATIO * d50)
        ok_all &= ok
        print(
            f"{op.value:<10} {p50:>8.1f}ms {d50:>9.1f}ms {p90:>8.1f}ms {d90:>9.1f}ms  {'yes' if ok else 'NO'}"
        )
    print(
        f"tolerance: |probe p50 - direct p50| <= max({TOLERANCE_MS:.0f} ms, {TOLERANCE_RATIO:.0%} of direct)"
    )
    return 0 if ok_all else 1


CLIENT_SCRIPTS = {
    "volprobe (httpx + SigV4)": """
        import asyncio
        from volprobe.runtime.s3.client import S3Client
        from volprobe.runtime.s3.sigv4 import Credentials
        async def main():
            async with S3Client(ENDPOINT, "us-east-1", Credentials(KEY, SECRET)) as client:
                await client.put_object(BUCKET, "clients/x", b"x" * 65536)
                await client.get_object(BUCKET, "clients/x")
        asyncio.run(main())
    """,
    "botocore": """
        import botocore.session
        client: Any = botocore.session.get_session().create_client(
            "s3", endpoint_url=ENDPOINT, region_name="us-east-1",
            aws_access_key_id=KEY, aws_secret_access_key=SECRET)
        client.put_object(Bucket=BUCKET, Key="clients/x", Body=b"x" * 65536)
        client.get_object(Bucket=BUCKET, Key="clients/x")["Body"].read()
    """,
}
MEASURE = """
import time
started = time.perf_counter()
{body}
elapsed = time.perf_counter() - started
rss = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmRSS:"))
print(f"{{elapsed * 1000:.0f}} {{rss / 1024:.1f}}")
"""


def clients(repeat: int) -> int:
    found = store()
    with found.bucket("clients") as bucket:
        for name, script in CLIENT_SCRIPTS.items():
            prelude = (
                f"ENDPOINT = {found.endpoint!r}\nKEY = {found.credentials.access_key_id!r}\n"
                f"SECRET = {found.credentials.secret_access_key!r}\nBUCKET = {bucket!r}\n"
            )
            program = prelude + MEASURE.format(body=textwrap.dedent(script))
            samples = []
            for _ in range(repeat):
                out = subprocess.run(
                    [sys.executable, "-c", program],
                    check=True,
                    capture_output=True,
                    text=True,
                    env={**os.environ, "PYTHONPATH": str(REPO / "src")},
                ).stdout.split()
                samples.append((float(out[0]), float(out[1])))
            times = sorted(s[0] for s in samples)
            print(
                f"{name:<26} import + client + PUT + GET: median {statistics.median(times):.0f} ms, "
                f"RSS {max(s[1] for s in samples):.1f} MiB"
            )
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lat = sub.add_parser("latency")
    lat.add_argument("--runs", type=int, default=100)
    cli = sub.add_parser("clients")
    cli.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    if args.command == "latency":
        return latency(args.runs)
    return clients(args.repeat)


if __name__ == "__main__":
    sys.exit(main())
