"""Redis failing, slow or restarting never turns into 5xx storms or unbounded latency."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.limiting.breaker import BreakerState
from harness import RedisServer, wait_until_async

TIMEOUT = 0.05
# Generous: the bound is the timeout; the margin is for a shared, noisy 2-core machine.
MARGIN = 0.5


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A real redis-server of this test's own, to kill, pause and restart."""
    with RedisServer.start(tmp_path, appendonly=True) as own:
        yield own


def make(url: str, **settings: Any) -> tuple[Floodwall, httpx.AsyncClient]:
    options: dict[str, Any] = {
        "redis_url": url,
        "redis_timeout": TIMEOUT,
        "user_header": "x-user",
        "rate": 0.01,
        "burst": 10,
        "breaker_cooldown": 0.3,
    }
    options.update(settings)
    floodwall = Floodwall(FloodwallSettings(**options))
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=floodwall)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
    return floodwall, client


@pytest.fixture
async def service(server: RedisServer) -> AsyncIterator[tuple[Floodwall, httpx.AsyncClient]]:
    floodwall, client = make(server.url, expected_instances=2)
    await floodwall.start()
    try:
        yield floodwall, client
    finally:
        await client.aclose()
        await floodwall.stop()


def breaker(floodwall: Floodwall) -> BreakerState:
    # A call, so the type checker does not carry one assertion's narrowing to the next.
    return floodwall.breaker.state


async def timed_get(client: httpx.AsyncClient, user: str) -> tuple[int, float]:
    started = time.perf_counter()
    response = await client.get("/", headers={"x-user": user})
    return response.status_code, time.perf_counter() - started


async def test_a_killed_redis_fails_open_and_holds_the_kill_switch(
    server: RedisServer, service: tuple[Floodwall, httpx.AsyncClient]
) -> None:
    floodwall, client = service
    await floodwall.block("mallory", reason="flooding")
    assert (await timed_get(client, "mallory"))[0] == 403

    # Traffic from 8 concurrent clients; Redis dies in the middle of it.
    results: list[tuple[int, float]] = []

    async def traffic(worker: int) -> None:
        for i in range(30):
            results.append(await timed_get(client, f"busy-{worker}-{i % 3}"))

    workers = [asyncio.create_task(traffic(worker)) for worker in range(8)]
    await asyncio.sleep(0.05)
    server.kill()
    await asyncio.gather(*workers)
    assert len(results) == 8 * 30
    assert max(elapsed for _, elapsed in results) < TIMEOUT + MARGIN
    assert not [status for status, _ in results if status >= 500]

    after = [await timed_get(client, f"user-{i % 5}") for i in range(40)]
    statuses = [status for status, _ in after]
    assert not [status for status in statuses if status >= 500]
    # The fallback still limits: each user gets its share (burst 10 over 2 instances).
    assert statuses.count(200) == 5 * 5
    assert statuses.count(429) == 40 - 25
    # The block holds from the mirror while Redis is gone.
    assert (await timed_get(client, "mallory"))[0] == 403
    assert breaker(floodwall) is BreakerState.OPEN

    server.restart(keep_data=True)
    await asyncio.sleep(0.35)
    status, _ = await timed_get(client, "fresh-user")
    assert status == 200
    assert breaker(floodwall) is BreakerState.CLOSED
    probe = redis.asyncio.Redis.from_url(server.url)
    # Checks reach Redis again: the user's bucket is there, and the block came back with AOF.
    assert await probe.exists("floodwall:{u:fresh-user}:bucket") == 1
    await probe.aclose()
    assert (await timed_get(client, "mallory"))[0] == 403


async def test_a_redis_restarted_empty_gets_its_scripts_again(
    server: RedisServer, service: tuple[Floodwall, httpx.AsyncClient]
) -> None:
    floodwall, client = service
    assert (await timed_get(client, "alice"))[0] == 200
    server.restart(keep_data=False)
    statuses = [(await timed_get(client, "alice"))[0] for _ in range(3)]
    assert statuses == [200, 200, 200]
    assert breaker(floodwall) is BreakerState.CLOSED
    probe = redis.asyncio.Redis.from_url(server.url)
    assert await probe.exists("floodwall:{u:alice}:bucket") == 1
    await probe.aclose()


async def test_a_paused_redis_keeps_latency_bounded_and_trips_the_breaker(
    server: RedisServer, service: tuple[Floodwall, httpx.AsyncClient]
) -> None:
    floodwall, client = service
    assert (await timed_get(client, "alice"))[0] == 200
    server.pause()
    try:
        slow = [await timed_get(client, "alice") for _ in range(3)]
        assert breaker(floodwall) is BreakerState.OPEN
        fast = [await timed_get(client, "alice") for _ in range(20)]
    finally:
        server.resume()
    assert max(elapsed for _, elapsed in slow) < TIMEOUT + MARGIN
    assert not [status for status, _ in slow + fast if status >= 500]
    # An open breaker does not wait for Redis at all.
    assert sorted(elapsed for _, elapsed in fast)[len(fast) // 2] < TIMEOUT
    await asyncio.sleep(0.35)
    assert (await timed_get(client, "bob"))[0] == 200
    assert breaker(floodwall) is BreakerState.CLOSED


async def test_kill_switch_state_survives_a_restart_with_aof(server: RedisServer) -> None:
    floodwall, client = make(server.url)
    await floodwall.block("mallory", reason="compromised")
    await floodwall.revoke("eve")
    await floodwall.set_limit("carol", rate=1, burst=3)
    await floodwall.require_password_reset("dave")
    await client.aclose()
    await floodwall.stop()

    server.kill()
    server.restart(keep_data=True)

    later = Floodwall(FloodwallSettings(redis_url=server.url, redis_timeout=2))
    try:
        mallory, eve, carol, dave = [
            await later.status(user) for user in ("mallory", "eve", "carol", "dave")
        ]
        blocked, _ = await later.blocked()
    finally:
        await later.stop()
    assert mallory.blocked
    assert mallory.reason == "compromised"
    assert eve.credentials_not_before_ms is not None
    assert (carol.rate, carol.burst, carol.limit_overridden) == (1.0, 3, True)
    assert dave.password_reset_required
    assert [status.user_id for status in blocked] == ["mallory"]


async def test_closed_mode_answers_503_with_retry_after(server: RedisServer) -> None:
    floodwall, client = make(server.url, fail_mode="closed")
    try:
        assert (await client.get("/", headers={"x-user": "a"})).status_code == 200
        server.kill()
        responses = [await client.get("/", headers={"x-user": "a"}) for _ in range(5)]
    finally:
        await client.aclose()
        await floodwall.stop()
    assert {r.status_code for r in responses} == {503}
    assert responses[0].headers["retry-after"] == "1"
    assert responses[0].headers["content-type"] == "application/problem+json"
    assert responses[0].json()["type"].endswith("rate-limiter-unavailable")


async def test_a_default_limit_change_reaches_another_instance_within_a_second(
    server: RedisServer,
) -> None:
    first, first_client = make(server.url, redis_timeout=2)
    second, second_client = make(server.url, redis_timeout=2)
    await first.start()
    await second.start()
    try:
        assert second.default_limit == (0.01, 10)
        started = time.monotonic()
        await first.set_default_limit(2, 4, actor="test")
        await wait_until_async(
            lambda: second.default_limit == (2.0, 4), "the other hears the limit", within=1.0
        )
        elapsed = time.monotonic() - started
        response = await second_client.get("/", headers={"x-user": "z"})
        assert response.headers["ratelimit-policy"] == '"user";q=4;w=2'
        # A worker started later picks the stored default up.
        third = Floodwall(FloodwallSettings(redis_url=server.url, redis_timeout=2))
        await third.start()
        assert third.default_limit == (2.0, 4)
        await third.stop()
    finally:
        for client in (first_client, second_client):
            await client.aclose()
        await first.stop()
        await second.stop()
    assert elapsed < 1.0


async def test_operator_changes_reach_other_workers_mirrors(server: RedisServer) -> None:
    first, _ = make(server.url, redis_timeout=2)
    second, _ = make(server.url, redis_timeout=2)
    await first.start()
    await second.start()
    try:
        await first.block("mallory", reason="x")
        await wait_until_async(
            lambda: second.mirror.get("mallory") is not None, "the other mirrors it", within=1.0
        )
        await first.unblock("mallory")
        await wait_until_async(
            lambda: second.mirror.get("mallory") is None, "the other forgets it", within=1.0
        )
    finally:
        await first.stop()
        await second.stop()
