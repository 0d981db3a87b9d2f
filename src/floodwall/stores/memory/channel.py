"""The change feed's channel in memory: every subscription of this process hears every
message."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

__all__ = ["MemoryChannel"]


class MemoryChannel:
    """``ChangeChannel`` in this process."""

    def _init_channel(self) -> None:
        self._subscribers: set[asyncio.Queue[str]] = set()

    async def publish(self, message: str) -> None:
        """Deliver to every subscription of this store."""
        for queue in list(self._subscribers):
            queue.put_nowait(message)

    async def receivers(self) -> int:
        """Subscriptions of this store (all in this process)."""
        return len(self._subscribers)

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[_QueueSubscription]:
        """An in-process subscription."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield _QueueSubscription(queue)
        finally:
            self._subscribers.discard(queue)


class _QueueSubscription:
    __slots__ = ("_queue",)

    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    async def next_message(self, wait: float) -> str | None:
        try:
            return await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return None
