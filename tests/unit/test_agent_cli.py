"""Command line and environment of `volprobe probe`."""

from __future__ import annotations

import pytest

from volprobe.agent.cli import (
    HelpRequested,
    Identity,
    UsageError,
    parse_args,
    parse_size,
)
from volprobe.contract.pod import RESULT_FILE


def test_defaults() -> None:
    options = parse_args(["mount", "--path", "/data"], {})
    assert options.kind == "mount"
    assert options.path == "/data"
    assert options.device is None
    assert options.result_file == RESULT_FILE
    assert not options.result_file_explicit
    assert options.payload_bytes == 4 << 20
    assert options.block_bytes == 1 << 20
    assert options.deadline == 30.0
    assert options.expect_generation is None
    assert not options.fio
    assert options.identity == Identity()


def test_environment_gives_identity_and_settings() -> None:
    environ = {
        "VOLPROBE_RUN_ID": "r-1",
        "VOLPROBE_PROBE": "fast-ssd",
        "VOLPROBE_NODE": "node-a",
        "VOLPROBE_STORAGE_CLASS": "ssd",
        "VOLPROBE_KIND": "provision",
        "VOLPROBE_EXPECT_GENERATION": "12",
        "VOLPROBE_DEADLINE_SECONDS": "20",
    }
    options = parse_args(["provision", "--device", "/dev/xvdb"], environ)
    assert options.kind == "provision"
    assert options.device == "/dev/xvdb"
    assert options.identity == Identity("r-1", "fast-ssd", "node-a", "ssd")
    assert options.expect_generation == 12
    assert options.deadline == 20.0


def test_flags_override_environment() -> None:
    environ = {"VOLPROBE_EXPECT_GENERATION": "12", "VOLPROBE_DEADLINE_SECONDS": "20"}
    options = parse_args(
        ["mount", "--path", "/d", "--expect-generation", "3", "--deadline", "5.5", "--result-file", "/r"],
        environ,
    )
    assert options.expect_generation == 3
    assert options.deadline == 5.5
    assert options.result_file == "/r"
    assert options.result_file_explicit


def test_empty_environment_values_are_unset() -> None:
    options = parse_args(["mount", "--path", "/d"], {"VOLPROBE_EXPECT_GENERATION": "", "VOLPROBE_KIND": ""})
    assert options.expect_generation is None


@pytest.mark.parametrize(
    ("text", "value"),
    [("4096", 4096), ("4KiB", 4096), ("4Ki", 4096), ("4k", 4096), ("1MiB", 1 << 20), ("2G", 2 << 30)],
)
def test_sizes(text: str, value: int) -> None:
    assert parse_size(text) == value


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["mount"],
        ["mount", "--path", "/d", "--device", "/dev/x"],
        ["Mount", "--path", "/d"],
        ["mount;rm", "--path", "/d"],
        ["m" * 40, "--path", "/d"],
        ["mount", "--path", "/d", "--block-bytes", "3000"],
        ["mount", "--path", "/d", "--block-bytes", "2MiB"],
        ["mount", "--path", "/d", "--block-bytes", "2KiB"],
        ["mount", "--path", "/d", "--payload-bytes", "0"],
        ["mount", "--path", "/d", "--payload-bytes", "1000000"],
        ["mount", "--path", "/d", "--payload-bytes", "2GiB"],
        ["mount", "--path", "/d", "--payload-bytes", "lots"],
        ["mount", "--path", "/d", "--deadline", "0.5"],
        ["mount", "--path", "/d", "--deadline", "nan"],
        ["mount", "--path", "/d", "--deadline", "inf"],
        ["mount", "--path", "/d", "--deadline", "soon"],
        ["mount", "--path", "/d", "--expect-generation", "-1"],
        ["mount", "--path", "/d", "--expect-generation", "1.5"],
        ["mount", "--path", "/d", "--unknown"],
    ],
)
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv, {})


@pytest.mark.parametrize(
    "environ",
    [
        {"VOLPROBE_KIND": "provision"},
        {"VOLPROBE_EXPECT_GENERATION": "twelve"},
        {"VOLPROBE_DEADLINE_SECONDS": "-3"},
    ],
)
def test_bad_environment_is_a_usage_error(environ: dict[str, str]) -> None:
    with pytest.raises(UsageError):
        parse_args(["mount", "--path", "/d"], environ)


def test_help() -> None:
    with pytest.raises(HelpRequested, match="--expect-generation"):
        parse_args(["--help"], {})
