"""A circuit breaker: stop calling a store that fails, and probe for its return."""

from __future__ import annotations

import enum
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(enum.Enum):
    """``closed``: calls flow; ``open``: calls skipped; ``half_open``: one probe in flight."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Opens after ``threshold`` consecutive failures; after ``cooldown`` seconds lets one
    probe through, which closes it on success and reopens it on failure.

    A probe that never reports (its request was cancelled) is replaced after another
    ``cooldown``, so the breaker cannot stick half-open.
    """

    __slots__ = ("_clock", "_cooldown", "_failures", "_since", "_threshold", "state")

    def __init__(self, *, threshold: int, cooldown: float, clock: Callable[[], float]) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._failures = 0
        self._since = 0.0
        self.state = BreakerState.CLOSED

    def allow(self) -> bool:
        """Whether to call the store now."""
        if self.state is BreakerState.CLOSED:
            return True
        now = self._clock()
        if now - self._since < self._cooldown:
            return False
        self.state = BreakerState.HALF_OPEN
        self._since = now
        return True

    def success(self) -> bool:
        """Record a good call; returns whether the breaker was not closed before."""
        recovered = self.state is not BreakerState.CLOSED
        self.state = BreakerState.CLOSED
        self._failures = 0
        return recovered

    def failure(self) -> bool:
        """Record a failed call; returns whether the breaker opened just now."""
        self._failures += 1
        if self.state is BreakerState.HALF_OPEN or self._failures >= self._threshold:
            opened = self.state is BreakerState.CLOSED
            self.state = BreakerState.OPEN
            self._since = self._clock()
            return opened
        return False
