"""Reading values back from the store, whoever wrote them.

The store outlives versions, and an operator can write to it by hand: a value this version
would never write (a time past the year 9999, a rate of ``"abc"``) must read back as
"unknown", never as a traceback in ``status``, ``audit`` or ``blocked``.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime

from floodwall.core import rules

__all__ = [
    "Limit",
    "WindowLimit",
    "iso_time",
    "stored_int",
    "stored_limit",
    "stored_ms",
    "window_limit",
]

# The latest instant datetime can show, in ms since the epoch (9999-12-31).
_MAX_MS = 253_402_300_799_000


def stored_int(value: str | None) -> int | None:
    """A stored whole number, or ``None`` when absent or unreadable."""
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        try:
            number = float(value)
        except ValueError:
            return None
        return int(number) if math.isfinite(number) else None


def stored_ms(value: str | None) -> int | None:
    """A stored time (ms) as ``check.lua`` reads one: a plain decimal number, finite,
    rounded down; anything else (``" 5"``, ``"0x10"``, ``"inf"``) is absent."""
    if value is None or not rules.is_number_text(value):
        return None
    number = float(value)
    return math.floor(number) if math.isfinite(number) else None


def stored_limit(rate: str | None, burst: str | None) -> tuple[float, int] | None:
    """A stored (rate, burst) pair the rule book accepts, else ``None``."""
    if rate is None or burst is None:
        return None
    if not (rules.is_number_text(rate) and rules.is_number_text(burst)):
        # As check.lua reads them: only plain decimal numbers.
        return None
    try:
        return rules.limit(float(rate), float(burst))
    except ValueError:
        return None


def iso_time(millis: int | None) -> str | None:
    """ms since the epoch as ISO 8601 UTC; ``None`` when absent or beyond a calendar."""
    if millis is None or not 0 <= millis <= _MAX_MS:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


Limit = tuple[float, int]
"""(rate in requests per second, burst in requests)."""

WindowLimit = tuple[int, int]
"""A route limit: (requests, period in µs)."""


def window_limit(text: str | None) -> WindowLimit | None:
    """A stored route limit, ``"limit:period_us"``, within the rule book; else ``None``."""
    if text is None:
        return None
    count, sep, period = text.partition(":")
    if not (sep and count.isdigit() and period.isdigit()):
        return None
    try:
        rules.ROUTE_LIMIT.check(int(count))
        rules.ROUTE_PERIOD.check(int(period) / 1_000_000)
    except rules.RuleError:
        return None
    return int(count), int(period)
