"""``FloodwallMiddleware``: the per-request check, as a plain ASGI middleware."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, cast

from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from floodwall._types import ASGIApp, Identify, Message, Receive, Scope, Send
from floodwall.decision import Decision
from floodwall.identity import client_identity, default_identify
from floodwall.paths import PathTable
from floodwall.responses import Refusal, rate_limit_headers, refusal
from floodwall.service import Floodwall

__all__ = ["FloodwallMiddleware"]


class FloodwallMiddleware:
    """Checks every HTTP request and websocket connection against ``floodwall``.

    Options:

    - ``identify``: an async ``identify(scope) -> Identity | None`` replacing the built-in
      chain (Starlette's user, a JWT, the gateway header); ``None`` means the client address.
    - ``exempt_paths``: paths never checked (``/health`` also covers ``/health/live``),
      added to ``FLOODWALL_EXEMPT_PATHS``.
    - ``route_costs``: tokens a request costs by path (longest match wins); others cost 1.
    - ``password_reset_paths``: the app's reset flow, open to users who must reset their
      password; added to ``FLOODWALL_PASSWORD_RESET_PATHS``.

    The service starts and stops with the app's lifespan events.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        floodwall: Floodwall,
        identify: Identify | None = None,
        exempt_paths: Iterable[str] = (),
        route_costs: Mapping[str, int] | None = None,
        password_reset_paths: Iterable[str] = (),
    ) -> None:
        settings = floodwall.settings
        self.app = app
        self.floodwall = floodwall
        self._identify = identify if identify is not None else default_identify(settings)
        self._exempt = PathTable.of([*settings.exempt_paths, *exempt_paths], True)
        costs = dict(route_costs or {})
        if any(cost < 1 for cost in costs.values()):
            raise ValueError("route costs are whole numbers of tokens, at least 1")
        self._costs = PathTable(costs)
        self._reset_paths = PathTable.of(
            [*settings.password_reset_paths, *password_reset_paths], True
        )
        self._headers = settings.rate_limit_headers
        # Forwarded headers are honoured from trusted proxies only; uvicorn's middleware
        # already reads X-Forwarded-For right to left against that list.
        self._guarded: ASGIApp = self._guard
        if settings.trusted_proxies:
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
        # Start before the app's own startup handlers, stop after its shutdown handlers.
        async def receive_and_start() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await self.floodwall.start()
            return message

        async def send_and_stop(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                await self.floodwall.stop()
            await send(message)

        await self.app(scope, receive_and_start, send_and_stop)

    async def _guard(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        if self._exempt.get(path, False):
            await self.app(scope, receive, send)
            return
        identity = await self._identify(scope) or client_identity(scope)
        decision = await self.floodwall.check(
            identity,
            self._costs.get(path, 1),
            reset_exempt=self._reset_paths.get(path, False),
        )
        policy = "anonymous" if identity.anonymous else "user"
        if not decision.allowed:
            await self._refuse(scope, receive, send, decision, policy)
        elif self._headers and scope["type"] == "http":
            await self.app(
                scope, receive, _with_headers(send, rate_limit_headers(policy, decision))
            )
        else:
            await self.app(scope, receive, send)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, decision: Decision, policy: str
    ) -> None:
        answer = refusal(decision)
        headers = answer.headers
        if self._headers and decision.burst:
            headers = [*headers, *rate_limit_headers(policy, decision)]
        if scope["type"] == "http":
            await _send_response(send, "http.response", answer, headers)
            return
        # A websocket is refused at connect: with the denial-response extension the client
        # gets the same HTTP answer; without it, a close before accept (HTTP 403).
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        if "websocket.http.response" in scope.get("extensions", {}):
            await _send_response(send, "websocket.http.response", answer, headers)
        else:
            await send({"type": "websocket.close", "code": 1008, "reason": ""})


def _with_headers(send: Send, headers: list[tuple[bytes, bytes]]) -> Send:
    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            message["headers"] = [*message.get("headers", ()), *headers]
        await send(message)

    return send_with_headers


async def _send_response(
    send: Send, prefix: str, answer: Refusal, headers: list[tuple[bytes, bytes]]
) -> None:
    await send({"type": f"{prefix}.start", "status": answer.status, "headers": headers})
    await send({"type": f"{prefix}.body", "body": answer.body, "more_body": False})
