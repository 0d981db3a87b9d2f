"""Refusals that are certain, answered in-process with no store round trip.

A user limited until T, or blocked, keeps hammering; asking Redis again each time would
let the flood reach Redis. The store's last answer says how deep in debt the bucket was;
time can only pay that debt back at ``rate``, and other workers can only add to it, so
while the debt still exceeds what one more request may borrow, the refusal is certain.
Blocks hold until an operator change for that user arrives over pub/sub (``forget``) or
the block's end. A required password reset or a revocation is not cached here: which
answer it gets (401 for an old credential, 403 for a new one, through on the reset flow)
depends on the request, so the checker asks the kill-switch mirror for those.

An allowed request that took the last token is kept too: until the next token, the
bucket's next request is as certainly refused. And when a refusal lapses (a token is due),
only one request of that subject asks the store: the others of that moment wait for its
answer (``probes``) instead of all reaching Redis at once, which with many connections
from one attacker was most of the commands the attack cost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from floodwall.core.decision import Decision, Outcome
from floodwall.stores.base import Window

__all__ = ["DenyCache"]

# The store answers in whole µs, rounded up.
_ROUNDING_SECONDS = 2e-6
# The store's clock and ours may tick apart while a refusal is kept: NTP slews a clock by
# at most 500 ppm, chrony by default by up to 83,333 ppm; allow 10 %, less the lateness
# we accept, so a local refusal never outlasts the store's by more than _LATE_SECONDS. The
# allowance makes a short refusal's lapse exact: one probe per token at 100/s and more,
# about two at 10/s (a margin of 10 % alone made it four or five, each a round trip).
_DRIFT = 0.1
_LATE_SECONDS = 1e-3
# How long a forget is remembered: longer than any store call can take (timeouts are at most
# 30 s), so an answer the store gave before an operator's change is never cached after it.
_FORGET_MEMORY_SECONDS = 60.0


class DenyCache:
    """Bucket key → the last refusal and when (monotonic) it was made; bounded."""

    __slots__ = (
        "_cleared_at",
        "_clock",
        "_entries",
        "_forgotten",
        "_max_entries",
        "_windows",
        "probes",
    )

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float],
    ) -> None:
        self._entries: dict[str, tuple[Decision, float]] = {}
        self.probes: dict[str, asyncio.Future[None] | None] = {}
        """Keys whose refusal lapsed: the future of the one request asking the store, or
        ``None`` until one claims it (``claim``). Empty but during such moments."""
        self._max_entries = max_entries
        self._clock = clock
        # Route limits' refusals: subject's bucket key → window key → (refusal, asked at).
        # A moving window's refusal is certain until its oldest request leaves it: other
        # workers can only add requests.
        self._windows: dict[str, dict[str, tuple[Decision, float]]] = {}
        # When each subject, and everything, was last changed by an operator (our clock).
        self._forgotten: dict[str, float] = {}
        self._cleared_at = -float("inf")

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, key: str, decision: Decision, asked_at: float | None = None) -> None:
        """Keep a refusal, or an empty bucket, that later requests may be certain of.

        ``asked_at`` (the cache's clock when the store was asked; default: now) is when the store's
        clock read at the latest: time counted from then can only be too much, never too
        little, so the refusal lapses early rather than late.
        """
        outcome = decision.outcome
        if outcome is Outcome.ALLOWED:
            if decision.remaining:
                return
            # reset_after is the time until full, as for a refusal: the same sum applies.
            decision = decision._replace(outcome=Outcome.LIMITED)
        elif outcome is not Outcome.LIMITED and outcome is not Outcome.BLOCKED:
            return
        if asked_at is None:
            asked_at = self._clock()
        elif asked_at <= self._cleared_at or asked_at <= self._forgotten.get(key, -1.0):
            # The store answered before an operator's change reached us: stale already.
            return
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self._max_entries:
            # Drop the oldest: a forgotten refusal only costs one round trip.
            del entries[next(iter(entries))]
        entries[key] = (decision, asked_at)

    def lookup(self, key: str, cost: int) -> Decision | None:
        """The refusal this request is certain to get, or ``None`` to ask the store."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        decision, since = entry
        outcome = decision.outcome
        if outcome is Outcome.LIMITED:
            elapsed = self._clock() - since
            ahead = decision.reset_after - elapsed
            # Allowed once ahead + cost/rate fits in burst/rate; certain while it cannot.
            shortfall = ahead + (cost - decision.burst) / decision.rate
            if shortfall > _ROUNDING_SECONDS + max(0.0, _DRIFT * elapsed - _LATE_SECONDS):
                return decision._replace(retry_after=shortfall, reset_after=ahead)
        elif decision.blocked_until is None:
            # A block with no end holds until an operator's change for the subject.
            return decision
        else:
            # A timed block: how long it still lasted when the store answered, counted on
            # our monotonic clock, early rather than late (as a limited refusal).
            elapsed = self._clock() - since
            if decision.retry_after - elapsed > max(0.0, _DRIFT * elapsed - _LATE_SECONDS):
                return decision
        del self._entries[key]
        if outcome is Outcome.LIMITED:
            self.probes.setdefault(key, None)
        return None

    def remember_window(
        self, bucket: str, window: str, decision: Decision, asked_at: float
    ) -> None:
        """Keep a route limit's refusal of the subject of ``bucket``."""
        if asked_at <= self._cleared_at or asked_at <= self._forgotten.get(bucket, -1.0):
            return
        windows = self._windows.get(bucket)
        if windows is None:
            if len(self._windows) >= self._max_entries:
                del self._windows[next(iter(self._windows))]
            windows = self._windows[bucket] = {}
        windows[window] = (decision, asked_at)

    def lookup_window(self, bucket: str, windows: Sequence[Window]) -> Decision | None:
        """The refusal by one of a request's route limits it is certain to get, its
        ``policy`` the window's place from 1; or ``None``."""
        held = self._windows.get(bucket)
        if held is None:
            return None
        for policy, window in enumerate(windows, start=1):
            entry = held.get(window.key)
            if entry is None:
                continue
            decision, since = entry
            elapsed = self._clock() - since
            left = decision.retry_after - elapsed
            if left > _ROUNDING_SECONDS + max(0.0, _DRIFT * elapsed - _LATE_SECONDS):
                return decision._replace(retry_after=left, reset_after=left, policy=policy)
            del held[window.key]
        return None

    def claim(self, key: str) -> asyncio.Future[None] | None:
        """For a key in ``probes``: ``None`` when this request is the one to ask the store
        (it must call ``settle`` after), else the future to wait on before looking again."""
        probe = self.probes.get(key)
        if probe is None:
            self.probes[key] = asyncio.get_running_loop().create_future()
        return probe

    def settle(self, key: str) -> None:
        """The claiming request has its answer (remembered by now), or failed."""
        probe = self.probes.pop(key, None)
        if probe is not None and not probe.done():
            probe.set_result(None)

    def forget(self, key: str) -> None:
        """An operator changed this subject: ask the store next time, and keep no answer
        the store gave before now."""
        self._entries.pop(key, None)
        self._windows.pop(key, None)
        now = self._clock()
        forgotten = self._forgotten
        if len(forgotten) >= self._max_entries:
            horizon = now - _FORGET_MEMORY_SECONDS
            self._forgotten = forgotten = {k: t for k, t in forgotten.items() if t > horizon}
            if len(forgotten) >= self._max_entries:
                # A storm of changes: forgetting everything is as safe.
                self.clear()
                forgotten.clear()
        forgotten[key] = now

    def clear(self) -> None:
        """The default limit changed, or everything was reloaded: every kept refusal may
        be stale, and so is every answer the store gave before now."""
        self._entries.clear()
        self._windows.clear()
        self._cleared_at = self._clock()
