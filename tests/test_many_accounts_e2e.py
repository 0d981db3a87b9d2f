"""Many accounts at once, end to end: two demo processes on a Redis of the test's own,
driven over HTTP (issue 12). The demo believes X-Forwarded-For from 127.0.0.1, so one test
client can speak from any address."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import httpx
import jwt
import pytest
from demo_process import demo_process

from harness import RedisServer

ADMIN_TOKEN = "many-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
JWT_SECRET = "many-jwt-signing-key-0123456789abcdef"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[RedisServer, list[str]]]:
    redis = RedisServer.start(tmp_path / "redis", appendonly=True)
    env = {
        "FLOODWALL_REDIS_URL": redis.url,
        "FLOODWALL_REDIS_TIMEOUT": "0.5",
        "FLOODWALL_JWT_SECRET": JWT_SECRET,
        "FLOODWALL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLOODWALL_TRUSTED_PROXIES": "127.0.0.1",
        "FLOODWALL_RATE": "1000",
        "FLOODWALL_BURST": "1000",
        "FLOODWALL_ANONYMOUS_RATE": "1000",
        "FLOODWALL_ANONYMOUS_BURST": "1000",
        "FLOODWALL_BREAKER_COOLDOWN": "0.5",
    }
    try:
        with ExitStack() as stack:
            urls = [stack.enter_context(demo_process(tmp_path, **env)) for _ in range(2)]
            yield redis, urls
    finally:
        redis.stop()


def token(user: str) -> str:
    now = round(time.time(), 3)
    claims = {"sub": user, "iat": now, "exp": int(now) + 600, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


def from_address(address: str, user: str | None = None) -> dict[str, str]:
    headers = {"x-forwarded-for": address}
    if user is not None:
        headers["authorization"] = f"Bearer {token(user)}"
    return headers


async def statuses(urls: list[str], requests: list[dict[str, str]]) -> list[tuple[int, str]]:
    """Every request on every instance, concurrently: (status, problem type or "")."""
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(timeout=10, limits=limits) as client:
        gate = asyncio.Semaphore(32)

        async def one(url: str, headers: dict[str, str]) -> tuple[int, str]:
            async with gate:
                response = await client.get(url + "/api/hello", headers=headers)
            kind = response.json().get("type", "") if response.status_code >= 400 else ""
            return response.status_code, str(kind).rsplit(":", 1)[-1]

        return await asyncio.gather(*(one(url, h) for url in urls for h in requests))


INSIDE_V4 = [f"203.0.113.{host}" for host in range(256)]
OUTSIDE_V4 = ["203.0.112.255", "203.0.114.0", "198.51.100.7", "10.0.0.1"]
INSIDE_V6 = ["2001:db8:1::1", "2001:db8:1:ffff:ffff:ffff:ffff:ffff", "2001:db8:1:2::9"]
OUTSIDE_V6 = ["2001:db8:2::1", "2001:db8::1"]


async def test_a_network_block_refuses_every_address_inside_on_both_instances(
    world: tuple[RedisServer, list[str]],
) -> None:
    redis, urls = world
    a, b = urls
    inside = [from_address(h) for h in INSIDE_V4 + INSIDE_V6]
    inside += [from_address(h, user=f"user-{i}") for i, h in enumerate(INSIDE_V4[:20])]
    outside = [from_address(h) for h in OUTSIDE_V4 + OUTSIDE_V6]
    outside.append(from_address(OUTSIDE_V4[0], user="alice"))
    assert {s for s, _ in await statuses(urls, inside + outside)} == {200}
    async with httpx.AsyncClient(timeout=5, headers=ADMIN) as admin:
        blocked = await admin.put(
            a + "/admin/networks/203.0.113.0%2F24/block", json={"reason": "stuffing, INC-9"}
        )
        assert blocked.status_code == 200, blocked.text
        assert blocked.json()["network"] == "203.0.113.0/24"
        assert blocked.json()["received_by"] == 2
        v6 = await admin.put(
            b + "/admin/networks/2001:db8:1::%2F48/block",
            json={"reason": "stuffing, INC-9", "ttl_seconds": 3600},
        )
        assert v6.status_code == 200, v6.text
        broad = await admin.put(a + "/admin/networks/10.0.0.0%2F7/block", json={"reason": "r"})
        assert broad.status_code == 422
        listed = (await admin.get(b + "/admin/networks")).json()["items"]
        assert [n["network"] for n in listed] == ["203.0.113.0/24", "2001:db8:1::/48"]
    # The next request on either instance, anonymous or signed in, from inside: refused.
    assert set(await statuses(urls, inside)) == {(403, "network-blocked")}
    assert {s for s, _ in await statuses(urls, outside)} == {200}

    # With Redis gone, each instance's mirror keeps refusing, and only inside.
    redis.kill()
    assert set(await statuses(urls, inside)) == {(403, "network-blocked")}
    assert {s for s, _ in await statuses(urls, outside)} == {200}
    redis.restart()

    async with httpx.AsyncClient(timeout=5, headers=ADMIN) as admin:
        lifted = await admin.delete(b + "/admin/networks/203.0.113.0%2F24/block")
        assert lifted.status_code == 200, lifted.text
        assert lifted.json()["blocked"] is False
        audit = (await admin.get(a + "/admin/audit?limit=10")).json()["items"]
    assert [(e["action"], e["detail"]) for e in audit[:3]] == [
        ("unblock-network", "network=203.0.113.0/24"),
        ("block-network", "network=2001:db8:1::/48"),
        ("block-network", "network=203.0.113.0/24"),
    ]
    # An instance whose subscription broke with Redis hears of the lift when it has
    # subscribed again (within a second) and reloaded; then the network is served again.
    lifted_everywhere = False
    deadline = time.monotonic() + 10
    while not lifted_everywhere and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
        answers = await statuses(urls, [from_address(h) for h in INSIDE_V4[:8]])
        lifted_everywhere = {s for s, _ in answers} == {200}
    assert lifted_everywhere
    still = await statuses(urls, [from_address(h) for h in INSIDE_V6])
    assert set(still) == {(403, "network-blocked")}


async def test_a_bulk_block_of_a_thousand_users_holds_on_both_instances_at_once(
    world: tuple[RedisServer, list[str]],
) -> None:
    _, urls = world
    a, _ = urls
    users = [f"stuffed-{index:04d}" for index in range(1000)]
    requests = [{"authorization": f"Bearer {token(user)}"} for user in users]
    assert {s for s, _ in await statuses(urls, requests)} == {200}
    async with httpx.AsyncClient(timeout=30, headers=ADMIN) as admin:
        began = time.perf_counter()
        response = await admin.post(
            a + "/admin/blocks",
            json={"user_ids": users, "reason": "credential stuffing, INC-9", "ttl_seconds": 3600},
        )
        took = time.perf_counter() - began
    assert response.status_code == 200, response.text
    answer = response.json()
    assert (answer["blocked"], answer["failed"], answer["received_by"]) == (1000, 0, 2)
    assert [item["user_id"] for item in answer["items"]] == users
    # At once: the first requests after the answer, on each instance, for users from both
    # ends and the middle of the list, are refused (not some time after it: the time these
    # requests take is the client's, and this machine's load, not the block's).
    first = await statuses(urls, [requests[0], requests[500], requests[-1]])
    assert set(first) == {(403, "account-blocked")}
    # And every one of them, on both.
    refused = await statuses(urls, requests)
    assert set(refused) == {(403, "account-blocked")}
    assert took < 5, took
    print(f"\nPOST /admin/blocks of 1,000 users: {took:.2f} s")
    async with httpx.AsyncClient(timeout=10, headers=ADMIN) as admin:
        audit = (await admin.get(a + "/admin/audit?limit=1000")).json()["items"]
    assert len(audit) == 1000
    assert {(e["action"], e["reason"]) for e in audit} == {("block", "credential stuffing, INC-9")}
    assert {e["user_id"] for e in audit} == set(users)
