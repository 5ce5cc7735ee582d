"""Learned baselines: what a healthy phase takes, and the stalled/slow thresholds derived from it."""

from __future__ import annotations

import pytest

from volprobe.contract.reasons import Phase
from volprobe.model.baseline import (
    FACTOR,
    FLOOR,
    MIN_SAMPLES,
    MOUNT_FLOOR,
    WINDOW,
    Baseline,
    quantile,
    threshold,
)


def test_quantile_interpolates_between_ranks() -> None:
    assert quantile([1, 2, 3, 4, 5], 0.5) == 3
    assert quantile([1, 2, 3, 4, 5], 0.9) == pytest.approx(4.6)
    assert quantile([7], 0.9) == 7


def test_no_threshold_until_enough_successes() -> None:
    assert threshold([3.0] * (MIN_SAMPLES - 1), Phase.PROVISION) is None
    assert threshold([3.0] * MIN_SAMPLES, Phase.PROVISION) == FLOOR


def test_a_fast_phase_gets_the_floor_and_a_slow_storage_a_wide_margin() -> None:
    fast = [0.2, 0.3, 0.25, 0.4, 0.3]
    assert threshold(fast, Phase.PROVISION) == FLOOR, "sub-second phases: never stalled before the floor"
    assert threshold([20.0] * 10, Phase.PROVISION) == pytest.approx(FACTOR * 20), (
        "normal 20 s is not stalled at 5 s, nor at 59 s"
    )


def test_a_mount_is_not_stalled_while_the_kubelet_may_be_retrying_its_volumes() -> None:
    one_second = [0.9, 1.0, 1.1, 0.9, 1.0]
    assert threshold(one_second, Phase.MOUNT) == MOUNT_FLOOR
    assert MOUNT_FLOOR > 15, "the kubelet retries a pod whose volumes it could not set up after 10-15 s"
    assert threshold([30.0] * 10, Phase.MOUNT) == pytest.approx(FACTOR * 30)


def test_one_outlier_does_not_move_the_threshold_much() -> None:
    healthy = [8.0, 8.2, 7.9, 8.1, 8.0, 7.8, 8.3, 8.0, 7.9, 8.0]
    with_outlier = threshold([*healthy, 120.0], Phase.PROVISION)
    assert with_outlier is not None
    assert with_outlier < FACTOR * 9, "a single 120 s success does not make 120 s normal"


def test_the_window_keeps_only_recent_successes() -> None:
    baseline = Baseline()
    for seconds in [60.0] * WINDOW + [3.0] * WINDOW:
        baseline.learn("provision", {Phase.PROVISION: seconds})
    assert baseline.threshold("provision", Phase.PROVISION) == FLOOR, (
        "the storage got faster: old runs age out"
    )


def test_phases_and_kinds_are_learned_apart() -> None:
    baseline = Baseline()
    for _ in range(MIN_SAMPLES):
        baseline.learn("provision", {Phase.PROVISION: 20.0, Phase.MOUNT: 0.5, Phase.VERIFY: 9.0})
    assert baseline.threshold("provision", Phase.PROVISION) == pytest.approx(60)
    assert baseline.threshold("provision", Phase.MOUNT) == MOUNT_FLOOR
    assert baseline.threshold("mount", Phase.PROVISION) is None
    assert baseline.threshold("provision", Phase.VERIFY) is None, "the agent's own phases are inside io"


def test_the_slowest_phase_over_its_threshold_is_named() -> None:
    baseline = Baseline()
    for _ in range(MIN_SAMPLES):
        baseline.learn("mount", {Phase.MOUNT: 1.0, Phase.IO: 4.0})
    assert baseline.slowest_over("mount", {Phase.MOUNT: 19.0, Phase.IO: 9.0}) is None
    assert baseline.slowest_over("mount", {Phase.MOUNT: 50.0, Phase.IO: 13.0}) == (
        Phase.MOUNT,
        50.0,
        MOUNT_FLOOR,
    )
    assert baseline.slowest_over("mount", {Phase.MOUNT: 21.0, Phase.IO: 13.0}) == (
        Phase.IO,
        13.0,
        FACTOR * 4.0,
    ), "the phase furthest over its threshold"


def test_it_survives_the_status_round_trip_and_ignores_garbage() -> None:
    baseline = Baseline()
    for index in range(WINDOW + 3):
        baseline.learn("provision", {Phase.PROVISION: 3.0 + index / 1000})
    document = {"baselines": baseline.to_status()}
    assert Baseline.from_status(document, ["provision"]) == baseline
    garbage = {
        "baselines": {
            "provision/provision": [1, "x", -2, float("nan"), 2.5],
            "provision/nonsense": [1, 2],
            "unknown/provision": [1, 2],
            "mount/mount": "not a list",
        }
    }
    restored = Baseline.from_status(garbage, ["provision", "mount"])
    assert restored.windows == {("provision", Phase.PROVISION): [1.0, 2.5]}
    assert Baseline.from_status(None, ["provision"]) == Baseline()
    assert Baseline.from_status({"baselines": []}, ["provision"]) == Baseline()


def test_the_fastest_recent_duration_is_the_one_without_a_queue() -> None:
    baseline = Baseline()
    for seconds in [2.0, 40.0, 60.0, 80.0]:
        baseline.learn("mount", {Phase.PROVISION: seconds})
    assert baseline.fastest("mount", Phase.PROVISION) is None, "not before enough successes"
    baseline.learn("mount", {Phase.PROVISION: 100.0})
    assert baseline.fastest("mount", Phase.PROVISION) == 2.0
    assert baseline.fastest("provision", Phase.PROVISION) is None
