"""What a store can do, one small protocol per capability, in domain terms.

Each part of floodwall asks for the capability it uses: the checker for ``Buckets``, the
operator actions for ``UserStates`` and ``UserLimits``, the audit log for ``AuditTrail``,
and so on; ``Store`` is all of them, what the service holds. ``MemoryStore`` and
``RedisStore`` implement every one with the same semantics (one shared test suite runs
against each).

Times are the store's own clock (Redis ``TIME``), never the app server's; rates are tokens
per second, bursts and costs tokens. Every method raises ``StoreUnavailable`` when the
backend does not answer and ``StoreCommandError`` when it answers with an error (see
``floodwall.core.errors``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from typing import Protocol

from floodwall.core.audit import AuditAction, AuditRecord
from floodwall.core.decision import Decision
from floodwall.core.errors import StoreCommandError
from floodwall.core.live_settings import LiveSettings
from floodwall.core.network_block import NetworkBlock
from floodwall.core.stored import Limit, WindowLimit
from floodwall.core.user_state import Listing, UserState
from floodwall.stores.base import LEASE_MS, Replicas, Subscription, TopBlock, Window
from floodwall.stores.keys import Keys, SubjectKeys

__all__ = [
    "AuditTrail",
    "Buckets",
    "ChangeChannel",
    "LiveConfig",
    "NetworkBlockStore",
    "RefusalBoards",
    "Replication",
    "ResetClaims",
    "Store",
    "StoreClock",
    "UserLimits",
    "UserStates",
]


class StoreClock(Protocol):
    """The store's clock: every worker and operator tool reads the same time."""

    async def now_ms(self) -> int:
        """The store's clock, ms since the epoch."""
        ...


class Buckets(StoreClock, Protocol):
    """The hot path: decide a request in one round trip, and the concurrency slots."""

    keys: Keys

    @property
    def crosses_subjects(self) -> bool:
        """Whether one check may also count a window of another subject (a route limit by
        the client's address beside the user's bucket): not on a Redis Cluster, whose
        scripts touch one slot."""
        ...

    async def check(
        self,
        keys: SubjectKeys,
        *,
        rate: float,
        burst: int,
        cost: int = 1,
        issued_at_ms: int | None = None,
        credential_id: str | None = None,
        reset_exempt: bool = False,
        windows: tuple[Window, ...] = (),
        concurrency: int | None = None,
        lease_ms: int = LEASE_MS,
    ) -> Decision:
        """Decide one request: the kill-switch rule first (``floodwall.core.killswitch``),
        then take ``cost`` tokens and count the request in every route limit's window, all
        or nothing.

        ``rate`` and ``burst`` are the default limit; a per-subject override in the state
        wins. ``issued_at_ms`` and ``credential_id`` describe the request's credential;
        ``reset_exempt`` marks the password-reset flow. A refusal's ``policy`` is 0 for the
        bucket, ``i`` for ``windows[i - 1]``. Where the subject has a concurrency limit of its
        own (in its state) or ``concurrency`` sets one, an allowed request holds one of its
        slots, ``Decision.lease``, leased for ``lease_ms``, until ``release``.
        """
        ...

    async def release(self, keys: SubjectKeys, token: str) -> None:
        """Give a concurrency slot back."""

    async def renew(self, leases: Sequence[tuple[SubjectKeys, str]], lease_ms: int) -> None:
        """Extend the leases of requests still in flight, in one round trip."""


class ResetClaims(Protocol):
    """Who delivers a required password reset: one claim succeeds."""

    async def claim_reset(self, user_id: str, *, reset_id: str, claim: bool) -> bool:
        """Claim the user's current password reset for delivery to the app's hook (only one
        claim succeeds), or give a claim back (``claim=False``) after the hook failed."""
        ...


class UserStates(ResetClaims, StoreClock, Protocol):
    """Users' kill-switch state (``UserState``): each change atomic on the store's clock,
    the listings kept in step."""

    keys: Keys

    async def read_user(self, user_id: str) -> UserState:
        """The user's state, credential ids revoked one by one included."""
        ...

    async def read_users(self, user_ids: Sequence[str]) -> list[UserState]:
        """Many users' states, in order, in one round trip where the store allows."""
        ...

    async def list_users(self, listing: Listing, *, after: str | None, count: int) -> list[str]:
        """Up to ``count`` user ids of a listing in id order, strictly after ``after``."""
        ...

    async def unlist(self, listing: Listing, user_id: str) -> None:
        """Drop a user from a listing (a block that ended, seen by a listing)."""

    async def note_plan(self, user_id: str, plan: str) -> None:
        """Keep the plan the user's requests name with the user's state (no listing)."""

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        actor: str,
        ttl_ms: int | None,
        offences: int | None = None,
    ) -> UserState:
        """Block the user for ``ttl_ms`` from the store's now (``None``: until unblocked);
        ``offences`` is auto-block's count, kept with the block."""
        ...

    async def block_many(
        self, user_ids: Sequence[str], *, reason: str, actor: str, ttl_ms: int | None
    ) -> list[UserState | StoreCommandError]:
        """``block`` of many distinct users in as few round trips as the store allows; a
        user whose change failed gets its error in place of its state."""
        ...

    async def unblock(self, user_id: str) -> UserState:
        """Lift the user's block, and forget auto-block's count with it."""
        ...

    async def lapse_block(self, user_id: str, state: UserState) -> UserState | None:
        """Forget a block that has ended, as ``state`` read it; ``None`` when the block
        changed since (nothing done), else the state left."""
        ...

    async def revoke(self, user_id: str) -> UserState:
        """Refuse every credential of the user issued up to the store's now."""
        ...

    async def revoke_credential(
        self, user_id: str, *, credential_id: str, expires_at_ms: int
    ) -> UserState:
        """Refuse one credential id until it would have expired anyway."""
        ...

    async def require_reset(self, user_id: str, *, reset_id: str) -> UserState:
        """Refuse the user outside the password-reset flow, and every credential issued up
        to now, until ``clear_reset``."""
        ...

    async def clear_reset(self, user_id: str) -> UserState:
        """The user has set a new password."""
        ...


class UserLimits(Protocol):
    """A user's own limits, in place of the defaults."""

    async def set_limit(self, user_id: str, limit: Limit | None) -> UserState:
        """A (rate, burst) of the user's own (``None``: the default), from a full bucket."""
        ...

    async def set_shadow(self, user_id: str, enabled: bool) -> UserState:
        """Observe the user's limit without enforcing it, or enforce it again."""
        ...

    async def set_route_limit(
        self, user_id: str, route: str, window: WindowLimit | None
    ) -> UserState:
        """A limit of the user's own on one route (``None``: the app's)."""
        ...

    async def set_concurrency(self, user_id: str, limit: int | None) -> UserState:
        """A limit of requests in flight of the user's own (``None``: none)."""
        ...


class NetworkBlockStore(Protocol):
    """Blocked networks, one block per CIDR. A listing maps each CIDR as stored to its block,
    or to ``None`` where the stored CIDR is no network (written by hand): it can only be
    deleted."""

    async def read_networks(self) -> dict[str, NetworkBlock | None]:
        """Every network block."""
        ...

    async def read_network(self, cidr: str) -> NetworkBlock | None:
        """One network block, or ``None`` when none is stored for ``cidr``."""
        ...

    async def count_networks(self) -> int:
        """How many network blocks are stored (ended ones too)."""
        ...

    async def scan_networks(
        self, cursor: str | None, count: int
    ) -> tuple[dict[str, NetworkBlock | None], str]:
        """A page of about ``count`` network blocks and the cursor of the next page, from
        ``cursor`` (``None``: the first page); the returned cursor is ``""`` after the last
        page. Each block stored for the whole scan comes at least once; one added or
        lifted meanwhile may come or not."""
        ...

    async def write_network(self, cidr: str, block: NetworkBlock | None) -> None:
        """Store a network block, or delete it (``None``)."""


class AuditTrail(StoreClock, Protocol):
    """The audit trail of operator actions, capped."""

    async def append_audit(self, action: AuditAction, *, max_entries: int) -> str:
        """Audit one action, keeping about the newest ``max_entries``; returns its id."""
        ...

    async def append_audits(self, actions: Sequence[AuditAction], *, max_entries: int) -> list[str]:
        """``append_audit`` of many actions, in order, in as few round trips as possible."""
        ...

    async def read_audit(self, *, before: str | None, count: int) -> list[AuditRecord]:
        """Up to ``count`` audited actions, newest first, strictly older than ``before``."""
        ...


class RefusalBoards(Protocol):
    """The top boards: refusals counted per time block, the most refused read back."""

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """Add refusal counts to each time block of a board (``subjects``, ``networks``),
        each to expire after ``ttl_seconds``, then keep only each one's ``keep`` largest
        members."""

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """The ``count`` most refused members over the blocks, most refused first, adding
        up each block's ``per_block(len(blocks))`` largest members only: the cost is
        bounded by ``TOP_READ_BUDGET``, whatever was refused."""
        ...


class LiveConfig(Protocol):
    """Settings changed at run time, shared by every worker (``LiveLimits``)."""

    async def read_live_settings(self) -> LiveSettings:
        """Every setting changed at run time, as the store holds it."""
        ...

    async def set_default_limit(self, limit: Limit | None) -> None:
        """Store the live default limit (``None``: forget it, the settings apply)."""

    async def set_route_default(self, route: str, window: WindowLimit | None) -> None:
        """Store a route's live limit for everyone (``None``: forget it, the app's applies)."""

    async def set_plan_limit(self, plan: str, limit: Limit | None) -> None:
        """Store a plan's live limit (``None``: forget it, ``FLOODWALL_PLANS`` applies)."""

    async def publish_app_routes(self, digest: str, routes: str) -> None:
        """Store an app's published routes (``AppRoutes.published``) under ``digest``."""


class ChangeChannel(Protocol):
    """The channel of the change feed: every worker hears every change."""

    async def publish(self, message: str) -> None:
        """Tell every worker's subscription about a change."""

    def subscription(self) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribe to changes; the subscription is live once entered."""
        ...

    async def receivers(self) -> int:
        """How many subscriptions follow the changes now (running app workers)."""
        ...


class Replication(Protocol):
    """Where the store has replicas: an operator's writes made to survive a failover."""

    async def replicate(self, key: str, *, timeout_ms: int) -> Replicas:
        """Wait at most ``timeout_ms`` until a replica holds every write made so far to the
        primary of ``key`` (a key the writes touched: on a Redis Cluster, each node has
        replicas of its own); returns at once where the primary has no replica connected,
        or ``timeout_ms`` is 0."""
        ...


class Store(
    Buckets,
    UserStates,
    UserLimits,
    NetworkBlockStore,
    AuditTrail,
    RefusalBoards,
    LiveConfig,
    ChangeChannel,
    Replication,
    Protocol,
):
    """Every capability: what the service holds, and hands each part its own."""

    async def start(self) -> None:
        """Connect and load scripts; safe to call more than once."""

    async def close(self) -> None:
        """Release connections."""

    def describe(self) -> str:
        """Where the state lives, for operators; never a credential."""
        ...
