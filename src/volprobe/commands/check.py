"""`volprobe check`: every probe once, now, with the controller's own engine; then clean up.

The smoke test to run after an upgrade or a storage change. It builds the same pods and claims
as the controller, follows them with the same `Engine` and `RunTracker`, and judges them with
the same rules, so a passing check means the controller would pass too. Mount probes run twice
per node by default: the second run, in a new pod, verifies what the first wrote (data that
survives a remount). Everything it creates is deleted before it exits, also on Ctrl-C.

Exit codes: 0 every run passed; 1 a run failed or timed out; 2 bad usage or cluster access;
3 nothing could be probed (all nodes skipped); 130 interrupted (after cleaning up).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import sys
import time
import uuid
from collections.abc import Coroutine, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

import httpx

from volprobe import __version__, kinds
from volprobe.commands.cleanup import delete_owned
from volprobe.contract.reasons import Phase, SkipReason
from volprobe.kinds import storageprobe
from volprobe.model import kind as kind_model
from volprobe.model.manifests import DEFAULT_AGENT_IMAGE, SELECTOR, AgentImage, pod_name
from volprobe.model.outcome import Outcome
from volprobe.model.runs import RunRequest
from volprobe.model.spec import PLURAL, ProbeSpec, Timeouts, parse_probe
from volprobe.model.targets import Target
from volprobe.runtime.budget import ApiBudget, BudgetConfig
from volprobe.runtime.caches import Caches, probes_path
from volprobe.runtime.engine import Engine, RunnableKind
from volprobe.runtime.kube import ApiError, ConfigError, KubeClient, load_config

OUTPUT_VERSION = 1
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOTHING, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


@dataclass
class CheckResult:
    storage_class: str
    namespace: str
    outcomes: list[Outcome] = field(default_factory=list)
    skipped: dict[str, SkipReason] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return bool(self.outcomes) and all(o.passed for o in self.outcomes)

    @property
    def exit_code(self) -> int:
        if not self.outcomes:
            return EXIT_NOTHING
        return EXIT_OK if self.passed else EXIT_FAILED


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="volprobe check", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("storage_class", nargs="?", help="StorageClass to check (or use --probe)")
    p.add_argument("--probe", help="take class, nodes, timeouts and pod settings from this StorageProbe")
    p.add_argument("--kubeconfig", type=Path)
    p.add_argument(
        "--namespace", help="namespace for the check's pods (default: a temporary one, deleted after)"
    )
    p.add_argument("--node", action="append", default=[], help="probe only this node (repeatable)")
    p.add_argument("--probe-image", default=os.environ.get("VOLPROBE_PROBE_IMAGE", DEFAULT_AGENT_IMAGE))
    p.add_argument("--agent-command", default=os.environ.get("VOLPROBE_AGENT_COMMAND", "volprobe"))
    p.add_argument("--image-pull-policy", default="IfNotPresent", choices=["Always", "IfNotPresent", "Never"])
    p.add_argument(
        "--mount-runs", type=int, default=2, help="mount runs per node (2: write, then remount-verify)"
    )
    p.add_argument("--no-provision", action="store_true", help="skip the provision probe")
    p.add_argument("--no-mount", action="store_true", help="skip the mount probes")
    p.add_argument("--timeout", type=int, help="seconds for each phase (default: the StorageProbe defaults)")
    p.add_argument(
        "--node-grace",
        type=int,
        help="skip nodes that joined or became Ready less than this many seconds ago (default 60)",
    )
    p.add_argument("--output", choices=["table", "json"], default="table")
    return p


def spec_from_args(args: argparse.Namespace, probe_object: dict[str, Any] | None) -> ProbeSpec:
    """The probe to run: an existing StorageProbe's spec, or defaults for the class given."""
    name = f"check-{uuid.uuid4().hex[:6]}"
    if probe_object is not None:
        spec = parse_probe(probe_object)
    else:
        spec = ProbeSpec(name=name, uid="", generation=0, storage_class=args.storage_class)
    # No UID: the check's objects are not owned by the StorageProbe (they must outlive nothing).
    switched_off = {"provision"} if args.no_provision else set()
    switched_off |= {"mount"} if args.no_mount else set()
    spec = replace(spec, name=name, uid="", disabled_kinds=spec.disabled_kinds | switched_off)
    if args.node:
        terms = (
            {"matchFields": [{"key": "metadata.name", "operator": "In", "values": [node]}]}
            for node in args.node
        )
        spec = replace(spec, node_selector_terms=tuple(terms))
    if args.node_grace is not None:
        spec = replace(spec, node_grace=float(args.node_grace))
    if args.timeout:
        seconds = float(args.timeout)
        spec = replace(spec, timeouts=Timeouts(seconds, seconds, seconds, seconds, seconds))
    return spec


class Check:
    def __init__(
        self,
        client: KubeClient,
        spec: ProbeSpec,
        namespace: str,
        agent: AgentImage,
        *,
        mount_runs: int,
        progress: TextIO | None,
    ) -> None:
        self.client = client
        self.spec = spec
        self.namespace = namespace
        self.caches = Caches(client, namespace)
        self.engine = Engine(client, self.caches, agent)
        self.mount_runs = mount_runs
        self.progress = progress
        self.result = CheckResult(spec.storage_class, namespace)

    async def run(self) -> CheckResult:
        started = time.monotonic()
        self.caches.start()
        try:
            await self.caches.wait_synced()
            if self.caches.storage_class(self.spec.storage_class) is None:
                raise CheckError(f"StorageClass {self.spec.storage_class!r} does not exist")
            jobs = self._plan()
            reporter = asyncio.create_task(self._report_progress(started))
            try:
                await asyncio.gather(*jobs)
            finally:
                reporter.cancel()
        finally:
            await self.clean_up()
            await self.caches.stop()
        self.result.seconds = time.monotonic() - started
        return self.result

    def _plan(self) -> list[Coroutine[Any, Any, None]]:
        """One job per target of every enabled kind; per-node kinds run `mount_runs` times."""
        now = time.time()
        resource = storageprobe.RESOURCE
        by_name = {node.name: node for node in self.caches.all_nodes()}
        selected = sorted(name for name, node in by_name.items() if resource.covers(self.spec, node))
        if not selected:
            raise CheckError("no node matches the probe's node selector")
        skips = {name: resource.node_skip(self.spec, by_name[name], now) for name in selected}
        unwell = {name: reason for name, reason in skips.items() if reason is not None}
        self.result.skipped = unwell
        covered = frozenset(selected)
        jobs = []
        for kind in kinds.REGISTRY:
            if kind.resource != resource.plural:
                continue
            per_node = kind.placement is kind_model.Placement.PER_NODE
            for target in kind_model.targets(kind, self.spec, selected):
                ready = kind_model.readiness(kind.placement, target, selected=covered, unwell=unwell)
                if ready.skip is None:
                    runs = self.mount_runs if per_node else 1
                    jobs.append(self._runs(kind, target, runs, ready.avoid_nodes))
        return jobs

    async def _runs(self, kind: RunnableKind, target: Target, count: int, avoid: tuple[str, ...]) -> None:
        for index in range(count):
            name = pod_name(target, kind.short, f"{int(time.time()):x}{index}")
            outcome = await kind.execute(RunRequest(self.spec, target, name, avoid_nodes=avoid), self.engine)
            self.result.outcomes.append(outcome)
            self._say(
                f"{_where(outcome)}: {outcome.result.value}"
                + (f" ({_value(outcome.reason)} in {_value(outcome.phase)})" if not outcome.passed else "")
                + f" in {outcome.seconds:.1f}s"
            )
            if not outcome.passed:
                break  # a remount check after a failed write would only repeat the failure

    async def _report_progress(self, started: float) -> None:
        while True:
            await asyncio.sleep(5)
            running = ", ".join(
                f"{tracker.target.kind} {tracker.node or '-'}: {tracker.stage.value}"
                for tracker in self.engine.in_flight.values()
            )
            if running:
                self._say(f"… {time.monotonic() - started:.0f}s, waiting for {running}")

    def _say(self, line: str) -> None:
        if self.progress is not None:
            print(line, file=self.progress, flush=True)

    async def clean_up(self) -> None:
        """Delete every pod and claim the check made and wait until their volumes are gone."""
        await delete_owned(
            self.client,
            self.namespace,
            selector=f"{SELECTOR},volprobe.io/probe={self.spec.name}",
            wait=self.spec.timeouts.cleanup,
        )


class CheckError(Exception):
    pass


def _value(member: Phase | Any | None) -> str:
    return str(getattr(member, "value", "")) if member is not None else ""


def _where(outcome: Outcome) -> str:
    return f"{outcome.target.kind} {outcome.node or '-'}"


def render_table(result: CheckResult) -> str:
    header = (
        "KIND",
        "NODE",
        "RESULT",
        "PHASE",
        "REASON",
        "PROVISION",
        "SCHEDULE",
        "MOUNT",
        "IO",
        "CLEANUP",
        "TOTAL",
        "MESSAGE",
    )
    rows: list[tuple[str, ...]] = [header]
    for outcome in sorted(result.outcomes, key=lambda o: (o.target.kind, o.node, o.started)):
        times = [
            outcome.durations.get(phase)
            for phase in (Phase.PROVISION, Phase.SCHEDULE, Phase.MOUNT, Phase.IO, Phase.CLEANUP)
        ]
        rows.append(
            (
                outcome.target.kind,
                outcome.node or "-",
                outcome.result.value,
                _value(outcome.phase) or "-",
                _value(outcome.reason) or "-",
                *(f"{t:.2f}s" if t is not None else "-" for t in times),
                f"{outcome.seconds:.1f}s",
                (outcome.message or "")[:60] if not outcome.passed else "",
            )
        )
    for node, reason in sorted(result.skipped.items()):
        rows.append(("mount", node, "skipped", "-", reason.value, *("-",) * 6, ""))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
    lines = [
        "  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in rows
    ]
    verdict = "PASSED" if result.passed else ("NOTHING PROBED" if not result.outcomes else "FAILED")
    lines.append("")
    lines.append(
        f"{verdict}: StorageClass {result.storage_class}, {len(result.outcomes)} runs, "
        f"{sum(1 for o in result.outcomes if not o.passed)} failed, {len(result.skipped)} nodes skipped, "
        f"{result.seconds:.1f}s"
    )
    return "\n".join(lines)


def to_json(result: CheckResult) -> dict[str, Any]:
    """The `--output json` document (schema in docs/check.md)."""
    return {
        "version": OUTPUT_VERSION,
        "storageClass": result.storage_class,
        "passed": result.passed,
        "exitCode": result.exit_code,
        "seconds": round(result.seconds, 3),
        "runs": [
            {
                "kind": o.target.kind,
                "node": o.node,
                "pod": o.run,
                "result": o.result.value,
                "phase": _value(o.phase) or None,
                "reason": _value(o.reason) or None,
                "message": o.message,
                "seconds": round(o.seconds, 3),
                "phases": {phase.value: round(seconds, 4) for phase, seconds in o.durations.items()},
                "io": None
                if o.report is None
                else {
                    "generation": o.report.written_generation,
                    "verifiedPrevious": o.report.previous_generation,
                    "directIO": o.report.direct,
                    "bytes": o.report.payload_bytes,
                    "p99Seconds": {op: s.p99 for op, s in o.report.ops.items()},
                },
            }
            for o in sorted(result.outcomes, key=lambda o: (o.target.kind, o.node, o.started))
        ],
        "skipped": [{"node": n, "reason": r.value} for n, r in sorted(result.skipped.items())],
    }


async def _namespace(client: KubeClient, wanted: str | None) -> tuple[str, bool]:
    """The namespace to run in and whether we created it (and must delete it)."""
    if wanted:
        return wanted, False
    name = f"volprobe-check-{uuid.uuid4().hex[:6]}"
    await client.create(
        "/api/v1/namespaces",
        {
            "apiVersion": "v1",
            "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/managed-by": "volprobe"}},
        },
    )
    for _ in range(100):  # pods cannot be created before the namespace's default service account exists
        with contextlib.suppress(ApiError):
            await client.get(f"/api/v1/namespaces/{name}/serviceaccounts/default")
            break
        await asyncio.sleep(0.2)
    return name, True


async def run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    budget = ApiBudget(
        BudgetConfig(request_rate=20, request_burst=40, pod_create_rate=5, pod_create_burst=10)
    )
    async with KubeClient(
        load_config(args.kubeconfig), budget=budget, user_agent=f"volprobe-check/{__version__}"
    ) as client:
        probe_object = await client.get(f"{probes_path(PLURAL)}/{args.probe}") if args.probe else None
        spec = spec_from_args(args, probe_object)
        namespace, temporary = await _namespace(client, args.namespace)
        agent = AgentImage(args.probe_image, tuple(shlex.split(args.agent_command)), args.image_pull_policy)
        check = Check(client, spec, namespace, agent, mount_runs=max(1, args.mount_runs), progress=err)
        print(f"checking StorageClass {spec.storage_class} in namespace {namespace} …", file=err, flush=True)
        try:
            result = await check.run()
        finally:
            if temporary:
                with contextlib.suppress(ApiError):
                    await client.delete(f"/api/v1/namespaces/{namespace}")
        if args.output == "json":
            print(json.dumps(to_json(result), indent=2), file=out)
        else:
            print(render_table(result), file=out)
        return result.exit_code


def main(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    if not args.storage_class and not args.probe:
        parser().error("name a StorageClass or --probe")
    try:
        return asyncio.run(run(args, sys.stdout, sys.stderr))
    except KeyboardInterrupt:
        print("interrupted; everything the check created was deleted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except CheckError as error:
        print(f"volprobe check: {error}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as error:  # a kubeconfig we cannot use, or its exec credential plugin failed
        print(f"volprobe check: {error}", file=sys.stderr)
        return EXIT_USAGE
    except (ApiError, OSError, httpx.TransportError) as error:
        print(f"volprobe check: cannot talk to the cluster: {error}", file=sys.stderr)
        return EXIT_USAGE
