"""The hot path's promise, watched on a real redis-server: one command per allowed request."""

from __future__ import annotations

import asyncio
import threading

import httpx
import redis
import redis.asyncio
from servers import RedisServer
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings

SENTINEL = "floodwall-test-done"


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def watch(url: str, ready: threading.Event, seen: list[str]) -> None:
    """Record every command clients send (MONITOR), leaving out those run by scripts."""
    with redis.Redis.from_url(url).monitor() as monitor:  # type: ignore[no-untyped-call]
        ready.set()
        for command in monitor.listen():
            text = str(command["command"])
            if SENTINEL in text:
                return
            if command.get("client_type") != "lua":
                seen.append(text.split(" ", 1)[0].upper())


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
    ready, seen = threading.Event(), list[str]()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test"
    ) as http:
        # The first request connects and loads the script; watch the steady state.
        assert (await http.get("/", headers={"x-user": "warm-up"})).status_code == 200
        watcher = asyncio.create_task(asyncio.to_thread(watch, redis_server.url, ready, seen))
        try:
            assert await asyncio.to_thread(ready.wait, 10)
            responses = [await http.get("/", headers={"x-user": f"user-{i}"}) for i in range(50)]
        finally:
            # Always end the watching thread, or a failure would hang the test run.
            await redis_client.echo(SENTINEL)
            await asyncio.wait_for(watcher, 10)
    await floodwall.stop()
    assert {r.status_code for r in responses} == {200}
    assert seen == ["EVALSHA"] * 50
