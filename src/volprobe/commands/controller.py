"""`volprobe controller`: command line, logging, client, HTTP server, and the controller."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import shlex
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from volprobe import __version__, kinds
from volprobe.model.manifests import AgentImage
from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.controller import Controller, ControllerConfig, Health
from volprobe.runtime.kube import ConfigError, KubeClient, load_config
from volprobe.runtime.metrics import ProbeMetrics
from volprobe.runtime.server import make_registry, serve

NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


def default_namespace() -> str:
    if "VOLPROBE_NAMESPACE" in os.environ:
        return os.environ["VOLPROBE_NAMESPACE"]
    with contextlib.suppress(OSError):
        return NAMESPACE_FILE.read_text().strip()
    return "volprobe-system"


def parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = argparse.ArgumentParser(prog="volprobe controller", description="Run the volprobe controller.")
    p.add_argument(
        "--kubeconfig", type=Path, help="kubeconfig to use (default: $KUBECONFIG, in-cluster, ~/.kube/config)"
    )
    p.add_argument(
        "--namespace",
        default=default_namespace(),
        help="namespace for probe pods, claims, the Lease and Events (default: the pod's own)",
    )
    p.add_argument(
        "--probe-image",
        default=env("VOLPROBE_PROBE_IMAGE"),
        required=not env("VOLPROBE_PROBE_IMAGE"),
        help="image of the probe pods (the agent); $VOLPROBE_PROBE_IMAGE",
    )
    p.add_argument(
        "--agent-command",
        default=env("VOLPROBE_AGENT_COMMAND", "volprobe"),
        help="command that starts the agent in the probe image",
    )
    p.add_argument("--image-pull-policy", default="IfNotPresent", choices=["Always", "IfNotPresent", "Never"])
    p.add_argument("--metrics-address", default=":8080", help="host:port for /metrics, /healthz, /readyz")
    p.add_argument(
        "--leader-elect",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="elect a leader through a Lease (needed with more than one replica)",
    )
    p.add_argument("--lease-name", default="volprobe-controller")
    p.add_argument(
        "--probe-selector",
        default="",
        help="only handle StorageProbes with these labels (e.g. team=storage); default: all",
    )
    p.add_argument("--identity", default=env("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}")
    p.add_argument("--max-api-requests-per-second", type=float, default=20.0)
    p.add_argument("--max-pod-creations-per-second", type=float, default=5.0)
    p.add_argument("--status-interval", type=float, default=5.0, help="minimum seconds between status writes")
    p.add_argument(
        "--log-level",
        default=env("VOLPROBE_LOG_LEVEL", "info"),
        choices=["debug", "info", "warning", "error"],
    )
    return p


async def run(args: argparse.Namespace) -> None:
    health = Health()
    metrics = ProbeMetrics()
    budget = ApiBudget(
        BudgetConfig(
            request_rate=args.max_api_requests_per_second,
            request_burst=max(1.0, 2 * args.max_api_requests_per_second),
            pod_create_rate=args.max_pod_creations_per_second,
            pod_create_burst=max(1.0, 2 * args.max_pod_creations_per_second),
        )
    )
    client = KubeClient(
        load_config(args.kubeconfig),
        budget=budget,
        user_agent=f"volprobe/{__version__}",
        on_response=lambda verb, code, _seconds: metrics.api_request(verb, code),
    )
    server = serve(args.metrics_address, make_registry(metrics), health)
    config = ControllerConfig(
        namespace=args.namespace,
        agent=AgentImage(args.probe_image, tuple(shlex.split(args.agent_command)), args.image_pull_policy),
        identity=args.identity,
        leader_election=args.leader_elect,
        lease_name=args.lease_name,
        status_interval=args.status_interval,
        probe_selector=args.probe_selector,
    )
    controller = asyncio.create_task(
        Controller(client, config, metrics, health, kinds=kinds.BY_NAME, resources=kinds.RESOURCES).run()
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, controller.cancel)
    try:
        await controller
    except asyncio.CancelledError:
        logging.getLogger(__name__).info("shutting down")
    finally:
        server.shutdown()
        await client.aclose()


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        asyncio.run(run(args))
    except ConfigError as error:  # a kubeconfig we cannot use; a failing plugin later is retried
        print(f"volprobe controller: {error}", file=sys.stderr)
        return 2
    return 0
