"""Redis as it is deployed: a TLS-only server with a CA made here, and a primary with a
replica behind three Sentinels, failed over by killing the primary.

Each app instance runs in-process over real servers (``harness``): limits stay exact, an
operator's write says how many replicas acknowledged it, and a block acknowledged by a
replica holds on the new primary after the old one dies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.stores import RedisStore
from floodwall.stores.redis.wire import WireClient, WireConnectionError
from harness import (
    SERVICE,
    RedisSentinelGroup,
    RedisServer,
    make_certificates,
    wait_until,
    wait_until_async,
)

pytestmark = pytest.mark.slow

ADMIN_TOKEN = "deployed-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}
BURST = 5


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


@dataclass
class Instance:
    floodwall: Floodwall
    http: httpx.AsyncClient

    async def codes(self, user: str, count: int) -> list[int]:
        return [
            (await self.http.get("/", headers={"x-user": user})).status_code for _ in range(count)
        ]

    async def admin(self, method: str, path: str, body: object = None) -> httpx.Response:
        return await self.http.request(method, "/admin" + path, json=body, headers=ADMIN)


def _settings(**redis: Any) -> FloodwallSettings:
    return FloodwallSettings(
        **redis,
        redis_timeout=0.5,
        user_header="x-user",
        admin_token=ADMIN_TOKEN,
        key_prefix=f"t{uuid.uuid4().hex[:8]}",
        rate=0.01,
        burst=BURST,
        breaker_cooldown=0.2,
        # What is tested is that a replica acknowledges, not how fast on a loaded machine.
        redis_wait_timeout=5,
    )


async def _instance(settings: FloodwallSettings) -> Instance:
    service = Floodwall(settings)
    app = Starlette(routes=[Route("/", ok), service.admin_mount("/admin")])
    guarded = FloodwallMiddleware(app, floodwall=service, exempt_paths=["/admin"])
    http = httpx.AsyncClient(transport=httpx.ASGITransport(app=guarded), base_url="http://t")
    await service.start()
    return Instance(service, http)


async def _close(instance: Instance) -> None:
    await instance.http.aclose()
    await instance.floodwall.stop()


# -- TLS ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server that speaks TLS only and asks clients for a certificate."""
    folder = tmp_path_factory.mktemp("tls")
    with RedisServer.start(folder / "server", tls=make_certificates(folder / "certs")) as server:
        yield server


async def test_limits_and_the_kill_switch_work_over_tls(tls_server: RedisServer) -> None:
    assert tls_server.url.startswith("rediss://")
    instance = await _instance(_settings(redis_url=tls_server.url))
    try:
        assert await instance.codes("alice", BURST + 2) == [200] * BURST + [429] * 2
        blocked = await instance.admin("PUT", "/users/mallory/block", {"reason": "INC-1"})
        assert blocked.status_code == 200
        # One Redis, no replica: nothing to wait for, and the answer says so.
        assert blocked.json()["replicas"] == 0
        assert await instance.codes("mallory", 1) == [403]
    finally:
        await _close(instance)


def test_a_plain_text_client_is_refused_by_the_tls_server(tls_server: RedisServer) -> None:
    plain = redis.Redis(port=tls_server.port, socket_timeout=1)
    with pytest.raises(redis.RedisError):
        plain.ping()
    plain.close()


async def test_checks_over_tls_keep_the_lean_client(tls_server: RedisServer) -> None:
    store = RedisStore.from_url(tls_server.url, prefix="lean-tls", cluster=False, timeout=2)
    seen = redis.Redis.from_url(tls_server.url)
    await store.start()
    try:
        decision = await store.check(store.keys.user("alice"), rate=1, burst=3)
        assert decision.allowed
        clients: Any = seen.client_list()
    finally:
        await store.close()
        seen.close()
    # The store's redis-py connection pinged at start, speaking RESP3; the check's EVALSHA
    # came on another, in RESP2: the wire client's.
    assert [c["resp"] for c in clients if c["cmd"] == "ping"] == ["3"]
    assert [c["resp"] for c in clients if c["cmd"] == "evalsha"] == ["2"]


async def test_the_wire_client_checks_the_servers_certificate(
    tls_server: RedisServer, tmp_path: Path
) -> None:
    trusted = WireClient.from_url(tls_server.url, timeout=2, connect_timeout=2)
    try:
        assert await trusted.execute("PING") == b"PONG"
    finally:
        await trusted.close()
    # Another CA's: the server's certificate is refused before any command is sent.
    other = make_certificates(tmp_path / "other")
    url = tls_server.url.replace(str(tls_server.tls.ca), str(other.ca))  # type: ignore[union-attr]
    stranger = WireClient.from_url(url, timeout=2, connect_timeout=2)
    try:
        with pytest.raises(WireConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await stranger.execute("PING")
    finally:
        await stranger.close()


def test_the_cli_reaches_a_tls_redis(tls_server: RedisServer, tmp_path: Path) -> None:
    env = {"FLOODWALL_REDIS_URL": tls_server.url, "FLOODWALL_KEY_PREFIX": "cli-tls"}
    done = subprocess.run(
        [sys.executable, "-m", "floodwall.cli", "block", "eve", "--reason", "INC-2", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert '"blocked": true' in done.stdout


# -- Sentinel ------------------------------------------------------------------------------


@pytest.fixture
def sentinels(tmp_path: Path) -> Iterator[RedisSentinelGroup]:
    """A primary, its replica and three sentinels, for one test (it kills the primary)."""
    with RedisSentinelGroup.start(tmp_path / "sentinel") as group:
        yield group


@pytest.fixture
async def pair(sentinels: RedisSentinelGroup) -> AsyncIterator[list[Instance]]:
    settings = _settings(
        redis_sentinels=sentinels.sentinel_addresses, redis_sentinel_service=SERVICE
    )
    instances = [await _instance(settings) for _ in range(2)]
    try:
        yield instances
    finally:
        for instance in instances:
            await _close(instance)


async def test_a_failover_loses_no_acknowledged_block_and_limits_come_back_exact(
    sentinels: RedisSentinelGroup, pair: list[Instance]
) -> None:
    a, b = pair
    assert await a.codes("alice", BURST + 1) == [200] * BURST + [429]
    blocked = await a.admin("PUT", "/users/mallory/block", {"reason": "INC-3"})
    assert blocked.status_code == 200
    assert blocked.json()["replicas"] == 1, "the replica acknowledged the block"

    old = sentinels.kill_primary()
    killed = time.monotonic()
    # No primary: the fail mode answers (open: each worker's own limits), never a 500.
    during = await b.codes("carol", 3)
    assert set(during) <= {200, 429}
    new = sentinels.wait_for_failover(old)
    assert new.port != old.port

    # Limits are exact again once the app follows the new primary on its own: decided there
    # (the user's bucket is on it), since each worker's own limits in the fail mode would
    # look exact to one worker too.
    async def exact_again() -> bool:
        user = f"fresh-{uuid.uuid4().hex[:6]}"
        if await b.codes(user, BURST + 1) != [200] * BURST + [429]:
            return False
        with redis.Redis(port=new.port, socket_timeout=1) as primary:
            return bool(primary.exists(b.floodwall.store.keys.user(user).bucket))

    await wait_until_async(exact_again, "limits are exact on the new primary", within=30)
    print(f"\nkill to exact limits: {time.monotonic() - killed:.1f} s")

    # The acknowledged block is on the new primary: a worker with no memory of it reads it.
    fresh = await _instance(pair[0].floodwall.settings)
    try:
        assert (await fresh.floodwall.status("mallory")).blocked is True
        assert await fresh.codes("mallory", 1) == [403]
    finally:
        await _close(fresh)

    # The change feed follows the failover too: a block on one worker reaches the other.
    assert (await a.admin("PUT", "/users/eve/block", {"reason": "INC-4"})).status_code == 200

    async def eve_refused() -> bool:
        return await b.codes("eve", 1) == [403]

    await wait_until_async(eve_refused, "the block reaches the other worker", within=10)


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "floodwall.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_the_cli_through_the_sentinels_says_whether_a_replica_holds_its_write(
    sentinels: RedisSentinelGroup,
) -> None:
    env = {
        "FLOODWALL_REDIS_SENTINELS": sentinels.sentinel_addresses,
        "FLOODWALL_REDIS_SENTINEL_SERVICE": SERVICE,
        "FLOODWALL_REDIS_WAIT_TIMEOUT": "0.3",
        "FLOODWALL_KEY_PREFIX": "cli-sentinel",
    }
    held = _cli(env, "block", "eve", "--reason", "INC-5", "--json")
    assert held.returncode == 0, held.stderr
    assert json.loads(held.stdout)["replicas"] == 1
    assert "acknowledged" not in held.stderr

    # A frozen replica stays connected but acknowledges nothing: the write is stored on the
    # primary, and the operator is told it may not survive a failover.
    [replica] = [s for s in sentinels.servers if s.port != sentinels.primary_port()]
    replica.pause()
    try:
        unheld = _cli(env, "block", "frank", "--reason", "INC-6", "--json")
    finally:
        replica.resume()
    assert unheld.returncode == 0, unheld.stderr
    assert json.loads(unheld.stdout)["replicas"] == 0
    assert "none of its 1 replica(s) acknowledged it" in unheld.stderr


def test_the_sentinels_promote_the_replica_when_the_primary_dies(
    sentinels: RedisSentinelGroup,
) -> None:
    # The harness's own promise, which the failover test above relies on.
    old = sentinels.kill_primary()
    new = sentinels.wait_for_failover(old)
    wait_until(lambda: sentinels.primary_port() == new.port, "the sentinels agree", within=5)
