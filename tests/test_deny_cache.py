"""The in-process deny cache: zero store round trips for refusals that are certain."""

from __future__ import annotations

import asyncio
import time

import redis.asyncio

from floodwall import Floodwall, FloodwallSettings, Identity
from floodwall.core.decision import Decision, Outcome
from floodwall.limiting.deny_cache import DenyCache
from harness import RedisServer, wait_until_async


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def limited(ahead: float, rate: float = 10.0, burst: int = 10) -> Decision:
    return Decision(Outcome.LIMITED, rate, burst, 0, ahead + 1 / rate - burst / rate, ahead)


def test_a_limited_bucket_is_refused_only_while_certain() -> None:
    clock = Clock()
    cache = DenyCache(clock=clock)
    # A full debt of one second at 10/s: the next token is 100 ms away.
    cache.remember("k", limited(1.0))
    known = cache.lookup("k", 1)
    assert known is not None
    assert abs(known.retry_after - 0.1) < 1e-9
    clock.now += 0.05
    known = cache.lookup("k", 1)
    assert known is not None
    assert abs(known.retry_after - 0.05) < 1e-9
    # A costlier request stays certain for longer than a cheap one.
    clock.now += 0.06
    assert cache.lookup("k", 1) is None
    cache.remember("k", limited(1.0))
    clock.now += 0.15
    assert cache.lookup("k", 3) is not None
    assert cache.lookup("k", 1) is None
    assert len(cache) == 0


def test_blocks_hold_until_their_end_and_only_limits_and_blocks_are_kept() -> None:
    clock = Clock()
    cache = DenyCache(clock=clock)
    # A block with 10 s to go when the store answered (retry_after: what is left of it).
    cache.remember("b", Decision(Outcome.BLOCKED, 10, 10, 0, 10.0, 0, blocked_until=1010.0))
    # Which answer these get depends on the request's credential and path: never cached.
    cache.remember("r", Decision(Outcome.RESET_REQUIRED, 10, 10, 0, 0, 0))
    cache.remember("x", Decision(Outcome.REVOKED, 10, 10, 0, 0, 0))
    assert cache.lookup("b", 1) is not None
    assert cache.lookup("r", 1) is None
    assert cache.lookup("x", 1) is None
    clock.now += 8.9
    assert cache.lookup("b", 1) is not None
    clock.now += 0.2  # within the 10 % a fast store clock may have gained: ask again
    assert cache.lookup("b", 1) is None


def test_an_allowed_request_that_emptied_the_bucket_makes_the_next_one_certain() -> None:
    clock = Clock()
    cache = DenyCache(clock=clock)
    # rate 10/s, burst 10: the last token just went, so full again in 1 s, next token in 0.1 s.
    cache.remember("empty", Decision(Outcome.ALLOWED, 10, 10, 0, 0, 1.0))
    cache.remember("one-left", Decision(Outcome.ALLOWED, 10, 10, 1, 0, 0.9))
    assert cache.lookup("one-left", 1) is None
    known = cache.lookup("empty", 1)
    assert known is not None
    assert known.outcome is Outcome.LIMITED
    assert abs(known.retry_after - 0.1) < 1e-9
    clock.now += 0.1
    assert cache.lookup("empty", 1) is None


async def test_when_a_refusal_lapses_one_request_asks_and_the_others_wait() -> None:
    clock = Clock()
    cache = DenyCache(clock=clock)
    cache.remember("k", limited(1.0))
    clock.now += 0.1
    assert cache.lookup("k", 1) is None
    assert cache.claim("k") is None  # this request asks the store
    waiting = cache.claim("k")
    assert waiting is not None
    assert not waiting.done()
    # The store's answer is kept before the probe settles: the waiters find it.
    cache.remember("k", limited(1.0))
    cache.settle("k")
    assert waiting.done()
    assert cache.lookup("k", 1) is not None
    assert cache.probes == {}


def test_the_cache_is_bounded() -> None:
    cache = DenyCache(max_entries=3, clock=time.perf_counter)
    for key in "abcd":
        cache.remember(key, limited(5.0))
    assert len(cache) == 3
    assert cache.lookup("a", 1) is None
    assert cache.lookup("d", 1) is not None


async def evalsha_calls(client: redis.asyncio.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_flooding_user_costs_redis_nothing_once_limited_or_blocked(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    floodwall = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, rate=0.01, burst=5, redis_timeout=2)
    )
    attacker = Identity("mallory")
    await floodwall.start()
    # Subscribing ends with a resync, which clears the cache: let it happen first.
    await asyncio.wait_for(floodwall.following.wait(), 10)
    try:
        outcomes = [(await floodwall.check(attacker)).outcome for _ in range(6)]
        assert outcomes == [Outcome.ALLOWED] * 5 + [Outcome.LIMITED]
        before = await evalsha_calls(redis_client)
        refused = [await floodwall.check(attacker) for _ in range(1000)]
        assert {d.outcome for d in refused} == {Outcome.LIMITED}
        assert await evalsha_calls(redis_client) == before
        assert min(d.retry_after for d in refused) > 90
        # Other users still reach Redis, once per request.
        assert (await floodwall.check(Identity("alice"))).allowed
        assert await evalsha_calls(redis_client) == before + 1

        await floodwall.block("eve", reason="x")
        assert (await floodwall.check(Identity("eve"))).outcome is Outcome.BLOCKED
        before = await evalsha_calls(redis_client)
        for _ in range(100):
            assert (await floodwall.check(Identity("eve"))).outcome is Outcome.BLOCKED
        assert await evalsha_calls(redis_client) == before
        # An operator change is never held back by the cache.
        await floodwall.unblock("eve")
        assert (await floodwall.check(Identity("eve"))).allowed
        await floodwall.set_limit("mallory", rate=100, burst=100)
        assert (await floodwall.check(attacker)).allowed
    finally:
        await floodwall.stop()


async def test_an_attacker_on_many_connections_reaches_redis_once_per_token(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    floodwall = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, rate=20, burst=1, redis_timeout=2)
    )
    await floodwall.start()
    await asyncio.wait_for(floodwall.following.wait(), 10)
    attacker = Identity("mallory")
    outcomes: list[Outcome] = []

    loop = asyncio.get_running_loop()
    deadline = loop.time() + 0.5

    async def connection() -> None:
        # As fast as it can go, like one of an attacker's keep-alive connections.
        while loop.time() < deadline:
            outcomes.append((await floodwall.check(attacker)).outcome)
            await asyncio.sleep(0)

    try:
        before = await evalsha_calls(redis_client)
        started = loop.time()
        await asyncio.gather(*(connection() for _ in range(32)))
        elapsed = loop.time() - started
        calls = await evalsha_calls(redis_client) - before
    finally:
        await floodwall.stop()
    admitted = outcomes.count(Outcome.ALLOWED)
    assert admitted >= 2
    assert admitted <= 1 + 20 * elapsed + 1
    # The 32 first requests all ask (nothing is known yet); after that each token costs
    # a probe that takes it, and one or two before it that find it not quite due (a refusal
    # lapses up to 10 % early: the store's clock may run faster than ours). Without the
    # probe, every connection waiting at that moment would ask too.
    assert calls <= 32 + 3 * admitted
    assert len(outcomes) >= 100 * calls


async def test_another_workers_unblock_reaches_this_cache(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    settings = FloodwallSettings(redis_url=redis_server.url, redis_timeout=2)
    here, there = Floodwall(settings), Floodwall(settings)
    await here.start()
    try:
        await there.block("eve", reason="x")
        assert (await here.check(Identity("eve"))).outcome is Outcome.BLOCKED
        await there.unblock("eve")

        async def allowed() -> bool:
            return (await here.check(Identity("eve"))).allowed

        await wait_until_async(allowed, "the unblock reaches this cache", within=1.0)
        assert (await here.check(Identity("eve"))).allowed
    finally:
        await here.stop()
        await there.stop()
