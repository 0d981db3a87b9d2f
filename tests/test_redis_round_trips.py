"""The hot path's promise, watched on a real redis-server: one command per allowed request."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from harness import RedisServer, client_commands, wait_until_async


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


async def test_revoked_and_reset_required_refusals_cost_no_redis_command(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    secret = "round-trips-jwt-key-0123456789abcdef"
    settings = FloodwallSettings(redis_url=redis_server.url, jwt_secret=secret, redis_timeout=2)
    serving, acting = Floodwall(settings), Floodwall(settings)
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=serving)

    def bearer(user: str, issued_at: float) -> dict[str, str]:
        token = jwt.encode({"sub": user, "iat": issued_at}, secret, algorithm="HS256")
        return {"authorization": f"Bearer {token}"}

    old = time.time() - 60
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://test"
        ) as http:
            assert (await http.get("/", headers=bearer("warm-up", old))).status_code == 200
            await asyncio.wait_for(serving.following.wait(), 10)
            await acting.revoke("mallory")
            await acting.require_password_reset("eve")

            async def mirrored() -> bool:
                return serving.mirror.get("mallory") is not None and bool(
                    (eve := serving.mirror.get("eve")) and eve.kill_switch.reset_required
                )

            await wait_until_async(mirrored, "the changes reach the serving worker", within=5)
            with client_commands(redis_server.port) as seen:
                revoked = [await http.get("/", headers=bearer("mallory", old)) for _ in range(50)]
                reset = [await http.get("/", headers=bearer("eve", time.time())) for _ in range(50)]
            assert {r.status_code for r in revoked} == {401}
            assert {r.status_code for r in reset} == {403}
            assert "EVALSHA" not in seen
            # A credential issued after the revocation still asks the store, and passes.
            assert (await http.get("/", headers=bearer("mallory", time.time()))).status_code == 200
            # Lifting reaches the worker's mirror: the next request asks the store again.
            await acting.clear_password_reset("eve")

            async def served() -> bool:
                answer = await http.get("/", headers=bearer("eve", time.time()))
                return answer.status_code == 200

            await wait_until_async(served, "the cleared reset reaches the worker", within=5)
    finally:
        await serving.stop()
        await acting.stop()
