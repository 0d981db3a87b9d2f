"""``FloodwallMiddleware``: the per-request check, as a plain ASGI middleware.

``_guard`` reads top to bottom: exempt paths, blocked networks, who it is, the one check,
then forward (with the connection held against the kill switch while it is open) or
refuse. The decisions are the checker's and the shedder's; the request's route limits,
ids, log lines and answers have modules of their own.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, cast

from floodwall.connections.registry import OpenConnections
from floodwall.connections.watched import OverLimit, WatchedResponse, WatchedWebSocket
from floodwall.core import rules
from floodwall.core.decision import Decision, Outcome
from floodwall.core.errors import ConfigurationError, IdentityUnavailable, StorageError
from floodwall.core.identity import Identify, Identity
from floodwall.core.ids import held
from floodwall.core.route_limits import RouteLimit
from floodwall.core.types import ASGIApp, Message, Receive, Scope, Send
from floodwall.http.paths import PathTable, route_path
from floodwall.http.responses import IDENTITY_UNAVAILABLE, answer, rate_limit_headers, refusal
from floodwall.identity.chain import IdentityChain, default_identify
from floodwall.identity.jwks import JwksIdentity
from floodwall.identity.scope import client_identity
from floodwall.identity.tokens import IdentityPending
from floodwall.limiting.app_limits import AppRouteLimits
from floodwall.observe.metrics import RESULTS
from floodwall.observe.request_ids import RequestIds
from floodwall.observe.request_log import DecisionLog, request_logger
from floodwall.observe.telemetry import decision_telemetry
from floodwall.protection.shedding import Shedder, shedder_from_settings
from floodwall.protection.tarpit import Tarpit
from floodwall.service import Floodwall

__all__ = ["FloodwallMiddleware"]

logger = logging.getLogger("floodwall")

_OVERLOADED_RESULT = RESULTS.index("overloaded")
_OVERLOADED = Decision(Outcome.OVERLOADED, 0.0, 0, 0, 1.0, 0.0)
_NETWORK_BLOCKED = RESULTS.index("network_blocked")


class FloodwallMiddleware:
    """Checks every HTTP request and websocket connection against ``floodwall``.

    Options:

    - ``identify``: ``identify(scope) -> Identity | None``, plain or async, replacing the
      built-in chain (a JWT, Starlette's user, the gateway header); ``None`` means the
      client address.
    - ``exempt_paths``: paths never checked (``/health`` also covers ``/health/live``),
      added to ``FLOODWALL_EXEMPT_PATHS``.
    - ``route_costs``: tokens a request costs by path (longest match wins); others cost 1.
    - ``password_reset_paths``: the app's reset flow, open to users who must reset their
      password; added to ``FLOODWALL_PASSWORD_RESET_PATHS``.
    - ``critical_paths``: paths that keep reserved capacity under load shedding; added to
      ``FLOODWALL_CRITICAL_PATHS``.
    - ``shedder``: the load shedder to use instead of the one ``FLOODWALL_CAPACITY`` asks
      for (tests pass one with a clock they move).
    - ``tarpit``: the tarpit to use instead of the one ``FLOODWALL_TARPIT_SECONDS`` asks
      for.

    The service starts and stops with the app's lifespan events. The identity a checked
    request was resolved to is the app's as ``request.state.floodwall_identity`` (an
    ``Identity``). Options that cannot work fail the lifespan startup
    (``lifespan.startup.failed``) with one line, so the server exits: Starlette builds its
    middleware inside its first lifespan call, where an exception would read as "lifespan
    unsupported" and every request would be a 500. Without a lifespan, each request raises
    that ``ConfigurationError``.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        floodwall: Floodwall,
        identify: Identify | None = None,
        exempt_paths: Iterable[str] = (),
        route_costs: Mapping[str, int] | None = None,
        route_limits: Mapping[str, str] | None = None,
        password_reset_paths: Iterable[str] = (),
        critical_paths: Iterable[str] = (),
        shedder: Shedder | None = None,
        tarpit: Tarpit | None = None,
    ) -> None:
        self.app = app
        self.floodwall = floodwall
        self._refusal: ConfigurationError | None = None
        self._guarded: ASGIApp = self._guard
        try:
            self._configure(
                floodwall=floodwall,
                identify=identify,
                exempt_paths=exempt_paths,
                route_costs=route_costs,
                route_limits=route_limits,
                password_reset_paths=password_reset_paths,
                critical_paths=critical_paths,
                shedder=shedder,
                tarpit=tarpit,
            )
        except (ConfigurationError, rules.RuleError) as exc:
            self._refuse_start(exc)

    def _refuse_start(self, exc: Exception) -> None:
        self._refusal = ConfigurationError(f"floodwall: {exc}")
        self._guarded = self._misconfigured

    def _configure(
        self,
        *,
        floodwall: Floodwall,
        identify: Identify | None,
        exempt_paths: Iterable[str],
        route_costs: Mapping[str, int] | None,
        route_limits: Mapping[str, str] | None,
        password_reset_paths: Iterable[str],
        critical_paths: Iterable[str],
        shedder: Shedder | None,
        tarpit: Tarpit | None,
    ) -> None:
        settings = floodwall.settings
        # The checker, not the facade: one coroutine less on every request.
        self._check = floodwall.checker.check
        self._enforces = floodwall.checker.enforces
        self._release = floodwall.checker.release
        self._networks = floodwall.networks
        # Decided once: a plain resolver needs no coroutine per request.
        found = (
            identify
            if identify is not None
            else default_identify(settings, on_rejected=floodwall.metrics.token_rejected)
        )
        self._resolve: Callable[[Scope], Identity | None] | None = None
        self._identify: Callable[[Scope], Awaitable[Identity | None]] | None = None
        if isinstance(found, IdentityChain):
            self._resolve = found.resolve
        elif inspect.iscoroutinefunction(found) or inspect.iscoroutinefunction(
            getattr(found, "__call__", None)  # noqa: B004 - an object with an async __call__
        ):
            self._identify = cast(Callable[[Scope], Awaitable[Identity | None]], found)
        else:
            self._resolve = cast(Callable[[Scope], Identity | None], found)
        # An identity provider's keys are fetched at the lifespan startup.
        self._load_identity = (
            found.load if isinstance(found, IdentityChain | JwksIdentity) else None
        )
        exempt = [rules.exempt_path(path) for path in exempt_paths]
        self._exempt = PathTable.of([*settings.exempt_paths, *exempt], True)
        costs = {path: rules.COST.whole_number(cost) for path, cost in (route_costs or {}).items()}
        self._costs = PathTable(costs)
        self._routes = AppRouteLimits(
            settings.parsed_route_limits(),
            route_limits or {},
            floodwall.limits,
            crosses_subjects=floodwall.store.crosses_subjects,
        )
        self._reset_paths = PathTable.of(
            [*settings.password_reset_paths, *password_reset_paths], True
        )
        self._any_exempt = bool(self._exempt)
        self._any_costs = bool(self._costs)
        self._any_reset_paths = bool(self._reset_paths)
        self._critical = PathTable.of([*settings.critical_paths, *critical_paths], True)
        self._any_critical = bool(self._critical)
        # None unless FLOODWALL_CAPACITY is set: then a request pays one `is None` test.
        if shedder is None:
            shedder = shedder_from_settings(
                settings,
                clock=floodwall.clock.monotonic,
                on_limit=floodwall.metrics.capacity_limit,
                critical_paths=self._any_critical,
            )
        self._shedder = shedder
        if tarpit is None and settings.tarpit_seconds:
            tarpit = Tarpit(settings.tarpit_seconds, clock=floodwall.clock.monotonic)
        self._tarpit = tarpit
        self._headers = settings.rate_limit_headers
        self._ids = RequestIds(settings.request_id_header)
        self._log = DecisionLog(clock=floodwall.clock.monotonic)
        self._connections = OpenConnections(
            floodwall.mirror,
            floodwall.networks,
            clock=floodwall.clock,
            new_request_id=self._ids.new,
            on_close=floodwall.metrics.connection_closed,
        )
        self._message_cost = settings.websocket_message_cost
        self._over_limit: OverLimit = settings.websocket_over_limit
        # None without opentelemetry-api: then a request pays one `is None` test for it.
        self._telemetry = decision_telemetry(floodwall.metrics.hot)
        # Forwarded headers are honoured from trusted proxies only; uvicorn's middleware
        # already reads X-Forwarded-For right to left against that list.
        if settings.trusted_proxies:
            # Imported here: floodwall needs no ASGI server unless proxies are trusted.
            try:
                from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
            except ImportError:
                raise ConfigurationError(
                    "FLOODWALL_TRUSTED_PROXIES needs uvicorn's ProxyHeadersMiddleware: "
                    "pip install 'floodwall[demo]' (or uvicorn>=0.31)"
                ) from None
            # uvicorn types its middleware with its own (structurally equal) ASGI aliases.
            proxied = ProxyHeadersMiddleware(
                cast(Any, self._guard), trusted_hosts=settings.trusted_proxies
            )
            self._guarded = cast(ASGIApp, proxied)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http" or kind == "websocket":
            await self._guarded(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(scope, receive, send)
        else:
            await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._refusal is not None:
            # The app's own startup never runs: the server reports the line and exits.
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.failed", "message": str(self._refusal)})
            return

        # Start before the app's own startup handlers, stop after its shutdown handlers. A
        # start that cannot protect fails the startup itself, so the server exits: an
        # exception raised in the app's `receive` would read as "lifespan unsupported".
        started = await receive()
        first: Message | None = started
        if started["type"] == "lifespan.startup":
            try:
                self._routes.find(self.app)
                if self._load_identity is not None:
                    await self._load_identity()
                await self.floodwall.start()
            except (ConfigurationError, rules.RuleError) as exc:
                await send({"type": "lifespan.startup.failed", "message": f"floodwall: {exc}"})
                return
            try:
                routes = self._routes
                await self.floodwall.actions.publish_routes(routes.app_routes, routes.limits)
            except StorageError:
                # Only the operator's check of a live route limit needs them: no reason to
                # refuse to start while the store is down.
                logger.warning(
                    "floodwall: the store did not answer: this app's routes are not published"
                )

        async def receive_and_start() -> Message:
            nonlocal first
            if first is not None:
                message, first = first, None
                return message
            return await receive()

        async def send_and_stop(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                await self._connections.stop()
                await self.floodwall.stop()
            await send(message)

        await self.app(scope, receive_and_start, send_and_stop)

    async def _misconfigured(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Reached only when no lifespan ran: the server could not be stopped from starting.
        raise ConfigurationError(str(self._refusal))

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Every request runs this, top to bottom: exempt paths, blocked networks, who it
        # is, the one check, then forward or refuse. Tables that are empty are not
        # consulted at all; paths are matched as the app's router matches them.
        path = route_path(scope)
        if self._any_exempt and self._exempt.get(path, False):
            await self.app(scope, receive, send)
            return
        if self._networks.any and self._in_blocked_network(scope):
            # Before identifying anyone: a blocked network's requests cost no token check,
            # and no round trip (every worker mirrors the blocks).
            await self._refuse_network(scope, receive, send)
            return
        resolve = self._resolve
        try:
            try:
                found = resolve(scope) if resolve is not None else await self._identify(scope)  # type: ignore[misc]
            except IdentityPending as pending:
                # A token whose key is not at hand waits for it: never a stranger.
                found = await pending.settle(scope)
        except IdentityUnavailable:
            await self._refuse_unverified(scope, receive, send)
            return
        identity = found or client_identity(scope)
        # Handed to the app (request.state.floodwall_identity): no second token check there.
        scope.setdefault("state", {})["floodwall_identity"] = identity
        cost = self._costs.get(path, 1, scope.get("method")) if self._any_costs else 1
        reset_exempt = self._any_reset_paths and self._reset_paths.get(path, False)
        limits = self._routes
        routes = limits.match(scope.get("method", "GET"), path, self.app) if limits.active else ()
        if routes:
            address = client_identity(scope) if _by_address(routes, identity) else None
            decision = await self._check(
                identity, cost, reset_exempt=reset_exempt, routes=routes, address=address
            )
        else:
            decision = await self._check(identity, cost, reset_exempt=reset_exempt)
        policy = _policy(decision, routes, identity)
        if self._telemetry is not None:
            self._telemetry(decision, policy)
        request_id = self._ids.given(scope)
        if decision.outcome is Outcome.ALLOWED or not self._enforces(decision):
            request_id = self._log_passed(scope, identity, decision, policy, request_id)
            await self._pass(
                scope, receive, send, identity, decision, policy, request_id, reset_exempt
            )
            return
        request_id = self._ids.needed(request_id)
        self._log.refused(scope, identity, decision, policy, request_id, enforced=True)
        extra = self._ids.headers(request_id)
        await self._refuse(scope, receive, send, identity, decision, policy, extra)

    def _in_blocked_network(self, scope: Scope) -> bool:
        client = scope.get("client")
        return client is not None and self._networks.match(str(client[0])) is not None

    def _log_passed(
        self,
        scope: Scope,
        identity: Identity,
        decision: Decision,
        policy: str,
        request_id: str | None,
    ) -> str | None:
        # A refusal that is not enforced (shadow mode) is logged as a refusal; a request
        # allowed, only at DEBUG. An id is made for a line that is written.
        if decision.outcome is not Outcome.ALLOWED:
            request_id = self._ids.needed(request_id)
            self._log.refused(scope, identity, decision, policy, request_id, enforced=False)
        elif request_logger.isEnabledFor(logging.DEBUG):
            request_id = self._ids.new() if request_id is None else request_id
            self._log.allowed(scope, identity, decision, policy, request_id)
        return request_id

    async def _pass(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity,
        decision: Decision,
        policy: str,
        request_id: str | None,
        reset_exempt: bool,
    ) -> None:
        # The app gets the request with floodwall's headers on its answer; a websocket,
        # and a response once it streams, are held against the kill switch while open.
        watched: WatchedWebSocket | WatchedResponse
        if scope["type"] == "http":
            headers = rate_limit_headers(policy, decision) if self._headers else []
            headers += self._ids.headers(request_id)
            watched = WatchedResponse(
                scope, send, self._connections, identity, reset_exempt, request_id, headers
            )
        else:
            watched = self._websocket(scope, receive, send, identity, reset_exempt, request_id)
            receive = watched.receive
        try:
            if self._shedder is None and not decision.lease:
                # Most requests: no slot to hold, no coroutine more (about 1 µs, measured).
                await self.app(scope, receive, watched.send)
            else:
                await self._forward(
                    scope, receive, watched.send, identity, decision, policy, request_id
                )
        finally:
            self._connections.discard(watched)

    def _websocket(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity,
        reset_exempt: bool,
        request_id: str | None,
    ) -> WatchedWebSocket:
        return WatchedWebSocket(
            scope,
            receive,
            send,
            self._connections,
            identity,
            reset_exempt,
            request_id,
            check=self._check,
            enforces=self._enforces,
            release=self._release,
            cost=self._message_cost,
            over_limit=self._over_limit,
        )

    async def _forward(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity,
        decision: Decision,
        policy: str,
        request_id: str | None,
    ) -> None:
        # The request holds its concurrency slot (and its shedding slot) until it ends (a
        # websocket: while open); try/finally costs nothing until something is raised.
        try:
            if self._shedder is None:
                await self.app(scope, receive, send)
                return
            shed = await self._shed(scope, receive, send, identity)
        finally:
            if decision.lease:
                self._release(decision)
        if shed:
            # Answered once the slot is given back: the tarpit may hold the answer.
            await self._overloaded(scope, receive, send, identity, policy, request_id)

    async def _shed(self, scope: Scope, receive: Receive, send: Send, identity: Identity) -> bool:
        # Load shedding: a slot for the whole request (a websocket: while open), given back
        # however the app ends, a client's disconnect (cancellation) included. True: no
        # slot, the request is to be refused.
        shedder = cast(Shedder, self._shedder)
        subject = _subject(identity)
        critical = self._any_critical and self._critical.get(route_path(scope), False)
        ticket = await shedder.acquire(subject, critical=critical)
        if ticket is None:
            return True
        completed = False
        try:
            await self.app(scope, receive, send)
            completed = scope["type"] == "http"
        finally:
            shedder.release(ticket, completed=completed)
        return False

    async def _overloaded(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity,
        policy: str,
        request_id: str | None,
    ) -> None:
        self.floodwall.metrics.hot.results[_OVERLOADED_RESULT] += 1
        if self._telemetry is not None:
            self._telemetry(_OVERLOADED, policy)
        # `send` already adds an id it was given; one made now is added here.
        extra = []
        if request_id is None:
            request_id = self._ids.needed(None)
            extra = self._ids.headers(request_id)
        self._log.refused(scope, identity, _OVERLOADED, policy, request_id, enforced=True)
        await self._refuse(scope, receive, send, identity, _OVERLOADED, policy, extra)

    async def _refuse_network(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Counted as the client address (and its network) for top: who the sender claims
        # to be is not asked.
        decision = Decision(Outcome.NETWORK_BLOCKED, 0.0, 0, 0, 0.0, 0.0)
        identity = client_identity(scope)
        self.floodwall.metrics.hot.results[_NETWORK_BLOCKED] += 1
        self.floodwall.offenders.count(identity, decision, enforced=True)
        if self._telemetry is not None:
            self._telemetry(decision, "network")
        request_id = self._ids.needed(self._ids.given(scope))
        self._log.refused(scope, identity, decision, "network", request_id, enforced=True)
        extra = self._ids.headers(request_id)
        await self._refuse(scope, receive, send, identity, decision, "network", extra)

    async def _refuse_unverified(self, scope: Scope, receive: Receive, send: Send) -> None:
        # No identity, so no check: neither the user's limits nor the address's apply.
        request_id = self._ids.needed(self._ids.given(scope))
        extra = self._ids.headers(request_id)
        await answer(
            scope, receive, send, IDENTITY_UNAVAILABLE, [*IDENTITY_UNAVAILABLE.headers, *extra]
        )

    async def _refuse(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        identity: Identity,
        decision: Decision,
        policy: str,
        extra: list[tuple[bytes, bytes]],
    ) -> None:
        tarpit = self._tarpit
        if tarpit is not None and decision.outcome is not Outcome.UNAVAILABLE:
            # A store that cannot answer is nobody's flood.
            delay = tarpit.delay(_subject(identity))
            if delay:
                self.floodwall.metrics.tarpitted.inc()
                await tarpit.hold(delay)
        refused = refusal(decision, policy)
        headers = [*refused.headers, *extra]
        if self._headers and decision.outcome is Outcome.LIMITED:
            headers += rate_limit_headers(policy, decision)
        await answer(scope, receive, send, refused, headers)


def _subject(identity: Identity) -> tuple[bool, str]:
    # What the shedder and the tarpit key their per-subject state by: a long id held as its
    # digest, so a flood of huge ids costs bounded memory (floodwall.ids).
    return identity.anonymous, held(identity.user_id)


def _by_address(routes: tuple[RouteLimit, ...], identity: Identity) -> bool:
    # A user's request is also counted for its client address where a route says so.
    return not identity.anonymous and any(route.by == "address" for route in routes)


def _policy(decision: Decision, routes: tuple[RouteLimit, ...], identity: Identity) -> str:
    # The limit that decided: a route's (policy i is routes[i - 1]), else the global one.
    if decision.policy:
        return routes[decision.policy - 1].policy
    return "anonymous" if identity.anonymous else "user"
