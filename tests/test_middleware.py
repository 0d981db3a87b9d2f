"""The middleware inside real Starlette and FastAPI apps, driven over httpx's ASGI transport."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect
from uvicorn.lifespan.on import LifespanOn

from floodwall import (
    ConfigurationError,
    Floodwall,
    FloodwallMiddleware,
    FloodwallSettings,
    MemoryStore,
)
from floodwall.core import rules

SLOW: dict[str, Any] = {"rate": 0.001, "burst": 3, "user_header": "x-user"}


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"client": request.client.host if request.client else None})


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_text("hi")
    await websocket.close()


def starlette_app(floodwall: Floodwall, **options: Any) -> Starlette:
    return Starlette(
        routes=[
            Route("/api/hello", hello),
            Route("/api/search", hello),
            Route("/health", lambda request: PlainTextResponse("ok")),
            WebSocketRoute("/ws", echo),
        ],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall, **options)],
    )


def fastapi_app(floodwall: Floodwall) -> FastAPI:
    app = FastAPI()

    @app.get("/api/hello")
    async def fastapi_hello() -> dict[str, str]:
        return {"hello": "world"}

    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
    return app


def client_for(app: Any, address: str = "192.0.2.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 40000))
    return httpx.AsyncClient(transport=transport, base_url="http://testserver")


@pytest.fixture
def floodwall() -> Floodwall:
    return Floodwall(FloodwallSettings(**SLOW))


@pytest.mark.parametrize("make_app", [starlette_app, fastapi_app])
async def test_limited_requests_get_a_problem_with_retry_after(
    floodwall: Floodwall, make_app: Any
) -> None:
    async with client_for(make_app(floodwall)) as client:
        allowed = [await client.get("/api/hello", headers={"x-user": "alice"}) for _ in range(3)]
        limited = await client.get("/api/hello", headers={"x-user": "alice"})
    assert [r.status_code for r in allowed] == [200, 200, 200]
    assert [r.headers["ratelimit"] for r in allowed] == [
        '"user";r=2;t=1000',
        '"user";r=1;t=2000',
        '"user";r=0;t=3000',
    ]
    assert allowed[0].headers["ratelimit-policy"] == '"user";q=3;w=3000'
    assert limited.status_code == 429
    assert limited.headers["content-type"] == "application/problem+json"
    assert limited.headers["retry-after"] == "1000"
    assert limited.headers["ratelimit"] == '"user";r=0;t=1000'
    body = limited.json()
    assert body["type"].endswith("quota-exceeded")
    assert body["status"] == 429
    assert body["title"] == "Too Many Requests"
    assert int(limited.headers["content-length"]) == len(limited.content)


async def test_one_limited_user_leaves_others_alone(floodwall: Floodwall) -> None:
    async with client_for(starlette_app(floodwall)) as client:
        for _ in range(5):
            await client.get("/api/hello", headers={"x-user": "mallory"})
        assert (await client.get("/api/hello", headers={"x-user": "mallory"})).status_code == 429
        others = [
            await client.get("/api/hello", headers={"x-user": name}) for name in ("alice", "bob")
        ]
        anonymous = await client.get("/api/hello")
    assert [r.status_code for r in others] == [200, 200]
    assert anonymous.status_code == 200
    assert anonymous.headers["ratelimit"].startswith('"anonymous";r=2;')


async def test_anonymous_clients_are_limited_by_address(floodwall: Floodwall) -> None:
    app = starlette_app(floodwall)
    async with client_for(app, "198.51.100.1") as first, client_for(app, "198.51.100.2") as second:
        statuses = [(await first.get("/api/hello")).status_code for _ in range(4)]
        other = await second.get("/api/hello")
    assert statuses == [200, 200, 200, 429]
    assert other.status_code == 200


async def test_exempt_paths_are_never_counted(floodwall: Floodwall) -> None:
    app = starlette_app(floodwall, exempt_paths=["/health"])
    async with client_for(app) as client:
        health = [await client.get("/health", headers={"x-user": "a"}) for _ in range(10)]
        first = await client.get("/api/hello", headers={"x-user": "a"})
    assert {r.status_code for r in health} == {200}
    assert "ratelimit" not in health[0].headers
    assert first.headers["ratelimit"].startswith('"user";r=2;')


async def test_route_costs(floodwall: Floodwall) -> None:
    app = starlette_app(floodwall, route_costs={"/api/search": 2})
    async with client_for(app) as client:
        search = await client.get("/api/search", headers={"x-user": "a"})
        again = await client.get("/api/search", headers={"x-user": "a"})
        hello_ = await client.get("/api/hello", headers={"x-user": "a"})
    assert search.headers["ratelimit"].startswith('"user";r=1;')
    assert again.status_code == 429
    assert hello_.status_code == 200


async def _uvicorn_startup(app: Any) -> tuple[bool, list[str]]:
    """Whether uvicorn (``lifespan=auto``, as ``uvicorn.run`` defaults) exits at start, and
    the lines it logged."""
    config = uvicorn.Config(app, lifespan="auto", proxy_headers=False, log_config=None)
    config.load()
    lifespan = LifespanOn(config)
    records: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    uvicorn_logger = logging.getLogger("uvicorn.error")
    level = uvicorn_logger.level
    uvicorn_logger.setLevel(logging.INFO)
    uvicorn_logger.addHandler(handler)
    try:
        await lifespan.startup()
        if not lifespan.should_exit:
            await lifespan.shutdown()
    finally:
        uvicorn_logger.removeHandler(handler)
        uvicorn_logger.setLevel(level)
    return lifespan.should_exit, records


@pytest.mark.parametrize("cost", [0, 1001, 2.5, True])
async def test_route_costs_follow_the_rule_book(floodwall: Floodwall, cost: object) -> None:
    # Starlette builds its middleware inside the first lifespan call: the refusal must fail
    # the startup (uvicorn exits), not read as "lifespan unsupported" and then serve 500s.
    app = starlette_app(floodwall, route_costs={"/x": cost})
    exits, lines = await _uvicorn_startup(app)
    assert exits
    assert f"floodwall: {rules.COST.message}" in lines
    assert not any("unsupported" in line for line in lines)
    # Without a lifespan, each request raises the same one line.
    with pytest.raises(ConfigurationError, match=f"^floodwall: {rules.COST.message}$"):
        async with client_for(app) as client:
            await client.get("/api/hello")


async def test_an_exempt_path_of_root_fails_the_start(floodwall: Floodwall) -> None:
    exits, lines = await _uvicorn_startup(starlette_app(floodwall, exempt_paths=["/health", "/"]))
    assert exits
    assert any(line.startswith("floodwall: an exempt path of / ") for line in lines)


_MISCONFIGURED_SERVER = """
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from floodwall import Floodwall, FloodwallMiddleware

middleware = Middleware(FloodwallMiddleware, floodwall=Floodwall(), route_costs={"/x": 0})
uvicorn.run(Starlette(middleware=[middleware]), host="127.0.0.1", port=0)
"""


def test_a_misconfigured_middleware_makes_uvicorn_exit_non_zero() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    result = subprocess.run(
        [sys.executable, "-c", _MISCONFIGURED_SERVER],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 3  # uvicorn's STARTUP_FAILURE
    assert f"floodwall: {rules.COST.message}" in result.stderr
    assert "Application startup failed. Exiting." in result.stderr
    assert "unsupported" not in result.stderr


async def test_a_working_middleware_starts_under_uvicorn(floodwall: Floodwall) -> None:
    exits, lines = await _uvicorn_startup(starlette_app(floodwall))
    assert not exits
    assert not any("unsupported" in line or "failed" in line for line in lines)


async def test_headers_on_allowed_responses_can_be_turned_off() -> None:
    floodwall = Floodwall(FloodwallSettings(**SLOW, rate_limit_headers=False))
    async with client_for(starlette_app(floodwall)) as client:
        response = await client.get("/api/hello", headers={"x-user": "a"})
    assert response.status_code == 200
    assert "ratelimit" not in response.headers


async def test_a_custom_identify_replaces_the_chain(floodwall: Floodwall) -> None:
    from floodwall import Identity

    async def by_tenant(scope: Any) -> Identity | None:
        for key, value in scope["headers"]:
            if key == b"x-tenant":
                return Identity("tenant-" + value.decode())
        return None

    app = starlette_app(floodwall, identify=by_tenant)
    async with client_for(app) as client:
        for user in ("a", "b", "c"):
            await client.get("/api/hello", headers={"x-tenant": "acme", "x-user": user})
        shared = await client.get("/api/hello", headers={"x-tenant": "acme", "x-user": "d"})
    assert shared.status_code == 429


async def test_forwarded_for_is_trusted_only_from_trusted_proxies() -> None:
    floodwall = Floodwall(FloodwallSettings(**SLOW, trusted_proxies=["10.0.0.1"]))
    app = starlette_app(floodwall)
    spoof = {"x-forwarded-for": "203.0.113.9"}
    async with client_for(app, "10.0.0.1") as proxy, client_for(app, "198.51.100.7") as direct:
        via_proxy = [(await proxy.get("/api/hello", headers=spoof)) for _ in range(4)]
        spoofed = await direct.get("/api/hello", headers=spoof)
    assert via_proxy[0].json() == {"client": "203.0.113.9"}
    assert [r.status_code for r in via_proxy] == [200, 200, 200, 429]
    # An untrusted client's X-Forwarded-For is ignored: it has its own, full bucket.
    assert spoofed.status_code == 200
    assert spoofed.json() == {"client": "198.51.100.7"}


class RecordingStore(MemoryStore):
    """A real MemoryStore that also records when the service starts and stops it."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[str] = []

    async def start(self) -> None:
        self.events.append("start")

    async def close(self) -> None:
        self.events.append("close")


def test_the_service_starts_and_stops_with_the_lifespan() -> None:
    store = RecordingStore()
    app = starlette_app(Floodwall(FloodwallSettings(**SLOW), store=store))
    with TestClient(app) as client:
        assert store.events == ["start"]
        assert client.get("/api/hello").status_code == 200
        assert store.events == ["start"]
    assert store.events == ["start", "close"]


def test_websockets_are_checked_at_connect(floodwall: Floodwall) -> None:
    with TestClient(starlette_app(floodwall)) as client:
        for _ in range(3):
            with client.websocket_connect("/ws", headers={"x-user": "a"}) as websocket:
                assert websocket.receive_text() == "hi"
        from starlette.testclient import WebSocketDenialResponse

        with (
            pytest.raises(WebSocketDenialResponse) as denied,
            client.websocket_connect("/ws", headers={"x-user": "a"}),
        ):
            pass
    assert denied.value.status_code == 429
    assert json.loads(denied.value.content)["type"].endswith("quota-exceeded")


async def test_websockets_without_the_denial_extension_are_closed(floodwall: Floodwall) -> None:
    app = starlette_app(floodwall)
    sent: list[dict[str, Any]] = []
    for _ in range(4):
        sent.clear()
        messages: Iterator[dict[str, Any]] = iter(
            [{"type": "websocket.connect"}, {"type": "websocket.disconnect", "code": 1000}]
        )

        async def receive(messages: Iterator[dict[str, Any]] = messages) -> dict[str, Any]:
            return next(messages)

        async def send(message: Any) -> None:
            sent.append(dict(message))

        scope = {
            "type": "websocket",
            "path": "/ws",
            "headers": [(b"x-user", b"a")],
            "client": ("192.0.2.1", 1),
            "query_string": b"",
            "subprotocols": [],
        }
        with contextlib.suppress(WebSocketDisconnect):
            await app(scope, receive, send)
    assert sent == [{"type": "websocket.close", "code": 1008, "reason": ""}]


async def test_other_scopes_pass_straight_through(floodwall: Floodwall) -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = FloodwallMiddleware(inner, floodwall=floodwall)
    await middleware({"type": "custom"}, None, None)  # type: ignore[arg-type]
    assert seen == ["custom"]
