"""Redis Cluster: users on every shard get one exact bucket and one kill switch.

Two app instances, each with its own ``RedisCluster`` client, run in-process against a
real 3-master cluster. Users are picked so that every master owns some of them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
import redis
import redis.asyncio
from redis.crc import key_slot
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

import floodwall.control.change_feed
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.stores.keys import Keys
from harness import RedisCluster, wait_until_async

JWT_SECRET = "cluster-jwt-signing-key-0123456789abcdef"
SHARDS = [0, 1, 2]
USERS_PER_SHARD = 2
# Awkward ids: braces, colons, slashes, newlines, non-UTF-8, kilobyte-long (a digest).
ODD_IDS = ["we{ird}:id", "}{", "a/b\nc", "caf\udce9", "x" * 2000, "{u:alice}", ""]


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


# -- the cluster's layout --------------------------------------------------------------


@dataclass(frozen=True)
class SlotRange:
    first: int
    last: int
    port: int


def slot_ranges(cluster: RedisCluster) -> list[SlotRange]:
    """``CLUSTER SLOTS`` of the seed node: who owns which slots."""
    with redis.Redis(port=cluster.nodes[0].port) as seed:
        reply: Any = seed.execute_command("CLUSTER", "SLOTS")
    return [SlotRange(int(entry[0]), int(entry[1]), int(entry[2][1])) for entry in reply]


def owner(ranges: list[SlotRange], slot: int) -> int:
    """The port of the master that owns ``slot``."""
    (port,) = [r.port for r in ranges if r.first <= slot <= r.last]
    return port


def user_slot(user_id: str) -> int:
    return key_slot(Keys("floodwall").user(user_id).bucket.encode("utf-8", "surrogatepass"))


@pytest.fixture(scope="module")
def shard_users(redis_cluster: RedisCluster) -> dict[int, list[str]]:
    """Index of a node in ``redis_cluster.nodes`` → users whose keys that node owns."""
    ranges = slot_ranges(redis_cluster)
    index = {node.port: i for i, node in enumerate(redis_cluster.nodes)}
    users: dict[int, list[str]] = {i: [] for i in range(len(redis_cluster.nodes))}
    candidate = 0
    while any(len(found) < USERS_PER_SHARD for found in users.values()):
        user_id = f"user-{candidate}"
        found = users[index[owner(ranges, user_slot(user_id))]]
        if len(found) < USERS_PER_SHARD:
            found.append(user_id)
        candidate += 1
        assert candidate < 10_000
    return users


# -- two app instances -----------------------------------------------------------------


@dataclass
class Instance:
    floodwall: Floodwall
    http: httpx.AsyncClient

    async def get(self, user: str | None = None, credential: str | None = None) -> httpx.Response:
        headers = {}
        if user is not None:
            headers["x-user"] = user
        if credential is not None:
            headers["authorization"] = f"Bearer {credential}"
        return await self.http.get("/", headers=headers)


def token(user: str, issued_at: float) -> str:
    """A JWT with a float ``iat`` (ms precision matters to revocation)."""
    claims = {"sub": user, "iat": issued_at, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, JWT_SECRET, algorithm="HS256")


@pytest.fixture
async def nodes(redis_cluster: RedisCluster) -> AsyncIterator[dict[int, redis.asyncio.Redis]]:
    """A plain (non-cluster) client per master, by port, to look at one node's own data."""
    clients = {node.port: redis.asyncio.Redis(port=node.port) for node in redis_cluster.nodes}
    try:
        yield clients
    finally:
        for client in clients.values():
            await client.aclose()


async def subscribers(nodes: dict[int, redis.asyncio.Redis], channel: str) -> int:
    total = 0
    for client in nodes.values():
        counts: Any = await client.pubsub_numsub(channel)
        total += sum(int(count) for _, count in counts)
    return total


async def eventually(condition: Callable[[], bool], within: float = 1.0) -> None:
    """Wait for the news of a change to reach the other instance (by pub/sub: quick)."""
    await wait_until_async(condition, "the other instance hears of it", within=within)


async def answers(
    instance: Instance,
    status: int,
    *,
    user: str | None = None,
    credential: str | None = None,
    within: float = 1.0,
) -> None:
    """Poll until ``instance`` answers ``status``: news of an operator change that lifts a
    refusal reaches other instances by pub/sub, so it is not instant, but it is quick."""
    last: list[httpx.Response] = []

    async def answered() -> bool:
        last[:] = [await instance.get(user, credential)]
        return last[0].status_code == status

    await wait_until_async(
        answered,
        f"it answers {status}",
        within=within,
        details=lambda: f"still {last[0].status_code} {last[0].text}",
    )


@pytest.fixture
async def pair(
    redis_cluster: RedisCluster,
    nodes: dict[int, redis.asyncio.Redis],
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> AsyncIterator[list[Instance]]:
    """Two started instances on a fresh key prefix, both subscribed to its change feed.

    Indirect parameters are extra settings; ``poll=True`` keeps the periodic settings
    poll and reload, which are otherwise stopped so that whatever reaches the other
    instance within the tests' bounds came by pub/sub.
    """
    extra: dict[str, Any] = dict(getattr(request, "param", {}))
    if not extra.pop("poll", False):
        monkeypatch.setattr(floodwall.control.change_feed, "POLL_SECONDS", 60.0)
    settings = FloodwallSettings(
        redis_url=redis_cluster.url,
        redis_cluster=True,
        redis_timeout=2,
        user_header="x-user",
        jwt_secret=JWT_SECRET,
        key_prefix=f"t{uuid.uuid4().hex[:8]}",
        rate=0.01,
        burst=10,
        **extra,
    )
    instances: list[Instance] = []
    try:
        for _ in range(2):
            service = Floodwall(settings)
            app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=service)
            http = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t")
            instances.append(Instance(service, http))
            await service.start()
        channel = instances[0].floodwall.keys.events

        async def both_subscribed() -> bool:
            return await subscribers(nodes, channel) >= 2

        await wait_until_async(both_subscribed, "both instances subscribe", within=5)
        yield instances
    finally:
        for each in instances:
            await each.http.aclose()
            await each.floodwall.stop()


def kind(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["type"]).rsplit(":", 1)[-1]


async def burst_of(instances: list[Instance], user: str, count: int) -> list[int]:
    """``count`` concurrent requests of ``user``, alternating instances: their statuses."""
    responses = await asyncio.gather(
        *(instances[i % len(instances)].get(user) for i in range(count))
    )
    return [response.status_code for response in responses]


# -- 1. keys and shards ----------------------------------------------------------------


def test_chosen_users_cover_every_master(
    redis_cluster: RedisCluster, shard_users: dict[int, list[str]]
) -> None:
    ranges = slot_ranges(redis_cluster)
    assert {r.port for r in ranges} == {node.port for node in redis_cluster.nodes}
    owners = {owner(ranges, user_slot(u)) for users in shard_users.values() for u in users}
    assert owners == {node.port for node in redis_cluster.nodes}
    for i, users in shard_users.items():
        assert len(users) == USERS_PER_SHARD
        for user in users:
            assert owner(ranges, user_slot(user)) == redis_cluster.nodes[i].port


async def test_all_keys_of_a_user_share_one_slot(
    nodes: dict[int, redis.asyncio.Redis], shard_users: dict[int, list[str]]
) -> None:
    seed = next(iter(nodes.values()))
    ids = [u for users in shard_users.values() for u in users] + ODD_IDS
    for user in ids:
        keys = Keys(f"t{uuid.uuid4().hex[:8]}").user(user)
        names = [keys.bucket, keys.state, keys.revoked]
        local = {key_slot(name.encode()) for name in names}
        served: set[int] = set()
        for name in names:
            served.add(int(await seed.cluster("KEYSLOT", name)))
        assert served == local
        assert len(served) == 1, f"{user!r}: keys in slots {served}"
        # The prefix is outside the hash tag: a user's slot does not depend on it.
        assert served == {user_slot(user)}


@pytest.mark.parametrize("shard", SHARDS)
async def test_a_users_keys_live_on_the_master_that_owns_them(
    pair: list[Instance],
    nodes: dict[int, redis.asyncio.Redis],
    redis_cluster: RedisCluster,
    shard_users: dict[int, list[str]],
    shard: int,
) -> None:
    a, b = pair
    user = shard_users[shard][0]
    assert (await b.get(user)).status_code == 200
    await a.floodwall.block(user, reason="cluster test")
    await a.floodwall.revoke_credential(user, "jti-1")
    keys = a.floodwall.keys.user(user)
    node = nodes[redis_cluster.nodes[shard].port]
    assert await node.exists(keys.bucket, keys.state, keys.revoked) == 3


# -- 2. one exact bucket on every shard ------------------------------------------------


@pytest.mark.parametrize("shard", SHARDS)
async def test_bucket_is_exact_across_instances(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    statuses = await burst_of(pair, shard_users[shard][0], 60)
    # rate 0.01/s: nothing measurable refills during the burst.
    assert statuses.count(200) == 10
    assert statuses.count(429) == 50


async def test_users_on_different_shards_have_their_own_buckets(
    pair: list[Instance], shard_users: dict[int, list[str]]
) -> None:
    users = [u for users in shard_users.values() for u in users]
    rounds = await asyncio.gather(*(burst_of(pair, user, 20) for user in users))
    for statuses in rounds:
        assert statuses.count(200) == 10
        assert statuses.count(429) == 10


# -- 3. the kill switch on every shard -------------------------------------------------


@pytest.mark.parametrize("shard", SHARDS)
async def test_block_on_one_instance_refuses_on_the_other(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user, neighbour = shard_users[shard]
    assert (await b.get(user)).status_code == 200
    status = await a.floodwall.block(user, reason="suspected compromise")
    assert status.blocked
    refused = await b.get(user)
    assert refused.status_code == 403
    assert kind(refused) == "account-blocked"
    assert (await b.get(user, token(user, time.time()))).status_code == 403
    # A user on the same shard is untouched.
    assert (await b.get(neighbour)).status_code == 200
    await a.floodwall.unblock(user)
    await answers(b, 200, user=user)


async def test_a_network_block_reaches_the_other_instance_and_its_reload(
    pair: list[Instance],
) -> None:
    a, b = pair
    for index in range(150):
        await a.floodwall.block_network(f"10.0.{index}.0/24", reason="stuffing")

    async def arrived() -> bool:
        return len(b.floodwall.networks) == 150

    await wait_until_async(arrived, "the blocks arrive", within=5)
    await a.floodwall.unblock_network("10.0.7.0/24")
    await wait_until_async(lambda: len(b.floodwall.networks) == 149, "the lift arrives", within=5)
    # A reload pages through the blocks on the node that owns them.
    await b.floodwall.resync()
    assert len(b.floodwall.networks) == 149
    assert b.floodwall.networks.match("10.0.8.1") is not None
    assert b.floodwall.networks.match("10.0.7.1") is None


ADMIN_TOKEN = "cluster-admin-token-0123456789"


@pytest.mark.parametrize("pair", [{"admin_token": ADMIN_TOKEN}], indirect=True)
async def test_an_admin_write_answers_with_the_workers_that_heard_it(
    pair: list[Instance], shard_users: dict[int, list[str]]
) -> None:
    a, b = pair
    user = shard_users[1][0]
    admin = httpx.AsyncClient(
        transport=httpx.ASGITransport(app=a.floodwall.admin_app()),
        base_url="http://admin",
        headers={"authorization": f"Bearer {ADMIN_TOKEN}"},
    )
    async with admin:
        answer = await admin.put(f"/users/{user}/block", json={"reason": "flooding"})
        assert answer.status_code == 200, answer.text
        # Both instances subscribe to the change feed, each through the cluster.
        assert answer.json()["received_by"] == 2
        assert answer.json()["blocked"] is True
        assert (await b.get(user)).status_code == 403
        lifted = await admin.delete(f"/users/{user}/block")
        assert (lifted.status_code, lifted.json()["received_by"]) == (200, 2)


@pytest.mark.parametrize("shard", SHARDS)
async def test_revoke_on_one_instance_refuses_older_credentials_on_the_other(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user = shard_users[shard][0]
    old = token(user, time.time() - 0.2)
    assert (await b.get(credential=old)).status_code == 200
    status = await a.floodwall.revoke(user)
    not_before = status.credentials_not_before_ms
    assert not_before is not None
    refused = await b.get(credential=old)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert kind(refused) == "credentials-revoked"
    assert (await a.get(credential=old)).status_code == 401
    # A credential issued after the revocation is welcome, on both instances.
    new = token(user, (not_before + 5) / 1000)
    assert (await b.get(credential=new)).status_code == 200
    assert (await a.get(credential=new)).status_code == 200


@pytest.mark.parametrize("shard", SHARDS)
async def test_revoking_one_credential_refuses_it_on_the_other_instance(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user = shard_users[shard][0]
    issued = time.time() - 0.2
    revoked_claims = {"sub": user, "iat": issued, "jti": "stolen-credential"}
    revoked = jwt.encode(revoked_claims, JWT_SECRET, algorithm="HS256")
    other = token(user, issued)
    assert (await b.get(credential=revoked)).status_code == 200
    await a.floodwall.revoke_credential(user, "stolen-credential")
    assert (await b.get(credential=revoked)).status_code == 401
    assert (await b.get(credential=other)).status_code == 200


@pytest.mark.parametrize("shard", SHARDS)
async def test_password_reset_on_one_instance_refuses_on_the_other(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user = shard_users[shard][0]
    old = token(user, time.time() - 0.2)
    assert (await b.get(credential=old)).status_code == 200
    status = await a.floodwall.require_password_reset(user)
    assert status.password_reset_required
    not_before = status.credentials_not_before_ms
    assert not_before is not None
    refused = await b.get(user)
    assert refused.status_code == 403
    assert kind(refused) == "password-reset-required"
    # A reset revokes too: the old credential gets 401 on both instances, as check.lua
    # answers (revocation before reset), whatever the instance refused this user before.
    for instance in (b, a):
        refused = await instance.get(credential=old)
        assert (refused.status_code, kind(refused)) == (401, "credentials-revoked")
        assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    new = token(user, (not_before + 5) / 1000)
    assert (await b.get(credential=new)).status_code == 403
    await a.floodwall.clear_password_reset(user)
    await answers(b, 200, user=user)
    assert (await b.get(credential=new)).status_code == 200
    assert (await a.get(credential=old)).status_code == 401


@pytest.mark.parametrize("shard", SHARDS)
async def test_a_per_user_limit_set_on_one_instance_holds_on_both(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user, neighbour = shard_users[shard]
    status = await a.floodwall.set_limit(user, rate=0.01, burst=3)
    assert (status.rate, status.burst, status.limit_overridden) == (0.01, 3, True)
    statuses = await burst_of(pair, user, 20)
    assert statuses.count(200) == 3
    assert statuses.count(429) == 17
    # Its shard neighbour keeps the default.
    assert (await burst_of(pair, neighbour, 20)).count(200) == 10
    # A larger limit starts from a full bucket of the new size. Instance A remembers the
    # user as limited until the change reaches it by pub/sub.
    await b.floodwall.set_limit(user, rate=0.01, burst=25)
    await eventually(
        lambda: (m := a.floodwall.mirror.get(user)) is not None and m.limit == (0.01, 25)
    )
    assert (await burst_of(pair, user, 40)).count(200) == 25
    await a.floodwall.clear_limit(user)
    await eventually(lambda: b.floodwall.mirror.get(user) is None)
    assert (await burst_of(pair, user, 40)).count(200) == 10


# -- 4. listings across shards ---------------------------------------------------------


async def test_blocked_and_audit_list_users_of_every_shard(
    pair: list[Instance], shard_users: dict[int, list[str]]
) -> None:
    a, b = pair
    users = sorted(u for users in shard_users.values() for u in users)
    for user in users:
        await a.floodwall.block(user, reason=f"flood from {user}", actor="oncall")
    page, cursor = await b.floodwall.blocked()
    assert [s.user_id for s in page] == users
    assert cursor is None
    assert all(s.blocked and s.reason == f"flood from {s.user_id}" for s in page)
    # Paging one shard's worth at a time still finds everyone, in id order.
    paged: list[str] = []
    after: str | None = None
    while True:
        page, after = await b.floodwall.blocked(after=after, limit=USERS_PER_SHARD)
        paged += [s.user_id for s in page]
        if after is None:
            break
    assert paged == users
    records, _ = await b.floodwall.audit_log()
    blocks = [r for r in records if r.action == "block"]
    # Newest first.
    assert [r.user_id for r in blocks] == users[::-1]
    assert all(r.actor == "oncall" and r.reason == f"flood from {r.user_id}" for r in blocks)
    # Lifting one shard's users leaves the others listed.
    for user in shard_users[1]:
        await b.floodwall.unblock(user, actor="oncall")
    page, _ = await a.floodwall.blocked()
    assert [s.user_id for s in page] == sorted(set(users) - set(shard_users[1]))
    records, _ = await a.floodwall.audit_log(limit=USERS_PER_SHARD)
    assert [(r.action, r.user_id) for r in records] == [
        ("unblock", user) for user in shard_users[1][::-1]
    ]


# -- 5. pub/sub across shards ----------------------------------------------------------


@pytest.mark.parametrize("shard", SHARDS)
async def test_the_other_instances_mirror_follows_within_a_second(
    pair: list[Instance], shard_users: dict[int, list[str]], shard: int
) -> None:
    a, b = pair
    user = shard_users[shard][0]
    mirror = b.floodwall.mirror
    assert mirror.get(user) is None

    await a.floodwall.block(user, reason="flood")
    await eventually(
        lambda: (m := mirror.get(user)) is not None and m.kill_switch.blocked_until_ms == 0
    )

    revoked = await a.floodwall.revoke(user)
    await eventually(
        lambda: (
            (m := mirror.get(user)) is not None
            and m.kill_switch.not_before_ms == revoked.credentials_not_before_ms
        )
    )

    await a.floodwall.require_password_reset(user)
    await eventually(lambda: (m := mirror.get(user)) is not None and m.kill_switch.reset_required)

    await a.floodwall.set_limit(user, rate=0.5, burst=7)
    await eventually(lambda: (m := mirror.get(user)) is not None and m.limit == (0.5, 7))

    await a.floodwall.unblock(user)
    await eventually(
        lambda: (m := mirror.get(user)) is not None and m.kill_switch.blocked_until_ms is None
    )

    await a.floodwall.clear_password_reset(user)
    await a.floodwall.clear_limit(user)
    await eventually(
        lambda: (m := mirror.get(user)) is not None and not m.kill_switch.reset_required
    )
    await eventually(lambda: (m := mirror.get(user)) is not None and m.limit is None)


async def test_mirror_follows_users_of_every_shard_at_once(
    pair: list[Instance], shard_users: dict[int, list[str]]
) -> None:
    a, b = pair
    users = [u for users in shard_users.values() for u in users]
    await asyncio.gather(*(a.floodwall.block(user, reason="flood") for user in users))
    await eventually(lambda: all(b.floodwall.mirror.get(user) is not None for user in users))
    await asyncio.gather(*(a.floodwall.unblock(user) for user in users))
    await eventually(lambda: all(b.floodwall.mirror.get(user) is None for user in users))


async def unblock_unannounced(
    instance: Instance, user: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Unblock with the change message lost in transit (pub/sub delivers at most once)."""

    async def lost(message: str) -> None:
        return None

    with monkeypatch.context() as patch:
        patch.setattr(instance.floodwall.store, "publish", lost)
        await instance.floodwall.unblock(user)


async def test_a_change_missed_while_the_feed_was_down_is_reloaded_when_it_returns(
    pair: list[Instance],
    nodes: dict[int, redis.asyncio.Redis],
    shard_users: dict[int, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    a, b = pair
    user = shard_users[2][0]
    await a.floodwall.block(user, reason="flood")
    await eventually(lambda: b.floodwall.mirror.get(user) is not None)
    await unblock_unannounced(a, user, monkeypatch)
    # The feed drops (every subscriber connection on every node) and comes back: the
    # design reloads the mirror on (re)subscription, as messages may have been lost.
    for client in nodes.values():
        await client.client_kill_filter(_type="pubsub")
    await eventually(lambda: b.floodwall.mirror.get(user) is None, within=3.0)
    await answers(b, 200, user=user)


@pytest.mark.parametrize("pair", [{"poll": True, "resync_seconds": 0.2}], indirect=True)
async def test_the_periodic_reload_lifts_a_block_whose_message_was_lost(
    pair: list[Instance], shard_users: dict[int, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = pair
    user = shard_users[0][0]
    await a.floodwall.block(user, reason="flood")
    assert (await b.get(user)).status_code == 403
    await unblock_unannounced(a, user, monkeypatch)
    # The periodic reload (about every second here) brings the news...
    await eventually(lambda: b.floodwall.mirror.get(user) is None, within=2.5)
    # ...and an instance that knows the block is gone must stop refusing the user.
    await answers(b, 200, user=user)


async def test_a_default_limit_set_on_one_instance_applies_on_the_other(
    pair: list[Instance], shard_users: dict[int, list[str]]
) -> None:
    a, b = pair
    assert b.floodwall.default_limit == (0.01, 10)
    assert await a.floodwall.set_default_limit(0.01, 4, actor="oncall") == (0.01, 4)
    await eventually(lambda: b.floodwall.default_limit == (0.01, 4))
    # Buckets on every shard now hold 4, whichever instance answers.
    for users in shard_users.values():
        assert (await burst_of([b], users[0], 10)).count(200) == 4
        assert (await burst_of(pair, users[1], 10)).count(200) == 4
