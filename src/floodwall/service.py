"""``Floodwall``: the one object an app builds; a thin facade over the parts.

It wires the store to the hot-path checker, the live limits, the change feed with its
kill-switch mirror, the fallback, the operator actions, the audit log and the offenders,
and runs their background tasks between ``start`` and ``stop``. Nothing but the store
talks to Redis.

Each public operator action is a short delegate here, so the public API stays on the one
object an app builds; the work is in the parts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Sequence

from starlette.applications import Starlette
from starlette.routing import Mount

from floodwall.admin.app import AdminMount, create_admin_app
from floodwall.control.actions import BulkBlockResult, OperatorActions
from floodwall.control.change_feed import ChangeFeed
from floodwall.core import rules
from floodwall.core.clock import SYSTEM_CLOCK, Clock
from floodwall.core.decision import Decision
from floodwall.core.errors import StorageError
from floodwall.core.identity import Identity
from floodwall.core.stored import Limit
from floodwall.killswitch.audit import AuditLog, AuditRecord
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.killswitch.networks import NetworkBlock, NetworkBlocks
from floodwall.killswitch.reset_hook import PasswordResetHook, ResetNotifier
from floodwall.killswitch.status import UserStatus
from floodwall.limiting.breaker import CircuitBreaker
from floodwall.limiting.checker import Checker
from floodwall.limiting.deny_cache import DenyCache
from floodwall.limiting.fallback import Fallback
from floodwall.limiting.live_limits import LiveLimits
from floodwall.limiting.plan_notes import PlanNotes
from floodwall.observe.metrics import Metrics, parent_command, sibling_workers
from floodwall.observe.offenders import Offenders
from floodwall.observe.top import Offender, RefusingNetwork
from floodwall.settings import FloodwallSettings
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.memory import MemoryStore
from floodwall.stores.protocols import Store
from floodwall.stores.redis import RedisStore

__all__ = ["Floodwall", "PasswordResetHook"]

logger = logging.getLogger("floodwall")


def _store_for(settings: FloodwallSettings, clock: Clock) -> Store:
    url = None if settings.redis_url is None else settings.redis_url.get_secret_value()
    if settings.redis_sentinels and settings.redis_sentinel_service is not None:
        password = settings.redis_sentinel_password
        return RedisStore.via_sentinels(
            [_address(entry) for entry in settings.redis_sentinels],
            settings.redis_sentinel_service,
            url=url,
            sentinel_password=None if password is None else password.get_secret_value(),
            prefix=settings.key_prefix,
            timeout=settings.redis_timeout,
        )
    if url is None:
        return MemoryStore(prefix=settings.key_prefix, clock=clock.wall)
    # Redis reads its own clock (TIME in the scripts): the one every worker shares.
    return RedisStore.from_url(
        url,
        prefix=settings.key_prefix,
        cluster=settings.redis_cluster,
        timeout=settings.redis_timeout,
    )


def _address(entry: str) -> tuple[str, int]:
    # A Sentinel's host:port, as the settings checked it (an IPv6 host keeps its colons).
    host, _, port = entry.rpartition(":")
    return host.strip("[]"), int(port)


def _log_failure(task: asyncio.Task[None]) -> None:
    # A background task runs until stop(); one that ends by an error is logged once, here,
    # not as "Task exception was never retrieved" whenever it is collected.
    if not task.cancelled() and (exc := task.exception()) is not None:
        logger.error("%s stopped: %s", task.get_name(), type(exc).__name__, exc_info=exc)


class Floodwall:
    """Rate limits and the account kill switch for one application.

    ``Floodwall()`` reads ``FLOODWALL_*`` variables; pass a ``FloodwallSettings`` to be
    explicit, and a ``store`` to use one built elsewhere (tests, custom clients); such a
    store brings its own key prefix. ``on_password_reset`` is awaited with the user id
    when a reset becomes required, once per reset in one of the app's processes, whichever
    surface required it. ``clock`` is where time is read on this server (tests move it by
    hand).
    """

    def __init__(
        self,
        settings: FloodwallSettings | None = None,
        *,
        store: Store | None = None,
        on_password_reset: PasswordResetHook | None = None,
        metrics: Metrics | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.settings = settings if settings is not None else FloodwallSettings()
        settings = self.settings
        self.clock = clock
        """Where this server reads time: every part takes it from here."""
        self.store = store if store is not None else _store_for(settings, clock)
        self.keys = self.store.keys
        self.metrics = metrics if metrics is not None else Metrics()
        self.limits = LiveLimits(settings)
        # Each worker's copy of the kill switch: it holds while the store is down.
        self.mirror = KillSwitchMirror()
        self.networks = NetworkBlocks(wall=clock.wall)
        self.denials = DenyCache(clock=clock.monotonic)
        resets = ResetNotifier(self.store, on_password_reset)
        self.feed = ChangeFeed(
            self.store,
            mirror=self.mirror,
            networks=self.networks,
            denials=self.denials,
            limits=self.limits,
            resets=resets,
            clock=clock,
            resync_seconds=settings.resync_seconds,
            auto_block_memory_seconds=settings.auto_block_max_seconds,
        )
        self.audit = AuditLog(self.store, on_action=self._count_action)
        self.actions = OperatorActions(
            self.store,
            feed=self.feed,
            limits=self.limits,
            audit=self.audit,
            resets=resets,
            networks=self.networks,
            wait_ms=round(settings.redis_wait_timeout * 1000),
        )
        self.offenders = Offenders(
            self.store,
            actions=self.actions,
            settings=settings,
            metrics=self.metrics,
            clock=clock,
        )
        self.breaker = CircuitBreaker(
            threshold=settings.breaker_failures,
            cooldown=settings.breaker_cooldown,
            clock=clock.monotonic,
        )
        self.plan_notes = PlanNotes(self.store)
        """The plan each user's requests name, written to the store for ``status``."""
        self.checker = Checker(
            self.store,
            limits=self.limits,
            denials=self.denials,
            mirror=self.mirror,
            breaker=self.breaker,
            fallback=Fallback(
                closed=settings.fail_mode == "closed",
                instances=settings.expected_instances,
                mirror=self.mirror,
                clock=clock,
            ),
            offenders=self.offenders,
            metrics=self.metrics,
            clock=clock,
            shadow=settings.shadow,
            concurrency=settings.concurrency,
            plan_notes=self.plan_notes,
        )
        self.checker.before_first = self.start
        self.metrics.watch_blocked(lambda: self.mirror.blocked_count(int(clock.wall() * 1000)))
        self._started = False
        self._start_lock = asyncio.Lock()
        self._tasks: list[asyncio.Task[None]] = []

    def _count_action(self, action: str) -> None:
        self.metrics.actions.labels(action).inc()

    @property
    def following(self) -> asyncio.Event:
        """Set while this worker is subscribed to operator changes (after its reload)."""
        return self.feed.following

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
            self.checker.before_first = None
            workers = sibling_workers(os.environ, parent_command())
            if workers > 1 and not self.metrics.multiprocess:
                logger.warning(
                    "floodwall: this worker is one of %d and PROMETHEUS_MULTIPROC_DIR is unset: "
                    "each scrape of /metrics shows the counts of the one worker that answers; "
                    "set it to an empty directory before the server starts",
                    workers,
                )
            if isinstance(self.store, MemoryStore):
                logger.warning(
                    "floodwall: %s: limits, blocks and the audit log live in this process "
                    "only; with more than one worker or server, set FLOODWALL_REDIS_URL",
                    self.store.describe(),
                )
            try:
                await self.store.start()
                await self.feed.refresh_limits()
                await self.feed.resync()
            except StorageError as exc:
                logger.error("floodwall: the store did not answer at start: %s", exc)
            self._tasks = [
                asyncio.create_task(self.feed.poll(), name="floodwall: polling the store"),
                asyncio.create_task(
                    self.feed.follow_events(), name="floodwall: following operator changes"
                ),
                asyncio.create_task(
                    self.offenders.run_flushes(), name="floodwall: flushing refusal counts"
                ),
                # Also without FLOODWALL_CONCURRENCY: a user's own limit takes slots too.
                asyncio.create_task(
                    self.checker.renew_leases(), name="floodwall: renewing concurrency leases"
                ),
            ]
            for task in self._tasks:
                task.add_done_callback(_log_failure)
            self._started = True

    async def stop(self) -> None:
        """Stop following settings and release the store's connections (also those that
        operator actions opened without ``start``)."""
        self._started = False
        self.checker.before_first = self.start
        await self.offenders.stop()
        await self.plan_notes.stop()
        await self.checker.settle_releases()
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
        return self.checker.subject_keys(identity)

    async def check(
        self, identity: Identity, cost: int = 1, *, reset_exempt: bool = False
    ) -> Decision:
        """Decide one request of ``identity`` costing ``cost`` tokens.

        ``reset_exempt`` marks paths of the password-reset flow, which a user who must
        reset their password may still use. A cost outside the rule book (``rules.COST``)
        raises ``RuleError``: a negative one would fill the bucket, a huge one overflow the
        script's times.
        """
        if cost != 1 or type(cost) is not int:
            cost = rules.COST.whole_number(cost)
        return await self.checker.check(identity, cost, reset_exempt=reset_exempt)

    def enforces(self, decision: Decision) -> bool:
        """Whether a refusal is enforced: shadow mode (global, or the user's) lets limits
        through; an operator's block, revocation or reset is never shadowed."""
        return self.checker.enforces(decision)

    # -- operator actions (see OperatorActions) ------------------------------------------

    @property
    def default_limit(self) -> Limit:
        """The default per-user (rate, burst) this worker applies now."""
        return self.limits.user

    async def resync(self) -> None:
        """Reload this worker's mirror of the kill switch from the store."""
        await self.feed.resync()

    async def status(self, user_id: str) -> UserStatus:
        """The user's block, revocation, reset and limit status."""
        return await self.actions.status(user_id)

    async def block(
        self, user_id: str, *, reason: str, ttl_seconds: float | None = None, actor: str = "python"
    ) -> UserStatus:
        """Refuse every request of the user (403), for ``ttl_seconds`` or until unblocked."""
        return await self.actions.block(
            user_id, reason=reason, ttl_seconds=ttl_seconds, actor=actor
        )

    async def block_many(
        self,
        user_ids: Sequence[str],
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = "python",
    ) -> list[BulkBlockResult]:
        """Block up to 1,000 users at once (pipelined; one audit entry each)."""
        return await self.actions.block_many(
            user_ids, reason=reason, ttl_seconds=ttl_seconds, actor=actor
        )

    async def block_network(
        self,
        cidr: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        force: bool = False,
        actor: str = "python",
    ) -> NetworkBlock:
        """Refuse (403) every request from inside ``cidr``, on every worker, with no round
        trip; networks broader than a /8 or /32 only with ``force``."""
        return await self.actions.block_network(
            cidr, reason=reason, ttl_seconds=ttl_seconds, force=force, actor=actor
        )

    async def unblock_network(
        self, cidr: str, *, actor: str = "python", reason: str | None = None
    ) -> str:
        """Lift a network block (idempotent); returns the network as stored."""
        return await self.actions.unblock_network(cidr, actor=actor, reason=reason)

    async def blocked_networks(self) -> list[NetworkBlock]:
        """The network blocks that hold now."""
        return await self.actions.networks()

    async def unblock(
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Lift a block; unblocking a user who is not blocked changes nothing."""
        return await self.actions.unblock(user_id, actor=actor, reason=reason)

    async def revoke(
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Refuse (401) every credential of the user issued up to now."""
        return await self.actions.revoke(user_id, actor=actor, reason=reason)

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
        return await self.actions.revoke_credential(
            user_id, credential_id, expires_at=expires_at, actor=actor, reason=reason
        )

    async def require_password_reset(
        self, user_id: str, *, actor: str = "python", reason: str | None = None
    ) -> UserStatus:
        """Refuse the user (403) outside the reset flow until cleared; revokes too."""
        return await self.actions.require_password_reset(user_id, actor=actor, reason=reason)

    async def clear_password_reset(self, user_id: str, *, actor: str = "python") -> UserStatus:
        """The user has set a new password: let them in again."""
        return await self.actions.clear_password_reset(user_id, actor=actor)

    async def set_limit(
        self, user_id: str, *, rate: float, burst: int, actor: str = "python"
    ) -> UserStatus:
        """Give the user a limit of their own, starting from a full bucket."""
        return await self.actions.set_limit(user_id, rate=rate, burst=burst, actor=actor)

    async def clear_limit(self, user_id: str, *, actor: str = "python") -> UserStatus:
        """Put the user back on the default limit."""
        return await self.actions.clear_limit(user_id, actor=actor)

    async def set_concurrency(
        self, user_id: str, *, limit: int, actor: str = "python"
    ) -> UserStatus:
        """Give the user a limit of requests in flight of their own (it applies whether
        FLOODWALL_CONCURRENCY is set or not)."""
        return await self.actions.set_concurrency(user_id, limit=limit, actor=actor)

    async def clear_concurrency(self, user_id: str, *, actor: str = "python") -> UserStatus:
        """Put the user back on FLOODWALL_CONCURRENCY."""
        return await self.actions.clear_concurrency(user_id, actor=actor)

    async def set_route_limit(
        self, user_id: str, route: str, limit: str, *, actor: str = "python"
    ) -> UserStatus:
        """Give the user a limit of their own on one route (``"POST /login"``, ``"10/minute"``)."""
        return await self.actions.set_route_limit(user_id, route, limit, actor=actor)

    async def clear_route_limit(
        self, user_id: str, route: str, *, actor: str = "python"
    ) -> UserStatus:
        """Put the user back on the app's limit of one route."""
        return await self.actions.clear_route_limit(user_id, route, actor=actor)

    async def set_route_default(
        self, route: str, limit: str, *, actor: str = "python"
    ) -> dict[str, tuple[int, int]]:
        """Change one route's limit for everyone, on every worker within a second."""
        return await self.actions.set_route_default(route, limit, actor=actor)

    async def clear_route_default(
        self, route: str, *, actor: str = "python"
    ) -> dict[str, tuple[int, int]]:
        """Put every worker back on the app's own limit of one route."""
        return await self.actions.clear_route_default(route, actor=actor)

    async def set_shadow(self, user_id: str, enabled: bool, *, actor: str = "python") -> UserStatus:
        """Observe this user's limit without enforcing it (to roll out a limit safely)."""
        return await self.actions.set_shadow(user_id, enabled, actor=actor)

    async def set_default_limit(self, rate: float, burst: int, *, actor: str = "python") -> Limit:
        """Change the default per-user limit on every worker, and keep it across restarts."""
        return await self.actions.set_default_limit(rate, burst, actor=actor)

    async def clear_default_limit(self, *, actor: str = "python") -> Limit:
        """Put every worker back on the default limit of its own settings."""
        return await self.actions.clear_default_limit(actor=actor)

    @property
    def plan_limits(self) -> dict[str, Limit]:
        """Each plan's (rate, burst) on this worker now: live, else ``FLOODWALL_PLANS``'."""
        return self.actions.plan_limits

    async def set_plan_limit(
        self, plan: str, rate: float, burst: int, *, actor: str = "python"
    ) -> Limit:
        """Change a plan's limit on every worker, and keep it across restarts."""
        return await self.actions.set_plan_limit(plan, rate, burst, actor=actor)

    async def clear_plan_limit(self, plan: str, *, actor: str = "python") -> Limit | None:
        """Put every worker back on the plan's limit in its settings (``None``: none there,
        so the plan's users get the default)."""
        return await self.actions.clear_plan_limit(plan, actor=actor)

    async def blocked(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[UserStatus], str | None]:
        """A page of blocked users in id order, and the cursor of the next page."""
        return await self.actions.blocked(after=after, limit=limit)

    async def audit_log(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of audit records, newest first, and the cursor of the next page."""
        return await self.audit.page(before=before, limit=limit)

    async def top(self, *, window_seconds: int = 60, limit: int = 10) -> list[Offender]:
        """The most refused subjects over the last ``window_seconds``, across workers."""
        return await self.offenders.top(window_seconds=window_seconds, limit=limit)

    async def top_networks(
        self, *, window_seconds: int = 60, limit: int = 10
    ) -> list[RefusingNetwork]:
        """The networks (/24, /64) whose anonymous clients were refused most."""
        return await self.offenders.top_networks(window_seconds=window_seconds, limit=limit)

    async def flush_refusals(self) -> None:
        """Add the refusals counted since the last flush to the store's current blocks."""
        await self.offenders.flush()

    def admin_app(self) -> Starlette:
        """The admin API as a Starlette app, to mount (``app.mount("/admin", ...)``)."""
        return create_admin_app(
            self.actions,
            self.offenders,
            tokens=self.settings.named_admin_tokens(),
            clock=self.clock.monotonic,
        )

    def admin_mount(self, path: str = "/admin") -> Mount:
        """The admin API mounted at ``path``, for an app's routes. Unlike
        ``Mount(path, floodwall.admin_app())`` it reaches ids with a newline (``%0A``)."""
        return AdminMount(path, self.admin_app())
