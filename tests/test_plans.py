"""Limits by plan: FLOODWALL_PLANS, the plan from a token's claim, a gateway's header or the
app's own Identity; an operator's limit for a user winning over the plan; the default for
no plan or an unknown one; the RateLimit fields showing the plan's quota; live plan changes
from the admin API and the CLI reaching every worker (two processes on one Redis)."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import jwt
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Scope

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity, MemoryStore
from floodwall.core.rules import RuleError
from harness import RedisServer, wait_until

SECRET = "plans-jwt-signing-key-0123456789abcdef"
PLANS = "free=0.001,2;pro=0.001,5"


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


def _app(floodwall: Floodwall, **options: object) -> httpx.AsyncClient:
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=floodwall, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")


def _floodwall(**settings: object) -> Floodwall:
    base: dict[str, object] = {"rate": 0.001, "burst": 1, "plans": PLANS, **settings}
    return Floodwall(FloodwallSettings(**base), store=MemoryStore())  # type: ignore[arg-type]


async def _codes(client: httpx.AsyncClient, count: int, **headers: str) -> list[int]:
    return [(await client.get("/", headers=headers)).status_code for _ in range(count)]


async def test_a_gateways_plan_header_gives_each_plan_its_limit() -> None:
    floodwall = _floodwall(user_header="x-user", plan_header="x-plan")
    async with _app(floodwall) as client:
        assert await _codes(client, 3, **{"x-user": "a", "x-plan": "free"}) == [200, 200, 429]
        assert await _codes(client, 6, **{"x-user": "b", "x-plan": "pro"}) == [200] * 5 + [429]
        # No plan: the default limit.
        assert await _codes(client, 2, **{"x-user": "c"}) == [200, 429]
        # The RateLimit fields show the plan's quota.
        answer = await client.get("/", headers={"x-user": "d", "x-plan": "pro"})
        assert answer.headers["ratelimit-policy"].startswith('"user";q=5;')


async def test_the_plan_comes_from_the_token_claim() -> None:
    floodwall = _floodwall(jwt_secret=SECRET, jwt_plan_claim="tier")
    token = jwt.encode({"sub": "alice", "iat": time.time(), "tier": "pro"}, SECRET)
    async with _app(floodwall) as client:
        codes = await _codes(client, 6, authorization=f"Bearer {token}")
    assert codes == [200] * 5 + [429]


async def test_the_plan_comes_from_the_apps_own_identity() -> None:
    def identify(scope: Scope) -> Identity:
        return Identity("carol", plan="pro")

    async with _app(_floodwall(), identify=identify) as client:
        assert await _codes(client, 6) == [200] * 5 + [429]


async def test_an_operators_limit_for_a_user_wins_over_the_plan() -> None:
    floodwall = _floodwall(user_header="x-user", plan_header="x-plan")
    await floodwall.set_limit("vip", rate=0.001, burst=8)
    async with _app(floodwall) as client:
        codes = await _codes(client, 9, **{"x-user": "vip", "x-plan": "free"})
    assert codes == [200] * 8 + [429]


async def test_an_unknown_plan_gets_the_default_and_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    floodwall = _floodwall(user_header="x-user", plan_header="x-plan")
    caplog.set_level(logging.WARNING, logger="floodwall")
    async with _app(floodwall) as client:
        assert await _codes(client, 2, **{"x-user": "e", "x-plan": "gold"}) == [200, 429]
        assert await _codes(client, 1, **{"x-user": "f", "x-plan": "gold"}) == [200]
    lines = [r.getMessage() for r in caplog.records if "is not configured" in r.getMessage()]
    assert lines == [
        "floodwall: the plan gold is not configured (FLOODWALL_PLANS): the default limit applies"
    ]


async def test_a_live_plan_limit_applies_and_goes_back() -> None:
    floodwall = _floodwall(user_header="x-user", plan_header="x-plan")
    assert floodwall.plan_limits == {"free": (0.001, 2), "pro": (0.001, 5)}
    await floodwall.set_plan_limit("free", 0.001, 4)
    async with _app(floodwall) as client:
        assert await _codes(client, 5, **{"x-user": "g", "x-plan": "free"}) == [200] * 4 + [429]
        assert await floodwall.clear_plan_limit("free") == (0.001, 2)
        assert await _codes(client, 3, **{"x-user": "h", "x-plan": "free"}) == [200, 200, 429]
    # A plan that is only live goes away with its live limit.
    await floodwall.set_plan_limit("team", 0.001, 3)
    assert await floodwall.clear_plan_limit("team") is None
    with pytest.raises(RuleError):
        await floodwall.set_plan_limit("no spaces", 1, 1)


@pytest.mark.parametrize(
    ("plans", "message"),
    [
        ("free", "FLOODWALL_PLANS is 'NAME=RATE[,BURST];...'"),
        ("free=fast", "a plan's rate is N/period or a number"),
        ("free=1;free=2", "names the plan free twice"),
        ("fr ee=1", "a plan's name"),
        ("free=1/second,0", "burst is a whole number"),
    ],
)
def test_plans_the_rule_book_refuses_stop_the_start(plans: str, message: str) -> None:
    with pytest.raises(ValueError, match="FLOODWALL_PLANS") as refused:
        FloodwallSettings(plans=plans)
    assert message in str(refused.value)


# -- two processes on one Redis ------------------------------------------------------------

ADMIN_TOKEN = "plans-admin-token-0123456789"


@pytest.fixture
def apps(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[str]]:
    from demo_process import demo_process

    flush = redis.Redis.from_url(redis_server.url)
    flush.flushall()
    flush.close()
    env = {
        "FLOODWALL_REDIS_URL": redis_server.url,
        "FLOODWALL_REDIS_TIMEOUT": "2",
        "FLOODWALL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLOODWALL_USER_HEADER": "x-user",
        "FLOODWALL_PLAN_HEADER": "x-plan",
        "FLOODWALL_PLANS": "pro=0.001,3",
        "FLOODWALL_RATE": "0.001",
        "FLOODWALL_BURST": "1",
    }
    with ExitStack() as stack:
        yield [stack.enter_context(demo_process(tmp_path, **env)) for _ in range(2)]


def _quota(url: str, user: str) -> str:
    answer = httpx.get(url + "/api/hello", headers={"x-user": user, "x-plan": "pro"}, timeout=5)
    return str(answer.headers["ratelimit-policy"])


@pytest.mark.slow
def test_a_live_plan_change_reaches_the_other_process_and_goes_back(
    apps: list[str], redis_server: RedisServer
) -> None:
    a, b = apps
    assert _quota(b, "u0").startswith('"user";q=3;')
    admin = {"authorization": f"Bearer {ADMIN_TOKEN}"}
    changed = httpx.put(
        a + "/admin/limits/plans/pro", json={"rate": 0.001, "burst": 7}, headers=admin, timeout=5
    )
    assert changed.status_code == 200, changed.text
    assert changed.json()["burst"] == 7
    users = iter(f"u{n}" for n in range(1, 1000))
    wait_until(lambda: _quota(b, next(users)).startswith('"user";q=7;'), "b applies it", within=1)
    listed = httpx.get(a + "/admin/limits/plans", headers=admin, timeout=5).json()
    assert listed == {"plans": [{"plan": "pro", "rate": 0.001, "burst": 7}]}
    # The command line, on the same store: back to FLOODWALL_PLANS.
    env = {"FLOODWALL_REDIS_URL": redis_server.url, "FLOODWALL_PLANS": "pro=0.001,3"}
    done = subprocess.run(
        [sys.executable, "-m", "floodwall.cli", "plan", "pro", "--clear", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"plan": "pro"' in done.stdout
    wait_until(lambda: _quota(b, next(users)).startswith('"user";q=3;'), "b goes back", within=1)
    audit = httpx.get(a + "/admin/audit?limit=2", headers=admin, timeout=5).json()["items"]
    assert [item["action"] for item in audit] == ["clear-plan-limit", "set-plan-limit"]


async def test_status_shows_the_plan_and_its_limit(redis_server: RedisServer) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url,
        redis_timeout=2,
        key_prefix="plans-status",
        rate=0.001,
        burst=1,
        plans=PLANS,
        user_header="x-user",
        plan_header="x-plan",
    )
    floodwall = Floodwall(settings)
    await floodwall.start()
    try:
        async with _app(floodwall) as client:
            await _codes(client, 1, **{"x-user": "paying", "x-plan": "pro"})
            await floodwall.plan_notes.stop()  # the write happens off the request's path
            status = await floodwall.status("paying")
            assert (status.plan, status.rate, status.burst) == ("pro", 0.001, 5)
            # A plan alone lists nobody: the kill switch has nothing of the user's.
            assert (await floodwall.blocked())[0] == []
            # The plan changes with the user's requests.
            await _codes(client, 1, **{"x-user": "paying", "x-plan": "free"})
            await floodwall.plan_notes.stop()
            assert (await floodwall.status("paying")).plan == "free"
            assert (await floodwall.status("nobody")).plan is None
    finally:
        await floodwall.stop()
