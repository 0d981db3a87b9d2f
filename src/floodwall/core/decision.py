"""What the store decided about one request: a frozen ``Decision``; no I/O here."""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

__all__ = [
    "CLOSE_REASONS",
    "Decision",
    "Outcome",
    "decision_from_reply",
    "new_decision",
    "whole_seconds",
]


class Outcome(enum.IntEnum):
    """The result of a check; 0-4 are the check script's reply codes."""

    ALLOWED = 0
    LIMITED = 1
    BLOCKED = 2
    REVOKED = 3
    RESET_REQUIRED = 4
    UNAVAILABLE = 5
    """The store failed and the fail mode is ``closed``."""
    OVERLOADED = 6
    """Allowed by the limits, shed: the worker is at capacity (``protection.shedding``)."""
    NETWORK_BLOCKED = 7
    """The client address is inside a blocked network; decided by each worker's mirror of
    network blocks, never by the store."""
    CONCURRENCY_EXCEEDED = 8
    """The subject has as many requests in flight as it may (the check script's code 8)."""


class Decision(NamedTuple):
    """One check's answer, in seconds.

    ``retry_after`` is how long until the request could pass (0 when allowed);
    ``reset_after`` how long until the bucket is full again; ``blocked_until`` the end of a
    block in seconds since the epoch, ``None`` when the block has no end or there is none;
    ``shadow`` that this subject's limit is observed, not enforced; ``lease`` the token of
    the concurrency slot an allowed request holds until it ends; ``policy`` which limit
    decided: 0 the per-user (or anonymous) bucket, ``i`` the request's ``i``-th route limit
    (then ``rate`` and ``burst`` are that limit's requests per second and requests).
    """

    # A named tuple, not a frozen dataclass: one is built per request, at a third of the cost.
    outcome: Outcome
    rate: float
    burst: int
    remaining: int
    retry_after: float
    reset_after: float
    blocked_until: float | None = None
    shadow: bool = False
    policy: int = 0
    lease: str = ""

    @property
    def allowed(self) -> bool:
        """Whether the request may pass."""
        return self.outcome is Outcome.ALLOWED


_OUTCOMES: Final = {outcome.value: outcome for outcome in Outcome}

new_decision: Final = functools.partial(Decision.__new__, Decision)
"""``Decision(...)`` by keyword at less than half the cost, for the hot path: a class called
with keywords hands its ``__new__`` a dict of them (0.57 µs); this passes them on as they
are (0.25 µs, measured with timeit)."""


def decision_from_reply(reply: Sequence[Any]) -> Decision:
    """Convert the check script's reply (see ``lua/check.lua``) into a ``Decision``.

    Every element is a Redis integer but the rate, a bulk string (Lua numbers would lose
    the fraction), and the lease, a bulk string (bytes: no client here decodes replies).
    """
    code, remaining, retry_us, reset_us, rate, burst, blocked_ms, shadow, policy, lease = reply
    return new_decision(
        outcome=_OUTCOMES[code],
        rate=float(rate),
        burst=burst,
        remaining=remaining,
        retry_after=retry_us / 1_000_000,
        reset_after=reset_us / 1_000_000,
        blocked_until=blocked_ms / 1000 if blocked_ms > 0 else None,
        shadow=shadow == 1,
        policy=policy,
        lease=lease.decode() if lease else "",
    )


CLOSE_REASONS: Final = {
    Outcome.BLOCKED: "account-blocked",
    Outcome.REVOKED: "credentials-revoked",
    Outcome.RESET_REQUIRED: "password-reset-required",
    Outcome.NETWORK_BLOCKED: "network-blocked",
    Outcome.LIMITED: "rate-limited",
}
"""The reason an open connection (a websocket, a stream) is closed with, for each refusal
that ends one; a websocket's close code is 1008 for each."""


def whole_seconds(seconds: float) -> int:
    """Seconds rounded up, and at least 1, as ``Retry-After`` wants."""
    return max(1, math.ceil(seconds))
