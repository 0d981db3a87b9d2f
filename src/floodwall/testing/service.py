"""A Floodwall for an app's tests: the in-memory store, the test's clock, and a reset."""

from __future__ import annotations

from floodwall.core.errors import ConfigurationError
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings
from floodwall.stores.memory import MemoryStore
from floodwall.testing.clock import ManualClock

__all__ = ["floodwall_for_tests", "reset"]


def floodwall_for_tests(
    settings: FloodwallSettings | None = None, *, clock: ManualClock | None = None
) -> Floodwall:
    """A Floodwall on a store of its own in this process, whatever ``FLOODWALL_REDIS_URL``
    says, reading time from ``clock`` (a new ``ManualClock`` when none is given)."""
    settings = settings if settings is not None else FloodwallSettings()
    clock = clock if clock is not None else ManualClock()
    store = MemoryStore(prefix=settings.key_prefix, clock=clock.wall)
    return Floodwall(settings, store=store, clock=clock.clock)


async def reset(floodwall: Floodwall) -> None:
    """Forget every bucket, block, limit and audit entry, here and in every part of
    ``floodwall``, as if it had just been made: for an app whose Floodwall outlives a
    test. Only a Floodwall on the in-memory store can be reset."""
    store = floodwall.store
    if not isinstance(store, MemoryStore):
        raise ConfigurationError("floodwall.testing.reset: only the in-memory store is reset")
    store.clear()
    floodwall.denials.clear()
    floodwall.offenders.clear()
    await floodwall.resync()
