"""What every part of ``MemoryStore`` shares: its clock, and the state its parts read."""

from __future__ import annotations

from collections.abc import Callable

from floodwall.core.killswitch import KillSwitch
from floodwall.stores.keys import Keys

__all__ = ["MemoryParts"]


class MemoryParts:
    """The clock and the state every part of ``MemoryStore`` reads (set by its
    ``__init__``)."""

    keys: Keys
    _clock: Callable[[], float]
    # Bucket key → (theoretical arrival time of the next request, expiry), µs.
    _buckets: dict[str, tuple[float, float]]
    # Subject state key → its fields, as Redis keeps the hash.
    _states: dict[str, dict[str, str]]
    # Subject revoked key → credential id → expiry (ms).
    _revoked: dict[str, dict[str, int]]
    # Subject state key → its kill switch as read from the fields (revoked ids aside), kept
    # until the fields change: checks read it far more often than operators change it.
    _kill_switches: dict[str, KillSwitch]

    def _now_us(self) -> int:
        # round, not int: a clock given in float seconds is exact to the µs only when rounded.
        return round(self._clock() * 1_000_000)

    async def now_ms(self) -> int:
        """This process's clock, ms since the epoch."""
        return self._now_us() // 1000
