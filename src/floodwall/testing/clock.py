"""A clock the test moves: refills, expiries and windows pass without a sleep."""

from __future__ import annotations

from floodwall.core.clock import Clock

__all__ = ["ManualClock"]


class ManualClock:
    """Wall and monotonic time that move only when the test says so, together."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self._wall = start
        self._monotonic = 1000.0
        self.clock = Clock(wall=self.wall, monotonic=self.monotonic)
        """What ``Floodwall(clock=...)`` takes."""

    def wall(self) -> float:
        """Seconds since the epoch, as the test set them."""
        return self._wall

    def monotonic(self) -> float:
        """Seconds for intervals, moved with the wall clock."""
        return self._monotonic

    def advance(self, seconds: float) -> None:
        """Move time on by ``seconds`` (never back)."""
        if seconds < 0:
            raise ValueError("a clock for tests moves forward only")
        self._wall += seconds
        self._monotonic += seconds
