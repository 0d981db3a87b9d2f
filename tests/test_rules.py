"""One rule book: every surface (Python, the admin API, the CLI) refuses the same values with
the same message, and every extreme value the rule book accepts works on a real Redis and
reads back through status, audit and the blocked list."""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import write_state_fields

from floodwall import Floodwall, FloodwallSettings, Identity, Outcome, RuleError
from floodwall.cli import main
from floodwall.core import rules
from floodwall.killswitch.status import UserStatus
from floodwall.stores.protocols import Store
from harness import RedisServer

TOKEN = "rules-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
TEN_YEARS_DAYS = 3650

REFILL = "burst / rate (the seconds an empty bucket takes to refill) is at most 315360000"


@dataclass(frozen=True)
class Case:
    """One refused value, as each surface is given it."""

    name: str
    message: str
    python: Callable[[Floodwall], Awaitable[object]]
    api: tuple[str, str, dict[str, Any] | None]
    cli: list[str]


CASES = [
    Case(
        "ttl zero",
        rules.TTL_SECONDS.message,
        lambda fw: fw.block("u", reason="r", ttl_seconds=0),
        ("PUT", "/users/u/block", {"reason": "r", "ttl_seconds": 0}),
        ["block", "u", "--reason", "r", "--ttl", "0s"],
    ),
    Case(
        "ttl past ten years",
        rules.TTL_SECONDS.message,
        lambda fw: fw.block("u", reason="r", ttl_seconds=rules.MAX_SECONDS + 1),
        ("PUT", "/users/u/block", {"reason": "r", "ttl_seconds": rules.MAX_SECONDS + 1}),
        ["block", "u", "--reason", "r", "--ttl", f"{TEN_YEARS_DAYS + 1}d"],
    ),
    Case(
        "ttl that overflowed the script",
        rules.TTL_SECONDS.message,
        lambda fw: fw.block("u", reason="r", ttl_seconds=999999999999 * 86400),
        ("PUT", "/users/u/block", {"reason": "r", "ttl_seconds": 999999999999 * 86400}),
        ["block", "u", "--reason", "r", "--ttl", "999999999999d"],
    ),
    Case(
        "rate below one a year",
        rules.RATE.message,
        lambda fw: fw.set_limit("u", rate=1e-15, burst=5),
        ("PUT", "/users/u/limit", {"rate": 1e-15, "burst": 5}),
        ["limit", "u", "--rate", "1e-15", "--burst", "5"],
    ),
    Case(
        "rate above a million",
        rules.RATE.message,
        lambda fw: fw.set_limit("u", rate=5e6, burst=10),
        ("PUT", "/users/u/limit", {"rate": 5e6, "burst": 10}),
        ["limit", "u", "--rate", "5e6", "--burst", "10"],
    ),
    Case(
        "burst zero",
        rules.BURST.message,
        lambda fw: fw.set_limit("u", rate=1, burst=0),
        ("PUT", "/users/u/limit", {"rate": 1, "burst": 0}),
        ["limit", "u", "--rate", "1", "--burst", "0"],
    ),
    Case(
        "burst above a million",
        rules.BURST.message,
        lambda fw: fw.set_limit("u", rate=1, burst=10**9),
        ("PUT", "/users/u/limit", {"rate": 1, "burst": 10**9}),
        ["limit", "u", "--rate", "1", "--burst", str(10**9)],
    ),
    Case(
        "a bucket that takes a century to refill",
        REFILL,
        lambda fw: fw.set_limit("u", rate=1e-7, burst=1000),
        ("PUT", "/users/u/limit", {"rate": 1e-7, "burst": 1000}),
        ["limit", "u", "--rate", "1e-7", "--burst", "1000"],
    ),
    Case(
        "default rate of 1e-300",
        rules.RATE.message,
        lambda fw: fw.set_default_limit(1e-300, 5),
        ("PUT", "/limits/default", {"rate": 1e-300, "burst": 5}),
        ["default-limit", "--rate", "1e-300", "--burst", "5"],
    ),
    Case(
        "empty reason",
        rules.REASON.message,
        lambda fw: fw.block("u", reason=""),
        ("PUT", "/users/u/block", {"reason": ""}),
        ["block", "u", "--reason", ""],
    ),
    Case(
        "reason too long",
        rules.REASON.message,
        lambda fw: fw.unblock("u", reason="x" * 501),
        ("DELETE", "/users/u/block", {"reason": "x" * 501}),
        ["unblock", "u", "--reason", "x" * 501],
    ),
    Case(
        "route name too long",
        rules.ROUTE.message,
        lambda fw: fw.set_route_default("/" + "x" * 1000, "1/second"),
        ("PUT", "/limits/routes", {"route": "/" + "x" * 1000, "limit": "1/second"}),
        ["route-limit", "/" + "x" * 1000, "1/second"],
    ),
    Case(
        "window zero",
        rules.WINDOW_SECONDS.message,
        lambda fw: fw.top(window_seconds=0),
        ("GET", "/top?window=0", None),
        ["top", "--once", "--window", "0"],
    ),
    Case(
        "window past an hour",
        rules.WINDOW_SECONDS.message,
        lambda fw: fw.top(window_seconds=3601),
        ("GET", "/top?window=3601", None),
        ["top", "--once", "--window", "3601"],
    ),
    Case(
        "page of zero",
        rules.PAGE_SIZE.message,
        lambda fw: fw.blocked(limit=0),
        ("GET", "/blocked?limit=0", None),
        ["blocked", "--limit", "0"],
    ),
    Case(
        "page past a thousand",
        rules.PAGE_SIZE.message,
        lambda fw: fw.audit_log(limit=1001),
        ("GET", "/audit?limit=1001", None),
        ["audit", "--limit", "1001"],
    ),
]


@pytest.fixture
async def floodwall(redis_server: RedisServer) -> AsyncIterator[Floodwall]:
    # A test's store calls wait as a terminal's do, not a request's 50 ms: the machine may
    # be busy, and no test here is about timeouts.
    service = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, admin_token=TOKEN, redis_timeout=2)
    )
    await service.store.client.flushall()  # type: ignore[attr-defined]
    try:
        yield service
    finally:
        await service.stop()


def _api_messages(body: dict[str, Any]) -> list[str]:
    return [body["detail"], *(error["msg"] for error in body.get("errors") or [])]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
async def test_every_surface_refuses_the_same_values_with_the_same_message(
    case: Case,
    floodwall: Floodwall,
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(RuleError) as refused:
        await case.python(floodwall)
    assert str(refused.value) == case.message

    transport = httpx.ASGITransport(app=floodwall.admin_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
        method, path, body = case.api
        response = await admin.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    assert case.message in _api_messages(response.json())

    code = await asyncio.to_thread(main, [*case.cli, "--redis-url", redis_server.url])
    err = capsys.readouterr().err
    assert code == 2
    assert case.message in err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err

    # Nothing was changed by any of them.
    assert (await floodwall.status("u")).blocked is False
    assert (await floodwall.audit_log())[0] == []


async def test_the_largest_ttl_blocks_and_reads_back_everywhere(floodwall: Floodwall) -> None:
    status = await floodwall.block("tenyears", reason="long", ttl_seconds=rules.MAX_SECONDS)
    assert status.blocked
    assert status.blocked_until_ms is not None
    assert status.blocked_at_ms is not None
    assert status.blocked_until_ms - status.blocked_at_ms == rules.MAX_SECONDS * 1000
    assert (await floodwall.check(Identity("tenyears"))).outcome is Outcome.BLOCKED
    listed, _ = await floodwall.blocked()
    assert [s.user_id for s in listed] == ["tenyears"]
    assert listed[0].to_json()["blocked_until"] is not None
    records, _ = await floodwall.audit_log()
    assert records[0].to_json()["expires"] == status.to_json()["blocked_until"]


async def test_the_smallest_rate_limits_for_a_year_and_reads_back(floodwall: Floodwall) -> None:
    await floodwall.set_limit("slow", rate=rules.MIN_RATE, burst=10)
    for _ in range(10):
        assert (await floodwall.check(Identity("slow"))).allowed
    limited = await floodwall.check(Identity("slow"))
    assert limited.outcome is Outcome.LIMITED
    assert limited.retry_after == pytest.approx(365 * 24 * 3600, rel=1e-3)
    status = await floodwall.status("slow")
    assert status.limit_overridden
    assert status.rate == pytest.approx(rules.MIN_RATE)
    records, _ = await floodwall.audit_log()
    assert records[0].action == "set-limit"


async def test_the_largest_cost_at_the_smallest_rate_is_refused_not_broken(
    floodwall: Floodwall,
) -> None:
    await floodwall.set_limit("costly", rate=rules.MIN_RATE, burst=10)
    decision = await floodwall.check(Identity("costly"), cost=int(rules.COST.high))
    assert decision.outcome is Outcome.LIMITED
    assert floodwall.breaker.state.value == "closed"


async def test_the_largest_limits_admit(floodwall: Floodwall) -> None:
    await floodwall.set_default_limit(rules.RATE.high, int(rules.BURST.high))
    assert (await floodwall.check(Identity("fast"))).remaining == int(rules.BURST.high) - 1
    await floodwall.set_default_limit(rules.MIN_RATE, 10)
    assert (await floodwall.check(Identity("fast2"))).allowed
    rate, burst = floodwall.default_limit
    assert rate == pytest.approx(rules.MIN_RATE)
    assert burst == 10


@pytest.mark.parametrize("cost", [-100, 0, 1001, 10**12, 2.5, float("nan"), True, "3"])
async def test_a_checks_cost_follows_the_rule_book(floodwall: Floodwall, cost: object) -> None:
    # On Redis a cost of -100 once filled a bucket of 3 to 103 tokens, and 10**12 gave a
    # negative retry_after of trillions of seconds.
    await floodwall.set_limit("payer", rate=1, burst=3)
    with pytest.raises(RuleError) as refused:
        await floodwall.check(Identity("payer"), cost=cost)  # type: ignore[arg-type]
    assert str(refused.value) == rules.COST.message
    decision = await floodwall.check(Identity("payer"))
    assert decision.allowed
    assert decision.remaining == 2


async def test_every_cost_the_rule_book_accepts_is_checked(floodwall: Floodwall) -> None:
    await floodwall.set_limit("payer", rate=1, burst=3)
    assert (await floodwall.check(Identity("payer"), cost=3.0)).remaining == 0  # type: ignore[arg-type]
    refused = await floodwall.check(Identity("payer"), cost=int(rules.COST.high))
    assert refused.outcome is Outcome.LIMITED
    assert 0 < refused.retry_after <= rules.COST.high


@pytest.mark.parametrize(
    ("rate", "burst"),
    [
        ("nan", "3"),
        ("inf", "3"),
        ("0", "3"),
        ("-5", "3"),
        ("abc", "3"),
        ("5", "nan"),
        ("5", "0"),
        ("5", "2.5"),
        ("5", str(10**9)),
        ("1e-15", "3"),
        ("1e-7", "1000"),  # a bucket that takes a century to refill
        ("5", None),
        ("5", "0x10"),  # Lua's tonumber reads hex, Python's float does not
        ("1_0", "3"),  # Python's float reads underscores, Lua's tonumber does not
        (" 5", "3"),
        ("5", "3 "),
        ("5", "infinity"),
    ],
)
async def test_a_stored_limit_outside_the_rule_book_reads_as_absent_everywhere(
    store: Store, rate: str, burst: str | None
) -> None:
    # Written by hand (or by an older version) into the user's state hash: the check, the
    # status and the kill-switch mirror all read the default instead, as the docs say.
    floodwall = Floodwall(FloodwallSettings(rate=1, burst=2), store=store)
    fields = {"rate": rate} if burst is None else {"rate": rate, "burst": burst}
    await write_state_fields(store, "hand-edited", fields)
    try:
        decisions = [await floodwall.check(Identity("hand-edited")) for _ in range(3)]
        assert [d.outcome for d in decisions] == [
            Outcome.ALLOWED,
            Outcome.ALLOWED,
            Outcome.LIMITED,
        ]
        assert decisions[0].burst == 2
        status = await floodwall.status("hand-edited")
        assert status.limit_overridden is False
        assert (status.rate, status.burst) == (1.0, 2)
        await floodwall.resync()
        mirrored = floodwall.mirror.get("hand-edited")
        assert mirrored is None or mirrored.limit is None
    finally:
        # The first check started the service: its tasks end here, not with the loop.
        await floodwall.stop()


async def test_a_stored_limit_the_rule_book_accepts_applies_in_the_check(store: Store) -> None:
    floodwall = Floodwall(FloodwallSettings(rate=1, burst=2), store=store)
    try:
        for rate, burst in ((repr(rules.MIN_RATE), "3"), ("1000000", "1000000"), ("2.5", "4.0")):
            await write_state_fields(
                store, "own", {"rate": rate, "burst": burst}, reset_bucket=True
            )
            decision = await floodwall.check(Identity("own"))
            assert decision.allowed
            assert decision.burst == int(float(burst))
            assert decision.remaining == int(float(burst)) - 1
    finally:
        await floodwall.stop()


@dataclass(frozen=True)
class Accepted:
    """One accepted value, as each surface is given it for ``user``; ``then`` checks the
    user's status afterwards (the same whichever surface acted)."""

    name: str
    python: Callable[[Floodwall, str], Awaitable[object]]
    api: Callable[[str], tuple[str, str, dict[str, Any] | None]]
    cli: Callable[[str], list[str]]
    then: Callable[[UserStatus], None] | None = None


def _blocked_for(seconds: float) -> Callable[[UserStatus], None]:
    def then(status: UserStatus) -> None:
        assert status.blocked
        assert status.blocked_until_ms is not None
        assert status.blocked_at_ms is not None
        assert status.blocked_until_ms - status.blocked_at_ms == math.ceil(seconds * 1000)

    return then


def _limited_to(rate: float, burst: int) -> Callable[[UserStatus], None]:
    def then(status: UserStatus) -> None:
        assert status.limit_overridden
        assert status.rate == pytest.approx(rate)
        assert status.burst == burst

    return then


ACCEPTED = [
    Accepted(
        "ttl of a second and a half",
        lambda fw, u: fw.block(u, reason="r", ttl_seconds=1.5),
        lambda u: ("PUT", f"/users/{u}/block", {"reason": "r", "ttl_seconds": 1.5}),
        lambda u: ["block", u, "--reason", "r", "--ttl", "1.5"],
        _blocked_for(1.5),
    ),
    Accepted(
        "the smallest ttl",
        lambda fw, u: fw.block(u, reason="r", ttl_seconds=rules.TTL_SECONDS.low),
        lambda u: ("PUT", f"/users/{u}/block", {"reason": "r", "ttl_seconds": 1}),
        lambda u: ["block", u, "--reason", "r", "--ttl", "1s"],
        _blocked_for(1),
    ),
    Accepted(
        "the largest ttl",
        lambda fw, u: fw.block(u, reason="r", ttl_seconds=rules.MAX_SECONDS),
        lambda u: ("PUT", f"/users/{u}/block", {"reason": "r", "ttl_seconds": rules.MAX_SECONDS}),
        lambda u: ["block", u, "--reason", "r", "--ttl", f"{TEN_YEARS_DAYS}d"],
        _blocked_for(rules.MAX_SECONDS),
    ),
    Accepted(
        "the longest reason",
        lambda fw, u: fw.block(u, reason="x" * 500),
        lambda u: ("PUT", f"/users/{u}/block", {"reason": "x" * 500}),
        lambda u: ["block", u, "--reason", "x" * 500],
        lambda status: None if status.reason == "x" * 500 else pytest.fail(str(status.reason)),
    ),
    Accepted(
        "a fractional rate and a burst written as 3.0",
        lambda fw, u: fw.set_limit(u, rate=0.5, burst=3.0),  # type: ignore[arg-type]
        lambda u: ("PUT", f"/users/{u}/limit", {"rate": 0.5, "burst": 3.0}),
        lambda u: ["limit", u, "--rate", "0.5", "--burst", "3.0"],
        _limited_to(0.5, 3),
    ),
    Accepted(
        "a rate written as 600/minute",
        lambda fw, u: fw.set_limit(u, rate="600/minute", burst=10),  # type: ignore[arg-type]
        lambda u: ("PUT", f"/users/{u}/limit", {"rate": "600/minute", "burst": 10}),
        lambda u: ["limit", u, "--rate", "600/minute", "--burst", "10"],
        _limited_to(10, 10),
    ),
    Accepted(
        "the smallest rate",
        lambda fw, u: fw.set_limit(u, rate=rules.MIN_RATE, burst=10),
        lambda u: ("PUT", f"/users/{u}/limit", {"rate": rules.MIN_RATE, "burst": 10}),
        lambda u: ["limit", u, "--rate", repr(rules.MIN_RATE), "--burst", "10"],
        _limited_to(rules.MIN_RATE, 10),
    ),
    Accepted(
        "the largest limit",
        lambda fw, u: fw.set_limit(u, rate=rules.RATE.high, burst=int(rules.BURST.high)),
        lambda u: ("PUT", f"/users/{u}/limit", {"rate": 1e6, "burst": 1e6}),
        lambda u: ["limit", u, "--rate", "1e6", "--burst", "1000000"],
        _limited_to(rules.RATE.high, int(rules.BURST.high)),
    ),
    Accepted(
        "the largest page",
        lambda fw, u: fw.blocked(limit=1000),
        lambda u: ("GET", "/blocked?limit=1000", None),
        lambda u: ["blocked", "--limit", "1000"],
    ),
    Accepted(
        "a page size written as 20.0",
        lambda fw, u: fw.audit_log(limit=20.0),  # type: ignore[arg-type]
        lambda u: ("GET", "/audit?limit=20.0", None),
        lambda u: ["audit", "--limit", "20.0"],
    ),
    Accepted(
        "the longest window",
        lambda fw, u: fw.top(window_seconds=3600),
        lambda u: ("GET", "/top?window=3600", None),
        lambda u: ["top", "--once", "--window", "3600"],
    ),
]


@pytest.mark.parametrize("case", ACCEPTED, ids=[case.name for case in ACCEPTED])
async def test_every_surface_accepts_the_same_values_to_the_same_effect(
    case: Accepted,
    floodwall: Floodwall,
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    await case.python(floodwall, "by-python")

    transport = httpx.ASGITransport(app=floodwall.admin_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://admin") as admin:
        method, path, body = case.api("by-api")
        response = await admin.request(method, path, json=body, headers=AUTH)
    assert response.status_code == 200, response.text

    args = [*case.cli("by-cli"), "--redis-url", redis_server.url]
    code = await asyncio.to_thread(main, args)
    assert code == 0, capsys.readouterr().err

    if case.then is not None:
        for user in ("by-python", "by-api", "by-cli"):
            case.then(await floodwall.status(user))


# Each row of the rule-book table in docs/settings.md, and the bounds its numbers must be.
README_ROWS: dict[str, list[rules.Bound | rules.Text]] = {
    "rate": [rules.RATE],
    "burst": [rules.BURST],
    "route cost": [rules.COST],
    "websocket message cost (`FLOODWALL_WEBSOCKET_MESSAGE_COST`)": [rules.WEBSOCKET_MESSAGE_COST],
    "plans (`FLOODWALL_PLANS`)": [rules.PLANS, rules.PLAN_NAME],
    "capacity (`FLOODWALL_CAPACITY`)": [rules.CAPACITY],
    "concurrency (`FLOODWALL_CONCURRENCY`, a user's own)": [rules.CONCURRENCY],
    "tarpit (`FLOODWALL_TARPIT_SECONDS`, `Tarpit`)": [rules.TARPIT_SECONDS],
    "route limit": [rules.ROUTE_LIMIT, rules.ROUTE_PERIOD],
    "`ttl_seconds` (blocks, revoked credential ids)": [rules.TTL_SECONDS],
    "auto-block (`FLOODWALL_AUTO_BLOCK_SECONDS`, `_MAX_SECONDS`)": [rules.AUTO_BLOCK_SECONDS],
    "reason": [rules.REASON],
    "page size (`limit`)": [rules.PAGE_SIZE],
    "`top` window": [rules.WINDOW_SECONDS],
    "user id": [rules.USER_ID],
    "credential id": [rules.CREDENTIAL_ID],
    "`FLOODWALL_REDIS_TIMEOUT`": [rules.REDIS_TIMEOUT],
    "`FLOODWALL_REDIS_WAIT_TIMEOUT`": [rules.REDIS_WAIT_TIMEOUT],
    "`FLOODWALL_EXPECTED_INSTANCES`": [rules.EXPECTED_INSTANCES],
    "`FLOODWALL_BREAKER_FAILURES` / `_COOLDOWN`": [rules.BREAKER_FAILURES, rules.BREAKER_COOLDOWN],
    "`FLOODWALL_RESYNC_SECONDS`": [rules.RESYNC_SECONDS],
    "`FLOODWALL_JWT_LEEWAY`": [rules.JWT_LEEWAY],
    "`FLOODWALL_AUTO_BLOCK_REFUSALS` / `_WINDOW`": [
        rules.AUTO_BLOCK_REFUSALS,
        rules.AUTO_BLOCK_WINDOW,
    ],
    "`FLOODWALL_KEY_PREFIX`": [rules.KEY_PREFIX],
    "header names (`FLOODWALL_USER_HEADER`, `_REQUEST_ID_HEADER`)": [rules.HEADER_NAME],
}
_README_NUMBER = re.compile(r"(?<![\w.])\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?")


def _readme_rule_book(project_root: Path) -> dict[str, str]:
    text = (project_root / "docs" / "settings.md").read_text("utf-8")
    section = text.split("## The rule book\n", 1)[1].split("\n#", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")]
    assert rows[0] == "| value | accepted |"
    return dict(
        (cell.strip() for cell in line.strip("|").split(" | ", 1))  # type: ignore[misc]
        for line in rows[1:]
    )


def test_the_readmes_rule_book_table_is_the_rule_book(project_root: Path) -> None:
    table = _readme_rule_book(project_root)
    assert list(table) == list(README_ROWS)
    for row, bounds in README_ROWS.items():
        shown = [float(n.replace(",", "")) for n in _README_NUMBER.findall(table[row])]
        expected = sorted({float(b.low) for b in bounds} | {float(b.high) for b in bounds})
        assert sorted(set(shown)) == pytest.approx(expected, rel=5e-3), row
