"""Operator actions: block (one user, many at once, a network), revoke, reset, limits; each
checked against the rule book, applied in the store, published to every worker and
audited.

The admin API, the CLI and Python callers all come through here, so they accept and refuse
the same values with the same message.

Its length is one method per operator action (every surface's), each a few lines over
the one ``_change``; split by action, the rule checks would scatter.
"""

from __future__ import annotations

import hashlib
import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from floodwall.control.change_feed import ChangeFeed
from floodwall.core import rules
from floodwall.core.errors import StorageError, StoreCommandError
from floodwall.core.route_limits import RouteLimit, route_limit, window_of
from floodwall.core.stored import (
    APP_ROUTES_FIELD,
    BLOCK_FIELDS,
    ROUTE_FIELD,
    Limit,
    WindowLimit,
    iso_time,
    stored_int,
)
from floodwall.killswitch.audit import AuditLog, AuditRecord
from floodwall.killswitch.networks import NetworkBlock, NetworkBlocks, NetworkListing
from floodwall.killswitch.reset_hook import ResetNotifier
from floodwall.killswitch.status import UserStatus
from floodwall.limiting.live_limits import LiveLimits
from floodwall.limiting.routes import AppRoutes
from floodwall.stores.base import StateSnapshot, Store

logger = logging.getLogger("floodwall")

__all__ = ["BulkBlockResult", "OperatorActions"]

PYTHON_ACTOR: Final = "python"
# Revoked credential ids with no known expiry are remembered this long.
DEFAULT_CREDENTIAL_LIFETIME_MS: Final = 7 * 24 * 3600 * 1000
_RESET_FIELDS: Final = ("reset_required", "reset_id", "reset_notified")


@dataclass(frozen=True, slots=True)
class BulkBlockResult:
    """What a bulk block did to one user: blocked (until when, ms on the store's clock;
    ``None`` for no end), or the error that one user's update met."""

    user_id: str
    blocked: bool
    blocked_until_ms: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The admin API's and ``--json``'s shape of a result."""
        return {
            "user_id": self.user_id,
            "blocked": self.blocked,
            "blocked_until": iso_time(self.blocked_until_ms),
            "error": self.error,
        }


def bulk_counts(results: Sequence[BulkBlockResult]) -> tuple[int, int]:
    """How many distinct users a bulk block blocked, and how many it failed to: an id
    asked for twice has two results but is one user."""
    blocked = {result.user_id for result in results if result.blocked}
    failed = {result.user_id for result in results if not result.blocked}
    return len(blocked), len(failed)


def _block_fields(
    reason: str, actor: str, ttl_ms: int | None, extra: Mapping[str, str] | None = None
) -> tuple[dict[str, str], dict[str, int]]:
    """A block's fields: those set as given, and those set to the store's now plus ms."""
    assign = {"reason": reason, "blocked_by": actor, **(extra or {})}
    if ttl_ms is None:
        assign["blocked_until"] = "0"
    now_plus = {"blocked_at": 0} | ({} if ttl_ms is None else {"blocked_until": ttl_ms})
    return assign, now_plus


def _ttl_ms(ttl_seconds: float | None) -> int | None:
    if ttl_seconds is None:
        return None
    return math.ceil(rules.TTL_SECONDS.number(ttl_seconds) * 1000)


class OperatorActions:
    """What an operator can do to users and the default limit."""

    def __init__(
        self,
        store: Store,
        *,
        feed: ChangeFeed,
        limits: LiveLimits,
        audit: AuditLog,
        resets: ResetNotifier,
        networks: NetworkBlocks,
    ) -> None:
        self._store = store
        self._networks = networks
        self._keys = store.keys
        self._feed = feed
        self._limits = limits
        self.audit = audit
        self._resets = resets

    # -- reading ------------------------------------------------------------------------

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
            return await self._store.listeners()
        except StorageError as exc:
            logger.warning("the change is stored; the workers that received it: unknown: %s", exc)
            return None

    @property
    def configured_default_limit(self) -> Limit:
        """The default limit of this process's settings."""
        return self._limits.configured

    @property
    def live_default_limit(self) -> Limit | None:
        """An operator's default limit, shared through the store, when one is set."""
        return self._limits.live

    @property
    def default_limit(self) -> Limit:
        """The default per-user (rate, burst) this worker applies now."""
        return self._limits.user

    async def status(self, user_id: str) -> UserStatus:
        """The user's block, revocation, reset and limit status."""
        rules.USER_ID.check(user_id)
        snapshot = await self._store.read_state(self._keys.user(user_id))
        return self._status(user_id, snapshot)

    def _status(self, user_id: str, snapshot: StateSnapshot) -> UserStatus:
        rate, burst = self._limits.user
        return UserStatus.from_snapshot(user_id, snapshot, rate, burst)

    async def blocked(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[UserStatus], str | None]:
        """A page of blocked users in id order, and the cursor of the next page."""
        limit = rules.PAGE_SIZE.whole_number(limit)
        page: list[UserStatus] = []
        cursor = after
        while len(page) < limit:
            ids = await self._store.list_index("blocked", after=cursor, count=limit - len(page))
            if not ids:
                return page, None
            for user_id, snapshot in await self._readable_states(ids):
                status = self._status(user_id, snapshot)
                if status.blocked:
                    page.append(status)
                else:
                    # A temporary block ran out: drop it from the index as we pass.
                    await self._store.set_index("blocked", user_id, present=False)
            cursor = ids[-1]
        return page, cursor

    async def _readable_states(self, ids: Sequence[str]) -> list[tuple[str, StateSnapshot]]:
        """The states of ``ids`` in one read; when one cannot be read (a key of another type
        written by hand, say), each alone, leaving out and logging the unreadable ones: one
        damaged user must not take the whole listing down."""
        try:
            snapshots = await self._store.read_states([self._keys.user(u) for u in ids])
        except StoreCommandError:
            pass
        else:
            return list(zip(ids, snapshots, strict=True))
        readable: list[tuple[str, StateSnapshot]] = []
        for user_id in ids:
            try:
                readable.append((user_id, await self._store.read_state(self._keys.user(user_id))))
            except StoreCommandError as exc:
                logger.warning("left out of the listing: the state of user %r: %s", user_id, exc)
        return readable

    async def audit_log(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of audit records, newest first, and the cursor of the next page."""
        return await self.audit.page(before=before, limit=limit)

    # -- changing users -------------------------------------------------------------------

    async def _change(
        self,
        user_id: str,
        action: str,
        actor: str,
        *,
        reason: str | None = None,
        assign: Mapping[str, str] | None = None,
        now_plus_ms: Mapping[str, int] | None = None,
        delete: Sequence[str] = (),
        expires_in_ms: int | None = None,
        detail: str | None = None,
        reset_bucket: bool = False,
    ) -> UserStatus:
        rules.USER_ID.check(user_id)
        rules.REASON.optional(reason)
        keys = self._keys.user(user_id)
        snapshot = await self._store.update_state(
            keys,
            user_id=user_id,
            assign=assign,
            assign_now_plus_ms=now_plus_ms,
            delete=delete,
            reset_bucket=reset_bucket,
        )
        # Resync finds users by this index: one with revoked credential ids stays in it.
        present = bool(snapshot.fields) or bool((await self._store.read_state(keys)).revoked)
        await self._store.set_index("users", user_id, present=present)
        await self._feed.user_changed(user_id, snapshot, revoked_read=False)
        await self.audit.record(
            actor,
            action,
            user_id,
            reason=reason,
            expires_ms=None if expires_in_ms is None else snapshot.now_ms + expires_in_ms,
            detail=detail,
            now_ms=snapshot.now_ms,
        )
        return self._status(user_id, snapshot)

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = PYTHON_ACTOR,
        extra: Mapping[str, str] | None = None,
    ) -> UserStatus:
        """Refuse every request of the user (403), for ``ttl_seconds`` or until unblocked.

        ``extra`` fields are stored with the block (auto-block keeps its count there).
        """
        rules.REASON.check(reason)
        ttl_ms = _ttl_ms(ttl_seconds)
        assign, now_plus = _block_fields(reason, actor, ttl_ms, extra)
        status = await self._change(
            user_id,
            "block",
            actor,
            reason=reason,
            assign=assign,
            now_plus_ms=now_plus,
            expires_in_ms=ttl_ms,
        )
        await self._store.set_index("blocked", user_id, present=True)
        return status

    async def block_many(
        self,
        user_ids: Sequence[str],
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = PYTHON_ACTOR,
    ) -> list[BulkBlockResult]:
        """Block up to ``rules.BULK_USER_IDS`` users at once, as ``block`` does each: the
        store's writes pipelined, the change published in a few messages, one audit entry
        per user. The input is checked whole first (nothing is done if any id is refused);
        a user whose update fails is reported in its result, the others are blocked."""
        rules.BULK_USER_IDS.whole_number(len(user_ids))
        for user_id in user_ids:
            rules.USER_ID.check(user_id)
        rules.REASON.check(reason)
        ttl_ms = _ttl_ms(ttl_seconds)
        unique = list(dict.fromkeys(user_ids))
        assign, now_plus = _block_fields(reason, actor, ttl_ms)
        outcomes = await self._store.update_states(
            [(self._keys.user(user_id), user_id) for user_id in unique],
            assign=assign,
            assign_now_plus_ms=now_plus,
            indexes=("users", "blocked"),
        )
        done: dict[str, StateSnapshot] = {}
        results: dict[str, BulkBlockResult] = {}
        for user_id, outcome in zip(unique, outcomes, strict=True):
            if isinstance(outcome, StoreCommandError):
                results[user_id] = BulkBlockResult(user_id, False, error=str(outcome))
                continue
            done[user_id] = outcome
            until = stored_int(outcome.fields.get("blocked_until"))
            results[user_id] = BulkBlockResult(user_id, True, until or None)
        await self._feed.users_changed(done)
        await self.audit.record_many(
            actor,
            "block",
            [
                (user_id, None if ttl_ms is None else snapshot.now_ms + ttl_ms, snapshot.now_ms)
                for user_id, snapshot in done.items()
            ],
            reason=reason,
        )
        return [results[user_id] for user_id in user_ids]

    # -- networks -------------------------------------------------------------------------

    async def networks(self) -> list[NetworkBlock]:
        """The network blocks that hold now, as stored, in address order."""
        listing = NetworkListing(self._networks.wall() * 1000)
        await self._feed.scan_networks(listing.add)
        return listing.blocks()

    async def block_network(
        self,
        cidr: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        force: bool = False,
        actor: str = PYTHON_ACTOR,
    ) -> NetworkBlock:
        """Refuse (403) every request from inside ``cidr`` on every worker, from its next
        request and with no round trip, for ``ttl_seconds`` or until lifted; networks
        broader than a /8 (IPv4) or /32 (IPv6) only with ``force``."""
        network = str(rules.network(cidr, force=force))
        rules.REASON.check(reason)
        ttl_ms = _ttl_ms(ttl_seconds)
        now_ms = await self._store.now_ms()
        # Only a new network at the limit reads every block (to make room).
        new = await self._store.read_network(network) is None
        if new and await self._store.count_networks() >= rules.MAX_NETWORK_BLOCKS:
            stored = await self._store.read_networks()
            # Blocks that ran out stay stored until lifted: make room from them first.
            for cidr, text in list(stored.items()):
                block = NetworkBlock.from_stored(cidr, text)
                if block is None or not block.active(now_ms):
                    await self._store.write_network(cidr, None)
                    del stored[cidr]
            full = len(stored) >= rules.MAX_NETWORK_BLOCKS
        else:
            full = False
        if full:
            raise rules.RuleError(
                f"at most {rules.MAX_NETWORK_BLOCKS} networks are blocked at once: "
                "lift some, or block a broader network"
            )
        until = None if ttl_ms is None else now_ms + ttl_ms
        block = NetworkBlock(network, reason, actor, now_ms, until)
        await self._store.write_network(network, block.stored())
        await self._feed.network_changed(network, block.stored())
        await self.audit.record(
            actor,
            "block-network",
            None,
            reason=reason,
            expires_ms=until,
            detail=f"network={network}",
            now_ms=now_ms,
        )
        return block

    async def unblock_network(
        self, cidr: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> str:
        """Lift a network block; lifting one that does not exist changes nothing. Returns
        the network as stored (``10.0.0.0/8``)."""
        network = str(rules.network(cidr, force=True))
        rules.REASON.optional(reason)
        await self._store.write_network(network, None)
        await self._feed.network_changed(network, None)
        await self.audit.record(
            actor, "unblock-network", None, reason=reason, detail=f"network={network}"
        )
        return network

    async def unblock(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Lift a block; unblocking a user who is not blocked changes nothing."""
        # An operator's unblock also forgives auto-block's escalation: the block was a
        # mistake, or is over by decision; an auto-block that runs out keeps counting.
        status = await self._change(user_id, "unblock", actor, reason=reason, delete=BLOCK_FIELDS)
        await self._store.set_index("blocked", user_id, present=False)
        return status

    async def revoke(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Refuse (401) every credential of the user issued up to now."""
        return await self._change(
            user_id, "revoke", actor, reason=reason, now_plus_ms={"not_before": 0}
        )

    async def revoke_credential(
        self,
        user_id: str,
        credential_id: str,
        *,
        expires_at: float | None = None,
        actor: str = PYTHON_ACTOR,
        reason: str | None = None,
    ) -> UserStatus:
        """Refuse one credential (by its id, a JWT's ``jti``) until it would expire anyway
        (``expires_at``, seconds since the epoch; at most ten years ahead)."""
        rules.USER_ID.check(user_id)
        rules.CREDENTIAL_ID.check(credential_id)
        rules.REASON.optional(reason)
        now_ms = await self._store.now_ms()
        if expires_at is None:
            expires_ms = now_ms + DEFAULT_CREDENTIAL_LIFETIME_MS
        else:
            # An expiry in the past still records the revocation; one beyond the rule
            # book's horizon is refused like any other ttl.
            ahead = max(1.0, float(expires_at) - now_ms / 1000)
            expires_ms = now_ms + math.ceil(rules.TTL_SECONDS.number(ahead) * 1000)
        keys = self._keys.user(user_id)
        await self._store.revoke_credential(
            keys, credential_id=credential_id, expires_at_ms=expires_ms
        )
        # Every worker's mirror learns the id, so it is refused while the store is down too.
        await self._store.set_index("users", user_id, present=True)
        await self._feed.user_changed(user_id, await self._store.read_state(keys))
        await self.audit.record(
            actor,
            "revoke-credential",
            user_id,
            reason=reason,
            expires_ms=expires_ms,
            detail=f"credential_id={credential_id}",
            now_ms=now_ms,
        )
        return await self.status(user_id)

    async def require_password_reset(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Refuse the user (403) outside the reset flow until cleared; revokes too."""
        reset_id = uuid.uuid4().hex
        status = await self._change(
            user_id,
            "require-password-reset",
            actor,
            reason=reason,
            assign={"reset_required": "1", "reset_id": reset_id},
            now_plus_ms={"not_before": 0},
        )
        # Delivered here when this process has the hook; else by the app process that
        # claims it first (see ResetNotifier).
        await self._resets.consider(user_id, {"reset_required": "1", "reset_id": reset_id})
        return status

    async def clear_password_reset(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """The user has set a new password: let them in again."""
        return await self._change(user_id, "clear-password-reset", actor, delete=_RESET_FIELDS)

    async def set_limit(
        self, user_id: str, *, rate: float, burst: int, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a limit of their own, starting from a full bucket."""
        rate, burst = rules.limit(rate, burst)
        return await self._change(
            user_id,
            "set-limit",
            actor,
            assign={"rate": repr(rate), "burst": str(burst)},
            detail=f"rate={rate} burst={burst}",
            reset_bucket=True,
        )

    async def clear_limit(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """Put the user back on the default limit."""
        return await self._change(
            user_id, "clear-limit", actor, delete=("rate", "burst"), reset_bucket=True
        )

    async def set_shadow(
        self, user_id: str, enabled: bool, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Observe this user's limit without enforcing it (to roll out a limit safely)."""
        if enabled:
            return await self._change(user_id, "shadow-on", actor, assign={"shadow": "1"})
        return await self._change(user_id, "shadow-off", actor, delete=("shadow",))

    async def set_route_limit(
        self, user_id: str, route: str, limit: str, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a limit of their own on one route (``"POST /login"``,
        ``"10/minute"``), in place of the app's."""
        key, (count, period_us) = window_of(route, limit)
        await self._check_route(key, limited=True)
        return await self._change(
            user_id,
            "set-route-limit",
            actor,
            assign={ROUTE_FIELD + key: f"{count}:{period_us}"},
            detail=f"route={key} limit={limit}",
        )

    async def clear_route_limit(
        self, user_id: str, route: str, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Put the user back on the app's limit of one route."""
        key, _ = window_of(route, "1/second")
        return await self._change(
            user_id,
            "clear-route-limit",
            actor,
            delete=(ROUTE_FIELD + key,),
            detail=f"route={key}",
        )

    async def set_concurrency(
        self, user_id: str, *, limit: int, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a concurrency limit of their own (requests in flight at once), in
        place of FLOODWALL_CONCURRENCY, set or not."""
        limit = rules.CONCURRENCY.whole_number(limit)
        return await self._change(
            user_id,
            "set-concurrency",
            actor,
            assign={"concurrency": str(limit)},
            detail=f"concurrency={limit}",
        )

    async def clear_concurrency(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """Put the user back on FLOODWALL_CONCURRENCY."""
        return await self._change(user_id, "clear-concurrency", actor, delete=("concurrency",))

    # -- the default limits ---------------------------------------------------------------

    @property
    def live_route_limits(self) -> dict[str, WindowLimit]:
        """Route limits an operator changed for everyone: route → (requests, period µs)."""
        return dict(self._limits.routes)

    async def set_route_default(
        self, route: str, limit: str, *, actor: str = PYTHON_ACTOR
    ) -> dict[str, WindowLimit]:
        """Change one route's limit for everyone, on every worker, kept across restarts."""
        key, window = window_of(route, limit)
        await self._check_route(key, limited=False)
        await self._limits.set_route(self._store, key, window)
        await self._feed.config_changed()
        await self.audit.record(
            actor, "set-route-default", None, detail=f"route={key} limit={limit}"
        )
        return self.live_route_limits

    async def publish_routes(self, routes: AppRoutes, limited: Sequence[RouteLimit]) -> None:
        """Publish an app's routes and route limits, which live route limits are checked
        against; the workers of one app share one field."""
        text = routes.published(limited)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        await self._store.write_config({APP_ROUTES_FIELD + digest: text})

    async def _check_route(self, key: str, *, limited: bool) -> None:
        # A live limit on a route no app has would apply nothing: refused, saying why. With
        # no app published yet (none has started), there is nothing to check against.
        config = await self._store.read_config()
        published = [v for k, v in config.items() if k.startswith(APP_ROUTES_FIELD)]
        if not published:
            return
        found, limited_keys = AppRoutes.from_published(published)
        item = route_limit(key, "1/second")
        if not found.names(item):
            raise rules.RuleError(
                f"no app using this store has the route {key}: name it as the app's router "
                "declares it, 'METHOD /path/{param}'"
            )
        limited_keys |= {k.removeprefix(ROUTE_FIELD) for k in config if k.startswith(ROUTE_FIELD)}
        if limited and key not in limited_keys:
            raise rules.RuleError(
                f"the route {key} has no limit to give a user one of their own: "
                f"set one for everyone first (route-limit '{key}' N/period)"
            )

    async def clear_route_default(
        self, route: str, *, actor: str = PYTHON_ACTOR
    ) -> dict[str, WindowLimit]:
        """Put every worker back on the app's own limit of one route."""
        key, _ = window_of(route, "1/second")
        await self._limits.clear_route(self._store, key)
        await self._feed.config_changed()
        await self.audit.record(actor, "clear-route-default", None, detail=f"route={key}")
        return self.live_route_limits

    async def set_default_limit(
        self, rate: float, burst: int, *, actor: str = PYTHON_ACTOR
    ) -> Limit:
        """Change the default per-user limit on every worker, and keep it across restarts."""
        rate, burst = await self._limits.set(self._store, rate, burst)
        await self._feed.config_changed()
        await self.audit.record(
            actor, "set-default-limit", None, detail=f"rate={rate} burst={burst}"
        )
        return self.default_limit

    async def clear_default_limit(self, *, actor: str = PYTHON_ACTOR) -> Limit:
        """Put every worker back on the default of its own settings."""
        await self._limits.clear(self._store)
        await self._feed.config_changed()
        await self.audit.record(actor, "clear-default-limit", None)
        return self.default_limit
