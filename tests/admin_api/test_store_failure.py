"""A store that cannot be reached: 503 with Retry-After, quickly."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio
from cli_process import floodwall_command

from floodwall import Floodwall, RedisStore
from harness import RedisServer

from .support import AUTH, DESIGN_ROUTES, assert_problem, client_for, requests_for, settings


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound, so no one else takes it, but never listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def dead_redis(closed_port: int) -> AsyncIterator[Floodwall]:
    """A RedisStore configured as floodwall configures one, on a port where nothing listens."""
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{closed_port}/0", prefix="floodwall", cluster=False, timeout=0.2
    )
    try:
        yield Floodwall(settings(), store=store)
    finally:
        await store.close()


# Every route of the design's table but the two that need no store.
STORE_ROUTES = requests_for(DESIGN_ROUTES - {("GET", "/openapi.json"), ("GET", "/limits/default")})


async def test_a_failing_store_gives_503_with_retry_after(dead_redis: Floodwall) -> None:
    async with client_for(dead_redis, AUTH) as admin:
        for method, path, body in STORE_ROUTES:
            started = time.monotonic()
            response = await admin.request(method, path, json=body)
            elapsed = time.monotonic() - started
            problem = assert_problem(response, 503, "store-unavailable")
            assert int(response.headers["retry-after"]) >= 1, (method, path)
            assert "127.0.0.1" not in problem["detail"]
            assert elapsed < 2, (method, path, elapsed)
        # Routes that need no store still answer.
        assert (await admin.get("/openapi.json")).status_code == 200
        assert (await admin.get("/limits/default")).status_code == 200
        # Bad input is still bad input, whatever the store.
        assert_problem(await admin.put("/users/alice/limit", json={"rate": 0, "burst": 1}), 422)


@pytest.fixture
async def uncounting_url(redis_client: redis.asyncio.Redis, redis_server: RedisServer) -> str:
    """A Redis user that may do everything but count a channel's subscribers, as an ACL
    written for the app's own needs may leave it."""
    client: Any = redis_client  # execute_command is untyped in redis-py
    await client.execute_command(
        "ACL",
        "SETUSER",
        "uncounting",
        "on",
        ">uncounting-pw",
        "~*",
        "&*",
        "+@all",
        "-pubsub|numsub",
    )
    return f"redis://uncounting:uncounting-pw@127.0.0.1:{redis_server.port}/0"


async def test_a_change_the_store_cannot_count_answers_200_with_received_by_null(
    uncounting_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    floodwall = Floodwall(settings(redis_url=uncounting_url, redis_timeout=2))
    try:
        async with client_for(floodwall, AUTH) as client:
            answer = await client.put("/users/alice/block", json={"reason": "flooding"})
            assert answer.status_code == 200, answer.text
            assert (answer.json()["blocked"], answer.json()["received_by"]) == (True, None)
            # The change is stored all the same.
            assert (await client.get("/users/alice")).json()["blocked"] is True
    finally:
        await floodwall.stop()
    assert "the workers that received it: unknown" in caplog.text
    assert "uncounting-pw" not in caplog.text


async def test_the_cli_says_a_stored_change_could_not_be_counted(uncounting_url: str) -> None:
    done = await floodwall_command(uncounting_url, "block", "bob", "--reason", "r", "--json")
    assert done.status == 0, done.stderr
    assert json.loads(done.stdout)["received_by"] is None
    assert "could not count the workers that received it" in done.stderr
    assert "uncounting-pw" not in done.stderr + done.stdout
