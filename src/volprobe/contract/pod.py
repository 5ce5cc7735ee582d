"""How the controller starts the agent in a probe pod: the one definition both sides use.

The controller writes an `Invocation` into the pod (command-line arguments and environment);
the agent's command line (`volprobe.agent.cli`) reads exactly these flags, variables, paths and
limits. Keeping them here, in the standard-library-only contract layer, means a flag renamed on
one side cannot silently stop matching the other: both import the same constants, and
tests/unit/test_pod_contract.py feeds every manifest variant the controller can write through
the agent's own parser.

Identity and per-run values go through the environment (the pod spec stays readable and the
node comes from the downward API); sizes and the deadline are flags, so a person can run the
agent by hand with the same meaning.
"""

from __future__ import annotations

from dataclasses import dataclass

SUBCOMMAND = "probe"
"""`volprobe probe <kind> ...` starts the agent."""

RESULT_FILE = "/dev/termination-log"
"""Where the agent writes its report; the kubelet copies it into the pod's status."""
MOUNT_PATH = "/volume"
"""Where a Filesystem volume is mounted in the probe container."""
DEVICE_PATH = "/dev/volprobe"
"""Where a Block volume appears in the probe container."""
AGENT_UID = 65532
"""The agent runs as this unprivileged user (the conventional "nonroot" uid) on filesystems."""
NODE_FIELD = "spec.nodeName"
"""Downward-API field the agent's node comes from (`Env.NODE`)."""


class Flag:
    """The agent's command-line flags."""

    PATH = "--path"
    DEVICE = "--device"
    RESULT_FILE = "--result-file"
    PAYLOAD_BYTES = "--payload-bytes"
    BLOCK_BYTES = "--block-bytes"
    DEADLINE = "--deadline"
    EXPECT_GENERATION = "--expect-generation"
    FIO = "--fio"


class Env:
    """Environment variables the controller sets in the probe container."""

    RUN_ID = "VOLPROBE_RUN_ID"
    PROBE = "VOLPROBE_PROBE"
    KIND = "VOLPROBE_KIND"
    STORAGE_CLASS = "VOLPROBE_STORAGE_CLASS"
    NODE = "VOLPROBE_NODE"
    EXPECT_GENERATION = "VOLPROBE_EXPECT_GENERATION"
    DEADLINE_SECONDS = "VOLPROBE_DEADLINE_SECONDS"


MIN_BLOCK_BYTES = 4096
MAX_BLOCK_BYTES = 1 << 20
MAX_PAYLOAD_BYTES = 1 << 30
DEFAULT_PAYLOAD_BYTES = 4 << 20
DEFAULT_BLOCK_BYTES = 1 << 20
MIN_DEADLINE = 1.0
MAX_DEADLINE = 3600.0
DEFAULT_DEADLINE = 30.0
KIND_PATTERN = r"[a-z][a-z0-9-]{0,30}"
"""Kind names are label values and parts of pod names: short, lowercase."""


@dataclass(frozen=True)
class Invocation:
    """One run of the agent as the controller asks for it."""

    kind: str
    run_id: str
    probe: str
    storage_class: str
    block_device: bool
    deadline: float
    payload_bytes: int
    block_bytes: int
    expect_generation: int | None = None

    def args(self) -> list[str]:
        """Arguments after the image's agent command."""
        where = [Flag.DEVICE, DEVICE_PATH] if self.block_device else [Flag.PATH, MOUNT_PATH]
        return [
            SUBCOMMAND,
            self.kind,
            *where,
            Flag.DEADLINE,
            format(self.deadline, "g"),
            Flag.PAYLOAD_BYTES,
            str(self.payload_bytes),
            Flag.BLOCK_BYTES,
            str(self.block_bytes),
        ]

    def environment(self) -> dict[str, str]:
        """Literal variables; `Env.NODE` comes from the downward API (`NODE_FIELD`)."""
        found = {
            Env.RUN_ID: self.run_id,
            Env.PROBE: self.probe,
            Env.KIND: self.kind,
            Env.STORAGE_CLASS: self.storage_class,
        }
        if self.expect_generation is not None:
            found[Env.EXPECT_GENERATION] = str(self.expect_generation)
        return found
