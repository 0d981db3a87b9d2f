"""The tarpit: a flooding subject's refusals answered late while the flood slows a worker
(``FLOODWALL_TARPIT_SECONDS``). Per worker, no store.

A refusal costs a worker about what the app's own answer does: the server parses the
request and writes the answer, the middleware decides (under uvicorn about 57 µs a refused
request, of which floodwall's part is about 8). One account on 256 connections, each
sending again the moment it is refused, had one worker refuse 17,000 requests a second.
asyncio runs every ready callback in one pass, so each step of every other request waited
behind some 256 refusals, and genuine latency doubled (the drill's attack a: p50 83 →
131 ms) with nothing shed and nothing queued. A cheaper refusal only shortens those passes
in proportion, and such a client then sends faster.

Answering late is what slows a client that waits for each answer before it sends again
(most HTTP clients, and every connection of a keep-alive flood): each refusal is held
``seconds``, jittered by ±50 % so refusals released together do not come back together,
and 256 connections then send about 512 requests a second. The answer itself (status,
``Retry-After``, body) is the same. It holds refusals back only where needed:

- **Only a flood, and only while the worker lags.** A refusal now and then asks how long
  the event loop takes to come back to a callback (``call_soon``). Within
  ``LAG_MEMORY_SECONDS`` of that taking over ``LAG_SECONDS``, a subject refused
  ``FLOOD_REFUSALS`` times within a second is held back. A quiet worker answers every
  refusal at once, however fast one client sends one request after another: the lag is
  what a client's many requests at once cost everyone else. And a short stall (a
  collection, a slow handler, a reconnect) holds back none of the few subjects refused
  during it.
- **Then while it keeps being refused.** A held-back subject stays held back until
  ``HOLD_SECONDS`` pass without a refusal: once held back, its flood no longer makes the
  worker lag, and answering it at full speed again would bring the lag back.
- **Bounded.** At most ``MAX_HELD`` refusals are held at once (each holds a connection and
  a task; beyond, refusals are answered at once), and ``MAX_SUBJECTS`` subjects are
  remembered (a flood of ever-new addresses evicts the oldest).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Hashable
from typing import Final

from floodwall.core import rules

__all__ = [
    "FLOOD_REFUSALS",
    "FLOOD_WINDOW_SECONDS",
    "HOLD_SECONDS",
    "LAG_MEMORY_SECONDS",
    "LAG_SECONDS",
    "MAX_HELD",
    "MAX_SUBJECTS",
    "Tarpit",
]

LAG_SECONDS: Final = 0.005
"""How late the event loop may come back to a callback before the worker counts as lagging:
a few ms is many requests' worth of work waiting (a pass of the drill's attack a took
about 15 ms), and far above a quiet worker's (tens of µs)."""
LAG_MEMORY_SECONDS: Final = 1.0
"""How long after the loop was last seen lagging new floods are still looked for."""
FLOOD_REFUSALS: Final = 20
"""Refusals of one subject within ``FLOOD_WINDOW_SECONDS``, while the worker lags, that make
it a flood: twice the default rate, far past what a client honouring ``Retry-After`` gets."""
FLOOD_WINDOW_SECONDS: Final = 1.0
HOLD_SECONDS: Final = 10.0
"""How long a held-back subject stays held back after its last refusal."""
MAX_HELD: Final = 4_096
"""Refusals held back at once, per worker; beyond, answered at once."""
MAX_SUBJECTS: Final = 10_000
"""Subjects remembered, held back or counted (each kind), per worker; the oldest go first."""


class Tarpit:
    """How long to hold back each refusal of this worker; see the module's docstring.
    ``seconds`` follows the rule book (``rules.TARPIT_SECONDS``), as the setting does.

    ``delay(subject)`` says how long (0.0: answer now), ``hold(seconds)`` waits it out.
    """

    __slots__ = (
        "_clock",
        "_counts",
        "_flood_refusals",
        "_held",
        "_hold_seconds",
        "_jitter",
        "_lag_seconds",
        "_lagged_at",
        "_max_held",
        "_max_subjects",
        "_probing",
        "_seconds",
        "held",
    )

    def __init__(
        self,
        seconds: float,
        *,
        clock: Callable[[], float],
        lag_seconds: float = LAG_SECONDS,
        hold_seconds: float = HOLD_SECONDS,
        flood_refusals: int = FLOOD_REFUSALS,
        max_held: int = MAX_HELD,
        max_subjects: int = MAX_SUBJECTS,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._seconds = rules.TARPIT_SECONDS.number(seconds)
        self._clock = clock
        self._lag_seconds = lag_seconds
        self._hold_seconds = hold_seconds
        self._flood_refusals = flood_refusals
        self._max_held = max_held
        self._max_subjects = max_subjects
        self._jitter = jitter
        # Subject → when it was last refused while held back, oldest first.
        self._held: dict[Hashable, float] = {}
        # Subject → its refusals while the worker lagged, since when (of the last second).
        self._counts: dict[Hashable, tuple[int, float]] = {}
        self._lagged_at = -float("inf")
        # The loop of the probe on its way, if one is: a probe queued on a loop that was
        # closed before running it never comes back, and must not stop every later one.
        self._probing: asyncio.AbstractEventLoop | None = None
        self.held = 0
        """Refusals being held back now."""

    def delay(self, subject: Hashable) -> float:
        """Seconds to hold back this refusal of ``subject`` (0.0: answer it now)."""
        now = self._clock()
        loop = asyncio.get_running_loop()
        if self._probing is not loop:
            # One probe at a time: at most a callback per pass of the loop, and only while
            # something is refused.
            self._probing = loop
            loop.call_soon(self._probed, now)
        held = self._held
        last = held.pop(subject, None)
        held_back = last is not None and now - last <= self._hold_seconds
        lagging = now - self._lagged_at <= LAG_MEMORY_SECONDS
        if not held_back and not (lagging and self._floods(subject, now)):
            return 0.0
        if len(held) >= self._max_subjects:
            del held[next(iter(held))]
        held[subject] = now
        if self.held >= self._max_held:
            return 0.0
        return self._seconds * (0.5 + self._jitter())

    def _floods(self, subject: Hashable, now: float) -> bool:
        # Counted only while the worker lags: a quiet worker keeps no count at all.
        counts = self._counts
        count, since = counts.pop(subject, (0, now))
        if now - since > FLOOD_WINDOW_SECONDS:
            count, since = 0, now
        count += 1
        if count >= self._flood_refusals:
            return True
        if len(counts) >= self._max_subjects:
            del counts[next(iter(counts))]
        counts[subject] = (count, since)
        return False

    async def hold(self, seconds: float) -> None:
        """Wait ``seconds`` before a refusal is answered."""
        self.held += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self.held -= 1

    def _probed(self, asked_at: float) -> None:
        self._probing = None
        now = self._clock()
        if now - asked_at > self._lag_seconds:
            self._lagged_at = now
