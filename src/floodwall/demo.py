"""The demo app: log in, call the API, watch the limit and the kill switch work, and
replay incidents against a slow endpoint and a small database pool.

``floodwall demo`` serves it; it runs on the in-memory store unless ``FLOODWALL_REDIS_URL``
is set. ``FLOODWALL_DEMO_POOL`` is the size of the simulated database pool (default 8).
"""

from __future__ import annotations

import asyncio
import html
import logging
import os
import secrets
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Mapping
from typing import Any, Final

import jwt
from pydantic import BaseModel, Field, SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from floodwall.core.errors import ConfigurationError
from floodwall.core.rules import ADMIN_TOKEN_MIN_LENGTH
from floodwall.identity.chain import default_identify
from floodwall.middleware import FloodwallMiddleware
from floodwall.observe.request_log import JsonFormatter
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings

__all__ = [
    "configure_logging",
    "create_app",
    "demo_pool_size",
    "echo",
    "serve",
    "worker_app",
]

logger = logging.getLogger("floodwall")

TOKEN_LIFETIME_SECONDS: Final = 3600
POOL_VARIABLE: Final = "FLOODWALL_DEMO_POOL"
DEFAULT_POOL: Final = 8
MAX_POOL: Final = 1000
POOL_TIMEOUT_SECONDS: Final = 2.0
"""How long ``/api/work`` waits for a free connection before answering 503."""
MAX_MILLISECONDS: Final = 10_000
DEFAULT_EVENTS: Final = 100
MAX_EVENTS: Final = 100_000
"""The most events one `GET /api/stream` sends."""
LOGIN_OFF: Final = (
    "The demo's /login is off: FLOODWALL_JWT_ALGORITHMS names no HMAC algorithm, so the demo "
    "serves your identity provider's tokens (FLOODWALL_JWT_JWKS_URL) and signs none of its own."
)


class _Login(BaseModel):
    user: str = Field(min_length=1, max_length=256)


def _problem(status: int, title: str, detail: str) -> Response:
    return JSONResponse(
        {"type": "about:blank", "title": title, "status": status, "detail": detail},
        status_code=status,
        media_type="application/problem+json",
    )


def demo_pool_size(environ: Mapping[str, str] | None = None) -> int:
    """``FLOODWALL_DEMO_POOL``: connections of the simulated database pool, 1 to 1000."""
    text = (os.environ if environ is None else environ).get(POOL_VARIABLE)
    if text is None:
        return DEFAULT_POOL
    text = text.strip()
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_POOL:
        raise ConfigurationError(
            f"{POOL_VARIABLE}: the demo's database pool is a whole number of connections "
            f"from 1 to {MAX_POOL}"
        )
    return int(text)


def _milliseconds(request: Request, default: int) -> int | Response:
    text = request.query_params.get("ms")
    if text is None:
        return default
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_MILLISECONDS:
        return _problem(
            422,
            "Unprocessable Content",
            f"ms is a whole number of milliseconds from 0 to {MAX_MILLISECONDS}.",
        )
    return int(text)


def _events(request: Request) -> int | Response:
    text = request.query_params.get("n")
    if text is None:
        return DEFAULT_EVENTS
    if not (text.isascii() and text.isdigit()) or int(text) > MAX_EVENTS:
        return _problem(
            422, "Unprocessable Content", f"n is a whole number of events from 0 to {MAX_EVENTS}."
        )
    return int(text)


def _landing_page(base: str, pool_size: int, own_login: bool, admin_on: bool) -> str:
    base = html.escape(base.rstrip("/"))
    console = f'<a href="{base}/admin/console">the operator console</a>'
    admin = (
        f"<p>The admin API is on. Open {console}, sign in with your admin token and watch "
        "the flooding user appear in Top offenders; block them in one click.</p>"
        if admin_on
        else "<p>The admin API is off: no admin token is set, so it refuses every request. "
        "Restart the demo with <code>FLOODWALL_ADMIN_TOKEN</code> set to a random secret of "
        f"at least {ADMIN_TOKEN_MIN_LENGTH} characters (<code>python3 -c 'import secrets; "
        "print(secrets.token_urlsafe(32))'</code> makes one), then sign in to "
        f"{console} with it.</p>"
    )
    login_item = (
        '<code>POST /login {"user": "alice"}</code>: a bearer token (JWT with sub, iat, jti)'
        if own_login
        else html.escape(LOGIN_OFF)
    )
    login = (
        f'TOKEN=$(curl -s -XPOST {base}/login -d \'{{"user": "alice"}}\' | python3 -c '
        "'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')"
    )
    hello = f'curl -i {base}/api/hello -H "Authorization: Bearer $TOKEN"'
    flood = (
        f"for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/api/hello "
        '-H "Authorization: Bearer $TOKEN"; done'
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>floodwall demo</title></head>
<body>
<h1>floodwall demo</h1>
<p>An app behind floodwall, the ASGI middleware that keeps one user from taking down a
backend: every user may send 10 requests a second (a token bucket of 10), and operators can
block a user, revoke their credentials or force a password reset, on every worker at once.</p>
<h2>Try it</h2>
<p>Log in, call the API, then flood it: the first 10 calls pass, the rest get 429.</p>
<pre>{html.escape(login)}
{html.escape(hello)}
{html.escape(flood)}</pre>
<h2>Handle it from a browser</h2>
{admin}
<h2>What is here</h2>
<ul>
<li>{login_item}</li>
<li><code>GET /api/hello</code>: answers the caller</li>
<li><code>GET /api/slow?ms=N</code>: waits N ms (at most {MAX_MILLISECONDS:,})</li>
<li><code>GET /api/work?ms=N</code>: holds one of {pool_size} simulated database connections
for N ms (default 20); 503 after {POOL_TIMEOUT_SECONDS:g} s without a free one</li>
<li><code>WS /ws/echo</code>: echoes each text message; every message counts against
the sender's limit, and a block closes the socket</li>
<li><code>GET /api/stream?n=N&amp;ms=M</code>: server-sent events, N of them (default
{DEFAULT_EVENTS}), one every M ms (default 100); a block ends the stream</li>
<li><a href="{base}/admin/console">/admin/console</a>: the operator console;
<a href="{base}/admin/openapi.json">/admin/openapi.json</a>: the admin API (set
<code>FLOODWALL_ADMIN_TOKEN</code> to use them)</li>
<li><a href="{base}/metrics">/metrics</a>: Prometheus metrics</li>
</ul>
</body></html>
"""


def configure_logging() -> None:
    """JSON lines on stderr for floodwall's loggers, as an operator's pipeline wants them."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter())
    for name in ("floodwall", "floodwall.audit", "floodwall.requests"):
        logger = logging.getLogger(name)
        logger.handlers = [handler]
        logger.setLevel(logging.INFO)
        logger.propagate = False


def create_app(
    settings: FloodwallSettings | None = None,
    *,
    pool_size: int | None = None,
    pool_timeout: float = POOL_TIMEOUT_SECONDS,
) -> Starlette:
    """Build the demo app; without ``FLOODWALL_JWT_SECRET`` a secret is generated, unless
    ``FLOODWALL_JWT_ALGORITHMS`` names no HMAC algorithm: then ``/login`` is off and the demo
    serves the identity provider's tokens only.

    ``pool_size`` defaults to ``FLOODWALL_DEMO_POOL``; ``pool_timeout`` is how long
    ``/api/work`` waits for a connection.
    """
    settings = settings if settings is not None else FloodwallSettings()
    pool_size = pool_size if pool_size is not None else demo_pool_size()
    pool = asyncio.Semaphore(pool_size)
    # The demo signs with the first HMAC algorithm the app accepts, so its tokens verify.
    own_login = bool(settings.hmac_algorithms)
    if own_login and settings.jwt_secret is None:
        settings = settings.model_copy(update={"jwt_secret": SecretStr(secrets.token_urlsafe(64))})
    key = settings.jwt_secret.get_secret_value() if settings.jwt_secret is not None else ""
    algorithm = settings.hmac_algorithms[0] if own_login else ""
    if not own_login:
        logger.warning("floodwall demo: %s", LOGIN_OFF)
    floodwall = Floodwall(settings)
    # One chain for the middleware and the demo's answers: whoever the limit counted is
    # whom /api/hello greets, the identity provider's users included.
    identify = default_identify(settings)

    async def login(request: Request) -> Response:
        if not own_login:
            return _problem(404, "Not Found", LOGIN_OFF)
        try:
            body = _Login.model_validate_json(await request.body())
        except ValidationError:
            return _problem(422, "Unprocessable Content", 'The body must be {"user": "<name>"}.')
        # iat carries milliseconds, so a token issued right after a revocation is not
        # mistaken for one issued before it.
        issued_at = round(time.time(), 3)
        claims = {
            "sub": body.user,
            "iat": issued_at,
            "exp": int(issued_at) + TOKEN_LIFETIME_SECONDS,
            "jti": uuid.uuid4().hex,
        }
        token = jwt.encode(claims, key, algorithm=algorithm)
        return JSONResponse({"access_token": token, "token_type": "bearer"})

    def _caller(request: Request) -> str | None:
        identity = identify.resolve(request.scope)
        if identity is None or identity.anonymous:
            return None
        return identity.user_id

    async def hello(request: Request) -> Response:
        if "authorization" not in request.headers:
            return JSONResponse({"hello": "anonymous"})
        caller = _caller(request)
        if caller is None:
            return _problem(401, "Unauthorized", "The bearer token is not valid.")
        return JSONResponse({"hello": caller})

    async def change_password(request: Request) -> Response:
        # The demo's reset flow: a real app would check and store the new password first.
        caller = _caller(request)
        if caller is None:
            return _problem(401, "Unauthorized", "Sign in first.")
        await floodwall.clear_password_reset(caller, actor="app")
        return JSONResponse({"password_changed": True})

    async def home(request: Request) -> Response:
        admin_on = bool(settings.named_admin_tokens())
        return HTMLResponse(_landing_page(str(request.base_url), pool_size, own_login, admin_on))

    async def slow(request: Request) -> Response:
        ms = _milliseconds(request, 1000)
        if isinstance(ms, Response):
            return ms
        await asyncio.sleep(ms / 1000)
        return JSONResponse({"waited_ms": ms})

    async def work(request: Request) -> Response:
        # A database pool in miniature: a request holds one connection for its whole
        # query, and gives up as a real pool's checkout timeout would.
        ms = _milliseconds(request, 20)
        if isinstance(ms, Response):
            return ms
        try:
            async with asyncio.timeout(pool_timeout):
                await pool.acquire()
        except TimeoutError:
            answer = _problem(
                503,
                "Service Unavailable",
                f"No database connection was free within {pool_timeout:g} s "
                f"(a pool of {pool_size}).",
            )
            answer.headers["retry-after"] = "1"
            return answer
        try:
            await asyncio.sleep(ms / 1000)
        finally:
            pool.release()
        return JSONResponse({"held_ms": ms, "pool": pool_size})

    async def stream(request: Request) -> Response:
        count = _events(request)
        if isinstance(count, Response):
            return count
        ms = _milliseconds(request, 100)
        if isinstance(ms, Response):
            return ms
        stream = _event_stream(count, ms, _caller(request))
        return StreamingResponse(stream, media_type="text/event-stream")

    app = Starlette(
        routes=[
            Route("/", home, methods=["GET"]),
            Route("/login", login, methods=["POST"]),
            Route("/api/hello", hello, methods=["GET"]),
            Route("/api/slow", slow, methods=["GET"]),
            Route("/api/work", work, methods=["GET"]),
            Route("/api/stream", stream, methods=["GET"]),
            WebSocketRoute("/ws/echo", echo),
            Route("/account/password", change_password, methods=["POST"]),
            floodwall.admin_mount("/admin"),
            # A Route, not a Mount: /metrics itself answers, with no redirect to /metrics/.
            Route("/metrics", floodwall.metrics.asgi_app(), methods=["GET"]),
        ],
        middleware=[
            Middleware(
                FloodwallMiddleware,
                floodwall=floodwall,
                identify=identify,
                # Operators must never be rate limited out of their own kill switch.
                exempt_paths=["/admin", "/metrics"],
                password_reset_paths=["/account/password"],
            )
        ],
    )
    app.state.floodwall = floodwall
    return app


async def echo(websocket: WebSocket) -> None:
    """``WS /ws/echo``: each text message sent back, until the client goes."""
    await websocket.accept()
    try:
        while True:
            await websocket.send_text(await websocket.receive_text())
    except WebSocketDisconnect:
        pass


async def _event_stream(count: int, ms: int, caller: str | None) -> AsyncIterator[str]:
    sent = 0
    try:
        for sent in range(1, count + 1):
            yield f"id: {sent}\ndata: event {sent} of {count}\n\n"
            await asyncio.sleep(ms / 1000)
    finally:
        if sent < count:
            # The client went, or floodwall ended the stream (the app saw http.disconnect).
            logger.info(
                "floodwall demo: a stream ended after %d of %d events",
                sent,
                count,
                extra={"fields": {"user_id": caller}},
            )


def worker_app() -> Starlette:
    """The app of one worker of ``floodwall demo --workers N`` (uvicorn's factory)."""
    configure_logging()
    return create_app()


def serve(host: str, port: int, workers: int = 1) -> None:
    """Serve the demo with uvicorn (the ``demo`` extra); the settings and the pool size are
    checked here first, so a bad one is one line before any worker starts."""
    import uvicorn

    settings = FloodwallSettings()
    demo_pool_size()
    if workers > 1 and settings.redis_url is None:
        # Each worker would limit and block on its own: three workers, three times the
        # limit, and a block that holds in one worker of three.
        raise ConfigurationError(
            f"--workers {workers} needs FLOODWALL_REDIS_URL: the in-memory store lives in one "
            "process, so each worker would limit and block on its own"
        )
    # X-Forwarded-For is believed from FLOODWALL_TRUSTED_PROXIES only, by the middleware;
    # uvicorn's own reading would believe 127.0.0.1 by default.
    options: dict[str, Any] = {"host": host, "port": port, "proxy_headers": False}
    if workers == 1:
        configure_logging()
        uvicorn.run(create_app(settings), **options)
        return
    # Workers are new processes that each build the app: they share what they find in the
    # environment. One JWT secret, so a token from one worker verifies on the others; one
    # metrics directory, so a scrape of any worker shows them all.
    if settings.hmac_algorithms:
        os.environ.setdefault("FLOODWALL_JWT_SECRET", secrets.token_urlsafe(64))
    made = None
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        made = os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="floodwall-")
    configure_logging()
    try:
        uvicorn.run("floodwall.demo:worker_app", factory=True, workers=workers, **options)
    finally:
        if made is not None:
            shutil.rmtree(made, ignore_errors=True)
