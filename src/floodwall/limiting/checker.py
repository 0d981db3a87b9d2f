"""The hot path: one request's decision, read top to bottom.

A certain refusal is answered locally (no round trip); anything else is one store call;
when the store cannot answer, the fail mode decides. Every decision is tallied once.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Final

from floodwall.core.clock import Clock
from floodwall.core.decision import Decision, Outcome
from floodwall.core.errors import StorageError, StoreCommandError, StoreUnavailable
from floodwall.core.identity import Identity
from floodwall.core.ids import is_long
from floodwall.core.route_limits import RouteLimit
from floodwall.core.stored import Limit
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.limiting.breaker import BreakerState, CircuitBreaker
from floodwall.limiting.deny_cache import DenyCache
from floodwall.limiting.fallback import Fallback
from floodwall.limiting.live_limits import LiveLimits
from floodwall.limiting.plan_notes import PlanNotes
from floodwall.observe.metrics import RESULTS, Metrics
from floodwall.observe.offenders import Offenders
from floodwall.stores.base import LEASE_MS, Window
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.protocols import Buckets

__all__ = ["Checker"]

logger = logging.getLogger("floodwall")

KEYS_CACHE_SIZE: Final = 65_536
RENEW_SECONDS: Final = LEASE_MS / 1000 / 3
"""How often the leases of this worker's requests in flight are renewed: two renewals in a
row may fail before a live request's slot lapses."""
_ALLOWED: Final = RESULTS.index("allowed")
_FALLBACK: Final = RESULTS.index("fallback")
# No subject's doing: neither counts for top or auto-block.
_NOT_REFUSALS: Final = (Outcome.ALLOWED, Outcome.UNAVAILABLE)
# Where each outcome is tallied; a store failure in closed mode counts as "error".
_RESULT: Final = {
    o: RESULTS.index("error" if o is Outcome.UNAVAILABLE else o.name.lower()) for o in Outcome
}


class Checker:
    """Decides requests: deny cache → store → fallback."""

    def __init__(
        self,
        store: Buckets,
        *,
        limits: LiveLimits,
        denials: DenyCache,
        mirror: KillSwitchMirror,
        breaker: CircuitBreaker,
        fallback: Fallback,
        offenders: Offenders,
        metrics: Metrics,
        clock: Clock,
        shadow: bool,
        concurrency: int | None = None,
        plan_notes: PlanNotes | None = None,
    ) -> None:
        self._store = store
        self._plan_notes = plan_notes
        self._keys = store.keys
        self._limits = limits
        self._denials = denials
        self._mirror = mirror
        self._breaker = breaker
        self._fallback = fallback
        self._offenders = offenders
        self._metrics = metrics
        self._hot = metrics.hot
        self._clock = clock
        self._shadow = shadow
        # Building keys percent-encodes the id and packs RESP; the hot path looks them up.
        self._user_keys: dict[str, SubjectKeys] = {}
        self._anonymous_keys: dict[str, SubjectKeys] = {}
        self._failing_subjects: set[str] = set()
        # A subject's windows on a route (and from an address), until a live route limit
        # changes: working them out took 2 µs a request with three route limits.
        self._windows_held: dict[
            tuple[str, tuple[RouteLimit, ...], str | None], tuple[Window, ...]
        ] = {}
        self._windows_version = limits.routes_version
        self._concurrency = concurrency
        # This worker's requests holding a concurrency slot: lease → the subject's keys and
        # the slot's member in the store (unique per subject only).
        self._leases: dict[str, tuple[SubjectKeys, str]] = {}
        self._lease_prefix = os.urandom(6).hex()
        self._lease_counter = itertools.count()
        self._releases: set[asyncio.Task[None]] = set()
        self.before_first: Callable[[], Awaitable[None]] | None = None
        """Awaited by the next check when set (the service starts on first use)."""

    def subject_keys(self, identity: Identity) -> SubjectKeys:
        """The store keys of an identity; users and anonymous clients never share one."""
        cache = self._anonymous_keys if identity.anonymous else self._user_keys
        keys = cache.get(identity.user_id)
        if keys is None:
            build = self._keys.anonymous if identity.anonymous else self._keys.user
            keys = build(identity.user_id)
            # Long ids are rebuilt each time (their keys hash them anyway): the cache holds
            # at most KEYS_CACHE_SIZE ids of at most MAX_HELD characters.
            if not is_long(identity.user_id):
                if len(cache) >= KEYS_CACHE_SIZE:
                    # A flood of ever-new ids must not grow it without end.
                    cache.clear()
                cache[identity.user_id] = keys
        return keys

    def windows(
        self,
        identity: Identity,
        keys: SubjectKeys,
        routes: tuple[RouteLimit, ...],
        address: Identity | None,
    ) -> tuple[Window, ...]:
        """The moving windows of a request's route limits, at their live limits."""
        limits = self._limits
        if limits.routes_version != self._windows_version:
            self._windows_held.clear()
            self._windows_version = limits.routes_version
        by_address = address is not None and not identity.anonymous
        held = (keys.bucket, routes, address.user_id if address and by_address else None)
        found = self._windows_held.get(held)
        if found is None:
            found = tuple(
                self._window(identity, keys, route, address if by_address else None)
                for route in routes
            )
            if len(self._windows_held) >= KEYS_CACHE_SIZE:
                self._windows_held.clear()
            self._windows_held[held] = found
        return found

    def _window(
        self, identity: Identity, keys: SubjectKeys, route: RouteLimit, address: Identity | None
    ) -> Window:
        by_address = route.by == "address" and address is not None
        subject = self.subject_keys(address) if by_address and address else keys
        live = self._limits.routes.get(route.key)
        limit, period_us = live or (route.limit, round(route.period * 1e6))
        # An operator's limit for one user lives in the user's state.
        own = "" if identity.anonymous or by_address else route.key
        return Window(subject.window(route.id), limit, period_us, own)

    async def check(
        self,
        identity: Identity,
        cost: int = 1,
        *,
        reset_exempt: bool = False,
        routes: tuple[RouteLimit, ...] = (),
        address: Identity | None = None,
    ) -> Decision:
        """Decide one request of ``identity`` costing ``cost`` tokens; ``reset_exempt``
        marks the password-reset flow; ``routes`` are the request's route limits, counted
        for the user, or for ``address`` (the client's anonymous identity) where they say
        so. A refusal by a route limit has ``policy`` ``i`` for ``routes[i - 1]``."""
        # One function on purpose: this runs for every request, and each helper on the
        # common path (local refusal, one store call, its answer) would cost a call, and an
        # await where it awaits; only the rare paths are out of line.
        if self.before_first is not None:
            await self.before_first()
        # The cache looked up here, built by subject_keys on a miss: a call less (0.1 µs).
        cache = self._anonymous_keys if identity.anonymous else self._user_keys
        keys = cache.get(identity.user_id) or self.subject_keys(identity)
        bucket = keys.bucket
        denials = self._denials
        windows = self.windows(identity, keys, routes, address) if routes else ()

        # 1. A refusal that is certain: no round trip. The kill switch first, in check.lua's
        # order: what the mirror holds at any time (a revocation, a reset required, a block
        # with no end) changes only by an operator's change, which reaches the mirror.
        known = self._kill_switch_refusal(identity, reset_exempt) or denials.lookup(bucket, cost)
        if windows and known is None:
            known = denials.lookup_window(bucket, windows)
        probing = False
        if known is None and bucket in denials.probes:
            known, probing = await self._after_probe(bucket, cost)
        if known is not None:
            self._hot.local_refusals += 1
            self._tally(identity, known, _RESULT[known.outcome])
            return known

        # try/finally costs nothing when nothing is raised; most requests never probe.
        try:
            limits = self._limits
            if identity.anonymous:
                limit = limits.anonymous
            elif identity.plan is None:
                limit = limits.user
            else:
                # The plan's limit goes to the store like the default: a user's own wins there.
                limit = limits.for_plan(identity.plan)
            # 2. The store: one round trip.
            breaker = self._breaker
            if breaker.state is BreakerState.CLOSED or breaker.allow():
                issued_at = identity.issued_at
                started = self._clock.monotonic()
                try:
                    decision = await self._store.check(
                        keys,
                        rate=limit[0],
                        burst=limit[1],
                        cost=cost,
                        issued_at_ms=None if issued_at is None else int(issued_at * 1000),
                        credential_id=identity.credential_id,
                        reset_exempt=reset_exempt,
                        windows=windows,
                        concurrency=self._concurrency,
                        lease_ms=LEASE_MS,
                    )
                except StoreUnavailable as exc:
                    self._store_failed(exc)
                except StoreCommandError as exc:
                    self._subject_failed(bucket, exc)
                except Exception as exc:
                    # A client library's own bug (redis-py's cluster client has raised
                    # AttributeError while connecting): the fail mode, not a 500 per request.
                    self._client_failed(exc)
                else:
                    self._hot.observe_check(self._clock.monotonic() - started)
                    if breaker.state is not BreakerState.CLOSED:
                        self._store_recovered()
                    if decision.lease:
                        decision = self._hold(keys, decision)
                    if decision.policy:
                        refused_by = windows[decision.policy - 1].key
                        denials.remember_window(bucket, refused_by, decision, started)
                    elif decision.outcome is not Outcome.ALLOWED or not decision.remaining:
                        denials.remember(bucket, decision, started)
                    self._tally(identity, decision, _RESULT[decision.outcome])
                    if identity.plan is not None and self._plan_notes is not None:
                        self._plan_notes.note(identity.user_id, identity.plan)
                    return decision
            # 3. The fail mode.
            return await self._fail_mode(identity, keys, limit, cost, reset_exempt, windows)
        finally:
            if probing:
                denials.settle(bucket)

    # The rare paths of check, out of its way: a call each costs only the requests that
    # take them; the common path (allowed, or refused by the store) stays inline.

    async def _after_probe(self, bucket: str, cost: int) -> tuple[Decision | None, bool]:
        # The subject's refusal just lapsed: one request asks the store for them all, and
        # may find the token not quite due yet; then the next one asks. Returns the refusal
        # now certain, or whether this request is the one to ask (it settles the probe).
        denials = self._denials
        known = None
        while known is None and bucket in denials.probes:
            probe = denials.claim(bucket)
            if probe is None:
                return None, True
            await asyncio.shield(probe)
            known = denials.lookup(bucket, cost)
        return known, False

    async def _fail_mode(
        self,
        identity: Identity,
        keys: SubjectKeys,
        limit: Limit,
        cost: int,
        reset_exempt: bool,
        windows: tuple[Window, ...],
    ) -> Decision:
        decision = await self._fallback.check(identity, keys, limit, cost, reset_exempt, windows)
        unavailable = decision.outcome is Outcome.UNAVAILABLE
        self._tally(identity, decision, _RESULT[Outcome.UNAVAILABLE] if unavailable else _FALLBACK)
        return decision

    def _kill_switch_refusal(self, identity: Identity, reset_exempt: bool) -> Decision | None:
        refusal = self._mirror.refusal(identity, reset_exempt, None)
        if refusal is None:
            return None
        rate, burst = self._limits.user
        return Decision(
            outcome=refusal, rate=rate, burst=burst, remaining=0, retry_after=0.0, reset_after=0.0
        )

    def _hold(self, keys: SubjectKeys, decision: Decision) -> Decision:
        # The store's member is unique among its subject's slots; this worker's leases are
        # of many subjects.
        lease = f"{self._lease_prefix}{next(self._lease_counter):x}"
        self._leases[lease] = (keys, decision.lease)
        return decision._replace(lease=lease)

    def release(self, decision: Decision) -> None:
        """The request that held ``decision.lease`` has ended: give its slot back, without
        making the response wait for the round trip."""
        held = self._leases.pop(decision.lease, None)
        if held is None:
            return
        task = asyncio.ensure_future(self._release(*held))
        self._releases.add(task)
        task.add_done_callback(self._releases.discard)

    async def _release(self, keys: SubjectKeys, token: str) -> None:
        try:
            await self._store.release(keys, token)
        except StorageError as exc:
            # The lease ends on its own within LEASE_MS.
            logger.debug("floodwall: releasing a concurrency slot failed: %s", exc)

    async def renew_leases(self) -> None:
        """Keep the slots of this worker's requests in flight, every RENEW_SECONDS, until
        cancelled: a request may run longer than a lease, a crashed worker's may not."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            try:
                await self._store.renew(list(self._leases.values()), LEASE_MS)
            except StorageError as exc:
                logger.warning("floodwall: renewing concurrency slots failed: %s", exc)

    async def settle_releases(self) -> None:
        """Wait for slots being given back (at stop)."""
        if self._releases:
            await asyncio.gather(*self._releases, return_exceptions=True)

    def _tally(self, identity: Identity, decision: Decision, result: int) -> None:
        self._hot.results[result] += 1
        if result != _ALLOWED and decision.outcome not in _NOT_REFUSALS:
            self._offenders.count(identity, decision, enforced=self.enforces(decision, count=False))

    def enforces(self, decision: Decision, *, count: bool = True) -> bool:
        """Whether a refusal is enforced: shadow mode (global, or the user's) lets limits
        through; an operator's block, revocation or reset is never shadowed."""
        if decision.outcome in (Outcome.LIMITED, Outcome.UNAVAILABLE) and (
            self._shadow or decision.shadow
        ):
            if count:
                self._hot.shadow += 1
            return False
        return True

    def _store_failed(self, exc: StoreUnavailable) -> None:
        self._metrics.store_errors.inc()
        # Log when the breaker opens, not per request: a dead Redis must not flood the logs.
        if self._breaker.failure():
            self._metrics.breaker_open.set(1)
            logger.error(
                "floodwall: the store failed (%s); fail mode %s until it answers",
                exc,
                "closed" if self._fallback.closed else "open",
            )

    def _client_failed(self, exc: Exception) -> None:
        if self._breaker.state is BreakerState.CLOSED:
            logger.error("floodwall: the store's client failed unexpectedly", exc_info=exc)
        self._store_failed(StoreUnavailable(f"{type(exc).__name__}: {exc}"))

    def _store_recovered(self) -> None:
        if self._breaker.success():
            self._metrics.breaker_open.set(0)
            logger.warning("floodwall: the store answers again; normal checks resumed")

    def _subject_failed(self, bucket: str, exc: StoreCommandError) -> None:
        # One subject's command failed (e.g. a hand-edited state the script cannot read):
        # that subject's requests get the fail mode; the store is not down for anyone else.
        self._metrics.store_errors.inc()
        if bucket not in self._failing_subjects:
            if len(self._failing_subjects) >= KEYS_CACHE_SIZE:
                self._failing_subjects.clear()
            self._failing_subjects.add(bucket)
            logger.error("floodwall: the check of one subject failed (%s): %s", bucket, exc)
