"""Phase deadlines derived from the overall deadline (docs/agent.md, "Deadlines")."""

from __future__ import annotations

import pytest

from volprobe.agent.deadlines import plan
from volprobe.contract.reasons import Phase


def test_default_split() -> None:
    steps = plan(100.0, 30.0, fio=False)
    assert [step.phase for step in steps] == [Phase.VERIFY, Phase.WRITE, Phase.FSYNC, Phase.READ]
    assert [round(step.deadline - 100.0, 6) for step in steps] == [7.0, 15.4, 19.6, 28.0]


def test_short_deadlines_keep_a_proportional_reserve() -> None:
    steps = plan(0.0, 4.0, fio=False)
    assert steps[-1].deadline == pytest.approx(3.6)


@pytest.mark.parametrize("deadline", [1.0, 3.0, 30.0, 600.0])
def test_deadlines_increase_and_end_before_the_overall_deadline(deadline: float) -> None:
    for fio in (False, True):
        ends = [step.deadline for step in plan(0.0, deadline, fio)]
        assert ends == sorted(ends)
        assert ends[0] > 0
        assert ends[-1] < deadline


def test_fio_schedule_runs_the_check_in_the_first_half() -> None:
    steps = plan(0.0, 30.0, fio=True)
    assert [step.phase for step in steps] == [
        Phase.VERIFY, Phase.WRITE, Phase.FSYNC, Phase.READ, Phase.WRITE, Phase.READ,
    ]  # fmt: skip
    assert steps[3].deadline == pytest.approx(14.0)
    assert steps[-1].deadline == pytest.approx(28.0)
