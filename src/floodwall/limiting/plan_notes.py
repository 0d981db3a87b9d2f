"""The plan each user's requests name, kept with the user's state so ``status`` shows it.

A plan comes with each request (a token's claim, a gateway's header), never from the
store, so the store learns it from the requests: when a user's plan differs from the one
this worker last wrote, it is written again, in the background, off the request's path.
A worker writes each user's plan once while it holds the user (at most ``HELD`` users,
long ids by their digest), not once a request.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from floodwall.core.errors import StorageError
from floodwall.core.ids import held
from floodwall.stores.protocols import UserStates

__all__ = ["HELD", "PlanNotes"]

logger = logging.getLogger("floodwall")

HELD: Final = 10_000
"""Users whose written plan a worker remembers; past that it forgets them all, and writes
each again on its next request."""
_PENDING: Final = 100
"""Writes in flight at most; a user whose write could not start is written on a later
request."""


class PlanNotes:
    """Writes each user's plan to the store when it changes."""

    __slots__ = ("_noted", "_store", "_tasks")

    def __init__(self, store: UserStates) -> None:
        self._store = store
        self._noted: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def note(self, user_id: str, plan: str) -> None:
        """A request of ``user_id`` named ``plan``."""
        noted = self._noted
        # The usual case, a short id whose plan is already written: one lookup.
        if noted.get(user_id) == plan:
            return
        key = held(user_id)
        if (key != user_id and noted.get(key) == plan) or len(self._tasks) >= _PENDING:
            return
        if len(self._noted) >= HELD:
            self._noted.clear()
        self._noted[key] = plan
        task = asyncio.get_running_loop().create_task(self._write(user_id, key, plan))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write(self, user_id: str, key: str, plan: str) -> None:
        try:
            await self._store.note_plan(user_id, plan)
        except StorageError as exc:
            # Written again on the user's next request.
            self._noted.pop(key, None)
            logger.debug("floodwall: a user's plan was not written: %s", exc)

    async def stop(self) -> None:
        """Let the writes in flight finish."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
