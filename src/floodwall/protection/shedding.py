"""Fair load shedding: a worker's in-flight requests, bounded and shared fairly among
subjects (``FLOODWALL_CAPACITY``, ``FLOODWALL_CRITICAL_PATHS``). Per worker, no store.

A request allowed by the rate limit takes a *slot* for as long as the app runs it and gives
it back when the app returns, raises or is cancelled. With ``limit`` slots:

- **Critical paths** may use every slot; other requests ``limit - reserve`` of them, where
  ``reserve`` is a tenth of the limit (at least 1) when critical paths are configured, so
  they are still served while everything else is shed.
- **Half the usable slots** (rounded down, at least one) is the most one subject holds,
  critical or not, however alone it was when it took them: a share is decided when a slot
  is taken, and a slot held by a websocket or a slow request comes back only when it ends,
  so a client alone on an idle worker (its share: every slot) would otherwise hold them all
  and everyone coming after would wait and be refused. A request beyond it is refused at
  once; a waiter whose subject reached it meanwhile too.
- **The fair share** of a subject is the usable slots divided among the subjects seen in
  the last ``RECENT_SECONDS`` (at least one slot each). It counts recent subjects, not only
  those holding slots: a few subjects holding long requests are otherwise "the only active
  ones" and their share is the whole worker, while the many subjects sending short
  requests, who hold nothing between them, are locked out.
- **Under half the slots in use**, a request beyond its subject's share may borrow an
  idle slot, if its subject's slots come back quickly: its requests held theirs, on
  average, no longer than ``max_wait``, the time a request within its share may have to
  wait for one. A subject whose slots are held long (exports, websockets), or whose first
  request has not ended yet, does not borrow: three accounts holding 2 s requests kept half
  the worker that way (a slot each and one borrowed), and the many short requests, left
  with the other half, queued past ``max_wait`` (the drill's attack c: 1 % of genuine
  requests refused).
- **Over half**, a request that would take its subject beyond its fair share is refused
  (503 ``overloaded``) at once. Refusing the heaviest before the worker is full is what
  keeps room for the others: a slot held by a long request may not come back for seconds.
- **At the limit**, a request of a subject within its share waits at most ``max_wait``
  seconds (250 ms by default) for a slot, in a queue of at most ``limit`` requests: a freed
  slot goes to the waiter whose subject holds the fewest slots, then has sent the fewest
  requests recently (a decayed count). A subject never seen before counts as sending like
  the average recent subject: otherwise a flood of fresh accounts, each on its first
  request, would outrank every regular user. The average is over the counts the recent
  subjects are given, a newcomer's included: counted as the one request it sent, 200 fresh
  accounts arriving at once pulled the average from about 2 down to 1.1, and each ranked
  ahead of the regulars (the drill's attack b, in its first second). A full queue refuses
  whoever ranks last. A waiter whose subject took another slot while it waited is refused
  if this one would take it beyond its share: a subject's requests queued side by side
  each held nothing when they came, and were otherwise all granted, one after the other.
  Waiting ends in a slot or a refusal, never in a slot lost.

The limit is a number, or an ``AdaptiveLimit`` (``auto``) that learns it from the
latencies this module reports (HTTP requests that completed; not websockets, errors or
cancellations). Subjects are remembered for ``RECENT_SECONDS`` in at most
``MAX_RECENT`` entries (a flood of ever-new addresses evicts the oldest).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import math
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Final, NamedTuple

from floodwall.protection.adaptive import AdaptiveLimit
from floodwall.settings import FloodwallSettings

__all__ = ["MAX_WAIT_SECONDS", "Shedder", "Ticket", "shedder_from_settings"]

MAX_WAIT_SECONDS: Final = 0.25
"""The longest a request within its share waits for a slot when the worker is full. A few
requests' time, and longer than the worker's own stalls: in the drill a full garbage
collection stopped it for 60 ms and a burst of 400 new connections for 70-90 ms, and at
100 ms such a stall turned the waits of that moment into refusals (now and then one to
three genuine requests a run in attacks b and c). Refused, a client waits ``Retry-After``
(1 s) anyway."""
RECENT_SECONDS: Final = 2.0
"""How long a subject counts towards the fair share after its last request."""
MAX_RECENT: Final = 10_000
HALF_LIFE_SECONDS: Final = 1.0
"""Of the recent-request count that orders waiters."""
_DECAY_RATE: Final = -math.log(2) / HALF_LIFE_SECONDS
HOLD_WEIGHT: Final = 0.25
"""Of each released slot's time in its subject's mean hold."""
BUSY_FRACTION: Final = 0.5
CAP_FRACTION: Final = 0.5
"""Of the usable slots, the most one subject holds at once. Higher serves a lone heavy
user more of an idle worker; it leaves less to the users who come while its requests run."""
CRITICAL_FRACTION: Final = 0.1


class Ticket(NamedTuple):
    """A held slot: give it back with ``Shedder.release``."""

    subject: Hashable
    started: float
    critical: bool


class _Waiter(NamedTuple):
    # Ordered by these four; ``seq`` is unique, so the rest is never compared.
    rank: int  # 0 critical, 1 regular
    held: int
    score: float
    seq: int
    future: asyncio.Future[Ticket | None]
    subject: Hashable


class Shedder:
    """The slots of one worker. ``clock`` is monotonic seconds (tests move it by hand)."""

    def __init__(
        self,
        limit: int | AdaptiveLimit,
        *,
        critical_paths: bool = False,
        max_wait: float = MAX_WAIT_SECONDS,
        clock: Callable[[], float],
    ) -> None:
        self._adaptive = limit if isinstance(limit, AdaptiveLimit) else None
        self._fixed = limit if isinstance(limit, int) else 0
        self._reserve = critical_paths
        self._max_wait = max_wait
        self._clock = clock
        self.in_flight = 0
        self._held: dict[Hashable, int] = {}
        # subject -> (last seen, decayed count of its recent requests, mean seconds its
        # slots were held or None before the first is given back); oldest first.
        self._recent: OrderedDict[Hashable, tuple[float, float, float | None]] = OrderedDict()
        # The recent subjects' counts, decayed alike: their sum.
        self._total = 0.0
        self._total_at = clock()
        self._waiters: list[_Waiter] = []
        self._seq = itertools.count()

    @property
    def limit(self) -> int:
        """The current limit of in-flight requests."""
        adaptive = self._adaptive
        return self._fixed if adaptive is None else adaptive.limit

    def usable(self, critical: bool) -> int:
        """The slots a request may use: all of them on a critical path."""
        limit = self.limit
        if critical or not self._reserve:
            return limit
        return max(1, limit - max(1, math.ceil(limit * CRITICAL_FRACTION)))

    def held(self, subject: Hashable) -> int:
        """Slots ``subject`` holds now."""
        return self._held.get(subject, 0)

    async def acquire(self, subject: Hashable, *, critical: bool = False) -> Ticket | None:
        """A slot for one request of ``subject``, or ``None``: refuse it (overloaded)."""
        now = self._clock()
        score, hold = self._seen(subject, now)
        usable = self.usable(critical)
        held = self._held.get(subject, 0)
        if held >= _cap(usable):
            return None
        total = self.in_flight
        # Each recent subject's part of the usable slots, at least one.
        within_share = held + 1 <= max(1.0, usable / len(self._recent))
        if total < usable and (
            critical
            or within_share
            or (total < usable * BUSY_FRACTION and hold is not None and hold <= self._max_wait)
        ):
            return self._take(subject, now, critical)
        if not (critical or within_share):
            return None
        return await self._wait(subject, critical, held, score)

    def release(self, ticket: Ticket, *, completed: bool) -> None:
        """Give a slot back; ``completed``: the request ran to its end, so its latency
        teaches an ``auto`` limit."""
        subject = ticket.subject
        held = self._held[subject] - 1
        if held:
            self._held[subject] = held
        else:
            del self._held[subject]
        in_flight = self.in_flight
        self.in_flight = in_flight - 1
        now = self._clock()
        seconds = now - ticket.started
        seen = self._recent.get(subject)
        if seen is not None:
            # However the request ended: a websocket's slot or a cancelled one was held too.
            hold = seen[2]
            hold = seconds if hold is None else hold + (seconds - hold) * HOLD_WEIGHT
            self._recent[subject] = (seen[0], seen[1], hold)
        if completed and self._adaptive is not None:
            self._adaptive.observe(seconds, now, in_flight)
        if self._waiters:
            self._grant()

    # -- internals ------------------------------------------------------------------------

    def _seen(self, subject: Hashable, now: float) -> tuple[float, float | None]:
        recent = self._recent
        total = self._total * _decay(now - self._total_at)
        last = recent.pop(subject, None)
        if last is None:
            before = 0.0
            score = 1.0 + (total / len(recent) if recent else 0.0)
            hold = None
        else:
            before = last[1] * _decay(now - last[0])
            score = 1.0 + before
            hold = last[2]
        total += score - before
        recent[subject] = (now, score, hold)
        horizon = now - RECENT_SECONDS
        while len(recent) > 1:
            oldest = next(iter(recent.values()))
            if oldest[0] >= horizon and len(recent) <= MAX_RECENT:
                break
            recent.popitem(last=False)
            total -= oldest[1] * _decay(now - oldest[0])
        # Never below zero by rounding.
        self._total = max(0.0, total)
        self._total_at = now
        return score, hold

    def _take(self, subject: Hashable, now: float, critical: bool) -> Ticket:
        self.in_flight += 1
        self._held[subject] = self._held.get(subject, 0) + 1
        return Ticket(subject, now, critical)

    async def _wait(
        self, subject: Hashable, critical: bool, held: int, score: float
    ) -> Ticket | None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Ticket | None] = loop.create_future()
        waiter = _Waiter(0 if critical else 1, held, score, next(self._seq), future, subject)
        waiters = self._waiters
        if len(waiters) >= self.limit:
            if waiters[-1] < waiter:
                return None
            # The last-ranked waiter makes room.
            waiters.pop().future.set_result(None)
        bisect.insort(waiters, waiter)
        timer = loop.call_later(self._max_wait, self._expire, waiter)
        try:
            return await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                ticket = future.result()
                if ticket is not None:
                    self.release(ticket, completed=False)
            else:
                self._drop(waiter)
            raise
        finally:
            timer.cancel()

    def _expire(self, waiter: _Waiter) -> None:
        # Refused after the callbacks already due, not before them: when a pass of the event
        # loop runs late, the timer of a request that ended before this deadline fires in
        # the same pass, and its task gives the slot back only in the next one.
        if not waiter.future.done():
            asyncio.get_running_loop().call_soon(self._refuse, waiter)

    def _refuse(self, waiter: _Waiter) -> None:
        if not waiter.future.done():
            self._drop(waiter)
            waiter.future.set_result(None)

    def _drop(self, waiter: _Waiter) -> None:
        waiters = self._waiters
        index = bisect.bisect_left(waiters, waiter)
        if index < len(waiters) and waiters[index] is waiter:
            del waiters[index]

    def _grant(self) -> None:
        waiters = self._waiters
        while waiters:
            waiter = waiters[0]
            if waiter.future.done():
                # Cancelled with its task; its entry was left behind.
                del waiters[0]
                continue
            critical = waiter.rank == 0
            usable = self.usable(critical)
            if self.in_flight >= usable:
                return
            del waiters[0]
            held = self._held.get(waiter.subject, 0)
            share = max(1.0, usable / len(self._recent))
            beyond = held >= _cap(usable) or (not critical and held + 1 > share)
            if held > waiter.held and beyond:
                # Its subject took a slot while it waited (another of its requests): this
                # one would now take it beyond its cap or share, and is refused as it would
                # be now.
                waiter.future.set_result(None)
                continue
            waiter.future.set_result(self._take(waiter.subject, self._clock(), critical))


def _cap(usable: int) -> int:
    # The most one subject may hold: half the usable slots, at least one.
    return max(1, int(usable * CAP_FRACTION))


def _decay(seconds: float) -> float:
    return math.exp(seconds * _DECAY_RATE)


def shedder_from_settings(
    settings: FloodwallSettings,
    *,
    clock: Callable[[], float],
    on_limit: Callable[[int], object] | None = None,
    critical_paths: bool = False,
) -> Shedder | None:
    """The shedder ``FLOODWALL_CAPACITY`` asks for, or ``None`` when it is not set.
    ``on_limit`` hears the current limit (at start, and as ``auto`` moves it)."""
    capacity = settings.capacity
    if capacity is None:
        return None
    critical = critical_paths or bool(settings.critical_paths)
    if capacity == "auto":
        return Shedder(AdaptiveLimit(on_change=on_limit), critical_paths=critical, clock=clock)
    if on_limit is not None:
        on_limit(capacity)
    return Shedder(capacity, critical_paths=critical, clock=clock)
