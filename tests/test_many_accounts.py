"""Many accounts at once, in process: network blocks (rules, lookup, middleware, admin API,
CLI), bulk blocks, and the change feed carrying both to other workers (issue 12)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
import pytest
import redis.asyncio
from cli_process import environment, floodwall_command
from conftest import FakeClock
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from test_cli_hostile import bash

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity, MemoryStore
from floodwall.control.change_feed import NETWORK_PAGE, RESYNC_PAGE
from floodwall.core.decision import Outcome
from floodwall.core.rules import RuleError, network
from floodwall.core.user_state import Listing, UserState
from floodwall.killswitch import networks as networks_module
from floodwall.killswitch.mirror import MirroredUser
from floodwall.killswitch.networks import NetworkBlock, NetworkBlocks
from floodwall.observe.metrics import RESULTS
from floodwall.stores.network_fields import block_text, read_block
from floodwall.stores.protocols import Store
from harness import RedisServer, client_commands, wait_until_async

TOKEN = "many-admin-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


# -- the rule book and the lookup -------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "force", "expected"),
    [
        ("10.0.0.0/8", False, "10.0.0.0/8"),
        (" 192.0.2.7 ", False, "192.0.2.7/32"),
        ("2001:db8::/32", False, "2001:db8::/32"),
        ("2001:db8::1", False, "2001:db8::1/128"),
        ("10.0.0.0/7", True, "10.0.0.0/7"),
        ("2000::/3", True, "2000::/3"),
    ],
)
def test_networks_the_rule_book_accepts(text: str, force: bool, expected: str) -> None:
    assert str(network(text, force=force)) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("10.0.0.0/7", "broader than a /8 (IPv4): refused unless forced"),
        ("2001:db8::/31", "broader than a /32 (IPv6): refused unless forced"),
        ("10.1.2.3/8", "host bits set"),
        ("0.0.0.0/0", "/0 would refuse every client"),
        ("::/0", "/0 would refuse every client"),
        ("::ffff:10.0.0.0/104", "IPv4-mapped"),
        ("bob", "cidr is an IPv4 or IPv6 network"),
        ("", "cidr is text of 1 to 64 characters"),
    ],
)
def test_networks_the_rule_book_refuses(text: str, message: str) -> None:
    with pytest.raises(RuleError, match=message.replace("(", r"\(").replace(")", r"\)")):
        network(text, force="forced" not in message)


def stored(block: NetworkBlock) -> tuple[str, NetworkBlock]:
    return block.network, block


def stored_text(block: NetworkBlock) -> tuple[str, str]:
    """A block as the Redis store writes it: its CIDR and JSON."""
    return block.network, block_text(block)


def test_the_lookup_takes_the_longest_block_that_holds(clock: FakeClock) -> None:
    blocks = NetworkBlocks(wall=clock)
    assert not blocks.any
    assert blocks.match("10.1.2.3") is None
    now_ms = int(clock() * 1000)
    blocks.replace(
        dict(
            [
                stored(NetworkBlock("10.0.0.0/8", "wide", "ops", now_ms, None)),
                stored(NetworkBlock("10.1.0.0/16", "ended", "ops", now_ms, now_ms - 1)),
                stored(NetworkBlock("10.1.2.0/24", "narrow", "ops", now_ms, now_ms + 5000)),
                stored(NetworkBlock("2001:db8:1::/48", "v6", None, None, None)),
            ]
        )
        | {
            cidr: read_block(cidr, text)
            for cidr, text in (
                ("not a network", "{}"),
                ("192.0.2.0/24", "garbage"),
                ("198.51.100.0/24", "[1]"),
            )
        }
    )
    assert blocks.any
    # Mirrored: the three that hold and the two garbled; neither the ended block nor what
    # is not a network.
    assert len(blocks) == 5
    assert [b.reason for b in (blocks.match(h) for h in ("10.1.2.3", "10.1.9.9")) if b] == [
        "narrow",
        "wide",
    ]
    assert blocks.match("::ffff:10.200.0.1") is not None
    assert blocks.match("2001:db8:1:abcd::1%eth0") is not None
    assert blocks.match("2001:db8:2::1") is None
    assert blocks.match("11.0.0.1") is None
    assert blocks.match("unix:/tmp/socket") is None
    # What cannot be read keeps blocking, with no end.
    garbled = blocks.match("192.0.2.1")
    assert garbled == NetworkBlock("192.0.2.0/24", None, None, None, None)
    clock.advance(6)
    assert blocks.match("10.1.2.3") is not None  # the /8 still holds
    assert [b.network for b in blocks.blocks()] == [
        "10.0.0.0/8",
        "192.0.2.0/24",
        "198.51.100.0/24",
        "2001:db8:1::/48",
    ]
    # Only ended blocks stored: nothing to look up, requests skip the lookup altogether.
    blocks.replace(dict([stored(NetworkBlock("10.1.2.0/24", "over", "ops", now_ms, now_ms + 1))]))
    assert not blocks.any
    blocks.replace({})
    assert not blocks.any


# -- the middleware -----------------------------------------------------------------------------


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def guarded(floodwall: Floodwall, client: str) -> httpx.AsyncClient:
    app = FloodwallMiddleware(
        Starlette(routes=[Route("/", hello)]), floodwall=floodwall, exempt_paths=["/health"]
    )
    transport = httpx.ASGITransport(app=app, client=(client, 1234))
    return httpx.AsyncClient(transport=transport, base_url="http://app")


@pytest.fixture
async def floodwall() -> AsyncIterator[Floodwall]:
    settings = FloodwallSettings(
        user_header="x-user", admin_token=SecretStr(TOKEN), request_id_header="x-request-id"
    )
    made = Floodwall(settings, store=MemoryStore())
    try:
        yield made
    finally:
        await made.stop()


async def test_a_blocked_network_is_refused_before_anyone_is_identified(
    floodwall: Floodwall, monkeypatch: pytest.MonkeyPatch
) -> None:
    await floodwall.block_network("203.0.113.0/24", reason="stuffing", actor="ops")

    async def no_check(*args: object, **kwargs: object) -> None:
        raise AssertionError("a blocked network must not reach the store")

    monkeypatch.setattr(floodwall.checker, "check", no_check)
    async with guarded(floodwall, "203.0.113.9") as inside:
        for headers in ({}, {"x-user": "alice"}, {"x-request-id": "req-7"}):
            refused = await inside.get("/", headers=headers)
            assert refused.status_code == 403
            assert refused.headers["content-type"] == "application/problem+json"
            assert refused.json()["type"] == "urn:floodwall:problem:network-blocked"
            assert "stuffing" not in refused.text
        assert refused.headers["x-request-id"] == "req-7"
        assert (await inside.get("/health")).status_code == 404  # exempt: not refused
    monkeypatch.undo()
    async with guarded(floodwall, "203.0.114.9") as outside:
        assert (await outside.get("/", headers={"x-user": "alice"})).status_code == 200
    results = floodwall.metrics.hot.results
    assert results[RESULTS.index("network_blocked")] == 3
    assert Outcome.NETWORK_BLOCKED.value == 7
    # Counted for top by address and by network.
    networks = await floodwall.top_networks()
    assert [(n.network, n.refusals) for n in networks] == [("203.0.113.0/24", 3)]
    assert (await floodwall.top())[0].subject == "203.0.113.9"


async def test_the_admin_api_blocks_lists_and_lifts_networks(floodwall: Floodwall) -> None:
    transport = httpx.ASGITransport(app=floodwall.admin_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as api:
        put = await api.put(
            "/networks/2001:db8::%2F32/block", json={"reason": "INC-9", "ttl_seconds": 60}
        )
        assert put.status_code == 200, put.text
        body = put.json()
        assert (body["network"], body["blocked"], body["blocked_by"]) == (
            "2001:db8::/32",
            True,
            "admin",
        )
        assert body["blocked_until"] is not None
        # Unencoded, the "/" still names the network.
        assert (
            await api.put("/networks/10.0.0.0/8/block", json={"reason": "r"})
        ).status_code == 200
        broad = await api.put("/networks/10.0.0.0%2F7/block", json={"reason": "r"})
        assert broad.status_code == 422
        assert "refused unless forced" in broad.text
        forced = await api.put("/networks/10.0.0.0%2F7/block", json={"reason": "r", "force": True})
        assert forced.status_code == 200
        bad = await api.put("/networks/bob/block", json={"reason": "r"})
        assert bad.status_code == 422
        listed = (await api.get("/networks")).json()["items"]
        assert [n["network"] for n in listed] == ["10.0.0.0/7", "10.0.0.0/8", "2001:db8::/32"]
        lifted = await api.request(
            "DELETE", "/networks/10.0.0.0%2F7/block", json={"reason": "too broad"}
        )
        assert lifted.json() | {"received_by": 0} == {
            "network": "10.0.0.0/7",
            "blocked": False,
            "reason": None,
            "blocked_by": None,
            "blocked_at": None,
            "blocked_until": None,
            "received_by": 0,
            "replicas": 0,
        }
        audit = (await api.get("/audit?limit=4")).json()["items"]
        assert [(e["action"], e["user_id"], e["detail"], e["reason"]) for e in audit] == [
            ("unblock-network", None, "network=10.0.0.0/7", "too broad"),
            ("block-network", None, "network=10.0.0.0/7", "r"),
            ("block-network", None, "network=10.0.0.0/8", "r"),
            ("block-network", None, "network=2001:db8::/32", "INC-9"),
        ]
        top = (await api.get("/top")).json()
        assert top["networks"] == []
        document = (await api.get("/openapi.json")).json()
        assert {"/blocks", "/networks", "/networks/{cidr}/block"} <= set(document["paths"])


async def test_the_admin_api_blocks_many_users_at_once(floodwall: Floodwall) -> None:
    transport = httpx.ASGITransport(app=floodwall.admin_app())
    async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as api:
        users = [f"user-{index}" for index in range(1000)]
        done = await api.post("/blocks", json={"user_ids": [*users, users[0]], "reason": "r"})
        assert done.status_code == 422
        done = await api.post("/blocks", json={"user_ids": users, "reason": "INC-9"})
        assert done.status_code == 200, done.text
        answer = done.json()
        assert (answer["blocked"], answer["failed"]) == (1000, 0)
        assert answer["items"][0] == {
            "user_id": "user-0",
            "blocked": True,
            "blocked_until": None,
            "error": None,
        }
        assert (await api.post("/blocks", json={"user_ids": [], "reason": "r"})).status_code == 422
        status = (await api.get("/users/user-999")).json()
        assert (status["blocked"], status["reason"], status["blocked_by"]) == (
            True,
            "INC-9",
            "admin",
        )
    audit, _ = await floodwall.audit_log(limit=1000)
    assert len(audit) == 1000
    assert {record.user_id for record in audit} == set(users)


async def test_a_bulk_block_reports_one_users_failure_and_blocks_the_rest(
    floodwall: Floodwall,
) -> None:
    store = floodwall.store
    assert isinstance(store, MemoryStore)
    results = await floodwall.block_many(["a", "b", "a"], reason="r", ttl_seconds=60)
    assert [(r.user_id, r.blocked) for r in results] == [("a", True), ("b", True), ("a", True)]
    assert results[0].blocked_until_ms is not None
    with pytest.raises(RuleError, match="user_ids is a whole number of ids a call from 1"):
        await floodwall.block_many([], reason="r")


async def test_a_bulk_block_with_a_damaged_user_blocks_the_rest_and_listings_survive(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    settings = FloodwallSettings(
        redis_url=redis_server.url, redis_timeout=2, admin_token=SecretStr(TOKEN)
    )
    acting = Floodwall(settings)
    # A state key of another type, as a hand edit or a foreign writer may leave.
    await redis_client.set(acting.keys.user("damaged").state, "not a hash")
    transport = httpx.ASGITransport(app=acting.admin_app())
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://a", headers=AUTH) as api:
            asked = ["a", "damaged", "b", "a", "b"]
            done = await api.post("/blocks", json={"user_ids": asked, "reason": "INC-9"})
            assert done.status_code == 200, done.text
            answer = done.json()
            # Distinct users: "a" and "b" blocked once each, whatever the repeats.
            assert (answer["blocked"], answer["failed"]) == (2, 1)
            assert [item["blocked"] for item in answer["items"]] == [
                True,
                False,
                True,
                True,
                True,
            ]
            assert answer["items"][1]["error"]
            listed = await api.get("/blocked")
            assert listed.status_code == 200, listed.text
            assert [item["user_id"] for item in listed.json()["items"]] == ["a", "b"]
            # Indexed by an older writer anyway: the listing leaves it out, not everyone.
            await redis_client.zadd(acting.keys.index("blocked"), {"damaged": 0})
            listed = await api.get("/blocked")
            assert listed.status_code == 200, listed.text
            assert [item["user_id"] for item in listed.json()["items"]] == ["a", "b"]
    finally:
        await acting.stop()

    cli = await floodwall_command(
        redis_server.url, "block", "c", "c", "damaged", "--reason", "r", "--json"
    )
    # No app follows this store here: the CLI says so and exits 1, the change stored.
    assert cli.status == 1, cli.stderr
    assert "no running app follows" in cli.stderr
    summary = json.loads(cli.stdout)
    assert (summary["blocked"], summary["failed"]) == (1, 1)
    listed_cli = await floodwall_command(redis_server.url, "blocked", "--json")
    assert listed_cli.status == 0, listed_cli.stderr
    assert [item["user_id"] for item in json.loads(listed_cli.stdout)["items"]] == ["a", "b", "c"]


async def test_bulk_and_network_changes_reach_another_worker(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    settings = FloodwallSettings(redis_url=redis_server.url, redis_timeout=2)
    acting, serving = Floodwall(settings), Floodwall(settings)
    try:
        await serving.start()
        await asyncio.wait_for(serving.following.wait(), 10)
        await acting.block_many([f"u{index}" for index in range(450)], reason="r")
        await acting.block_network("198.51.100.0/24", reason="r", ttl_seconds=60)

        async def arrived() -> bool:
            return len(serving.mirror) == 450 and serving.networks.any

        await wait_until_async(arrived, "the changes arrive", within=5, interval=0.05)
        # A network block answers with no round trip at all.
        app = FloodwallMiddleware(Starlette(routes=[Route("/", hello)]), floodwall=serving)
        transport = httpx.ASGITransport(app=app, client=("198.51.100.20", 1))
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            with client_commands(redis_server.port) as seen:
                codes = [(await client.get("/")).status_code for _ in range(50)]
        assert codes == [403] * 50
        assert "EVALSHA" not in seen
        await acting.unblock_network("198.51.100.0/24")

        async def lifted() -> bool:
            return not serving.networks.any

        await wait_until_async(lifted, "the lift arrives", within=5, interval=0.05)
        assert await acting.blocked_networks() == []
    finally:
        await acting.stop()
        await serving.stop()


async def test_the_cli_blocks_networks_and_many_users(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer, tmp_path: object
) -> None:
    url = redis_server.url
    broad = await floodwall_command(url, "block-network", "10.0.0.0/7", "--reason", "r")
    assert broad.status == 2
    assert broad.stderr.startswith("floodwall: error: cidr is broader than a /8")
    done = await floodwall_command(
        url, "block-network", "10.0.0.0/7", "--reason", "INC-9", "--force", "--ttl", "1h"
    )
    assert done.status == 0, done.stderr
    assert done.stdout.startswith("10.0.0.0/7\tuntil 20")
    as_json = await floodwall_command(
        url, "block-network", "2001:db8::/32", "--reason", "r", "--json"
    )
    assert json.loads(as_json.stdout)["network"] == "2001:db8::/32"
    listed = await floodwall_command(url, "blocked", "--networks")
    assert [line.split("\t")[0] for line in listed.stdout.splitlines()] == [
        "10.0.0.0/7",
        "2001:db8::/32",
    ]
    listed_json = await floodwall_command(url, "blocked", "--networks", "--json")
    assert len(json.loads(listed_json.stdout)["items"]) == 2
    lifted = await floodwall_command(url, "unblock-network", "10.0.0.0/7")
    assert lifted.stdout == "10.0.0.0/7\tnot blocked\n"
    lifted_json = await floodwall_command(url, "unblock-network", "2001:db8::/32", "--json")
    assert json.loads(lifted_json.stdout)["blocked"] is False

    many = await floodwall_command(url, "block", "a", "b", "--reason", "r")
    assert many.status == 0, many.stderr
    assert many.stdout == (
        "a\tblocked until no end\nb\tblocked until no end\nblocked 2 of 2 users\n"
    )
    nothing = await floodwall_command(url, "block", "--reason", "r")
    assert nothing.status == 2
    missing = await floodwall_command(url, "block", "--from-file", "/nonexistent", "--reason", "r")
    assert missing.status == 2
    assert "No such file or directory" in missing.stderr


async def test_top_json_piped_into_block_from_file_blocks_the_flooders(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    """The README's and the runbook's pipeline, as written there."""
    app = Floodwall(FloodwallSettings(redis_url=redis_server.url, rate=0.01, burst=1))
    try:
        for user in ("mallory", "trudy", "team/eve"):
            for _ in range(5):
                await app.check(Identity(user))
        for _ in range(5):
            await app.check(Identity("192.0.2.1", anonymous=True))
        await app.flush_refusals()
    finally:
        await app.stop()
    shown = await bash("floodwall top --once --json", environment(redis_server.url))
    data = json.loads(shown.stdout)
    assert set(data) == {"window_seconds", "items", "networks"}
    assert data["networks"] == [{"network": "192.0.2.0/24", "refusals": 4}]
    done = await bash(
        "floodwall top --once --json | jq -r '.items[] | select(.anonymous | not) | .subject' "
        '| floodwall block --from-file - --reason "credential stuffing, INC-9"',
        environment(redis_server.url),
    )
    assert done.status == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "blocked 3 of 3 users"
    checker = Floodwall(FloodwallSettings(redis_url=redis_server.url))
    try:
        for user in ("mallory", "trudy", "team/eve"):
            assert (await checker.status(user)).blocked
    finally:
        await checker.stop()


async def test_networks_that_ran_out_make_room_at_the_limit(
    floodwall: Floodwall, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("floodwall.core.rules.MAX_NETWORK_BLOCKS", 2)
    store = floodwall.store
    await store.write_network("192.0.2.0/24", NetworkBlock("192.0.2.0/24", "r", "a", 1, 2))
    await floodwall.block_network("198.51.100.0/24", reason="r")
    await floodwall.block_network("203.0.113.0/24", reason="r")
    with pytest.raises(RuleError, match="at most 2 networks are blocked at once"):
        await floodwall.block_network("10.0.0.0/8", reason="r")
    assert [b.network for b in await floodwall.blocked_networks()] == [
        "198.51.100.0/24",
        "203.0.113.0/24",
    ]


# -- at scale: no reload holds the event loop (issue 22) -----------------------------------------


def network_blocks(count: int) -> dict[str, NetworkBlock]:
    """``count`` /24 blocks with no end, in 10.0.0.0/8."""
    blocks: dict[str, NetworkBlock] = {}
    for index in range(count):
        cidr = f"10.{index // 256}.{index % 256}.0/24"
        blocks[cidr] = NetworkBlock(cidr, "r", "ops", 1, None)
    return blocks


def block_texts(count: int) -> dict[str, str]:
    """``network_blocks`` as the Redis store writes them."""
    return dict(stored_text(block) for block in network_blocks(count).values())


async def test_the_store_pages_through_the_network_blocks(store: Store) -> None:
    blocks = network_blocks(250)
    for cidr, block in blocks.items():
        await store.write_network(cidr, block)
    assert await store.count_networks() == 250
    assert await store.read_network("10.0.1.0/24") == blocks["10.0.1.0/24"]
    assert await store.read_network("10.9.9.0/24") is None
    seen: dict[str, NetworkBlock | None] = {}
    cursor: str | None = None
    pages = 0
    while cursor != "":
        page, cursor = await store.scan_networks(cursor, 100)
        seen |= page
        pages += 1
    assert seen == blocks
    assert pages > 1


@pytest.fixture
async def two_workers(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> AsyncIterator[tuple[Floodwall, Floodwall]]:
    """An operator's ``Floodwall`` (as the CLI has) and a serving worker following the feed,
    on an emptied real Redis."""
    settings = FloodwallSettings(redis_url=redis_server.url, redis_timeout=2)
    acting, serving = Floodwall(settings), Floodwall(settings)
    await redis_client.flushall()
    try:
        yield acting, serving
    finally:
        await acting.stop()
        await serving.stop()


async def store_blocks(redis_client: redis.asyncio.Redis, count: int) -> None:
    await redis_client.hset("floodwall:networks", mapping=block_texts(count))  # type: ignore[arg-type]


async def test_a_network_change_reads_that_one_network_on_every_worker(
    two_workers: tuple[Floodwall, Floodwall],
    redis_server: RedisServer,
    redis_client: redis.asyncio.Redis,
) -> None:
    acting, serving = two_workers
    await store_blocks(redis_client, 1000)
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    assert len(serving.networks) == 1000

    async def holds() -> bool:
        return serving.networks.match("198.51.100.7") is not None

    async def lifted() -> bool:
        return not await holds()

    with client_commands(redis_server.port) as seen:
        await acting.block_network("198.51.100.0/24", reason="r")
        await wait_until_async(holds, "the block arrives", within=5, interval=0.01)
        await acting.unblock_network("198.51.100.0/24")
        await wait_until_async(lifted, "the lift arrives", within=5, interval=0.01)
    assert len(serving.networks) == 1000
    # Neither the operator nor the worker reads the 1,000 other blocks: the worker reads the
    # one network of each change; the operator, whether a block is new and how many are
    # stored (the limit).
    assert "HGETALL" not in seen
    assert "HSCAN" not in seen
    assert seen.count("HGET") == 3
    assert seen.count("HLEN") == 1


async def test_a_network_change_during_a_reload_wins_over_what_it_read(
    two_workers: tuple[Floodwall, Floodwall],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.asyncio.Redis,
) -> None:
    acting, serving = two_workers
    await store_blocks(redis_client, 300)
    await acting.block_network("198.51.100.0/24", reason="lifted during the reload")
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    scan = serving.store.scan_networks

    async def changed_after_the_last_page(
        cursor: str | None, count: int
    ) -> tuple[dict[str, NetworkBlock | None], str]:
        page, after = await scan(cursor, count)
        if after == "":
            # The reload has read everything: both changes are newer than what it read.
            await acting.block_network("203.0.113.0/24", reason="blocked during the reload")
            await acting.unblock_network("198.51.100.0/24")

            async def applied() -> bool:
                return serving.networks.match("203.0.113.1") is not None and (
                    serving.networks.match("198.51.100.1") is None
                )

            await wait_until_async(applied, "the changes arrive", within=5, interval=0.01)
        return page, after

    monkeypatch.setattr(serving.store, "scan_networks", changed_after_the_last_page)
    await serving.feed.reload_networks()
    assert serving.networks.match("203.0.113.1") is not None
    assert serving.networks.match("198.51.100.1") is None
    assert len(serving.networks) == 301


async def test_a_user_change_during_a_resync_wins_over_what_it_read(
    two_workers: tuple[Floodwall, Floodwall], monkeypatch: pytest.MonkeyPatch
) -> None:
    acting, serving = two_workers
    await acting.block_many([f"u{index:03}" for index in range(120)], reason="r")
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    list_users = serving.store.list_users
    changed = False

    async def changed_after_the_first_page(
        listing: Listing, *, after: str | None, count: int
    ) -> list[str]:
        nonlocal changed
        if after is not None and not changed:
            changed = True
            # u000 was read blocked, and "a-late" (before it) not at all.
            await acting.unblock("u000")
            await acting.block("a-late", reason="blocked during the resync")

            async def applied() -> bool:
                late, first = serving.mirror.get("a-late"), serving.mirror.get("u000")
                return late is not None and late.kill_switch.blocked_until_ms == 0 and first is None

            await wait_until_async(applied, "the changes arrive", within=5, interval=0.01)
        return await list_users(listing, after=after, count=count)

    monkeypatch.setattr(serving.store, "list_users", changed_after_the_first_page)
    await serving.resync()
    assert changed
    late = serving.mirror.get("a-late")
    assert late is not None
    assert late.kill_switch.blocked_until_ms == 0
    assert serving.mirror.get("u000") is None
    assert len(serving.mirror) == 120


async def test_a_resync_gives_the_loop_back_after_each_page(
    two_workers: tuple[Floodwall, Floodwall],
    monkeypatch: pytest.MonkeyPatch,
    redis_client: redis.asyncio.Redis,
) -> None:
    acting, serving = two_workers
    await acting.block_many([f"u{index:04}" for index in range(1000)], reason="r")
    await store_blocks(redis_client, 1000)
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    # What each turn of the event loop handled: users and networks read into the mirrors.
    turns = 0
    users: Counter[int] = Counter()
    networks: Counter[int] = Counter()
    user_of = MirroredUser.of.__func__  # type: ignore[attr-defined]
    held = networks_module._held

    def user_read(cls: type[MirroredUser], state: UserState) -> MirroredUser | None:
        users[turns] += 1
        return user_of(cls, state)  # type: ignore[no-any-return]

    def network_read(block: NetworkBlock, now_ms: float) -> tuple[Any, NetworkBlock | None]:
        networks[turns] += 1
        return held(block, now_ms)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    monkeypatch.setattr(MirroredUser, "of", classmethod(user_read))
    monkeypatch.setattr(networks_module, "_held", network_read)
    counting = asyncio.create_task(count_turns())
    try:
        await serving.resync()
    finally:
        counting.cancel()
    assert sum(users.values()) == 1000
    assert sum(networks.values()) == 1000
    assert max(users.values()) <= RESYNC_PAGE
    assert max(networks.values()) <= NETWORK_PAGE
    assert len(serving.mirror) == 1000
    assert len(serving.networks) == 1000


async def test_a_bulk_change_elsewhere_gives_the_loop_back_after_each_page(
    two_workers: tuple[Floodwall, Floodwall], monkeypatch: pytest.MonkeyPatch
) -> None:
    acting, serving = two_workers
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    # The users the serving worker reads back (from the bulk block's messages), by turn of
    # the event loop.
    turns = 0
    users: Counter[int] = Counter()
    read_users = serving.store.read_users

    async def counted(user_ids: Sequence[str]) -> list[UserState]:
        users[turns] += len(user_ids)
        return await read_users(user_ids)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    monkeypatch.setattr(serving.store, "read_users", counted)
    counting = asyncio.create_task(count_turns())
    try:
        await acting.block_many([f"u{index:04}" for index in range(1000)], reason="r")

        async def arrived() -> bool:
            return len(serving.mirror) == 1000

        await wait_until_async(arrived, "the bulk block arrives", within=10, interval=0.01)
    finally:
        counting.cancel()
    assert sum(users.values()) == 1000
    assert max(users.values()) <= RESYNC_PAGE


async def test_network_changes_reach_workers_of_older_and_newer_versions(
    two_workers: tuple[Floodwall, Floodwall], redis_client: redis.asyncio.Redis
) -> None:
    acting, serving = two_workers
    await serving.start()
    await asyncio.wait_for(serving.following.wait(), 10)
    # An older version's operator names no network: the worker reloads them all.
    await redis_client.hset(
        "floodwall:networks", *stored_text(NetworkBlock("192.0.2.0/24", "old", "ops", 1, None))
    )
    await redis_client.publish("floodwall:events", json.dumps({"networks": True}))

    async def reloaded() -> bool:
        return serving.networks.match("192.0.2.1") is not None

    await wait_until_async(reloaded, "the reload", within=5, interval=0.01)
    # A change names its network, and still asks an older worker to reload.
    pubsub = redis_client.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe("floodwall:events")
    try:
        await acting.block_network("198.51.100.0/24", reason="r")
        # The subscription's own confirmation comes first, as None.
        messages = [await pubsub.get_message(timeout=5) for _ in range(2)]
    finally:
        await pubsub.aclose()
    message = next(m for m in messages if m is not None)
    assert json.loads(message["data"]) == {"network": "198.51.100.0/24", "networks": True}


async def test_listing_the_network_blocks_gives_the_loop_back_after_each_page(
    two_workers: tuple[Floodwall, Floodwall],
    redis_client: redis.asyncio.Redis,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    acting, _ = two_workers
    await store_blocks(redis_client, 1000)
    await acting.block_network("2001:db8::/32", reason="r")
    ended = NetworkBlock("9.0.0.0/8", "r", "ops", 1, 2)
    await redis_client.hset("floodwall:networks", mapping=dict([stored_text(ended)]))
    await redis_client.hset("floodwall:networks", "not a network", "{}")
    turns = 0
    networks: Counter[int] = Counter()
    held = networks_module._held

    def network_read(block: NetworkBlock, now_ms: float) -> tuple[Any, NetworkBlock | None]:
        networks[turns] += 1
        return held(block, now_ms)

    async def count_turns() -> None:
        nonlocal turns
        while True:
            await asyncio.sleep(0)
            turns += 1

    monkeypatch.setattr(networks_module, "_held", network_read)
    counting = asyncio.create_task(count_turns())
    try:
        listed = await acting.blocked_networks()
    finally:
        counting.cancel()
    assert sum(networks.values()) == 1002
    assert max(networks.values()) <= NETWORK_PAGE
    # In address order, IPv4 first; what ran out and what is no network are left out.
    assert [block.network for block in listed] == [
        *sorted(block_texts(1000), key=lambda cidr: tuple(map(int, cidr[:-3].split(".")))),
        "2001:db8::/32",
    ]
