"""The window of new volumes: AIMD, and what counts as congestion (pure, no clock)."""

from __future__ import annotations

from volprobe.model.pacing import CONGESTED_AFTER, FACTOR, FLOOR, INITIAL, MAXIMUM, Window, congested_after


def test_unknown_classes_use_the_default_and_fast_ones_the_floor() -> None:
    assert congested_after([]) == CONGESTED_AFTER
    assert congested_after([0.8, 1.5]) == FLOOR


def test_the_fastest_known_volume_decides() -> None:
    assert congested_after([20.0, 5.0]) == FACTOR * 5.0


def test_the_fastest_volume_only_falls_so_a_queue_cannot_raise_it() -> None:
    window = Window()
    window.bound(2.0, FLOOR)
    for _ in range(50):  # a long rollout: every later volume waited behind the earlier ones
        window.bound(100.0, FLOOR)
    assert window.fastest == 2.0
    assert congested_after([100.0, window.fastest]) == FLOOR


def test_a_window_grows_by_one_per_volume_and_halves_once_per_period() -> None:
    window = Window()
    assert window.allowed() == INITIAL
    window.bound(FLOOR + 1, FLOOR)
    assert window.allowed() == INITIAL, "a volume slower than normal does not widen it"
    for _ in range(200):
        window.bound(1.0, FLOOR)
    assert window.allowed() == MAXIMUM
    assert window.congested(100.0, 10.0)
    assert not window.congested(105.0, 10.0)
    assert window.allowed() == MAXIMUM // 2, "halved at most once per period"
    window.congested(110.0, 10.0)
    assert window.allowed() == MAXIMUM // 4
    for step in range(10):
        window.congested(200.0 + 10 * step, 10.0)
    assert window.allowed() == 1, "never below one volume"
