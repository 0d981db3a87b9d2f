"""``MemoryStore``: the embedded store, with the same semantics as the Redis store (one
shared test suite runs against both), assembled from its parts by capability.

It serves one process (the demo, tests, single-worker apps, and each worker's fallback
while Redis is out of reach). Its clock is injectable so refill can be tested without
sleeping.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from floodwall.stores.base import Replicas
from floodwall.stores.keys import Keys
from floodwall.stores.memory.buckets import MemoryBuckets
from floodwall.stores.memory.channel import MemoryChannel
from floodwall.stores.memory.records import MemoryRecords
from floodwall.stores.memory.states import MemoryStates

__all__ = ["MemoryStore"]


class MemoryStore(MemoryBuckets, MemoryStates, MemoryChannel, MemoryRecords):
    """Buckets and kill-switch state in this process's memory."""

    def __init__(
        self, *, prefix: str = "floodwall", clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = Keys(prefix)
        self.crosses_subjects = True
        """Every key is in one process: a check may count any subject's windows."""
        self._clock = clock
        self._init_buckets()
        self._init_states()
        self._init_channel()
        self._init_records()

    def clear(self) -> None:
        """Forget every bucket, state, record and setting (``floodwall.testing.reset``);
        subscriptions stay open."""
        self._init_buckets()
        self._init_states()
        self._init_records()

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    async def replicate(self, key: str, *, timeout_ms: int) -> Replicas:
        """No replicas: nothing to wait for."""
        return Replicas(0, 0)

    def describe(self) -> str:
        """Where the state lives."""
        return f"in-memory store of this process only, key prefix {self.keys.prefix}"
