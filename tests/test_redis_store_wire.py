"""``RedisStore`` on a ``redis://`` URL checks through its wire client, and recovers like
redis-py would: scripts reloaded once after a flush, one retry on a dropped connection."""

from __future__ import annotations

import asyncio

import pytest
import redis
import redis.asyncio

from floodwall.core.errors import StorageError
from floodwall.stores import RedisStore
from floodwall.stores.keys import Keys
from harness import RedisServer, client_commands, find_free_port

KEYS = Keys("floodwall")


def store_for(url: str) -> RedisStore:
    return RedisStore.from_url(url, prefix="floodwall", cluster=False, timeout=5)


async def check(store: RedisStore, user: str) -> bool:
    decision = await store.check(KEYS.user(user), rate=1, burst=1000)
    return decision.allowed


async def test_concurrent_checks_after_a_script_flush_share_one_script_load(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    store = store_for(redis_server.url)
    await store.start()
    try:
        await redis_client.script_flush()
        with client_commands(redis_server.port) as seen:
            results = await asyncio.gather(*(check(store, f"user-{i}") for i in range(20)))
        assert results == [True] * 20
        # Every check heard NOSCRIPT, then ran again after the one load.
        assert seen.count("SCRIPT") == 1
        assert seen.count("EVALSHA") == 40
        assert await redis_client.exists(KEYS.user("user-19").bucket) == 1
    finally:
        await store.close()


async def test_a_dropped_connection_is_retried_once_on_a_new_one(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    store = store_for(redis_server.url)
    await store.start()
    try:
        assert await check(store, "alice")
        # As a proxy or a restart would: Redis closes the check connection. Killed from a
        # blocking client, so the event loop has not yet seen the close when the check is
        # sent on the dead connection.
        with redis.Redis.from_url(redis_server.url) as killer:
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
        assert await check(store, "alice")
    finally:
        await store.close()


async def test_a_slots_release_on_a_dropped_connection_is_retried_once(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    store = store_for(redis_server.url)
    await store.start()
    keys = KEYS.user("alice")
    try:
        decision = await store.check(keys, rate=1, burst=1000, concurrency=1)
        assert decision.allowed
        assert decision.lease
        assert await redis_client.zcard(keys.inflight) == 1
        # As a proxy or a restart would (every other client of the test is dropped too).
        with redis.Redis.from_url(redis_server.url) as killer:
            assert killer.client_kill_filter(_type="normal", skipme=True) >= 1
            await store.release(keys, decision.lease)
            assert killer.zcard(keys.inflight) == 0
    finally:
        await store.close()


async def test_a_timeout_is_not_retried(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    store = RedisStore.from_url(redis_server.url, prefix="floodwall", cluster=False, timeout=0.2)
    await store.start()
    before = (await redis_client.info("stats"))["total_connections_received"]
    redis_server.pause()
    try:
        with pytest.raises(StorageError, match="WireTimeout"):
            await check(store, "alice")
    finally:
        redis_server.resume()
        await store.close()
    # A retry would have connected again (the kernel accepts for a stopped Redis) and sent
    # the check a second time.
    after = (await redis_client.info("stats"))["total_connections_received"]
    assert after == before
    assert await redis_client.exists(KEYS.user("alice").bucket) == 1


async def test_nothing_listening_is_a_storage_error() -> None:
    store = store_for(f"redis://127.0.0.1:{find_free_port()}/0")
    with pytest.raises(StorageError, match="WireConnectionError"):
        await check(store, "alice")
    await store.close()


async def test_a_check_failed_by_close_is_not_retried_on_a_new_connection(
    redis_server: RedisServer,
) -> None:
    store = store_for(redis_server.url)
    await store.start()
    redis_server.pause()
    try:
        in_flight = asyncio.create_task(check(store, "alice"))
        await asyncio.sleep(0.05)
        await store.close()
        with pytest.raises(StorageError, match="WireConnectionError"):
            await in_flight
    finally:
        redis_server.resume()
    # A retry would have opened a connection that nothing closes any more.
    assert "open=0/" in repr(store._wire)
