"""A store that cannot be reached: 503 with Retry-After, quickly."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from floodwall import Floodwall, RedisStore

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
