"""One global, exact limit: several app instances against one real redis-server."""

from __future__ import annotations

import asyncio
import contextvars
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from harness import RedisServer


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def instance(url: str, **settings: Any) -> tuple[Floodwall, Any]:
    floodwall = Floodwall(
        FloodwallSettings(redis_url=url, user_header="x-user", redis_timeout=2.0, **settings)
    )
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=floodwall)
    return floodwall, app


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")


@pytest.fixture
async def two_clients(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer, request: pytest.FixtureRequest
) -> AsyncIterator[list[httpx.AsyncClient]]:
    settings: dict[str, Any] = getattr(request, "param", {"rate": 0.01, "burst": 10})
    instances = [instance(redis_server.url, **settings) for _ in range(2)]
    clients = [client(app) for _, app in instances]
    try:
        yield clients
    finally:
        for each in clients:
            await each.aclose()
        for floodwall, _ in instances:
            await floodwall.stop()


async def test_concurrent_requests_across_instances_admit_exactly_burst(
    two_clients: list[httpx.AsyncClient],
) -> None:
    responses = await asyncio.gather(
        *(two_clients[i % 2].get("/", headers={"x-user": "alice"}) for i in range(100))
    )
    statuses = [r.status_code for r in responses]
    # rate 0.01/s: nothing measurable refills during the burst.
    assert statuses.count(200) == 10
    assert statuses.count(429) == 90


@pytest.mark.parametrize("two_clients", [{"rate": 20, "burst": 5}], indirect=True)
async def test_no_interval_admits_more_than_burst_plus_rate_times_its_length(
    two_clients: list[httpx.AsyncClient],
) -> None:
    admitted: list[float] = []

    async def hammer(http: httpx.AsyncClient) -> None:
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            started = time.monotonic()
            response = await http.get("/", headers={"x-user": "alice"})
            if response.status_code == 200:
                # The request was admitted somewhere inside [started, now].
                admitted.append(started)

    await asyncio.gather(*(hammer(two_clients[i % 2]) for i in range(8)))
    admitted.sort()
    assert len(admitted) > 5
    for first in range(len(admitted)):
        for last in range(first, len(admitted)):
            # Start times may precede admissions; allow the longest admission latency seen.
            span = admitted[last] - admitted[first] + 0.25
            assert last - first + 1 <= 5 + 20 * span


_skew: contextvars.ContextVar[float] = contextvars.ContextVar("skew", default=0.0)


def skewed(app: Any, seconds: float) -> Any:
    async def with_skew(scope: Any, receive: Any, send: Any) -> None:
        token = _skew.set(seconds)
        try:
            await app(scope, receive, send)
        finally:
            _skew.reset(token)

    return with_skew


async def test_instances_with_skewed_clocks_share_one_exact_bucket(
    redis_client: redis.asyncio.Redis,
    redis_server: RedisServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_time, real_time_ns = time.time, time.time_ns
    monkeypatch.setattr(time, "time", lambda: real_time() + _skew.get())
    monkeypatch.setattr(time, "time_ns", lambda: real_time_ns() + int(_skew.get() * 1e9))
    (ahead_fw, ahead), (behind_fw, behind) = (
        instance(redis_server.url, rate=0.1, burst=5) for _ in range(2)
    )
    clients = [client(skewed(ahead, +30.0)), client(skewed(behind, -30.0))]
    try:
        responses = [await clients[i % 2].get("/", headers={"x-user": "alice"}) for i in range(20)]
    finally:
        for each in clients:
            await each.aclose()
        await ahead_fw.stop()
        await behind_fw.stop()
    statuses = [r.status_code for r in responses]
    assert statuses == [200] * 5 + [429] * 15
    # Both instances tell the client the same wait: Redis's clock, not their own.
    waits = {int(r.headers["retry-after"]) for r in responses[5:]}
    assert waits == {10}
