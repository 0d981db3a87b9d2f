"""The apps every benchmark measures, built the same way in-process and under uvicorn.

One tiny Starlette app (``GET /api/hello`` answering a small JSON body), alone or behind a
rate limiter, every limiter keyed by the same ``x-user`` header:

* ``bare``: the app alone;
* ``floodwall[memory]`` / ``floodwall[redis]``: ``FloodwallMiddleware`` on the in-memory /
  Redis store (RateLimit fields on, as by default);
* ``slowapi[decorator]``: slowapi's ``@limiter.limit`` on the endpoint, limits' Redis
  storage (fixed window, slowapi's default strategy; its optional headers off, as by
  default);
* ``slowapi[middleware]``: the same limiter as ``default_limits`` through
  ``SlowAPIASGIMiddleware`` (its pure-ASGI middleware);
* ``asgi-ratelimit[redis]``: asgi-ratelimit's ``RateLimitMiddleware`` with its
  ``RedisBackend``.

For the benchmarks of the allowed path every limit is huge (every request is allowed). The
incident drill uses ``handler="pool"``: besides ``/api/hello``, ``GET /api/work?ms=N`` holds
one connection of a simulated database pool of ``pool`` connections for N ms and answers
503 after waiting ``POOL_TIMEOUT_SECONDS`` for one, the semantics of the demo's
``/api/work`` (``floodwall.demo``); and floodwall's default limit (10/s, burst 10), with
load shedding (``capacity``) and per-user concurrency (``concurrency``, once floodwall has
it) as asked.

``uvicorn benchmarks.apps:uvicorn_app --factory`` builds the app named by ``BENCH_*``
environment variables (see ``uvicorn_app``).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final, cast

import redis.asyncio
from ratelimit import RateLimitMiddleware, Rule
from ratelimit.backends.redis import RedisBackend
from slowapi import Limiter, _rate_limit_exceeded_handler
from slowapi.errors import RateLimitExceeded
from slowapi.middleware import SlowAPIASGIMiddleware
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.types import ASGIApp, Scope

from benchmarks._common import PATH, USER_HEADER
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.core import rules
from floodwall.demo import echo

# The rule book's largest: no bucket runs dry below a million requests a second per user,
# so the allowed path is what is measured.
ALLOW_ALL_RATE: Final = rules.RATE.high
ALLOW_ALL_BURST: Final = int(rules.BURST.high)
PEER_LIMIT: Final = "1000000000/second"
PEER_LIMIT_PER_SECOND: Final = 10**9
REDIS_TIMEOUT: Final = 1.0
KEY_PREFIX: Final = "floodwall-bench"
WORK_SLEEP: Final = 0.003
WORK_CPU_LOOP: Final = 3000
WORK_PATH: Final = "/api/work"
WS_PATH: Final = "/ws/echo"
POOL_SIZE: Final = 8
TARPIT_SECONDS: Final = float(FloodwallSettings.model_fields["tarpit_seconds"].default)
"""floodwall's default, passed explicitly like every other setting."""
POOL_TIMEOUT_SECONDS: Final = 2.0

PEERS: Final = ("slowapi[decorator]", "slowapi[middleware]", "asgi-ratelimit[redis]")
VARIANTS: Final = ("bare", "floodwall[memory]", "floodwall[redis]", *PEERS)
REDIS_VARIANTS: Final = frozenset({"floodwall[redis]", *PEERS})

Handler = Callable[[Request], Awaitable[Response]]


async def hello(request: Request) -> Response:
    return JSONResponse({"hello": "world"})


async def work(request: Request) -> Response:
    """A handler with a few ms of latency and a little CPU, like a real endpoint."""
    await asyncio.sleep(WORK_SLEEP)
    total = sum(i * i for i in range(WORK_CPU_LOOP))
    return JSONResponse({"hello": "world", "work": total})


HANDLERS: Final[dict[str, Handler]] = {"hello": hello, "work": work}


def pool_handler(size: int, timeout: float = POOL_TIMEOUT_SECONDS) -> Handler:
    """``GET /api/work?ms=N``: a database pool in miniature, as in the demo."""
    pool = asyncio.Semaphore(size)

    async def work_in_pool(request: Request) -> Response:
        ms = int(request.query_params.get("ms", "20"))
        try:
            async with asyncio.timeout(timeout):
                await pool.acquire()
        except TimeoutError:
            return JSONResponse(
                {"detail": f"no connection free within {timeout:g} s"},
                status_code=503,
                headers={"retry-after": "1"},
            )
        try:
            await asyncio.sleep(ms / 1000)
        finally:
            pool.release()
        return JSONResponse({"held_ms": ms})

    return work_in_pool


def supports_concurrency() -> bool:
    """Whether this floodwall has per-user concurrency (``FLOODWALL_CONCURRENCY``)."""
    return "concurrency" in FloodwallSettings.model_fields


def floodwall_settings(
    redis_url: str | None,
    *,
    rate: float,
    burst: int,
    prefix: str = KEY_PREFIX,
    capacity: int | str | None = None,
    concurrency: int | None = None,
    tarpit_seconds: float = TARPIT_SECONDS,
) -> FloodwallSettings:
    # Everything that changes the hot path is explicit, so stray FLOODWALL_* variables in
    # the environment cannot turn this into a different benchmark.
    extra: dict[str, Any] = {}
    if concurrency is not None:
        # The hook for per-user concurrency: passed only when asked, and refused by a
        # floodwall without the setting rather than silently left out.
        if not supports_concurrency():
            raise ValueError("this floodwall has no FLOODWALL_CONCURRENCY setting yet")
        extra["concurrency"] = concurrency
    return FloodwallSettings(
        capacity=capacity,
        tarpit_seconds=tarpit_seconds,
        **extra,
        redis_url=redis_url,
        redis_timeout=REDIS_TIMEOUT,
        key_prefix=prefix,
        rate=rate,
        burst=burst,
        anonymous_rate=None,
        anonymous_burst=None,
        rate_limit_headers=True,
        fail_mode="open",
        shadow=False,
        auto_block_refusals=None,
        jwt_secret=None,
        user_header=USER_HEADER,
        trusted_proxies=[],
        exempt_paths=[],
        password_reset_paths=[],
    )


@dataclass(slots=True)
class Built:
    """An app and what must be started and closed around it when no lifespan runs."""

    app: ASGIApp
    floodwall: Floodwall | None = None
    closers: list[Callable[[], Awaitable[object]]] = field(default_factory=list)

    async def start(self) -> None:
        if self.floodwall is not None:
            await self.floodwall.start()

    async def close(self) -> None:
        if self.floodwall is not None:
            await self.floodwall.stop()
        for closer in self.closers:
            await closer()


def _user_key(request: Request) -> str:
    return request.headers.get(USER_HEADER, "anonymous")


async def _user_of_scope(scope: Scope) -> tuple[str, str]:
    name = USER_HEADER.encode()
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1"), "default"
    return "anonymous", "default"


def _limiter(redis_url: str, default_limits: list[str]) -> Limiter:
    return Limiter(
        key_func=_user_key,
        storage_uri=redis_url,
        default_limits=cast(Any, default_limits),
        key_prefix="slowapi-bench",
    )


def build(
    variant: str,
    redis_url: str | None,
    *,
    handler: str = "hello",
    rate: float = ALLOW_ALL_RATE,
    burst: int = ALLOW_ALL_BURST,
    prefix: str = KEY_PREFIX,
    pool: int = POOL_SIZE,
    capacity: int | str | None = None,
    concurrency: int | None = None,
    tarpit_seconds: float = TARPIT_SECONDS,
) -> Built:
    """The app of ``variant``; ``rate``/``burst``/``capacity``/``concurrency``/
    ``tarpit_seconds`` apply to floodwall only; ``pool`` to ``handler="pool"``."""
    if variant in REDIS_VARIANTS and redis_url is None:
        raise ValueError(f"{variant} needs a Redis URL")
    endpoint = hello if handler == "pool" else HANDLERS[handler]
    routes: list[BaseRoute] = [
        Route(PATH, endpoint, methods=["GET"]),
        WebSocketRoute(WS_PATH, echo),
    ]
    if handler == "pool":
        routes.append(Route(WORK_PATH, pool_handler(pool), methods=["GET"]))
    if variant == "bare":
        return Built(Starlette(routes=routes))
    if variant in ("floodwall[memory]", "floodwall[redis]"):
        url = redis_url if variant == "floodwall[redis]" else None
        settings = floodwall_settings(
            url,
            rate=rate,
            burst=burst,
            prefix=prefix,
            capacity=capacity,
            concurrency=concurrency,
            tarpit_seconds=tarpit_seconds,
        )
        floodwall = Floodwall(settings)
        app = Starlette(
            routes=routes,
            middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall)],
        )
        return Built(app, floodwall)
    assert redis_url is not None
    handlers: Any = {RateLimitExceeded: _rate_limit_exceeded_handler}
    if variant == "slowapi[decorator]":
        limiter = _limiter(redis_url, [])
        # slowapi's decorator is untyped; it returns the endpoint wrapped.
        limited = cast(Handler, limiter.limit(PEER_LIMIT)(endpoint))
        app = Starlette(routes=[Route(PATH, limited, methods=["GET"])], exception_handlers=handlers)
        app.state.limiter = limiter
        return Built(app)
    if variant == "slowapi[middleware]":
        limiter = _limiter(redis_url, [PEER_LIMIT])
        app = Starlette(
            routes=[Route(PATH, endpoint, methods=["GET"])],
            middleware=[Middleware(SlowAPIASGIMiddleware)],
            exception_handlers=handlers,
        )
        app.state.limiter = limiter
        return Built(app)
    if variant == "asgi-ratelimit[redis]":
        client = redis.asyncio.Redis.from_url(redis_url)
        app = Starlette(
            routes=[Route(PATH, endpoint, methods=["GET"])],
            middleware=[
                Middleware(
                    RateLimitMiddleware,
                    authenticate=_user_of_scope,
                    backend=RedisBackend(client),
                    config={r"^/api/": [Rule(second=PEER_LIMIT_PER_SECOND)]},
                )
            ],
        )
        return Built(app, closers=[client.aclose])
    raise ValueError(f"unknown variant {variant!r}")


def uvicorn_app() -> ASGIApp:
    """The app named by the environment, for ``uvicorn --factory``.

    ``BENCH_VARIANT`` (one of ``VARIANTS``), ``BENCH_REDIS_URL``, ``BENCH_HANDLER``
    (``hello``, ``work`` or ``pool``), ``BENCH_RATE`` and ``BENCH_BURST`` (floodwall's limit,
    default huge), ``BENCH_PREFIX`` (floodwall's key prefix), ``BENCH_POOL`` (the pool's
    connections), ``BENCH_CAPACITY`` (floodwall's load shedding: a number or ``auto``),
    ``BENCH_CONCURRENCY`` (per-user concurrency) and ``BENCH_TARPIT_SECONDS`` (the tarpit).
    """
    env = os.environ
    capacity = env.get("BENCH_CAPACITY") or None
    concurrency = env.get("BENCH_CONCURRENCY") or None
    built = build(
        env["BENCH_VARIANT"],
        env.get("BENCH_REDIS_URL") or None,
        handler=env.get("BENCH_HANDLER", "hello"),
        rate=float(env.get("BENCH_RATE", ALLOW_ALL_RATE)),
        burst=int(env.get("BENCH_BURST", ALLOW_ALL_BURST)),
        prefix=env.get("BENCH_PREFIX", KEY_PREFIX),
        pool=int(env.get("BENCH_POOL", POOL_SIZE)),
        capacity=capacity if capacity in (None, "auto") else int(capacity),
        concurrency=None if concurrency is None else int(concurrency),
        tarpit_seconds=float(env.get("BENCH_TARPIT_SECONDS", TARPIT_SECONDS)),
    )
    # floodwall starts and stops with the lifespan; the peers' clients die with the process.
    return built.app
