"""What the store decided about one request: a frozen ``Decision``; no I/O here."""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["Decision", "Outcome", "decision_from_reply"]


class Outcome(enum.IntEnum):
    """The result of a check; 0-4 are the check script's reply codes."""

    ALLOWED = 0
    LIMITED = 1
    BLOCKED = 2
    REVOKED = 3
    RESET_REQUIRED = 4
    UNAVAILABLE = 5
    """The store failed and the fail mode is ``closed``."""


@dataclass(frozen=True, slots=True)
class Decision:
    """One check's answer, in seconds.

    ``retry_after`` is how long until the request could pass (0 when allowed);
    ``reset_after`` how long until the bucket is full again; ``blocked_until`` the end of a
    block in seconds since the epoch, ``None`` when the block has no end or there is none;
    ``shadow`` that this subject's limit is observed, not enforced.
    """

    outcome: Outcome
    rate: float
    burst: int
    remaining: int
    retry_after: float
    reset_after: float
    blocked_until: float | None = None
    shadow: bool = False

    @property
    def allowed(self) -> bool:
        """Whether the request may pass."""
        return self.outcome is Outcome.ALLOWED


def decision_from_reply(reply: Sequence[object]) -> Decision:
    """Convert the check script's reply (see ``lua/check.lua``) into a ``Decision``."""
    code, remaining, retry_us, reset_us, rate, burst, blocked_ms, shadow = reply
    outcome = Outcome(_int(code))
    blocked_until = _int(blocked_ms)
    return Decision(
        outcome=outcome,
        rate=float(_text(rate)),
        burst=_int(burst),
        remaining=_int(remaining),
        retry_after=_int(retry_us) / 1_000_000,
        reset_after=_int(reset_us) / 1_000_000,
        blocked_until=blocked_until / 1000 if blocked_until > 0 else None,
        shadow=shadow == 1,
    )


def _int(value: object) -> int:
    if isinstance(value, int):
        return value
    return int(_text(value))


def _text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
