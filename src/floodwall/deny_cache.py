"""Refusals that are certain, answered in-process with no store round trip.

A user limited until T, or blocked, keeps hammering; asking Redis again each time would
let the flood reach Redis. The store's last answer says how deep in debt the bucket was;
time can only pay that debt back at ``rate``, and other workers can only add to it, so
while the debt still exceeds what one more request may borrow, the refusal is certain.
Blocks hold until an operator change for that user arrives over pub/sub (``forget``) or
the block's end. A required password reset is not cached: which answer it gets (401 for an
old credential, 403 for a new one, through on the reset flow) depends on the request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from floodwall.decision import Decision, Outcome

__all__ = ["DenyCache"]

# The store's clock and ours may tick a little apart over a refusal's lifetime.
_MARGIN_SECONDS = 0.001


class DenyCache:
    """Bucket key → the last refusal and when (monotonic) it was made; bounded."""

    __slots__ = ("_clock", "_entries", "_max_entries", "_wall")

    def __init__(
        self,
        max_entries: int = 100_000,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self._entries: dict[str, tuple[Decision, float]] = {}
        self._max_entries = max_entries
        self._clock = clock
        self._wall = wall_clock

    def __len__(self) -> int:
        return len(self._entries)

    def remember(self, key: str, decision: Decision) -> None:
        """Keep a refusal that later requests may be certain of."""
        if decision.outcome not in (Outcome.LIMITED, Outcome.BLOCKED):
            return
        entries = self._entries
        entries.pop(key, None)
        if len(entries) >= self._max_entries:
            # Drop the oldest: a forgotten refusal only costs one round trip.
            del entries[next(iter(entries))]
        entries[key] = (decision, self._clock())

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
            if shortfall > _MARGIN_SECONDS:
                return decision._replace(retry_after=shortfall, reset_after=ahead)
        else:
            until = decision.blocked_until
            if until is None or until > self._wall():
                return decision
        del self._entries[key]
        return None

    def forget(self, key: str) -> None:
        """An operator changed this subject: ask the store next time."""
        self._entries.pop(key, None)

    def clear(self) -> None:
        """The default limit changed: every limited refusal may be stale."""
        self._entries.clear()
