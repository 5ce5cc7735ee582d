"""Run slots: deterministic offsets spread evenly over the interval, and the slot arithmetic."""

from __future__ import annotations

import itertools
import math

import pytest

from tests.unit.factories import NOW
from volprobe.model.slots import next_slot, offset, slot_id
from volprobe.model.targets import Target

UID = "9b2f6a3e-64d1-4c52-b8a4-0d6f1e0c2a77"
INTERVAL = 60.0
NODES = [f"worker-{index:04d}.eu-west-1.compute.internal" for index in range(1000)]

CHI_SQUARE_LIMIT = 99.6
"""Upper 0.1 % point of the chi-square distribution with 59 degrees of freedom (60 buckets)."""
KS_LIMIT = 1.63 / math.sqrt(len(NODES))
"""Kolmogorov-Smirnov critical value at the 1 % level for 1000 samples."""
MAX_BUCKET_FACTOR = 2.5
"""No one-second bucket may hold more than 2.5 times the mean number of runs."""


def mount(node: str) -> Target:
    return Target("fast-ssd", "mount", node)


def spread_offsets(uid: str = UID, interval: float = INTERVAL) -> list[float]:
    return [offset(uid, mount(node), interval) for node in NODES]


def per_second(offsets: list[float], interval: float = INTERVAL) -> list[int]:
    counts = [0] * int(interval)
    for value in offsets:
        counts[int(value)] += 1
    return counts


def chi_square(counts: list[int]) -> float:
    expected = sum(counts) / len(counts)
    return sum((count - expected) ** 2 / expected for count in counts)


def ks_statistic(offsets: list[float], interval: float = INTERVAL) -> float:
    """Largest distance between the empirical distribution of offsets and the uniform one."""
    ordered = sorted(value / interval for value in offsets)
    n = len(ordered)
    return max(max((i + 1) / n - x, x - i / n) for i, x in enumerate(ordered))


def spread_evenly(offsets: list[float]) -> bool:
    counts = per_second(offsets)
    mean = len(offsets) / len(counts)
    return (
        max(counts) <= MAX_BUCKET_FACTOR * mean
        and chi_square(counts) < CHI_SQUARE_LIMIT
        and ks_statistic(offsets) < KS_LIMIT
    )


# -- offset ---------------------------------------------------------------------------------------


def test_offset_is_deterministic() -> None:
    target = mount("worker-7")
    assert offset(UID, target, INTERVAL) == offset(UID, target, INTERVAL)


@pytest.mark.parametrize("interval", [10.0, 60.0, 61.0, 3600.0, 86400.0])
def test_offsets_lie_in_the_interval(interval: float) -> None:
    for value in spread_offsets(interval=interval):
        assert 0 <= value < interval


def test_provision_target_has_an_offset_in_the_interval() -> None:
    assert 0 <= offset(UID, Target("fast-ssd", "provision"), INTERVAL) < INTERVAL


def test_offset_is_the_same_fraction_of_any_interval() -> None:
    target = mount("worker-7")
    assert offset(UID, target, 120.0) == pytest.approx(2 * offset(UID, target, 60.0))


def test_no_one_second_bucket_holds_much_more_than_the_mean() -> None:
    counts = per_second(spread_offsets())
    mean = len(NODES) / INTERVAL
    assert max(counts) <= MAX_BUCKET_FACTOR * mean
    assert min(counts) > 0


def test_offsets_pass_a_chi_square_uniformity_check() -> None:
    assert chi_square(per_second(spread_offsets())) < CHI_SQUARE_LIMIT


def test_offsets_pass_a_kolmogorov_smirnov_uniformity_check() -> None:
    assert ks_statistic(spread_offsets()) < KS_LIMIT


@pytest.mark.parametrize("uid", ["a", "0b7c1d2e-0000-4000-8000-000000000001", "ffffffff"])
def test_offsets_are_spread_for_any_probe_uid(uid: str) -> None:
    assert spread_evenly(spread_offsets(uid))


def test_pie_schedule_with_every_run_at_second_zero_fails_the_same_checks() -> None:
    """The contrast: minute CronJobs start every run at second 0; the checks above must catch it."""
    pie = [0.0] * len(NODES)
    assert per_second(pie)[0] == len(NODES)
    assert chi_square(per_second(pie)) > 100 * CHI_SQUARE_LIMIT
    assert ks_statistic(pie) == pytest.approx(1.0)
    assert not spread_evenly(pie)


def test_different_probe_uids_give_different_offsets_for_the_same_target() -> None:
    target = mount("worker-7")
    uids = [f"0b7c1d2e-0000-4000-8000-{index:012d}" for index in range(200)]
    assert len({offset(uid, target, INTERVAL) for uid in uids}) == len(uids)


def test_provision_and_mount_targets_of_a_probe_get_different_offsets() -> None:
    provision = offset(UID, Target("fast-ssd", "provision"), INTERVAL)
    assert provision not in {offset(UID, mount(node), INTERVAL) for node in NODES}


def test_every_node_gets_its_own_offset() -> None:
    assert len(set(spread_offsets())) == len(NODES)


# -- next_slot ------------------------------------------------------------------------------------

OFFSET = offset(UID, mount("worker-7"), INTERVAL)


def is_aligned(slot: float, interval: float = INTERVAL, slot_offset: float = OFFSET) -> bool:
    k = (slot - slot_offset) / interval
    return k == pytest.approx(round(k), abs=1e-6)


@pytest.mark.parametrize("after", [NOW, NOW + 0.5, NOW + 17.25, NOW + 59.999, NOW - 3600.0])
def test_next_slot_is_strictly_after_and_within_one_interval(after: float) -> None:
    slot = next_slot(after, INTERVAL, OFFSET)
    assert after < slot <= after + INTERVAL


@pytest.mark.parametrize("after", [NOW, NOW + 0.5, NOW + 17.25, NOW + 59.999])
def test_next_slot_is_aligned_to_interval_plus_offset(after: float) -> None:
    assert is_aligned(next_slot(after, INTERVAL, OFFSET))


def test_next_slot_of_a_slot_time_is_the_following_slot() -> None:
    slot = next_slot(NOW, INTERVAL, OFFSET)
    assert next_slot(slot, INTERVAL, OFFSET) == slot + INTERVAL


def test_next_slot_just_before_a_slot_is_that_slot() -> None:
    slot = next_slot(NOW, INTERVAL, OFFSET)
    assert next_slot(slot - 0.001, INTERVAL, OFFSET) == slot


@pytest.mark.parametrize("interval", [10.0, 60.0, 300.0, 3600.0, 86400.0])
def test_successive_slots_are_exactly_one_interval_apart(interval: float) -> None:
    slot_offset = offset(UID, mount("worker-7"), interval)
    slots = [next_slot(NOW, interval, slot_offset)]
    for _ in range(1000):
        slots.append(next_slot(slots[-1], interval, slot_offset))
    assert all(later - earlier == interval for earlier, later in itertools.pairwise(slots))


def test_slots_with_zero_offset_fall_on_multiples_of_the_interval() -> None:
    assert next_slot(NOW + 1, INTERVAL, 0.0) == NOW + INTERVAL
    assert next_slot(NOW, INTERVAL, 0.0) == NOW + INTERVAL


def test_slot_id_is_the_hex_of_the_whole_second() -> None:
    assert slot_id(NOW + 0.9) == format(int(NOW), "x")
    assert slot_id(NOW) < slot_id(NOW + INTERVAL)
