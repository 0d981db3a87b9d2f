"""The hot path's promise, watched on a real redis-server: one command per allowed request."""

from __future__ import annotations

import asyncio

import httpx
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from harness import RedisServer, client_commands


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def test_an_allowed_request_costs_exactly_one_redis_command(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    floodwall = Floodwall(
        FloodwallSettings(
            redis_url=redis_server.url,
            user_header="x-user",
            rate=1000,
            burst=1000,
            redis_timeout=2,
        )
    )
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=floodwall)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        # The first request connects and loads the script; watch the steady state.
        assert (await http.get("/", headers={"x-user": "warm-up"})).status_code == 200
        await asyncio.wait_for(floodwall.following.wait(), 10)
        with client_commands(redis_server.port) as seen:
            responses = [await http.get("/", headers={"x-user": f"user-{i}"}) for i in range(50)]
    await floodwall.stop()
    assert {r.status_code for r in responses} == {200}
    assert seen.count("EVALSHA") == 50
    # Besides them, at most the once-a-second settings poll of the background task.
    assert set(seen) <= {"EVALSHA", "HGETALL"}
    assert seen.count("HGETALL") <= 3
