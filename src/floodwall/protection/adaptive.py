"""``FLOODWALL_CAPACITY=auto``: a worker's capacity found from the latency it observes.

A gradient limiter, in the spirit of Netflix concurrency-limits' Gradient2 and Envoy's
adaptive concurrency filter (learnt from, not ported):

- Completed requests' latencies are gathered into windows of at least ``interval``
  seconds and ``min_samples`` requests; a window's *sample* is its median (robust to the
  few slow endpoints every app has).
- The *no-load* latency is the lowest sample seen, allowed to drift up by ``drift`` per
  second, so a backend that truly became slower is relearnt (latency doubling: about 70 s
  at 1 %/s) while an overload of a minute or two does not teach it that queueing is normal.
  Envoy re-measures it at a pinned low concurrency instead; a drifting floor needs no pause
  in service.
- Each window: ``gradient = clamp((1 + buffer) * no_load / sample, 0.5, 1.5)`` and
  ``limit = limit * gradient``. Latency within ``buffer`` (25 %) of the no-load figure
  lets the limit grow (at most 1.5 x a window); queueing beyond it shrinks the limit (at
  most halving it a window), so the limit settles where latency is about ``1 + buffer``
  times the no-load latency.
- A limit that was not used does not grow: when fewer than half its slots were in use at
  once during the window, a low latency says nothing about what more load would do.

Time comes from the caller (``observe(rtt, now, in_flight)``), so tests drive it with
synthetic latencies and a hand-moved clock.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

__all__ = ["AdaptiveLimit"]

INITIAL: Final = 20
MINIMUM: Final = 4
MAXIMUM: Final = 1000
INTERVAL_SECONDS: Final = 0.25
MIN_SAMPLES: Final = 10
BUFFER: Final = 0.25
DRIFT_PER_SECOND: Final = 0.01
MIN_GRADIENT: Final = 0.5
MAX_GRADIENT: Final = 1.5


class AdaptiveLimit:
    """The current in-flight limit of one worker, moved by observed latency.

    ``on_change`` is called with the new whole limit whenever it changes (the metrics gauge).
    """

    __slots__ = (
        "_estimate",
        "_interval",
        "_maximum",
        "_min_samples",
        "_minimum",
        "_no_load",
        "_no_load_at",
        "_on_change",
        "_peak_in_flight",
        "_samples",
        "_window_started",
        "limit",
    )

    def __init__(
        self,
        *,
        initial: int = INITIAL,
        minimum: int = MINIMUM,
        maximum: int = MAXIMUM,
        interval: float = INTERVAL_SECONDS,
        min_samples: int = MIN_SAMPLES,
        on_change: Callable[[int], object] | None = None,
    ) -> None:
        if not 1 <= minimum <= initial <= maximum:
            raise ValueError("the limits must satisfy 1 <= minimum <= initial <= maximum")
        self._estimate = float(initial)
        self._minimum = minimum
        self._maximum = maximum
        self._interval = interval
        self._min_samples = min_samples
        self._samples: list[float] = []
        self._window_started: float | None = None
        self._peak_in_flight = 0
        self._no_load: float | None = None
        self._no_load_at = 0.0
        self._on_change = on_change
        self.limit = initial
        """The whole number of requests this worker may have in flight now."""
        if on_change is not None:
            on_change(initial)

    @property
    def no_load_latency(self) -> float | None:
        """The latency this limiter believes the backend has without queueing, in seconds."""
        return self._no_load

    def observe(self, rtt: float, now: float, in_flight: int) -> None:
        """Record one completed request: its latency ``rtt`` (seconds), the monotonic time
        ``now``, and how many requests were in flight when it ended (itself included)."""
        if self._window_started is None:
            self._window_started = now
        self._samples.append(rtt)
        if in_flight > self._peak_in_flight:
            self._peak_in_flight = in_flight
        if len(self._samples) >= self._min_samples and now - self._window_started >= self._interval:
            self._update(now)

    def _update(self, now: float) -> None:
        samples = sorted(self._samples)
        sample = samples[len(samples) // 2]
        peak = self._peak_in_flight
        self._samples = []
        self._peak_in_flight = 0
        self._window_started = now
        if sample <= 0:
            return
        no_load = self._no_load
        if no_load is None:
            no_load = sample
        else:
            # A floor that rises slowly: relearns a backend that really became slower.
            no_load = min(sample, no_load * math.exp(DRIFT_PER_SECOND * (now - self._no_load_at)))
        self._no_load = no_load
        self._no_load_at = now
        gradient = max(MIN_GRADIENT, min(MAX_GRADIENT, (1 + BUFFER) * no_load / sample))
        if gradient > 1 and peak < self._estimate / 2:
            # App-limited: the unused part of the limit was never tested.
            return
        estimate = max(self._minimum, min(self._maximum, self._estimate * gradient))
        self._estimate = estimate
        limit = max(self._minimum, math.floor(estimate))
        if limit != self.limit:
            self.limit = limit
            if self._on_change is not None:
                self._on_change(limit)
