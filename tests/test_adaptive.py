"""``FLOODWALL_CAPACITY=auto``: the gradient limit, driven by synthetic latencies."""

from __future__ import annotations

import pytest

from floodwall.protection.adaptive import AdaptiveLimit


class Drive:
    """Feeds a limiter windows of completed requests at a given latency, busy or idle."""

    def __init__(self, limit: AdaptiveLimit) -> None:
        self.limit = limit
        self.now = 0.0

    def windows(self, count: int, latency: float, *, busy: bool = True) -> list[int]:
        seen = []
        for _ in range(count):
            in_flight = self.limit.limit if busy else 1
            for _ in range(10):
                self.now += 0.03
                self.limit.observe(latency, self.now, in_flight)
            seen.append(self.limit.limit)
        return seen


def test_the_limit_falls_when_latency_rises_and_rises_when_it_falls() -> None:
    heard: list[int] = []
    limit = AdaptiveLimit(initial=20, minimum=4, maximum=200, on_change=heard.append)
    drive = Drive(limit)
    drive.windows(3, 0.050)
    assert limit.no_load_latency == pytest.approx(0.050)
    start = limit.limit
    assert start > 20  # no queueing: room to grow
    falling = drive.windows(6, 0.200)
    assert falling == sorted(falling, reverse=True)
    assert falling[-1] < start / 4
    assert limit.limit >= 4
    rising = drive.windows(6, 0.050)
    assert rising == sorted(rising)
    # Latency at the no-load figure: 1.25 x a window.
    assert rising[-1] >= falling[-1] * 3
    assert heard[0] == 20
    assert heard[-1] == limit.limit


def test_latency_within_the_buffer_keeps_the_limit() -> None:
    limit = AdaptiveLimit(initial=40, maximum=40)
    drive = Drive(limit)
    drive.windows(2, 0.100)
    assert drive.windows(5, 0.124) == [40] * 5


def test_the_limit_is_bounded() -> None:
    limit = AdaptiveLimit(initial=10, minimum=5, maximum=30)
    drive = Drive(limit)
    drive.windows(1, 0.01)
    assert drive.windows(20, 0.01)[-1] == 30
    assert drive.windows(20, 1.0)[-1] == 5


def test_an_unused_limit_does_not_grow() -> None:
    limit = AdaptiveLimit(initial=20)
    drive = Drive(limit)
    assert drive.windows(10, 0.01, busy=False) == [20] * 10
    # It still falls when latency says the backend is queueing.
    drive.windows(3, 0.1, busy=False)
    assert limit.limit < 20


def test_the_no_load_latency_drifts_up_slowly_to_a_slower_backend() -> None:
    limit = AdaptiveLimit(initial=20, minimum=1)
    drive = Drive(limit)
    drive.windows(1, 0.010)
    drive.windows(10, 0.040)
    # Three seconds of a four times slower backend: the floor moved about 3 %.
    no_load = limit.no_load_latency
    assert no_load is not None
    assert 0.0100 < no_load < 0.0105
    for _ in range(60):
        drive.windows(10, 0.040)
    relearnt = limit.no_load_latency
    assert relearnt is not None
    assert relearnt > 0.02


def test_a_window_needs_time_and_samples() -> None:
    limit = AdaptiveLimit(initial=20, interval=1.0, min_samples=3)
    for at in (0.0, 0.5, 1.5):
        limit.observe(0.01, at, 20)
    assert limit.no_load_latency == pytest.approx(0.01)
    assert limit.limit == 25
    # Zero latencies (a clock that did not move) teach nothing.
    for at in (2.0, 2.5, 3.5):
        limit.observe(0.0, at, 20)
    assert limit.no_load_latency == pytest.approx(0.01)
    assert limit.limit == 25


def test_bad_bounds_are_refused() -> None:
    with pytest.raises(ValueError, match="minimum"):
        AdaptiveLimit(initial=2, minimum=4)
