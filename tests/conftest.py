"""Shared fixtures: real redis-server processes, and one ``store`` fixture run three ways."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path

import fakeredis
import pytest
import redis.asyncio

from floodwall.stores import MemoryStore, RedisStore, Store
from floodwall.stores.user_states import UserStateStore
from harness import RedisCluster, RedisServer

# The fixtures an app's tests get from floodwall.testing; tests/example_app uses them.
pytest_plugins = ["floodwall.testing.plugin"]

STORE_KINDS = ["memory", "fakeredis", "redis"]


async def write_state_fields(
    store: Store, user_id: str, fields: Mapping[str, str], *, reset_bucket: bool = False
) -> None:
    """Store a user's state fields as given, unreadable ones included: as an operator might
    write them by hand, or another version, below the store's domain methods."""
    assert isinstance(store, UserStateStore)
    await store._update_state(
        store.keys.user(user_id),
        user_id=user_id,
        assign=fields,
        assign_now_plus_ms=None,
        delete=(),
        reset_bucket=reset_bucket,
    )


class FakeClock:
    """A clock tests move by hand, in seconds since the epoch."""

    def __init__(self, start: float = 1_800_000_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the whole run, on a free loopback port."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisCluster]:
    """A real 3-master Redis Cluster, started once, only by tests that ask for it."""
    cluster = RedisCluster.start(tmp_path_factory.mktemp("cluster"))
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[redis.asyncio.Redis]:
    """A client of the real server, on an empty database."""
    client = redis.asyncio.Redis.from_url(redis_server.url)
    await client.flushall()
    try:
        yield client
    finally:
        await client.aclose()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


async def _store_of(
    kind: str, request: pytest.FixtureRequest, clock: FakeClock, *, redis_clock: bool
) -> AsyncIterator[Store]:
    if kind == "memory":
        yield MemoryStore(clock=clock)
        return
    # Redis keeps its own clock unless the test drives the buckets' time (``clocked_store``).
    injected = clock if redis_clock else None
    if kind == "fakeredis":
        store = RedisStore(fakeredis.FakeAsyncRedis(), clock=injected)
    else:
        # As floodwall builds it from a URL: checks on its own wire client.
        server: RedisServer = request.getfixturevalue("redis_server")
        store = RedisStore.from_url(
            server.url, prefix="floodwall", cluster=False, timeout=5, clock=injected
        )
        await store.client.flushall()
    await store.start()
    try:
        yield store
    finally:
        await store.close()


@pytest.fixture(params=STORE_KINDS)
async def store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """The store under test: memory, fakeredis, and a real redis-server."""
    async for made in _store_of(request.param, request, clock, redis_clock=False):
        yield made


@pytest.fixture(params=STORE_KINDS)
async def clocked_store(request: pytest.FixtureRequest, clock: FakeClock) -> AsyncIterator[Store]:
    """``store`` whose checks all run on ``clock``, Redis's included."""
    async for made in _store_of(request.param, request, clock, redis_clock=True):
        yield made


@pytest.fixture
def project_root() -> Path:
    return Path(__file__).resolve().parent.parent
