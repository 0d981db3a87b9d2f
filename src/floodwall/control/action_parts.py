"""What every group of operator actions shares: the parts they act through, the rule-book
checks of a user's change, and the one way a change of a user is published and audited."""

from __future__ import annotations

import logging
import math
from typing import Final, Protocol

from floodwall.control.change_feed import ChangeFeed
from floodwall.core import rules
from floodwall.core.errors import StorageError
from floodwall.core.stored import Limit
from floodwall.core.user_state import UserState
from floodwall.killswitch.audit import AuditLog
from floodwall.killswitch.networks import NetworkBlocks
from floodwall.killswitch.reset_hook import ResetNotifier
from floodwall.killswitch.status import UserStatus
from floodwall.limiting.live_limits import LiveLimits
from floodwall.stores.base import Replicas
from floodwall.stores.protocols import (
    ChangeChannel,
    LiveConfig,
    NetworkBlockStore,
    Replication,
    UserLimits,
    UserStates,
)

__all__ = ["PYTHON_ACTOR", "ActionParts", "ActionStore", "ttl_ms"]

logger = logging.getLogger("floodwall")

PYTHON_ACTOR: Final = "python"


class ActionStore(
    UserStates, UserLimits, NetworkBlockStore, LiveConfig, ChangeChannel, Replication, Protocol
):
    """What operator actions change and read."""

    def describe(self) -> str:
        """Where the state lives, for operators; never a credential."""
        ...


def ttl_ms(ttl_seconds: float | None) -> int | None:
    """A block's time to live in ms, within the rule book; ``None``: no end."""
    if ttl_seconds is None:
        return None
    return math.ceil(rules.TTL_SECONDS.number(ttl_seconds) * 1000)


class ActionParts:
    """The parts operator actions act through, and what they share."""

    def __init__(
        self,
        store: ActionStore,
        *,
        feed: ChangeFeed,
        limits: LiveLimits,
        audit: AuditLog,
        resets: ResetNotifier,
        networks: NetworkBlocks,
        wait_ms: int = 0,
    ) -> None:
        self._store = store
        self._wait_ms = wait_ms
        self._networks = networks
        self._feed = feed
        self._limits = limits
        self.audit = audit
        self._resets = resets

    @property
    def store_description(self) -> str:
        """Which store the actions act on (never a credential)."""
        return self._store.describe()

    async def listeners(self) -> int | None:
        """How many app workers follow operator changes on this store and prefix now: a
        change made while none does reaches no app (a wrong prefix, say). ``None`` when the
        store cannot tell (logged): asked after a change, a failure here must not turn a
        stored change into an error."""
        try:
            return await self._store.receivers()
        except StorageError as exc:
            logger.warning("the change is stored; the workers that received it: unknown: %s", exc)
            return None

    async def replicated(self, *, user_id: str | None = None, networks: bool = False) -> Replicas:
        """Wait, at most FLOODWALL_REDIS_WAIT_TIMEOUT, until a replica of the store's primary
        holds every change made so far, so that it survives a failover; how many replicas
        acknowledged it. On a Redis Cluster, on the node of ``user_id``'s state, of the
        network blocks (``networks``), or else of the run-time settings. Asked after a
        change: a failure here is logged, and reads as no replica's acknowledgement."""
        keys = self._store.keys
        if user_id is not None:
            near = keys.user(user_id).state
        else:
            near = keys.networks if networks else keys.config
        try:
            return await self._store.replicate(near, timeout_ms=self._wait_ms)
        except StorageError as exc:
            logger.warning("the change is stored; the replicas that hold it: unknown: %s", exc)
            return Replicas(0, 0)

    @property
    def default_limit(self) -> Limit:
        """The default per-user (rate, burst) this worker applies now."""
        return self._limits.user

    def _status(self, user_id: str, state: UserState) -> UserStatus:
        limits = self._limits
        default = limits.user if state.plan is None else limits.for_plan(state.plan)
        return UserStatus.of(user_id, state, default)

    async def _changed(
        self,
        user_id: str,
        action: str,
        actor: str,
        state: UserState,
        *,
        reason: str | None = None,
        expires_in_ms: int | None = None,
        detail: str | None = None,
    ) -> UserStatus:
        # A user's state changed in the store: every worker learns it, the audit records it.
        await self._feed.user_changed(user_id, state, revoked_read=False)
        await self.audit.record(
            actor,
            action,
            user_id,
            reason=reason,
            expires_ms=None if expires_in_ms is None else state.now_ms + expires_in_ms,
            detail=detail,
            now_ms=state.now_ms,
        )
        return self._status(user_id, state)


def check_change(user_id: str, reason: str | None) -> None:
    """The rule book's checks of any change of one user."""
    rules.USER_ID.check(user_id)
    rules.REASON.optional(reason)
