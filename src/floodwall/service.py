"""``Floodwall``: the service the middleware, the admin API and the CLI share.

It owns the settings, the store, the fail-mode fallback and the operator actions; nothing
else talks to Redis. Every operator action is audited.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import re
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from floodwall.audit import AuditRecord, log_action
from floodwall.breaker import BreakerState, CircuitBreaker
from floodwall.decision import Decision, Outcome
from floodwall.deny_cache import DenyCache
from floodwall.errors import StorageError
from floodwall.identity import Identity
from floodwall.keys import SubjectKeys
from floodwall.metrics import RESULTS, Metrics
from floodwall.mirror import KillSwitchMirror
from floodwall.settings import FloodwallSettings, parse_rate
from floodwall.status import UserStatus
from floodwall.stores.base import StateSnapshot, Store
from floodwall.stores.memory import MemoryStore
from floodwall.stores.redis import RedisStore
from floodwall.top import SLICE_SECONDS, Offender, RefusalCounter, member, offender

if TYPE_CHECKING:
    from starlette.applications import Starlette

__all__ = ["Floodwall", "PasswordResetHook"]

logger = logging.getLogger("floodwall")

PasswordResetHook = Callable[[str], Awaitable[None]]
"""Called with the user id when a password reset becomes required."""

AUDIT_MAX_ENTRIES = 100_000
MAX_REASON_LENGTH = 500
# Revoked credential ids with no known expiry are remembered this long.
DEFAULT_CREDENTIAL_LIFETIME_MS = 7 * 24 * 3600 * 1000
CONFIG_REFRESH_SECONDS = 1.0
FLUSH_SECONDS = 1.0
TOP_KEEP_SECONDS = 3600
AUTO_ACTOR = "auto"
RESUBSCRIBE_SECONDS = 1.0
INDEX_PAGE = 500
KEYS_CACHE_SIZE = 65_536

_ALLOWED = RESULTS.index("allowed")
_AUDIT_CURSOR = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")
# An operator's unblock also forgives auto-block's escalation: the block was a mistake, or
# is over by decision; an auto-block that runs out on its own keeps counting.
_BLOCK_FIELDS = ("blocked_until", "reason", "blocked_by", "blocked_at", "auto_offences")


def _store_for(settings: FloodwallSettings) -> Store:
    if settings.redis_url is None:
        return MemoryStore(prefix=settings.key_prefix)
    return RedisStore.from_url(
        settings.redis_url.get_secret_value(),
        prefix=settings.key_prefix,
        cluster=settings.redis_cluster,
        timeout=settings.redis_timeout,
    )


def _check_reason(reason: str | None) -> None:
    if reason is not None and len(reason) > MAX_REASON_LENGTH:
        raise ValueError(f"a reason has at most {MAX_REASON_LENGTH} characters")


def _check_limit(rate: float, burst: int) -> None:
    parse_rate(rate)
    if isinstance(burst, bool) or not isinstance(burst, int) or burst < 1:
        raise ValueError("burst is a whole number of requests, at least 1")


class Floodwall:
    """Rate limits and the account kill switch for one application.

    ``Floodwall()`` reads ``FLOODWALL_*`` variables; pass a ``FloodwallSettings`` to be
    explicit, and a ``store`` to use one built elsewhere (tests, custom clients); such a
    store brings its own key prefix. ``on_password_reset`` is awaited with the user id
    when a reset becomes required, in the process that required it.
    """

    def __init__(
        self,
        settings: FloodwallSettings | None = None,
        *,
        store: Store | None = None,
        on_password_reset: PasswordResetHook | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.settings = settings if settings is not None else FloodwallSettings()
        self.store = store if store is not None else _store_for(self.settings)
        self.keys = self.store.keys
        self._on_password_reset = on_password_reset
        # In fail-open mode requests are still limited, per process, while the store is down,
        # and the kill switch holds from each worker's mirror of it.
        self._fallback = MemoryStore()
        self.mirror = KillSwitchMirror()
        # The store's answers are timed with the clock the cache counts refusals by.
        self.denials = DenyCache(clock=time.perf_counter)
        self.metrics = metrics if metrics is not None else Metrics()
        self.metrics.watch_blocked(lambda: self.mirror.blocked_count(int(time.time() * 1000)))
        self._hot = self.metrics.hot
        # Where each outcome is tallied; a store failure in closed mode counts as "error".
        self._result_index = [
            RESULTS.index("error" if o is Outcome.UNAVAILABLE else o.name.lower()) for o in Outcome
        ]
        self._fallback_index = RESULTS.index("fallback")
        # Building keys percent-encodes the id; the hot path looks them up instead.
        self._user_keys: dict[str, SubjectKeys] = {}
        self._anonymous_keys: dict[str, SubjectKeys] = {}
        self.refusals = RefusalCounter()
        # Auto-block: refusals per user in the current window (start, count), per worker.
        self._offences: dict[str, list[float]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()
        self.breaker = CircuitBreaker(
            threshold=self.settings.breaker_failures, cooldown=self.settings.breaker_cooldown
        )
        self._apply_default_limit(self.settings.rate, self.settings.burst)
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []
        self.following = asyncio.Event()
        """Set while this worker is subscribed to operator changes (after its reload)."""

    # -- lifecycle ---------------------------------------------------------------------

    async def start(self) -> None:
        """Connect the store and follow run-time settings. Idempotent; a check starts the
        service when no lifespan did.

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
                await self._refresh_config()
                await self.resync()
            except StorageError as exc:
                self._store_failed(exc)
            self._tasks = [
                asyncio.create_task(self._follow_config()),
                asyncio.create_task(self._follow_events()),
                asyncio.create_task(self._flush_refusals()),
            ]
            self._started = True

    async def stop(self) -> None:
        """Stop following settings and release the store's connections (also those that
        operator actions opened without ``start``)."""
        self._started = False
        pending = set(self._tasks)
        self._tasks = []
        while pending:
            # Python 3.11's asyncio.wait_for (inside redis-py) can swallow a cancellation
            # that lands as a reply arrives; cancel again until the task is really done.
            for task in pending:
                task.cancel()
            _, pending = await asyncio.wait(pending, timeout=0.1)
        try:
            await self.store.close()
        except StorageError as exc:
            logger.warning("floodwall: closing the store failed: %s", exc)

    # -- the hot path ------------------------------------------------------------------

    def subject_keys(self, identity: Identity) -> SubjectKeys:
        """The store keys of an identity; users and anonymous clients never share one."""
        cache = self._anonymous_keys if identity.anonymous else self._user_keys
        return cache.get(identity.user_id) or self._new_keys(identity, cache)

    def _new_keys(self, identity: Identity, cache: dict[str, SubjectKeys]) -> SubjectKeys:
        if len(cache) >= KEYS_CACHE_SIZE:
            # A flood of ever-new ids must not grow it without end; rebuilding is cheap.
            cache.clear()
        build = self.keys.anonymous if identity.anonymous else self.keys.user
        keys = cache[identity.user_id] = build(identity.user_id)
        return keys

    async def check(
        self, identity: Identity, cost: int = 1, *, reset_exempt: bool = False
    ) -> Decision:
        """Decide one request of ``identity`` costing ``cost`` tokens.

        ``reset_exempt`` marks paths of the password-reset flow, which a user who must
        reset their password may still use.
        """
        if not self._started:
            await self.start()
        # subject_keys, inline: one method call less on every request.
        cache = self._anonymous_keys if identity.anonymous else self._user_keys
        keys = cache.get(identity.user_id) or self._new_keys(identity, cache)
        denials = self.denials
        bucket = keys.bucket
        known = denials.lookup(bucket, cost)
        probing = False
        while known is None and bucket in denials.probes:
            # The subject's refusal just lapsed; one request asks the store for them all,
            # and may find the token not quite due yet: then the next one asks.
            probe = denials.claim(bucket)
            if probe is None:
                probing = True
                break
            await asyncio.shield(probe)
            known = denials.lookup(bucket, cost)
        if known is not None:
            self._hot.local_refusals += 1
            self._count(identity, known)
            return known
        # try/finally costs nothing when nothing is raised; most requests never probe.
        try:
            if identity.anonymous:
                rate, burst = self._anonymous_rate, self._anonymous_burst
            else:
                rate, burst = self._user_rate, self._user_burst
            breaker = self.breaker
            if breaker.state is BreakerState.CLOSED or breaker.allow():
                issued_at = identity.issued_at
                started = time.perf_counter()
                try:
                    decision = await self.store.check(
                        keys,
                        rate,
                        burst,
                        cost,
                        None if issued_at is None else int(issued_at * 1000),
                        identity.credential_id,
                        reset_exempt,
                    )
                except StorageError as exc:
                    self._store_failed(exc)
                else:
                    self._hot.observe_check(time.perf_counter() - started)
                    if breaker.success():
                        self.metrics.breaker_open.set(0)
                        logger.warning("floodwall: the store answers again; normal checks resumed")
                    if decision.outcome is Outcome.ALLOWED:
                        self._hot.results[_ALLOWED] += 1
                        if not decision.remaining:
                            denials.remember(bucket, decision, started)
                        return decision
                    denials.remember(bucket, decision, started)
                    self._count(identity, decision)
                    return decision
            decision = await self._fallback_check(identity, keys, rate, burst, cost, reset_exempt)
            results = self._hot.results
            if decision.outcome is Outcome.UNAVAILABLE:
                results[self._result_index[Outcome.UNAVAILABLE]] += 1
            else:
                results[self._fallback_index] += 1
            return decision
        finally:
            if probing:
                denials.settle(bucket)

    def _count(self, identity: Identity, decision: Decision) -> None:
        outcome = decision.outcome
        self._hot.results[self._result_index[outcome]] += 1
        if outcome is Outcome.ALLOWED:
            return
        self.refusals.add(member(identity.user_id, identity.anonymous))
        threshold = self.settings.auto_block_refusals
        if (
            threshold is not None
            and outcome is Outcome.LIMITED
            and not identity.anonymous
            # A shadowed limit is only observed: it must not get anyone blocked.
            and not (self.settings.shadow or decision.shadow)
        ):
            self._note_offence(identity.user_id, threshold)

    def enforces(self, decision: Decision) -> bool:
        """Whether a refusal is enforced: shadow mode (global, or the user's) lets limits
        through; an operator's block, revocation or reset is never shadowed."""
        if decision.outcome in (Outcome.LIMITED, Outcome.UNAVAILABLE) and (
            self.settings.shadow or decision.shadow
        ):
            self._hot.shadow += 1
            return False
        return True

    async def _fallback_check(
        self,
        identity: Identity,
        keys: SubjectKeys,
        rate: str,
        burst: int,
        cost: int,
        reset_exempt: bool,
    ) -> Decision:
        if self.settings.fail_mode == "closed":
            return Decision(Outcome.UNAVAILABLE, float(rate), burst, 0, 1.0, 1.0)
        # The store is out of reach: this server's clock is the only one left.
        refusal = self.mirror.refusal(identity, reset_exempt, int(time.time() * 1000))
        if refusal is not None:
            return Decision(refusal, float(rate), burst, 0, 0.0, 0.0)
        if not identity.anonymous:
            user = self.mirror.get(identity.user_id)
            if user is not None and user.rate is not None and user.burst is not None:
                rate, burst = user.rate, user.burst
        # Each instance enforces its share, so all of them together hold about the limit.
        instances = self.settings.expected_instances
        shared_rate = repr(float(rate) / instances)
        shared_burst = max(1, math.ceil(burst / instances))
        return await self._fallback.check(
            keys, shared_rate, shared_burst, cost, None, None, reset_exempt
        )

    def _store_failed(self, exc: StorageError) -> None:
        self.metrics.store_errors.inc()
        # Log when the breaker opens, not per request: a dead Redis must not flood the logs.
        if self.breaker.failure():
            self.metrics.breaker_open.set(1)
            logger.error(
                "floodwall: the store failed (%s); fail mode %s until it answers",
                exc,
                self.settings.fail_mode,
            )

    # -- run-time settings -------------------------------------------------------------

    @property
    def default_limit(self) -> tuple[float, int]:
        """The default per-user (rate, burst) this worker applies now."""
        return float(self._user_rate), self._user_burst

    def _apply_default_limit(self, rate: float, burst: int) -> None:
        self._user_rate = repr(float(rate))
        self._user_burst = burst
        settings = self.settings
        # Anonymous traffic follows the default unless it has a limit of its own.
        self._anonymous_rate = (
            repr(settings.anonymous_rate)
            if settings.anonymous_rate is not None
            else self._user_rate
        )
        self._anonymous_burst = (
            settings.anonymous_burst if settings.anonymous_burst is not None else burst
        )

    async def _refresh_config(self) -> None:
        config = await self.store.read_config()
        if "rate" in config and "burst" in config:
            limit = (float(config["rate"]), int(config["burst"]))
            if limit != self.default_limit:
                self._apply_default_limit(*limit)
                self.denials.clear()

    async def _follow_config(self) -> None:
        # Polling backs up pub/sub, which drops messages across disconnects.
        last_resync = time.monotonic()
        while True:
            await asyncio.sleep(CONFIG_REFRESH_SECONDS)
            try:
                await self._refresh_config()
                if time.monotonic() - last_resync >= self.settings.resync_seconds:
                    await self.resync()
                    last_resync = time.monotonic()
            except StorageError as exc:
                logger.debug("floodwall: refreshing settings failed: %s", exc)
            except Exception:
                logger.exception("floodwall: refreshing settings failed")

    async def _follow_events(self) -> None:
        while True:
            try:
                async with self.store.subscription() as subscription:
                    # Subscribed first, then reloaded: no change can fall in between.
                    await self.resync()
                    await self._refresh_config()
                    self.following.set()
                    while True:
                        message = await subscription.next_message(CONFIG_REFRESH_SECONDS)
                        if message is not None:
                            await self._on_event(message)
            except StorageError as exc:
                self.following.clear()
                logger.debug("floodwall: the change feed broke (%s); resubscribing", exc)
            except Exception:
                self.following.clear()
                # A background loop must outlive any surprise, or the mirror goes stale.
                logger.exception("floodwall: the change feed failed; resubscribing")
            await asyncio.sleep(RESUBSCRIBE_SECONDS)

    async def _on_event(self, message: str) -> None:
        try:
            event = json.loads(message)
        except ValueError:
            return
        if not isinstance(event, dict):
            return
        user_id = event.get("user")
        if isinstance(user_id, str):
            keys = self.keys.user(user_id)
            self.denials.forget(keys.bucket)
            snapshot = await self.store.read_state(keys)
            self.mirror.update(user_id, snapshot.fields)
        elif event.get("config"):
            self.denials.clear()
            await self._refresh_config()

    async def resync(self) -> None:
        """Reload this worker's mirror of the kill switch from the store."""
        users: dict[str, Mapping[str, str]] = {}
        cursor: str | None = None
        while True:
            page = await self.store.list_index("users", cursor, INDEX_PAGE)
            for user_id in page:
                snapshot = await self.store.read_state(self.keys.user(user_id))
                if snapshot.fields:
                    users[user_id] = snapshot.fields
            if len(page) < INDEX_PAGE:
                break
            cursor = page[-1]
        self.mirror.replace(users)
        # A lost unblock message must not leave a cached block behind for good.
        self.denials.clear()

    async def _publish(self, event: Mapping[str, object]) -> None:
        await self.store.publish(json.dumps(event))

    async def set_default_limit(self, rate: float, burst: int, *, actor: str) -> tuple[float, int]:
        """Change the default per-user limit on every worker, and keep it across restarts."""
        _check_limit(rate, burst)
        await self.store.write_config({"rate": repr(float(rate)), "burst": str(burst)})
        self._apply_default_limit(rate, burst)
        self.denials.clear()
        await self._audit(actor, "set-default-limit", None, detail=f"rate={rate} burst={burst}")
        await self._publish({"config": True})
        return self.default_limit

    # -- operator actions --------------------------------------------------------------

    async def status(self, user_id: str) -> UserStatus:
        """The user's block, revocation, reset and limit status."""
        snapshot = await self.store.read_state(self.keys.user(user_id))
        return self._status(user_id, snapshot.fields, snapshot.now_ms)

    def _status(self, user_id: str, fields: Mapping[str, str], now_ms: int) -> UserStatus:
        rate, burst = self.default_limit
        return UserStatus.from_snapshot(user_id, StateSnapshot(fields, now_ms), rate, burst)

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
        snapshot = await self.store.update_state(
            self.keys.user(user_id),
            user_id,
            assign or {},
            now_plus_ms or {},
            delete,
            reset_bucket,
        )
        self.mirror.update(user_id, snapshot.fields)
        self.denials.forget(self.keys.user(user_id).bucket)
        await self.store.set_index("users", user_id, bool(snapshot.fields))
        await self._publish({"user": user_id})
        expires = None if expires_in_ms is None else snapshot.now_ms + expires_in_ms
        await self._audit(
            actor,
            action,
            user_id,
            reason=reason,
            expires_ms=expires,
            detail=detail,
            now_ms=snapshot.now_ms,
        )
        return self._status(user_id, snapshot.fields, snapshot.now_ms)

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = "python",
        _extra: Mapping[str, str] | None = None,
    ) -> UserStatus:
        """Refuse every request of the user (403), for ``ttl_seconds`` or until unblocked."""
        _check_reason(reason)
        if ttl_seconds is not None and not (0 < ttl_seconds < math.inf):
            raise ValueError("ttl_seconds must be a positive number of seconds")
        ttl_ms = None if ttl_seconds is None else max(1, math.ceil(ttl_seconds * 1000))
        status = await self._change(
            user_id,
            "block",
            actor,
            reason=reason,
            assign={"reason": reason, "blocked_by": actor, **(_extra or {})}
            | ({"blocked_until": "0"} if ttl_ms is None else {}),
            now_plus_ms={"blocked_at": 0} | ({} if ttl_ms is None else {"blocked_until": ttl_ms}),
            expires_in_ms=ttl_ms,
        )
        await self.store.set_index("blocked", user_id, True)
        return status

    async def unblock(
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Lift a block; unblocking a user who is not blocked changes nothing."""
        _check_reason(reason)
        status = await self._change(user_id, "unblock", actor, reason=reason, delete=_BLOCK_FIELDS)
        await self.store.set_index("blocked", user_id, False)
        return status

    async def revoke(
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Refuse (401) every credential of the user issued up to now."""
        _check_reason(reason)
        return await self._change(
            user_id, "revoke", actor, reason=reason, now_plus_ms={"not_before": 0}
        )

    async def revoke_credential(
        self,
        user_id: str,
        credential_id: str,
        *,
        expires_at: float | None = None,
        actor: str = "python",
        reason: str | None = None,
    ) -> UserStatus:
        """Refuse one credential (by its id, a JWT's ``jti``) until it would expire anyway."""
        _check_reason(reason)
        keys = self.keys.user(user_id)
        now_ms = await self.store.now_ms()
        expires_ms = (
            now_ms + DEFAULT_CREDENTIAL_LIFETIME_MS
            if expires_at is None
            else int(expires_at * 1000)
        )
        await self.store.revoke_credential(keys, credential_id, expires_ms)
        await self._audit(
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
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Refuse the user (403) outside the reset flow until cleared; revokes too."""
        _check_reason(reason)
        status = await self._change(
            user_id,
            "require-password-reset",
            actor,
            reason=reason,
            assign={"reset_required": "1"},
            now_plus_ms={"not_before": 0},
        )
        if self._on_password_reset is not None:
            await self._on_password_reset(user_id)
        return status

    async def clear_password_reset(self, user_id: str, *, actor: str = "python") -> UserStatus:
        """The user has set a new password: let them in again."""
        return await self._change(
            user_id, "clear-password-reset", actor, delete=("reset_required",)
        )

    async def set_limit(
        self, user_id: str, *, rate: float, burst: int, actor: str = "python"
    ) -> UserStatus:
        """Give the user a limit of their own, starting from a full bucket."""
        _check_limit(rate, burst)
        return await self._change(
            user_id,
            "set-limit",
            actor,
            assign={"rate": repr(float(rate)), "burst": str(burst)},
            detail=f"rate={float(rate)} burst={burst}",
            reset_bucket=True,
        )

    async def set_shadow(self, user_id: str, enabled: bool, *, actor: str = "python") -> UserStatus:
        """Observe this user's limit without enforcing it (to roll out a limit safely)."""
        if enabled:
            return await self._change(user_id, "shadow-on", actor, assign={"shadow": "1"})
        return await self._change(user_id, "shadow-off", actor, delete=("shadow",))

    async def clear_limit(self, user_id: str, *, actor: str = "python") -> UserStatus:
        """Put the user back on the default limit."""
        return await self._change(
            user_id, "clear-limit", actor, delete=("rate", "burst"), reset_bucket=True
        )

    async def blocked(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[UserStatus], str | None]:
        """A page of blocked users in id order, and the cursor of the next page."""
        page: list[UserStatus] = []
        cursor = after
        while len(page) < limit:
            ids = await self.store.list_index("blocked", cursor, limit - len(page))
            if not ids:
                return page, None
            for user_id in ids:
                status = await self.status(user_id)
                if status.blocked:
                    page.append(status)
                else:
                    # A temporary block ran out: drop it from the index as we pass.
                    await self.store.set_index("blocked", user_id, False)
            cursor = ids[-1]
        return page, cursor

    async def audit_log(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of audit records, newest first, and the cursor of the next page."""
        if before is not None:
            match = _AUDIT_CURSOR.fullmatch(before)
            if match is None or max(int(part) for part in match.groups()) >= 2**64:
                raise ValueError("cursor is the next_cursor of an earlier page")
            if before == "0-0":
                # Nothing is older than the first possible id (Redis refuses the range).
                return [], None
        entries = await self.store.read_audit(before, limit)
        records = [AuditRecord.from_entry(entry) for entry in entries]
        return records, (records[-1].id if len(records) == limit else None)

    async def _audit(
        self,
        actor: str,
        action: str,
        user_id: str | None,
        *,
        reason: str | None = None,
        expires_ms: int | None = None,
        detail: str | None = None,
        now_ms: int | None = None,
    ) -> None:
        self.metrics.actions.labels(action).inc()
        if now_ms is None:
            now_ms = await self.store.now_ms()
        fields = {
            "time": str(now_ms),
            "actor": actor,
            "action": action,
            "user_id": user_id or "",
            "reason": reason or "",
            "expires": "" if expires_ms is None else str(expires_ms),
            "detail": detail or "",
        }
        entry_id = await self.store.append_audit(fields, AUDIT_MAX_ENTRIES)
        log_action(
            AuditRecord(entry_id, now_ms, actor, action, user_id, reason, expires_ms, detail)
        )

    # -- top offenders and auto-block ---------------------------------------------------

    async def _flush_refusals(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush_refusals()

    async def flush_refusals(self) -> None:
        """Add the refusals counted since the last flush to the store's current slice."""
        counts = self.refusals.take()
        if not counts:
            return
        slice_id = int(time.time()) // SLICE_SECONDS
        try:
            await self.store.add_refusals(slice_id, counts, TOP_KEEP_SECONDS)
        except StorageError as exc:
            logger.debug("floodwall: flushing refusal counts failed: %s", exc)

    async def top(self, *, window_seconds: int = 60, limit: int = 10) -> list[Offender]:
        """The most refused subjects over the last ``window_seconds``, across workers."""
        if not 1 <= window_seconds <= TOP_KEEP_SECONDS:
            raise ValueError(f"window_seconds is from 1 to {TOP_KEEP_SECONDS}")
        await self.flush_refusals()
        last = int(time.time()) // SLICE_SECONDS
        first = (int(time.time()) - window_seconds) // SLICE_SECONDS
        rows = await self.store.top_refusals(list(range(first, last + 1)), limit)
        return [offender(name, refusals) for name, refusals in rows]

    def _note_offence(self, user_id: str, threshold: int) -> None:
        now = time.monotonic()
        window = self._offences.get(user_id)
        if window is None or now - window[0] >= self.settings.auto_block_window:
            if len(self._offences) >= 10_000:
                self._offences.clear()
            self._offences[user_id] = [now, 1.0]
            return
        window[1] += 1
        if window[1] == threshold + 1:
            # Off the request path: blocking takes round trips the request must not wait for.
            task = asyncio.create_task(self._auto_block(user_id, int(window[1])))
            self._side_tasks.add(task)
            task.add_done_callback(self._side_tasks.discard)

    async def _auto_block(self, user_id: str, refusals: int) -> None:
        settings = self.settings
        try:
            state = await self.store.read_state(self.keys.user(user_id))
            offences = int(state.fields.get("auto_offences", "0"))
            ttl = min(settings.auto_block_seconds * 2**offences, settings.auto_block_max_seconds)
            await self.block(
                user_id,
                reason=(
                    f"auto-block: more than {settings.auto_block_refusals} refusals in "
                    f"{settings.auto_block_window:g} s (offence {offences + 1})"
                ),
                ttl_seconds=ttl,
                actor=AUTO_ACTOR,
                _extra={"auto_offences": str(offences + 1)},
            )
            self.metrics.auto_blocks.inc()
        except StorageError as exc:
            logger.warning("floodwall: auto-block of a user failed: %s", exc)

    def admin_app(self) -> Starlette:
        """The admin API as a Starlette app, to mount (``app.mount("/admin", ...)``)."""
        from floodwall.admin import create_admin_app

        return create_admin_app(self)
