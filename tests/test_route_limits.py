"""Per-endpoint limits on real Starlette and FastAPI apps: route templates as the router
matches them, methods, several limits in the one EVALSHA, limits by client address, exact
across two instances on a real Redis and the real Cluster, and changed live."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from cli_process import floodwall_command
from fastapi import APIRouter, Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from floodwall import (
    Floodwall,
    FloodwallMiddleware,
    FloodwallSettings,
    Identity,
    RedisStore,
    RuleError,
)
from floodwall.core.route_limits import RouteTable, parse_route_limits, route_limit
from floodwall.limiting.routes import AppRoutes, RateLimit, app_routes, limit
from harness import RedisCluster, RedisServer, client_commands, wait_until_async

HIGH: dict[str, Any] = {"rate": 1000, "burst": 1000}


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def starlette_app(floodwall: Floodwall, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/items/{item_id}", ok),
            Route("/items/{item_id}/export", ok, methods=["GET", "POST"]),
            Route("/items/{item_id}/export/raw", ok),
            Route("/login", ok, methods=["POST"]),
            Route("/files/{path:path}", ok),
        ]
    )
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall, **options)
    return app


def client(app: Any, address: str = "127.0.0.1") -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, client=(address, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://app")


async def statuses(
    http: httpx.AsyncClient, method: str, path: str, count: int, user: str | None = None
) -> list[int]:
    headers = {"x-user": user} if user else {}
    return [(await http.request(method, path, headers=headers)).status_code for _ in range(count)]


@pytest.fixture
async def memory() -> AsyncIterator[Floodwall]:
    floodwall = Floodwall(FloodwallSettings(user_header="x-user", **HIGH))
    yield floodwall
    await floodwall.stop()


async def test_a_template_matches_what_the_router_matches_not_a_prefix(
    memory: Floodwall,
) -> None:
    app = starlette_app(memory, route_limits={"GET /items/{item_id}/export": "2/minute"})
    async with client(app) as http:
        assert await statuses(http, "GET", "/items/7/export", 3, "alice") == [200, 200, 429]
        # Another item is the same route: one window per user and route.
        assert await statuses(http, "GET", "/items/8/export", 1, "alice") == [429]
        assert await statuses(http, "GET", "/items/7/export/raw", 3, "alice") == [200] * 3
        assert await statuses(http, "GET", "/items/7", 3, "alice") == [200] * 3
        # Another method, another user: not this limit.
        assert await statuses(http, "POST", "/items/7/export", 3, "alice") == [200] * 3
        assert await statuses(http, "GET", "/items/7/export", 2, "bob") == [200, 200]


async def test_a_refusal_names_the_routes_policy(memory: Floodwall) -> None:
    app = starlette_app(memory, route_limits={"/files/{path:path}": "1/minute"})
    async with client(app) as http:
        assert (await http.get("/files/a/b/c", headers={"x-user": "a"})).status_code == 200
        refused = await http.get("/files/x", headers={"x-user": "a"})
    assert refused.status_code == 429
    assert refused.headers["ratelimit-policy"] == '"/files/{path:path}";q=1;w=60'
    assert refused.json()["policy"] == "/files/{path:path}"
    assert 55 <= int(refused.headers["retry-after"]) <= 60


async def test_routes_limited_by_address_count_every_user_behind_it() -> None:
    settings = FloodwallSettings(
        user_header="x-user", route_limits="POST /login=3/minute@address", **HIGH
    )
    floodwall = Floodwall(settings)
    app = starlette_app(floodwall)
    try:
        async with client(app, "198.51.100.7") as office:
            tries = [await statuses(office, "POST", "/login", 1, f"user-{n}") for n in range(5)]
        assert [t[0] for t in tries] == [200, 200, 200, 429, 429]
        # One user from many addresses: each address has its own window.
        for n in range(5):
            async with client(app, f"203.0.113.{n}") as elsewhere:
                assert await statuses(elsewhere, "POST", "/login", 1, "mallory") == [200]
    finally:
        await floodwall.stop()


async def test_limits_declared_on_starlette_endpoints_and_fastapi_routes() -> None:
    @limit("2/minute")
    async def export(request: Request) -> PlainTextResponse:
        return PlainTextResponse("exported")

    starlette = Starlette(
        routes=[Mount("/api", routes=[Route("/export/{item}", export, methods=["POST"])])]
    )
    floodwall = Floodwall(FloodwallSettings(user_header="x-user", **HIGH))
    starlette.add_middleware(FloodwallMiddleware, floodwall=floodwall)

    fastapi = FastAPI()

    @fastapi.post("/login", dependencies=[Depends(RateLimit("1/minute", by="address"))])
    async def login() -> dict[str, str]:
        return {"ok": "yes"}

    @fastapi.get("/report/{name}")
    async def report(name: str, _: None = Depends(RateLimit("2/minute"))) -> dict[str, str]:
        return {"report": name}

    other = Floodwall(FloodwallSettings(user_header="x-user", **HIGH))
    fastapi.add_middleware(FloodwallMiddleware, floodwall=other)
    try:
        async with client(starlette) as http:
            assert await statuses(http, "POST", "/api/export/1", 3, "a") == [200, 200, 429]
        async with client(fastapi) as http:
            assert await statuses(http, "POST", "/login", 2, "a") == [200, 429]
            assert await statuses(http, "POST", "/login", 1, "b") == [429]  # same address
            assert await statuses(http, "GET", "/report/x", 3, "a") == [200, 200, 429]
    finally:
        await floodwall.stop()
        await other.stop()


async def test_route_costs_can_be_templates(memory: Floodwall) -> None:
    settings = FloodwallSettings(user_header="x-user", rate=0.001, burst=10)
    floodwall = Floodwall(settings)
    app = starlette_app(floodwall, route_costs={"GET /items/{item_id}/export": 5})
    try:
        async with client(app) as http:
            assert await statuses(http, "GET", "/items/1/export", 3, "a") == [200, 200, 429]
            assert await statuses(http, "GET", "/items/1/export/raw", 1, "b") == [200]
    finally:
        await floodwall.stop()


def test_bad_route_limits_are_refused_in_one_line() -> None:
    for text, message in [
        ("POST /login", "FLOODWALL_ROUTE_LIMITS is 'METHOD /path=N/period;...'"),
        ("login=5/minute", "a route is 'METHOD /path/{param}' or '/path/{param}'"),
        ("/login=0/minute", "a route limit is a whole number of requests from 1 to 10000"),
        ("/login=5/fortnight", "a route limit is 'N/period', such as 5/minute (route /login)"),
    ]:
        with pytest.raises(RuleError, match=f"^{_escape(message)}$"):
            parse_route_limits(text)
    with pytest.raises(RuleError, match=r"^the route /a has two limits$"):
        RouteTable(parse_route_limits("/a=1/second;/a=2/second"))
    with pytest.raises(ValueError, match="FLOODWALL_ROUTE_LIMITS"):
        FloodwallSettings(route_limits="/x=0/minute")
    with pytest.raises(ValueError, match="FLOODWALL_ROUTE_LIMITS: the route /a has two limits"):
        FloodwallSettings(route_limits="/a=1/second;/a=2/second")


async def test_a_mistake_in_the_middlewares_own_limits_fails_the_startup() -> None:
    # Raised when the app builds its middleware stack, it would answer 500 to every request.
    floodwall = Floodwall(FloodwallSettings(user_header="x-user", **HIGH))
    app = starlette_app(floodwall, route_limits={"POST /login": "5/fortnight"})
    async with lifespan(app) as started:
        assert started == {
            "type": "lifespan.startup.failed",
            "message": "floodwall: a route limit is 'N/period', such as 5/minute (route /login)",
        }
    await floodwall.stop()


@pytest.mark.parametrize(
    "entry", ["POST /login=5/minute,GET /items/{item_id}=1/second", "POST /login=5/minute,1/second"]
)
def test_a_comma_between_entries_is_named_with_its_entry(entry: str) -> None:
    # "5/minute,1/second" would otherwise be read as its first rate alone.
    message = f"the entry '{entry}' holds two limits: separate entries with ';', not ','"
    with pytest.raises(RuleError, match=f"^{_escape(message)}$"):
        parse_route_limits(f"GET /files/{{path:path}}=1/second; {entry} ")
    with pytest.raises(ValueError, match=_escape(f"FLOODWALL_ROUTE_LIMITS: {message}")):
        FloodwallSettings(route_limits=entry)


def _escape(text: str) -> str:
    return "".join("\\" + c if c in "^$.*+?()[]{}|\\" else c for c in text)


async def test_several_limits_cost_one_evalsha(redis_server: RedisServer) -> None:
    floodwall = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, user_header="x-user", redis_timeout=2, **HIGH)
    )
    app = starlette_app(
        floodwall,
        route_limits={
            "GET /items/{item_id}/export": "100/minute",
            "/items/{item_id}/export": "200/hour",
            "GET /items/{id}/export": "300/day",
        },
    )
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    try:
        async with client(app) as http:
            assert await statuses(http, "GET", "/items/1/export", 1, "warm-up") == [200]
            await asyncio.wait_for(floodwall.following.wait(), 10)
            with client_commands(redis_server.port) as seen:
                got = [
                    await statuses(http, "GET", "/items/1/export", 1, f"u{n}") for n in range(20)
                ]
        assert got == [[200]] * 20
        assert seen.count("EVALSHA") == 20
        keys = await raw.keys("floodwall:{u:u3}:window:*")
        assert len(keys) == 3
    finally:
        await raw.aclose()
        await floodwall.stop()


async def _exact_across_two(settings: FloodwallSettings, user: str) -> list[int]:
    instances = [Floodwall(settings), Floodwall(settings)]
    apps = [starlette_app(f, route_limits={"POST /login": "7/minute"}) for f in instances]
    try:
        async with client(apps[0]) as first, client(apps[1]) as second:
            # Connected first: redis-py's cluster client races opening its first
            # connections under concurrent commands (an AttributeError of its own).
            for floodwall in instances:
                await floodwall.start()
                await floodwall.check(Identity("warm-up"))

            async def one(n: int) -> int:
                http = first if n % 2 else second
                response = await http.post("/login", headers={"x-user": user})
                return response.status_code

            return list(await asyncio.gather(*(one(n) for n in range(40))))
    finally:
        for floodwall in instances:
            await floodwall.stop()


async def test_exact_across_two_instances_on_redis(redis_server: RedisServer) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url,
        user_header="x-user",
        key_prefix="exact",
        redis_timeout=2,
        **HIGH,
    )
    got = await _exact_across_two(settings, "one-user")
    assert got.count(200) == 7
    assert got.count(429) == 33


@pytest.fixture
def cluster_url(redis_cluster: RedisCluster) -> str:
    return f"redis://127.0.0.1:{redis_cluster.ports[0]}"


async def test_exact_across_two_instances_on_the_cluster(cluster_url: str) -> None:
    settings = FloodwallSettings(
        redis_url=cluster_url,
        redis_cluster=True,
        user_header="x-user",
        key_prefix="exact-cluster",
        redis_timeout=2,
        **HIGH,
    )
    got = await _exact_across_two(settings, "cluster-user")
    assert got.count(200) == 7
    # A limit by address would need two slots in one script: refused where it is set.
    by_address = settings.model_copy(update={"route_limits": "/login=1/second@address"})
    floodwall = Floodwall(by_address)
    assert isinstance(floodwall.store, RedisStore)
    async with lifespan(starlette_app(floodwall)) as started:
        assert started == {
            "type": "lifespan.startup.failed",
            "message": "floodwall: route limits by address need one Redis, not a Redis Cluster",
        }
    await floodwall.stop()


async def test_a_routes_limit_changes_live_on_every_worker(redis_server: RedisServer) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url, user_header="x-user", key_prefix="live-routes", **HIGH
    )
    acting, serving = Floodwall(settings), Floodwall(settings)
    app = starlette_app(serving, route_limits={"POST /login": "2/minute"})
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 5)
    try:
        await acting.set_route_default("post /login", "4/minute")
        await wait_until_async(
            lambda: "POST /login" in serving.limits.routes, "the change arrives", within=1
        )
        async with client(app) as http:
            assert await statuses(http, "POST", "/login", 5, "a") == [200] * 4 + [429]
            # d's windows are worked out now, at 4 a minute; the clear below must reach them.
            assert await statuses(http, "POST", "/login", 1, "d") == [200]
            # One user's own limit wins over everyone's.
            await acting.set_route_limit("b", "POST /login", "1/minute")
            assert await statuses(http, "POST", "/login", 2, "b") == [200, 429]
            status = await acting.status("b")
            assert status.route_limits == {"POST /login": (1, 60_000_000)}
            await acting.clear_route_default("POST /login")
            await wait_until_async(
                lambda: "POST /login" not in serving.limits.routes, "the clear arrives", within=1
            )
            assert await statuses(http, "POST", "/login", 3, "c") == [200, 200, 429]
            assert await statuses(http, "POST", "/login", 2, "d") == [200, 429]
        records, _ = await acting.audit_log()
        assert [r.action for r in records[:3]] == [
            "clear-route-default",
            "set-route-limit",
            "set-route-default",
        ]
        assert records[1].user_id == "b"
        assert records[0].user_id is None
    finally:
        await acting.stop()
        await serving.stop()


async def test_route_limits_hold_at_this_workers_share_while_redis_is_down(
    tmp_path: Path,
) -> None:
    with RedisServer.start(tmp_path) as server:
        floodwall = Floodwall(
            FloodwallSettings(
                redis_url=server.url,
                redis_timeout=0.5,
                user_header="x-user",
                expected_instances=2,
                fail_mode="open",
                **HIGH,
            )
        )
        app = starlette_app(floodwall, route_limits={"POST /login": "4/minute"})
        try:
            async with client(app) as http:
                assert await statuses(http, "POST", "/login", 1, "warm-up") == [200]
                server.kill()
                # Half of 4 a minute on this worker of two; other routes are not limited.
                refused = await statuses(http, "POST", "/login", 3, "u1")
                assert refused == [200, 200, 429]
                answer = await http.post("/login", headers={"x-user": "u1"})
                assert answer.json()["policy"] == "POST /login"
                assert await statuses(http, "GET", "/items/1", 5, "u1") == [200] * 5
                assert await statuses(http, "POST", "/login", 2, "u2") == [200, 200]
        finally:
            await floodwall.stop()


@contextlib.asynccontextmanager
async def lifespan(app: Any) -> AsyncIterator[dict[str, Any]]:
    """Runs ``app``'s lifespan as a server does; yields the answer to the startup."""
    incoming: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    answered: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    async def send(message: dict[str, Any]) -> None:
        await answered.put(message)

    await incoming.put({"type": "lifespan.startup"})
    scope = {"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}
    task = asyncio.create_task(app(scope, incoming.get, send))
    try:
        yield await asyncio.wait_for(answered.get(), 5)
    finally:
        await incoming.put({"type": "lifespan.shutdown"})
        with contextlib.suppress(Exception):
            await asyncio.wait_for(task, 5)


@limit("5/minute")
async def login(request: Request) -> PlainTextResponse:
    return PlainTextResponse("in")


async def test_the_variable_wins_over_a_limit_declared_in_code(
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = FloodwallSettings(user_header="x-user", route_limits="POST /login=2/minute", **HIGH)
    floodwall = Floodwall(settings)
    app = Starlette(routes=[Route("/login", login, methods=["POST"])])
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
    api = FastAPI()

    @api.post("/login", dependencies=[Depends(RateLimit("5/minute"))])
    async def fastapi_login() -> str:
        return "in"

    api.add_middleware(FloodwallMiddleware, floodwall=Floodwall(settings))
    for served in (app, api):
        caplog.clear()
        with caplog.at_level(logging.WARNING, "floodwall"):
            async with lifespan(served) as started, client(served) as http:
                assert started["type"] == "lifespan.startup.complete"
                assert await statuses(http, "POST", "/login", 3, "a") == [200, 200, 429]
                assert await statuses(http, "GET", "/nowhere", 1, "a") == [404]
        overrides = [r.getMessage() for r in caplog.records if "over the one" in r.getMessage()]
        assert overrides == [
            "floodwall: FLOODWALL_ROUTE_LIMITS sets the limit of POST /login, over the one "
            "declared in code"
        ]


async def test_the_variable_wins_over_the_middlewares_route_limits(memory: Floodwall) -> None:
    # A key without a method covers the route's every method.
    settings = FloodwallSettings(user_header="x-user", route_limits="/login=3/minute", **HIGH)
    app = starlette_app(Floodwall(settings), route_limits={"POST /login": "1/minute"})
    async with lifespan(app) as started, client(app) as http:
        assert started["type"] == "lifespan.startup.complete"
        assert await statuses(http, "POST", "/login", 4, "a") == [200, 200, 200, 429]


@pytest.mark.parametrize(
    ("variable", "given", "named"),
    [
        (
            "GET /exports/{report_id}=1/minute",
            {},
            "FLOODWALL_ROUTE_LIMITS: 'GET /exports/{report_id}'",
        ),
        ("POST /login/=1/minute", {}, "FLOODWALL_ROUTE_LIMITS: 'POST /login/'"),
        ("DELETE /login=1/minute", {}, "FLOODWALL_ROUTE_LIMITS: 'DELETE /login'"),
        ("", {"GET /item/{item_id}": "1/minute"}, "route_limits: 'GET /item/{item_id}'"),
    ],
)
async def test_a_key_that_names_no_route_stops_the_start(
    variable: str, given: dict[str, str], named: str
) -> None:
    settings = FloodwallSettings(user_header="x-user", route_limits=variable, **HIGH)
    floodwall = Floodwall(settings)
    app = starlette_app(floodwall, route_limits=given)
    async with lifespan(app) as started:
        assert started["type"] == "lifespan.startup.failed"
        message = started["message"]
    assert message.startswith(f"floodwall: {named} names no route of the app")
    assert "\n" not in message
    await floodwall.stop()


async def test_keys_name_routes_whatever_their_parameters_are_called(memory: Floodwall) -> None:
    app = starlette_app(
        memory,
        route_limits={"GET /items/{id}/export": "1/minute", "/files/{rest:path}": "9/minute"},
    )
    async with lifespan(app) as started:
        assert started["type"] == "lifespan.startup.complete"


def test_a_server_exits_when_a_key_names_no_route(tmp_path: Path) -> None:
    (tmp_path / "served.py").write_text(
        "from starlette.applications import Starlette\n"
        "from starlette.responses import PlainTextResponse\n"
        "from starlette.routing import Route\n"
        "from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings\n"
        "app = Starlette(routes=[Route('/login', PlainTextResponse, methods=['POST'])])\n"
        "app.add_middleware(FloodwallMiddleware, floodwall=Floodwall(FloodwallSettings()))\n"
    )
    environment = {**os.environ, "FLOODWALL_ROUTE_LIMITS": "POST /login/=5/minute"}
    command = [sys.executable, "-m", "uvicorn", "served:app", "--port", "0"]
    ran = subprocess.run(
        command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=60
    )
    assert ran.returncode == 3
    failures = [line for line in ran.stderr.splitlines() if "floodwall:" in line]
    assert failures == [
        "ERROR:    floodwall: FLOODWALL_ROUTE_LIMITS: 'POST /login/' names no route of the app "
        "(write the route as its router declares it: 'METHOD /path/{param}')"
    ]


async def test_limits_on_included_routers_and_mounts_are_found() -> None:
    inner = APIRouter(prefix="/v1", dependencies=[Depends(RateLimit("3/minute"))])

    @inner.get("/report/{name}")
    async def report(name: str) -> str:
        return name

    api = APIRouter()

    @api.post("/login", dependencies=[Depends(RateLimit("1/minute"))])
    async def fastapi_login() -> str:
        return "in"

    api.include_router(inner, prefix="/reports")
    app = FastAPI()
    app.include_router(api, prefix="/api")
    app.mount("/legacy", Starlette(routes=[Route("/login", login, methods=["POST"])]))
    settings = FloodwallSettings(
        user_header="x-user", route_limits="GET /api/reports/v1/report/{name}=2/minute", **HIGH
    )
    app.add_middleware(FloodwallMiddleware, floodwall=Floodwall(settings))
    async with lifespan(app) as started, client(app) as http:
        assert started["type"] == "lifespan.startup.complete"
        assert await statuses(http, "POST", "/api/login", 2, "a") == [200, 429]
        # The variable's limit and the router's own, both on the route.
        assert await statuses(http, "GET", "/api/reports/v1/report/x", 3, "a") == [200, 200, 429]
        assert await statuses(http, "POST", "/legacy/login", 6, "a") == [200] * 5 + [429]


async def test_a_head_request_counts_as_the_get_it_runs(memory: Floodwall) -> None:
    app = starlette_app(memory, route_limits={"GET /items/{item_id}/export": "2/minute"})
    async with client(app) as http:
        assert await statuses(http, "GET", "/items/1/export", 1, "a") == [200]
        assert await statuses(http, "HEAD", "/items/1/export", 2, "a") == [200, 429]
        assert await statuses(http, "GET", "/items/1/export", 1, "a") == [429]
    costly = Floodwall(FloodwallSettings(user_header="x-user", rate=0.001, burst=10))
    app = starlette_app(costly, route_costs={"GET /items/{item_id}/export": 5})
    try:
        async with client(app) as http:
            assert await statuses(http, "HEAD", "/items/1/export", 3, "a") == [200, 200, 429]
    finally:
        await costly.stop()


async def test_paths_are_matched_below_the_root_path(memory: Floodwall) -> None:
    protected = starlette_app(
        memory, route_limits={"POST /login": "2/minute"}, exempt_paths=["/items"]
    )
    # As `uvicorn --root-path /api` serves it, and as a Starlette Mount does.
    served = httpx.ASGITransport(app=protected, root_path="/api", client=("127.0.0.1", 1))
    mounted = Starlette(routes=[Mount("/api", app=protected)])
    for transport, user in [(served, "a"), (httpx.ASGITransport(app=mounted), "b")]:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as http:
            assert await statuses(http, "POST", "/api/login", 3, user) == [200, 200, 429]
            answer = await http.post("/api/login", headers={"x-user": user})
            assert answer.json()["policy"] == "POST /login"
    strict = Floodwall(FloodwallSettings(user_header="x-user", rate=0.001, burst=1))
    protected = starlette_app(strict, exempt_paths=["/items"])
    mounted = Starlette(routes=[Mount("/api", app=protected)])
    try:
        async with client(mounted) as http:
            assert await statuses(http, "GET", "/api/items/1", 4, "c") == [200] * 4
            assert await statuses(http, "GET", "/api/files/x", 2, "c") == [200, 429]
    finally:
        await strict.stop()


async def test_a_live_limit_applies_to_a_route_the_app_gives_no_limit(
    memory: Floodwall, caplog: pytest.LogCaptureFixture
) -> None:
    app = starlette_app(memory)
    async with client(app) as http:
        assert await statuses(http, "GET", "/items/1", 3, "a") == [200] * 3
        await memory.set_route_default("GET /items/{id}", "2/minute")
        assert await statuses(http, "GET", "/items/1", 3, "b") == [200, 200, 429]
        refused = await http.get("/items/2", headers={"x-user": "b"})
        assert refused.json()["policy"] == "GET /items/{id}"
        # A key without the method: every method of the route.
        await memory.set_route_default("/login", "1/minute")
        assert await statuses(http, "POST", "/login", 2, "b") == [200, 429]
        with caplog.at_level(logging.WARNING, "floodwall"):
            await memory.set_route_default("GET /itemz/{id}", "1/minute")
            assert await statuses(http, "GET", "/items/1", 1, "c") == [200]
            assert await statuses(http, "GET", "/items/1", 1, "c") == [200]
        assert [r.getMessage() for r in caplog.records if "live route" in r.getMessage()] == [
            "floodwall: the live route limit GET /itemz/{id} names no route of this app: "
            "it applies nothing here"
        ]
        await memory.clear_route_default("GET /items/{id}")
        assert await statuses(http, "GET", "/items/1", 3, "b") == [200] * 3


async def test_a_live_route_limit_naming_no_route_of_the_apps_is_refused(
    redis_server: RedisServer,
) -> None:
    settings = FloodwallSettings(redis_url=redis_server.url, user_header="x-user", **HIGH)
    serving = Floodwall(settings)
    app = starlette_app(serving, route_limits={"POST /login": "2/minute"})
    async with lifespan(app) as started, client(app) as http:
        assert started["type"] == "lifespan.startup.complete"
        # The operator's shell: another process on the same store.
        for route, why in [
            ("GET /items/{item_id}/exprt", "no app using this store has the route"),
            ("DELETE /login", "no app using this store has the route"),
            ("/login", "has no limit to give a user one of their own"),
        ]:
            done = await floodwall_command(
                redis_server.url, "route-limit", route, "1/minute", "--user", "a"
            )
            assert done.status == 2
            assert done.stderr.count("\n") == 1
            assert why in done.stderr
        typo = await floodwall_command(
            redis_server.url, "route-limit", "GET /item/{id}", "1/minute"
        )
        assert (typo.status, typo.stdout) == (2, "")
        assert typo.stderr == (
            "floodwall: error: no app using this store has the route GET /item/{id}: name it "
            "as the app's router declares it, 'METHOD /path/{param}'\n"
        )
        done = await floodwall_command(
            redis_server.url, "route-limit", "GET /items/{id}", "1/minute"
        )
        assert done.status == 0, done.stderr
        await wait_until_async(
            lambda: "GET /items/{id}" in serving.limits.routes, "the change arrives", within=2
        )
        assert await statuses(http, "GET", "/items/1", 2, "a") == [200, 429]
        done = await floodwall_command(
            redis_server.url, "route-limit", "POST /login", "5/minute", "--user", "a"
        )
        assert done.status == 0, done.stderr


def test_published_routes_name_what_the_apps_router_matches() -> None:
    async def bare(scope: Any, receive: Any, send: Any) -> None: ...

    inner = Starlette(routes=[Route("/b/{name}", ok, methods=["GET"])])
    app = Starlette(routes=[Route("/a", ok), Mount("/m", app=inner), Mount("/raw", app=bare)])
    published = app_routes(app).published(parse_route_limits("GET /a=1/second"))
    found, limited = AppRoutes.from_published([published])
    assert limited == {"GET /a"}
    for key in ["GET /a", "HEAD /a", "/a", "GET /m/b/{x}", "POST /raw/{p:path}", "/raw/x"]:
        assert found.names(route_limit(key, "1/second")), key
    for key in ["POST /a", "/a/", "GET /m/b", "POST /m/b/{x}", "/b/{name}", "/rawx"]:
        assert not found.names(route_limit(key, "1/second")), key

    # An app whose routes cannot be seen may have any: nothing is refused for it.
    anything, _ = AppRoutes.from_published([published, app_routes(bare).published([])])
    assert anything.names(route_limit("DELETE /anything/{at}/all", "1/second"))
