"""Route limits' moving windows, proven alike on MemoryStore, fakeredis and a real
redis-server: at most ``limit`` admitted requests in any ``period``, all or nothing with the
bucket, and a window never holds more than its limit."""

from __future__ import annotations

import pytest
from conftest import FakeClock

from floodwall.core.decision import Decision, Outcome
from floodwall.stores import MemoryStore, RedisStore, Store
from floodwall.stores.base import Window
from floodwall.stores.keys import Keys
from harness import RedisServer

T0 = 1_800_000_000.0
KEYS = Keys("floodwall")
ALICE = KEYS.user("alice")
LOGIN = Window(ALICE.window("login"), 3, 1_000_000)
EXPORT = Window(ALICE.window("export"), 1, 10_000_000)


async def at(
    store: Store, clock: FakeClock, seconds: float, *windows: Window, burst: int = 1000
) -> Decision:
    clock.now = T0 + seconds
    return await store.check(ALICE, rate=1000, burst=burst, windows=windows)


async def test_a_window_admits_its_limit_in_any_period(
    clocked_store: Store, clock: FakeClock
) -> None:
    assert [(await at(clocked_store, clock, s, LOGIN)).allowed for s in (0, 0.1, 0.2)] == [True] * 3
    refused = await at(clocked_store, clock, 0.5, LOGIN)
    assert (refused.outcome, refused.policy) == (Outcome.LIMITED, 1)
    # It passes when the oldest of the three leaves the period: at 1.0.
    assert refused.retry_after == pytest.approx(0.5, abs=1e-6)
    assert (refused.rate, refused.burst) == (3.0, 3)
    # A request exactly one period after another no longer counts it.
    assert (await at(clocked_store, clock, 1.0, LOGIN)).allowed
    again = await at(clocked_store, clock, 1.05, LOGIN)
    assert not again.allowed
    assert again.retry_after == pytest.approx(0.05, abs=1e-6)


async def test_all_or_nothing_with_the_bucket_and_the_other_windows(
    clocked_store: Store, clock: FakeClock
) -> None:
    assert (await at(clocked_store, clock, 0, LOGIN, EXPORT)).allowed
    # The second window refuses: it names itself, and the first counts nothing.
    refused = await at(clocked_store, clock, 0.1, LOGIN, EXPORT)
    assert (refused.outcome, refused.policy) == (Outcome.LIMITED, 2)
    assert [(await at(clocked_store, clock, 0.2, LOGIN)).allowed for _ in range(3)] == [
        True,
        True,
        False,
    ]
    # An empty bucket refuses before any window counts the request.
    clock.now = T0 + 5
    assert (await clocked_store.check(ALICE, rate=1, burst=1)).allowed
    assert (await at(clocked_store, clock, 5, LOGIN, burst=1)).policy == 0
    assert [(await at(clocked_store, clock, 5.5, LOGIN)).allowed for _ in range(4)] == [
        True,
        True,
        True,
        False,
    ]


async def test_a_window_holds_no_more_than_its_limit(redis_server: RedisServer) -> None:
    clock = FakeClock(T0)
    store = RedisStore.from_url(
        redis_server.url, prefix="floodwall", cluster=False, timeout=5, clock=clock
    )
    await store.start()
    try:
        await store.client.flushall()
        for n in range(50):
            clock.now = T0 + n * 0.5
            assert (await store.check(ALICE, rate=1000, burst=1000, windows=(LOGIN,))).allowed
        assert await store.client.llen(LOGIN.key) == LOGIN.limit
        # The key goes when its newest request leaves the period (a minute later with an
        # injected clock, as every key of the check script).
        assert 0 < await store.client.pttl(LOGIN.key) <= 1_000 + 60_000
    finally:
        await store.close()


async def test_the_memory_store_keeps_one_expiry_per_window() -> None:
    clock = FakeClock(T0)
    store = MemoryStore(clock=clock)
    day = Window(ALICE.window("day"), 10_000, 86_400_000_000)
    for n in range(1_000):
        clock.now = T0 + n * 0.001
        assert (await store.check(ALICE, rate=1e6, burst=1_000_000, windows=(day,))).allowed
    # A day-long window's requests are not each held until the day ends.
    assert len(store._expiries) < 20
