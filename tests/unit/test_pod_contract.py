"""Every probe pod the controller can write is understood by the agent exactly as meant.

The pod manifest (`volprobe.model.manifests.probe_pod`) and the agent's command line
(`volprobe.agent.cli.parse_args`) both follow `volprobe.contract.pod`. This test closes the loop:
it takes the container's arguments and environment from real manifests — the downward-API node
resolved the way the kubelet would — and feeds them to the agent's own parser.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from volprobe.agent.cli import Identity, Options, parse_args
from volprobe.cli import main as volprobe_main
from volprobe.contract.pod import NODE_FIELD, SUBCOMMAND, Flag
from volprobe.kinds import REGISTRY
from volprobe.model.kind import Placement
from volprobe.model.manifests import AgentImage, node_claim_name, pod_name, probe_pod
from volprobe.model.spec import ProbeSpec, parse_probe
from volprobe.model.targets import Target

NODE = "ip-10-0-3-7.eu-west-1.compute.internal"
AGENT = AgentImage("registry.example.com/volprobe:0.1.0")

VARIANTS = list(
    itertools.product(
        [kind.name for kind in REGISTRY],
        ["Filesystem", "Block"],
        [None, 0, 41],
        [
            {},
            {"timeouts": {"ioSeconds": 5}},
            {"timeouts": {"ioSeconds": 3600}},
            {"io": {"payloadBytes": 8 << 20, "blockBytes": 4096}},
            {"io": {"payloadBytes": 1 << 20, "blockBytes": 1 << 20}},
        ],
    )
)


def spec_of(volume_mode: str, extra: dict[str, Any]) -> ProbeSpec:
    return parse_probe(
        {
            "metadata": {"name": "fast-ssd", "uid": "c0ffee00-1111-2222-3333-444455556666", "generation": 4},
            "spec": {"storageClassName": "fast-ssd", "volume": {"volumeMode": volume_mode}, **extra},
        }
    )


def manifest(kind_name: str, spec: ProbeSpec, expect: int | None) -> dict[str, Any]:
    kind = next(k for k in REGISTRY if k.name == kind_name)
    target = Target(spec.name, kind.name, NODE if kind.placement is Placement.PER_NODE else "")
    claim = node_claim_name(spec.name, NODE) if kind.lasting_claims(target) else None
    return probe_pod(
        spec,
        target,
        name=pod_name(target, kind.short, "68f1a2b3"),
        namespace="volprobe",
        agent=AGENT,
        claim=claim,
        expect_generation=expect,
    )


def as_the_kubelet_starts_it(pod: dict[str, Any], node: str) -> tuple[list[str], dict[str, str]]:
    """The container's argv after the image's command, and its environment on `node`."""
    (container,) = pod["spec"]["containers"]
    environment: dict[str, str] = {}
    for variable in container["env"]:
        if "value" in variable:
            environment[variable["name"]] = variable["value"]
        else:
            assert variable["valueFrom"] == {"fieldRef": {"fieldPath": NODE_FIELD}}
            environment[variable["name"]] = node
    return list(container["args"]), environment


@pytest.mark.parametrize(("kind", "mode", "expect", "extra"), VARIANTS)
def test_the_agent_reads_every_pod_variant_as_written(
    kind: str, mode: str, expect: int | None, extra: dict[str, Any]
) -> None:
    spec = spec_of(mode, extra)
    pod = manifest(kind, spec, expect)
    argv, environment = as_the_kubelet_starts_it(pod, NODE)
    assert argv[0] == SUBCOMMAND
    options = parse_args(argv[1:], environment)

    (container,) = pod["spec"]["containers"]
    where = (
        {"path": None, "device": container["volumeDevices"][0]["devicePath"]}
        if mode == "Block"
        else {"path": container["volumeMounts"][0]["mountPath"], "device": None}
    )
    assert options == Options(
        kind=kind,
        **where,
        result_file=container["terminationMessagePath"],
        result_file_explicit=False,
        payload_bytes=spec.payload_bytes,
        block_bytes=spec.block_bytes,
        deadline=spec.timeouts.agent_deadline,
        expect_generation=expect,
        fio=False,
        identity=Identity(
            run=pod["metadata"]["name"], probe=spec.name, node=NODE, storage_class=spec.storage_class
        ),
    )


def test_the_agent_deadline_stays_inside_the_controllers_io_phase() -> None:
    for _, mode, _, extra in VARIANTS:
        spec = spec_of(mode, extra)
        assert spec.timeouts.agent_deadline < spec.timeouts.io


def test_the_command_line_goes_through_the_top_level_dispatch(capsys: pytest.CaptureFixture[str]) -> None:
    """`volprobe probe ...` reaches the agent's parser (here: its help, which names every flag)."""
    assert volprobe_main([SUBCOMMAND, "--help"]) == 0
    text = capsys.readouterr().out
    for flag in (
        Flag.PATH,
        Flag.DEVICE,
        Flag.DEADLINE,
        Flag.PAYLOAD_BYTES,
        Flag.BLOCK_BYTES,
        Flag.EXPECT_GENERATION,
    ):
        assert flag in text
