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
and makes one PUT and one GET: volprobe's own (httpx + SigV4), aiobotocore's and botocore's (each
if installed in `--python`).

`rss`: the peak resident memory of a real `volprobe controller`, first with no probe to run, then
with `--probes` ObjectStoreProbes every `--interval` seconds against the local versitygw.
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
import tempfile
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
from tests.support.procstats import rss_mib  # noqa: E402
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
    "aiobotocore": """
        import asyncio
        from aiobotocore.session import get_session
        async def main():
            async with get_session().create_client(
                "s3", endpoint_url=ENDPOINT, region_name="us-east-1",
                aws_access_key_id=KEY, aws_secret_access_key=SECRET) as client:
                await client.put_object(Bucket=BUCKET, Key="clients/x", Body=b"x" * 65536)
                await (await client.get_object(Bucket=BUCKET, Key="clients/x"))["Body"].read()
        asyncio.run(main())
    """,
    "botocore": """
        import botocore.session
        client = botocore.session.get_session().create_client(
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


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(REPO / "src")}


def clients(repeat: int, python: str) -> int:
    """Each client in a fresh `python` (give one whose environment has only what production has:
    the dev venv also holds click and rich, which httpx imports when they are installed)."""
    found = store()
    baseline = subprocess.run(
        [python, "-c", MEASURE.format(body="pass")], check=True, capture_output=True, text=True
    ).stdout.split()[1]
    print(f"{'python alone':<26} RSS {baseline} MiB ({python})")
    with found.bucket("clients") as bucket:
        for name, script in CLIENT_SCRIPTS.items():
            module = "volprobe" if name.startswith("volprobe") else name
            probe = subprocess.run(
                [python, "-c", f"import {module}"], capture_output=True, env=_env(), check=False
            )
            if probe.returncode != 0:
                print(f"{name:<26} not installed in {python}")
                continue
            prelude = (
                f"ENDPOINT = {found.endpoint!r}\nKEY = {found.credentials.access_key_id!r}\n"
                f"SECRET = {found.credentials.secret_access_key!r}\nBUCKET = {bucket!r}\n"
            )
            program = prelude + MEASURE.format(body=textwrap.dedent(script))
            samples = []
            for _ in range(repeat):
                out = subprocess.run(
                    [python, "-c", program], check=True, capture_output=True, text=True, env=_env()
                ).stdout.split()
                samples.append((float(out[0]), float(out[1])))
            times = sorted(s[0] for s in samples)
            print(
                f"{name:<26} import + client + PUT + GET: median {statistics.median(times):.0f} ms, "
                f"RSS {max(s[1] for s in samples):.1f} MiB"
            )
    return 0


def controller_rss(found: ObjectStore, namespace: str, label: str, seconds: float) -> tuple[float, float]:
    """(peak RSS in MiB, object-store runs passed) of a real controller running probes labelled `label`."""
    from tests.support.controller import ControllerProcess
    from volprobe.model.manifests import DEFAULT_AGENT_IMAGE

    controller = ControllerProcess(
        kubeconfig=found.cluster.kubeconfig,
        namespace=namespace,
        image=DEFAULT_AGENT_IMAGE,
        log=Path(tempfile.mkdtemp(prefix="volprobe-bench-")) / "controller.log",
        extra=(f"--probe-selector=volprobe.io/bench={label}",),
    ).start()
    assert controller.process is not None
    try:
        controller.wait_ready(120)
        peak = 0.0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            peak = max(peak, rss_mib(controller.process.pid))
            time.sleep(1)
        passed = controller.scrape().sum("volprobe_probe_runs_total", kind="objectstore", result="success")
    finally:
        controller.stop()
    return peak, passed


def rss(probes: int, interval: float, seconds: float) -> int:
    """The controller's peak RSS with no probe, then with `probes` ObjectStoreProbes at `interval`."""
    found = store()
    kubectl = found.cluster.kubectl
    namespace = "volprobe-bench-s3"
    kubectl.run("delete", "namespace", namespace, "--ignore-not-found", "--wait=true", timeout=180)
    kubectl.run("create", "namespace", namespace)
    key_id, secret_key = found.credentials.access_key_id, found.credentials.secret_access_key
    kubectl.run(
        "create",
        "secret",
        "generic",
        "bench-keys",
        "-n",
        namespace,
        f"--from-literal=AWS_ACCESS_KEY_ID={key_id}",
        f"--from-literal=AWS_SECRET_ACCESS_KEY={secret_key}",
    )
    names = [f"bench-s3-{index}" for index in range(probes)]
    try:
        with found.bucket("rss") as bucket:
            alone, _ = controller_rss(found, namespace, "none", seconds)
            for name in names:
                kubectl.apply(
                    {
                        "apiVersion": "volprobe.io/v1alpha1",
                        "kind": "ObjectStoreProbe",
                        "metadata": {"name": name, "labels": {"volprobe.io/bench": "s3"}},
                        "spec": {
                            "endpoint": found.endpoint,
                            "bucket": bucket,
                            "credentialsSecret": {"name": "bench-keys"},
                            "intervalSeconds": int(interval),
                        },
                    }
                )
            loaded, passed = controller_rss(found, namespace, "s3", seconds)
            for name in names:
                kubectl.run("delete", "objectstoreprobe", name, "--wait=true")
    finally:
        kubectl.run("delete", "namespace", namespace, "--wait=false")
    print(f"\n== controller peak RSS over {seconds:.0f} s each")
    print(f"no probes:                                   {alone:.1f} MiB")
    print(f"{probes} ObjectStoreProbes every {interval:.0f} s ({passed:.0f} runs passed): {loaded:.1f} MiB")
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
    cli.add_argument("--python", default=sys.executable, help="the interpreter to measure in")
    mem = sub.add_parser("rss")
    mem.add_argument("--probes", type=int, default=10)
    mem.add_argument("--interval", type=float, default=10.0)
    mem.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.command == "latency":
        return latency(args.runs)
    if args.command == "rss":
        return rss(args.probes, args.interval, args.seconds)
    return clients(args.repeat, args.python)


if __name__ == "__main__":
    sys.exit(main())
