"""The password-reset hook: each required reset reaches the app exactly once.

A reset can be required by any surface (the CLI, another worker's admin API, Python), while
the app runs on many processes and servers, or while none runs. Each reset gets an id in
the user's state; every process that learns of it (the change feed, a resync, the process
that required it) tries to claim it in the store, and only the one that wins calls the hook.
A reset required while no app ran is found by the next one's resync at start. When the
hook fails the claim is given back, so another process (or the next resync) tries again.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from floodwall.core.errors import StorageError
from floodwall.core.user_state import UserState
from floodwall.stores.protocols import ResetClaims

__all__ = ["PasswordResetHook", "ResetNotifier"]

logger = logging.getLogger("floodwall")

PasswordResetHook = Callable[[str], Awaitable[None]]
"""Called with the user id when a password reset becomes required."""


class ResetNotifier:
    """Delivers required resets to the app's hook, once each."""

    __slots__ = ("_hook", "_store")

    def __init__(self, store: ResetClaims, hook: PasswordResetHook | None) -> None:
        self._store = store
        self._hook = hook

    async def consider(self, user_id: str, state: UserState) -> None:
        """Deliver the user's pending reset, if this process wins it."""
        reset_id = state.pending_reset
        if self._hook is None or reset_id is None:
            return
        if not await self._store.claim_reset(user_id, reset_id=reset_id, claim=True):
            return
        try:
            await self._hook(user_id)
        except Exception:
            logger.exception("floodwall: the password-reset hook failed; it will be retried")
            try:
                await self._store.claim_reset(user_id, reset_id=reset_id, claim=False)
            except StorageError as exc:
                logger.warning("floodwall: giving a reset back failed (%s)", exc)
