"""The generation rules (docs/agent.md, "Generations")."""

from __future__ import annotations

import pytest

from volprobe.agent.generations import judge, next_generation
from volprobe.contract.reasons import Reason


@pytest.mark.parametrize(
    ("found", "expected", "failure"),
    [
        (None, None, None),  # fresh volume
        (None, 0, None),  # "nothing written yet" is the same as no expectation
        (None, 1, Reason.DATA_LOST),  # data expected, none there
        (3, None, None),
        (3, 3, None),
        (4, 3, None),  # controller missed recording the newest run: not a loss
        (2, 3, Reason.DATA_LOST),  # stale
        (1, 10**6, Reason.DATA_LOST),
    ],
)
def test_judge(found: int | None, expected: int | None, failure: Reason | None) -> None:
    verdict = judge(found, expected)
    assert (verdict[0] if verdict else None) is failure


def test_judge_details_say_what_was_found() -> None:
    lost = judge(None, 4)
    stale = judge(2, 4)
    assert lost is not None
    assert "expected generation 4" in lost[1]
    assert stale is not None
    assert "generation 2" in stale[1]
    assert "stale" in stale[1]


@pytest.mark.parametrize(
    ("found", "expected", "written"),
    [(None, None, 1), (None, 0, 1), (4, None, 5), (4, 3, 5), (2, 7, 8), (None, 7, 8)],
)
def test_next_generation_never_goes_backwards(found: int | None, expected: int | None, written: int) -> None:
    assert next_generation(found, expected) == written
