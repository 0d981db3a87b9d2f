"""Operating under fire: metrics, logs, top offenders, shadow mode and auto-block."""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import re
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from conftest import FakeClock
from pydantic import ValidationError

from floodwall import Clock, Floodwall, FloodwallSettings, Identity, MemoryStore
from floodwall.core import rules
from floodwall.core.decision import Outcome
from floodwall.demo import create_app
from floodwall.observe.metrics import sibling_workers
from floodwall.observe.request_log import JsonFormatter, RefusalLog
from floodwall.settings import settings_error
from harness import RedisServer, client_commands

ADMIN_TOKEN = "ops-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


def demo(**settings: Any) -> tuple[Any, httpx.AsyncClient]:
    options: dict[str, Any] = {
        "admin_token": ADMIN_TOKEN,
        "jwt_secret": "ops-jwt-signing-key-0123456789abcdef",
        "user_header": "x-user",
    }
    options.update(settings)
    app = create_app(FloodwallSettings(**options))
    client = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("192.0.2.10", 1234)),
        base_url="http://demo",
    )
    return app, client


@pytest.fixture
async def demo_client() -> AsyncIterator[httpx.AsyncClient]:
    _, client = demo(rate=0.01, burst=3)
    async with client:
        yield client


def metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    assert match is not None, f"{name}{labels} not exposed"
    return float(match.group(1))


async def test_metrics_move_as_decisions_happen(demo_client: httpx.AsyncClient) -> None:
    before = (await demo_client.get("/metrics")).text
    assert metric(before, "floodwall_decisions_total", '{result="allowed"}') == 0
    for _ in range(5):
        await demo_client.get("/api/hello", headers={"x-user": "mallory"})
    await demo_client.put("/admin/users/eve/block", json={"reason": "x"}, headers=ADMIN)
    await demo_client.get("/api/hello", headers={"x-user": "eve"})
    after = (await demo_client.get("/metrics")).text
    assert metric(after, "floodwall_decisions_total", '{result="allowed"}') == 3
    assert metric(after, "floodwall_decisions_total", '{result="limited"}') == 2
    assert metric(after, "floodwall_decisions_total", '{result="blocked"}') == 1
    assert metric(after, "floodwall_operator_actions_total", '{action="block"}') == 1
    assert metric(after, "floodwall_blocked_users") == 1
    # The third request took mallory's last token: the next two were certain refusals,
    # answered without the store; so was eve's, blocked with no end in the worker's mirror.
    assert metric(after, "floodwall_store_check_seconds_count") == 3
    assert metric(after, "floodwall_local_refusals_total") == 3
    assert metric(after, "floodwall_breaker_open") == 0
    # No user id ever becomes a label.
    assert "mallory" not in after
    assert "eve" not in after


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@pytest.fixture
def request_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("floodwall.requests")
    logger.addHandler(handler)
    previous = logger.level
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def test_logs_are_json_lines_with_the_request_id(
    demo_client: httpx.AsyncClient, request_lines: Lines
) -> None:
    given = await demo_client.get("/api/hello", headers={"x-user": "a", "x-request-id": "req-42"})
    made = await demo_client.get("/api/hello", headers={"x-user": "a"})
    hostile = await demo_client.get(
        "/api/hello", headers={"x-user": "a", "x-request-id": "a b\x7f"}
    )
    assert given.headers["x-request-id"] == "req-42"
    assert re.fullmatch(r"[0-9a-f]{16}", made.headers["x-request-id"])
    assert re.fullmatch(r"[0-9a-f]{16}", hostile.headers["x-request-id"])
    records = [json.loads(line) for line in request_lines.lines]
    assert [r["request_id"] for r in records] == [
        "req-42",
        made.headers["x-request-id"],
        hostile.headers["x-request-id"],
    ]
    first = records[0]
    assert first["event"] == "floodwall.request"
    assert first["user_id"] == "a"
    assert first["client"] == "192.0.2.10"
    assert first["decision"] == "allowed"
    assert first["policy"] == "user"
    assert first["remaining"] == 2
    limited = await demo_client.get("/api/hello", headers={"x-user": "a"})
    assert limited.status_code == 429
    refusal = json.loads(request_lines.lines[-1])
    assert refusal["decision"] == "limited"
    assert refusal["retry_after"] == int(limited.headers["retry-after"])
    assert refusal["request_id"] == limited.headers["x-request-id"]


async def test_a_request_id_is_made_only_where_it_is_used(
    demo_client: httpx.AsyncClient,
) -> None:
    # No debug logging: a request that passes is not logged, so it needs no id of its own.
    assert not logging.getLogger("floodwall.requests").isEnabledFor(logging.DEBUG)
    given = await demo_client.get("/api/hello", headers={"x-user": "b", "x-request-id": "r-1"})
    passed = await demo_client.get("/api/hello", headers={"x-user": "b"})
    await demo_client.get("/api/hello", headers={"x-user": "b"})
    refused = await demo_client.get("/api/hello", headers={"x-user": "b"})
    assert given.headers["x-request-id"] == "r-1"
    assert passed.status_code == 200
    assert "x-request-id" not in passed.headers
    assert refused.status_code == 429
    assert re.fullmatch(r"[0-9a-f]{16}", refused.headers["x-request-id"])


async def test_a_flood_of_refusals_yields_a_bounded_number_of_log_lines(
    demo_client: httpx.AsyncClient, request_lines: Lines
) -> None:
    logging.getLogger("floodwall.requests").setLevel(logging.INFO)
    for _ in range(3):
        await demo_client.get("/api/hello", headers={"x-user": "mallory"})
    statuses = [
        (await demo_client.get("/api/hello", headers={"x-user": "mallory"})).status_code
        for _ in range(10_000)
    ]
    assert statuses == [429] * 10_000
    assert 1 <= len(request_lines.lines) <= 5
    assert all(json.loads(line)["user_id"] == "mallory" for line in request_lines.lines)


def test_suppressed_refusal_lines_are_counted_at_their_own_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    refusal_log = RefusalLog(max_lines_per_second=2, clock=lambda: now[0])
    assert [refusal_log.admit(f"user-{i}") for i in range(5)] == [1, 1, None, None, None]
    now[0] = 101.0
    with caplog.at_level(logging.INFO, logger="floodwall.requests"):
        assert refusal_log.admit("user-9") == 1
    [record] = [r for r in caplog.records if r.getMessage().endswith("suppressed")]
    # Not a warning: with INFO off the three lines would not have shown either.
    assert record.levelno == logging.INFO
    assert record.__dict__["fields"] == {"event": "floodwall.suppressed", "lines": 3}


async def test_an_audit_line_keeps_who_did_what_under_a_plain_formatter(
    caplog: pytest.LogCaptureFixture,
) -> None:
    floodwall = Floodwall(FloodwallSettings())
    with caplog.at_level(logging.INFO, logger="floodwall.audit"):
        await floodwall.block("mallory", reason="INC-7 \u2028", actor="oncall-bob")
    await floodwall.stop()
    [message] = [r.getMessage() for r in caplog.records if r.name == "floodwall.audit"]
    assert message.startswith("floodwall: block {")
    record = json.loads(message.removeprefix("floodwall: block "))
    assert (record["actor"], record["user_id"], record["reason"]) == (
        "oncall-bob",
        "mallory",
        "INC-7 \u2028",
    )
    assert "\u2028" not in message  # escaped: one line whatever the reason holds


async def test_top_names_the_flooding_user_without_a_command_per_request(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    floodwall = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, rate=0.01, burst=2, redis_timeout=2)
    )
    try:
        await floodwall.start()
        await asyncio.wait_for(floodwall.following.wait(), 10)
        for _ in range(5):
            await floodwall.check(Identity("someone"))
        with client_commands(redis_server.port) as seen:
            outcomes = [(await floodwall.check(Identity("mallory"))).outcome for _ in range(2000)]
        assert outcomes.count(Outcome.LIMITED) == 1998
        # The 2 allowed reach Redis; the second took the last token, so the whole flood
        # after it is refused without a command.
        assert seen.count("EVALSHA") == 2
        # Besides those, only the once-a-second background work (settings, count flushes:
        # two subjects into the three blocks of top, each then trimmed and given its TTL).
        background = [command for command in seen if command != "EVALSHA"]
        assert set(background) <= {"HGETALL", "ZINCRBY", "ZREMRANGEBYRANK", "EXPIRE"}
        assert len(background) <= 2 * (1 + 3 * (2 + 2))
        offenders = await floodwall.top(window_seconds=60)
        assert offenders[0].subject == "mallory"
        assert offenders[0].refusals == 1998
        assert offenders[1].subject == "someone"
    finally:
        await floodwall.stop()


async def test_admin_top_and_the_cli_name_the_flooder(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    app, client = demo(redis_url=redis_server.url, redis_timeout=2, rate=0.01, burst=1)
    async with client:
        for _ in range(50):
            await client.get("/api/hello", headers={"x-user": "mallory"})
        await client.get("/api/hello", headers={"x-user": "alice"})
        top = (await client.get("/admin/top?window=60", headers=ADMIN)).json()
    # No lifespan runs over the ASGI transport: stop the service as shutdown would.
    await app.state.floodwall.stop()
    assert top["window_seconds"] == 60
    assert top["items"][0] == {"subject": "mallory", "anonymous": False, "refusals": 49}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "floodwall.cli",
        "top",
        "--once",
        "--redis-url",
        redis_server.url,
        stdout=asyncio.subprocess.PIPE,
    )
    output, _ = await process.communicate()
    assert process.returncode == 0
    lines = output.decode().splitlines()
    assert lines[2].split() == ["49", "user", "mallory"]


async def test_shadow_mode_refuses_nothing_and_counts_what_it_would_have(
    request_lines: Lines,
) -> None:
    _, client = demo(rate=0.01, burst=2, shadow=True)
    async with client:
        statuses = [
            (await client.get("/api/hello", headers={"x-user": "mallory"})).status_code
            for _ in range(10)
        ]
        await client.put("/admin/users/eve/block", json={"reason": "x"}, headers=ADMIN)
        blocked = await client.get("/api/hello", headers={"x-user": "eve"})
        scraped = (await client.get("/metrics")).text
    assert statuses == [200] * 10
    assert metric(scraped, "floodwall_decisions_total", '{result="limited"}') == 8
    assert metric(scraped, "floodwall_shadow_refusals_total") == 8
    # An operator's block is never shadowed.
    assert blocked.status_code == 403
    shadowed = [json.loads(line) for line in request_lines.lines if "limited" in line]
    assert shadowed
    assert shadowed[0]["enforced"] is False


async def test_shadow_mode_for_one_user() -> None:
    _, client = demo(rate=0.01, burst=1)
    async with client:
        await client.put("/admin/users/trial/shadow", headers=ADMIN)
        trial = [
            (await client.get("/api/hello", headers={"x-user": "trial"})).status_code
            for _ in range(3)
        ]
        other = [
            (await client.get("/api/hello", headers={"x-user": "other"})).status_code
            for _ in range(3)
        ]
        status = (await client.get("/admin/users/trial", headers=ADMIN)).json()
        await client.delete("/admin/users/trial/shadow", headers=ADMIN)
        enforced = (await client.get("/api/hello", headers={"x-user": "trial"})).status_code
    assert trial == [200, 200, 200]
    assert other == [200, 429, 429]
    assert status["limit"]["shadow"] is True
    assert enforced == 429


async def test_auto_block_blocks_escalates_and_expires() -> None:
    clock = FakeClock()
    floodwall = Floodwall(
        FloodwallSettings(
            rate=0.01,
            burst=1,
            auto_block_refusals=5,
            auto_block_window=10,
            auto_block_seconds=300,
        ),
        store=MemoryStore(clock=clock),
        clock=Clock(wall=clock, monotonic=clock),
    )
    try:
        for offence, ttl in ((1, 300), (2, 600)):
            outcomes = [(await floodwall.check(Identity("mallory"))).outcome for _ in range(8)]
            assert Outcome.LIMITED in outcomes
            await floodwall.offenders.stop()  # the auto-block in flight has landed
            status = await floodwall.status("mallory")
            assert status.blocked, offence
            assert status.blocked_by == "auto"
            assert status.reason is not None
            assert f"offence {offence}" in status.reason
            assert status.blocked_until_ms is not None
            assert status.blocked_at_ms is not None
            assert (status.blocked_until_ms - status.blocked_at_ms) / 1000 == ttl
            assert (await floodwall.check(Identity("mallory"))).outcome is Outcome.BLOCKED
            # Past the block and past the counting window: the next offence starts afresh.
            clock.advance(ttl + 1)
            assert not (await floodwall.status("mallory")).blocked
        records, _ = await floodwall.audit_log()
        autos = [r for r in records if r.actor == "auto"]
        assert [r.action for r in autos] == ["block", "block"]
        assert all(r.user_id == "mallory" for r in autos)
        assert autos[0].expires_ms is not None
    finally:
        await floodwall.stop()


async def test_an_operators_unblock_resets_auto_block_escalation() -> None:
    floodwall = Floodwall(
        FloodwallSettings(
            rate=0.01, burst=1, auto_block_refusals=3, auto_block_window=0.2, auto_block_seconds=30
        )
    )

    async def flood_until_blocked() -> str:
        for _ in range(10):
            await floodwall.check(Identity("mallory"))
        await asyncio.sleep(0.05)
        status = await floodwall.status("mallory")
        assert status.blocked
        assert status.reason is not None
        return status.reason

    try:
        assert "offence 1" in await flood_until_blocked()
        await floodwall.unblock("mallory", reason="false alarm")
        await asyncio.sleep(0.25)  # a new counting window
        # The next auto-block is a first offence again, not one twice as long.
        assert "offence 1" in await flood_until_blocked()
    finally:
        await floodwall.stop()


@pytest.mark.parametrize("everyone", [False, True])
async def test_a_shadowed_limit_never_gets_anyone_auto_blocked(everyone: bool) -> None:
    floodwall = Floodwall(
        FloodwallSettings(
            rate=0.01, burst=1, shadow=everyone, auto_block_refusals=3, auto_block_window=60
        )
    )
    try:
        if not everyone:
            await floodwall.set_shadow("bigcorp", True)
        decisions = [await floodwall.check(Identity("bigcorp")) for _ in range(20)]
        refused = [d for d in decisions if d.outcome is Outcome.LIMITED]
        assert len(refused) == 19
        assert not any(floodwall.enforces(d) for d in refused)
        await asyncio.sleep(0.05)
        assert not (await floodwall.status("bigcorp")).blocked
        # The same flood from an enforced account is blocked.
        if not everyone:
            for _ in range(20):
                await floodwall.check(Identity("mallory"))
            await asyncio.sleep(0.05)
            assert (await floodwall.status("mallory")).blocked
    finally:
        await floodwall.stop()


def test_auto_block_is_off_by_default() -> None:
    assert FloodwallSettings().auto_block_refusals is None


@pytest.mark.parametrize("field", ["auto_block_seconds", "auto_block_max_seconds"])
@pytest.mark.parametrize("value", [0.5, 0, -1, rules.MAX_SECONDS + 1, "nan"])
def test_auto_block_times_follow_the_bound_of_a_blocks_ttl(field: str, value: object) -> None:
    # 0.5 s was accepted, and then every auto-block was refused by the rule book.
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings(**{field: value})  # type: ignore[arg-type]
    assert settings_error(caught.value) == (
        f"bad settings: FLOODWALL_{field.upper()}: {rules.AUTO_BLOCK_SECONDS.message}"
    )
    assert (rules.AUTO_BLOCK_SECONDS.low, rules.AUTO_BLOCK_SECONDS.high) == (
        rules.TTL_SECONDS.low,
        rules.TTL_SECONDS.high,
    )


async def test_a_failed_auto_block_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    # Settings that bypass validation (model_copy) make the block itself refuse the ttl.
    settings = FloodwallSettings(rate=0.01, burst=1, auto_block_refusals=2)
    floodwall = Floodwall(settings.model_copy(update={"auto_block_seconds": 0.5}))
    try:
        with caplog.at_level(logging.ERROR, logger="floodwall"):
            for _ in range(4):
                await floodwall.check(Identity("mallory"))
            await floodwall.offenders.stop()  # the auto-block in flight has ended
            gc.collect()
        failures = [r for r in caplog.records if "auto-block" in r.getMessage()]
        assert [r.getMessage() for r in failures] == [
            "floodwall: auto-block of a user failed, so the user is not blocked: RuleError"
        ]
        assert not any("never retrieved" in r.getMessage() for r in caplog.records)
        assert not (await floodwall.status("mallory")).blocked
    finally:
        await floodwall.stop()


async def test_a_background_task_that_fails_is_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    floodwall = Floodwall(FloodwallSettings())
    ended = asyncio.Event()

    async def broken_poll() -> None:
        ended.set()
        raise RuntimeError("poll broke")

    floodwall.feed.poll = broken_poll  # type: ignore[method-assign]
    try:
        with caplog.at_level(logging.ERROR, logger="floodwall"):
            await floodwall.start()
            await ended.wait()
            await asyncio.sleep(0)  # the task's done callbacks run
        assert [r.getMessage() for r in caplog.records if r.name == "floodwall"] == [
            "floodwall: polling the store stopped: RuntimeError"
        ]
    finally:
        await floodwall.stop()


@pytest.mark.parametrize(
    ("environ", "parent", "workers"),
    [
        ({}, ["/usr/bin/python3", "-m", "uvicorn", "app:app", "--workers", "4"], 4),
        ({}, ["/srv/.venv/bin/python", "/srv/.venv/bin/uvicorn", "app:app", "--workers=3"], 3),
        ({}, ["/srv/.venv/bin/python", "/srv/.venv/bin/gunicorn", "-w", "5", "app:app"], 5),
        ({"WEB_CONCURRENCY": "6"}, ["/usr/bin/python3", "-m", "gunicorn", "app:app"], 6),
        ({}, ["/usr/bin/python3", "-m", "uvicorn", "app:app"], 1),
        ({}, ["/bin/bash", "run.sh", "--workers", "9"], 1),  # not a server's own option
        ({"WEB_CONCURRENCY": "many"}, [], 1),
        ({}, [], 1),
    ],
)
def test_the_workers_a_server_runs_are_read_from_its_command_line(
    environ: dict[str, str], parent: list[str], workers: int
) -> None:
    assert sibling_workers(environ, parent) == workers
