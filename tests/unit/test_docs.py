"""The generated reference pages are up to date with the code they describe."""

from __future__ import annotations

from pathlib import Path

import pytest

import gendocs


@pytest.mark.parametrize("path", sorted(gendocs.GENERATED), ids=lambda p: p.name)
def test_generated_file_is_up_to_date(path: Path) -> None:
    assert path.exists(), f"{path} is missing; run `make docs`"
    assert path.read_text() == gendocs.GENERATED[path](), f"{path} is stale; run `make docs`"


def test_every_reason_has_a_description() -> None:
    from volprobe.contract import reasons

    for enum in (reasons.Result, reasons.Phase, reasons.Reason, reasons.SkipReason):
        for member in enum:
            assert reasons.describe(member), f"{enum.__name__}.{member.name} has no description"


def test_every_kind_has_a_description() -> None:
    from volprobe import kinds

    for kind in kinds.REGISTRY:
        assert kind.description, f"kind {kind.name} has no description"
