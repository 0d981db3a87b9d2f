"""A fault of one subject stays with that subject: a check script that fails for one user
(its stored bucket cannot be read) answers that user by the fail mode, logged once, and never
opens the circuit breaker for everyone else. On a real redis-server."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any, Literal

import httpx
import pytest
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.core.decision import Decision
from floodwall.limiting.breaker import BreakerState
from floodwall.stores import MemoryStore
from floodwall.stores.keys import SubjectKeys
from harness import RedisServer


async def hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


@pytest.fixture(params=["open", "closed"])
async def setup(
    request: pytest.FixtureRequest, redis_server: RedisServer
) -> AsyncIterator[tuple[Floodwall, httpx.AsyncClient, Literal["open", "closed"]]]:
    mode: Literal["open", "closed"] = request.param
    settings = FloodwallSettings(
        redis_url=redis_server.url, user_header="x-user", fail_mode=mode, breaker_failures=3
    )
    floodwall = Floodwall(settings)
    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
    raw = redis.asyncio.Redis.from_url(redis_server.url)
    await raw.flushall()
    # A bucket the script cannot read (a hash where it keeps a number): written by hand.
    # (A stored limit it cannot read is no fault: it reads as absent.)
    await raw.hset(floodwall.keys.user("broken").bucket, mapping={"tat": "x"})
    await raw.aclose()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
        try:
            yield floodwall, client, mode
        finally:
            await floodwall.stop()


async def test_a_failing_subject_does_not_open_the_breaker_for_others(
    setup: tuple[Floodwall, httpx.AsyncClient, Literal["open", "closed"]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    floodwall, client, mode = setup
    with caplog.at_level(logging.ERROR, logger="floodwall"):
        broken = [
            (await client.get("/", headers={"x-user": "broken"})).status_code for _ in range(20)
        ]
        others = [
            (await client.get("/", headers={"x-user": f"user-{n}"})).status_code for n in range(5)
        ]
    # The failing subject gets the fail mode: the in-process fallback limit, or 503.
    if mode == "open":
        assert broken[:10] == [200] * 10
        assert 429 in broken[10:]
    else:
        assert broken == [503] * 20
    assert others == [200] * 5
    assert floodwall.breaker.state is BreakerState.CLOSED
    failures = [r for r in caplog.records if "check of one subject failed" in r.getMessage()]
    assert len(failures) == 1
    assert not [r for r in caplog.records if "fail mode" in r.getMessage()]
    # Whatever it holds, the subject's status reads back.
    status = await floodwall.status("broken")
    assert status.limit_overridden is False
    assert status.rate == floodwall.default_limit[0]


class _BuggyClientStore(MemoryStore):
    """A store whose client library has a bug of its own for a while (redis-py's cluster
    client has raised AttributeError while its first connections were being made)."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures = failures

    async def check(self, keys: SubjectKeys, **options: Any) -> Decision:
        if self.failures:
            self.failures -= 1
            raise AttributeError("'NoneType' object has no attribute 'connection'")
        return await super().check(keys, **options)


@pytest.mark.parametrize(("mode", "refused"), [("open", 200), ("closed", 503)])
async def test_a_bug_in_the_stores_client_gets_the_fail_mode_not_a_500(
    mode: Literal["open", "closed"], refused: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = _BuggyClientStore(failures=3)
    settings = FloodwallSettings(user_header="x-user", fail_mode=mode, breaker_failures=5)
    floodwall = Floodwall(settings, store=store)
    app = Starlette(routes=[Route("/", hello)])
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with caplog.at_level(logging.ERROR, logger="floodwall"):
                answers = [
                    (await client.get("/", headers={"x-user": "u"})).status_code for _ in range(5)
                ]
        assert answers == [refused] * 3 + [200] * 2
        # Told with its traceback, not swallowed.
        logged = [r for r in caplog.records if "client failed unexpectedly" in r.getMessage()]
        assert logged
        assert logged[0].exc_info is not None
    finally:
        await floodwall.stop()
