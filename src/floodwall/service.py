"""``Floodwall``: the service the middleware, the admin API and the CLI share.

It owns the settings, the store and the fail-mode fallback; nothing else talks to Redis.
"""

from __future__ import annotations

import asyncio
import logging

from floodwall.decision import Decision, Outcome
from floodwall.errors import StorageError
from floodwall.identity import Identity
from floodwall.keys import SubjectKeys
from floodwall.settings import FloodwallSettings
from floodwall.stores.base import Store
from floodwall.stores.memory import MemoryStore
from floodwall.stores.redis import RedisStore

__all__ = ["Floodwall"]

logger = logging.getLogger("floodwall")


def _store_for(settings: FloodwallSettings) -> Store:
    if settings.redis_url is None:
        return MemoryStore(prefix=settings.key_prefix)
    return RedisStore.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.key_prefix,
        cluster=settings.redis_cluster,
        timeout=settings.redis_timeout,
    )


class Floodwall:
    """Rate limits and the account kill switch for one application.

    ``Floodwall()`` reads ``FLOODWALL_*`` variables; pass a ``FloodwallSettings`` to be
    explicit, and a ``store`` to use one built elsewhere (tests, custom clients); such a
    store brings its own key prefix.
    """

    def __init__(
        self, settings: FloodwallSettings | None = None, *, store: Store | None = None
    ) -> None:
        self.settings = settings if settings is not None else FloodwallSettings()
        self.store = store if store is not None else _store_for(self.settings)
        self.keys = self.store.keys
        # In fail-open mode requests are still limited, per process, while the store is down.
        self._fallback = MemoryStore()
        self._user_rate = repr(self.settings.rate)
        self._anonymous_rate = repr(self.settings.effective_anonymous_rate)
        self._anonymous_burst = self.settings.effective_anonymous_burst
        self._started = False
        self._start_lock = asyncio.Lock()
        self._degraded = False

    async def start(self) -> None:
        """Connect the store. Idempotent; a check starts the service when lifespan did not.

        An unreachable store does not stop the app from starting: the fail mode applies
        until it answers.
        """
        if self._started:
            return
        async with self._start_lock:
            if self._started:
                return
            try:
                await self.store.start()
            except StorageError as exc:
                self._note_failure(exc)
            self._started = True

    async def stop(self) -> None:
        """Release the store's connections."""
        if not self._started:
            return
        self._started = False
        try:
            await self.store.close()
        except StorageError as exc:
            logger.warning("floodwall: closing the store failed: %s", exc)

    def subject_keys(self, identity: Identity) -> SubjectKeys:
        """The store keys of an identity; users and anonymous clients never share one."""
        if identity.anonymous:
            return self.keys.anonymous(identity.user_id)
        return self.keys.user(identity.user_id)

    async def check(
        self, identity: Identity, cost: int = 1, *, reset_exempt: bool = False
    ) -> Decision:
        """Decide one request of ``identity`` costing ``cost`` tokens.

        ``reset_exempt`` marks paths of the password-reset flow, which a user who must
        reset their password may still use.
        """
        if not self._started:
            await self.start()
        keys = self.subject_keys(identity)
        if identity.anonymous:
            rate, burst = self._anonymous_rate, self._anonymous_burst
        else:
            rate, burst = self._user_rate, self.settings.burst
        issued_at = identity.issued_at
        issued_at_ms = None if issued_at is None else int(issued_at * 1000)
        try:
            decision = await self.store.check(
                keys, rate, burst, cost, issued_at_ms, identity.credential_id, reset_exempt
            )
        except StorageError as exc:
            self._note_failure(exc)
            if self.settings.fail_mode == "closed":
                return Decision(Outcome.UNAVAILABLE, float(rate), burst, 0, 1.0, 1.0)
            return await self._fallback.check(keys, rate, burst, cost, None, None, reset_exempt)
        if self._degraded:
            self._degraded = False
            logger.warning("floodwall: the store answers again; normal checks resumed")
        return decision

    def _note_failure(self, exc: StorageError) -> None:
        # Log the transition only: a dead Redis must not turn every request into a log line.
        if not self._degraded:
            self._degraded = True
            logger.error(
                "floodwall: the store failed (%s); fail mode %s", exc, self.settings.fail_mode
            )
