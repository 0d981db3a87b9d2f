"""The token bucket, proven alike on MemoryStore, fakeredis and a real redis-server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from fractions import Fraction

import fakeredis
import pytest
from conftest import FakeClock
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floodwall.core.decision import Decision, Outcome
from floodwall.stores import MemoryStore, RedisStore, Store
from floodwall.stores.keys import Keys
from harness import RedisServer

T0_US = 1_800_000_000_000_000
KEYS = Keys("floodwall")
ALICE = KEYS.user("alice")


async def take(
    store: Store,
    clock: FakeClock,
    at_us: int,
    *,
    rate: float = 10,
    burst: int = 10,
    cost: int = 1,
) -> Decision:
    clock.now = at_us / 1e6
    return await store.check(ALICE, rate=rate, burst=burst, cost=cost)


async def test_a_full_bucket_admits_burst_then_limits(
    clocked_store: Store, clock: FakeClock
) -> None:
    decisions = [await take(clocked_store, clock, T0_US, rate=2, burst=5) for _ in range(6)]
    assert [d.outcome for d in decisions] == [Outcome.ALLOWED] * 5 + [Outcome.LIMITED]
    assert [d.remaining for d in decisions] == [4, 3, 2, 1, 0, 0]
    assert decisions[-1].retry_after == pytest.approx(0.5, abs=1e-6)
    assert decisions[-1].rate == 2.0
    assert decisions[-1].burst == 5


async def test_tokens_refill_at_the_rate(clocked_store: Store, clock: FakeClock) -> None:
    for _ in range(10):
        assert (await take(clocked_store, clock, T0_US)).allowed
    assert not (await take(clocked_store, clock, T0_US + 99_000)).allowed
    assert (await take(clocked_store, clock, T0_US + 100_000)).allowed
    assert not (await take(clocked_store, clock, T0_US + 100_000)).allowed
    later = await take(clocked_store, clock, T0_US + 10_000_000)
    assert later.allowed
    assert later.remaining == 9


async def test_a_request_costs_its_cost(clocked_store: Store, clock: FakeClock) -> None:
    outcomes = [(await take(clocked_store, clock, T0_US, cost=3)).outcome for _ in range(4)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    limited = await take(clocked_store, clock, T0_US, cost=3)
    assert limited.retry_after == pytest.approx(0.2, abs=1e-6)
    assert (await take(clocked_store, clock, T0_US, cost=1)).allowed


async def test_fractional_rates(clocked_store: Store, clock: FakeClock) -> None:
    assert (await take(clocked_store, clock, T0_US, rate=0.5, burst=1)).allowed
    limited = await take(clocked_store, clock, T0_US + 1_000_000, rate=0.5, burst=1)
    assert limited.outcome is Outcome.LIMITED
    assert limited.retry_after == pytest.approx(1.0, abs=1e-6)
    assert (await take(clocked_store, clock, T0_US + 2_000_000, rate=0.5, burst=1)).allowed


async def test_reset_after_is_the_time_until_full(clocked_store: Store, clock: FakeClock) -> None:
    for _ in range(3):
        decision = await take(clocked_store, clock, T0_US, rate=4, burst=8)
    assert decision.reset_after == pytest.approx(0.75, abs=1e-6)


async def test_a_limited_request_takes_nothing(clocked_store: Store, clock: FakeClock) -> None:
    for _ in range(10):
        await take(clocked_store, clock, T0_US)
    for _ in range(50):
        assert not (await take(clocked_store, clock, T0_US + 50_000)).allowed
    assert (await take(clocked_store, clock, T0_US + 100_000)).allowed


async def test_subjects_have_separate_buckets(clocked_store: Store, clock: FakeClock) -> None:
    for _ in range(10):
        await take(clocked_store, clock, T0_US)
    assert not (await take(clocked_store, clock, T0_US)).allowed
    bob = await clocked_store.check(KEYS.user("bob"), rate=10, burst=10)
    anonymous = await clocked_store.check(KEYS.anonymous("alice"), rate=10, burst=10)
    assert bob.allowed
    assert bob.remaining == 9
    assert anonymous.allowed
    assert anonymous.remaining == 9


async def test_idle_buckets_expire_once_full(clocked_store: Store, clock: FakeClock) -> None:
    # Real time here: Redis expires keys on its own clock, so no injected one.
    if isinstance(clocked_store, RedisStore):
        clocked_store = RedisStore(clocked_store.client)
    decision = await clocked_store.check(ALICE, rate=10, burst=10, cost=2)
    assert decision.allowed
    if isinstance(clocked_store, MemoryStore):
        assert clocked_store.bucket_count() == 1
        clock.advance(0.199)
        assert clocked_store.bucket_count() == 1
        clock.advance(0.002)
        assert clocked_store.bucket_count() == 0
        return
    assert isinstance(clocked_store, RedisStore)
    ttl = await clocked_store.client.pttl(ALICE.bucket)
    assert 0 < ttl <= 200
    await asyncio.sleep(0.25)
    assert await clocked_store.client.exists(ALICE.bucket) == 0


class ReferenceBucket:
    """The textbook token bucket in exact arithmetic: what every store must agree with."""

    def __init__(self, rate: Fraction, burst: int, start_ms: int) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = Fraction(burst)
        self.at_ms = start_ms

    def refill(self, at_ms: int) -> None:
        self.tokens = min(
            Fraction(self.burst), self.tokens + self.rate * (at_ms - self.at_ms) / 1000
        )
        self.at_ms = at_ms

    def near(self, tokens: Fraction) -> bool:
        """Whether ``tokens`` is within TIME_ERROR of the bucket's level."""
        return abs(self.tokens - tokens) / self.rate <= TIME_ERROR


# The stores keep time as µs since the epoch in doubles (exact to 0.25 µs near 1.8e15): a
# bucket that stays in debt over many requests may drift by a fraction of a µs per request.
TIME_ERROR = Fraction(10, 1_000_000)


RATES = [
    Fraction(1, 2),
    Fraction(1),
    Fraction(2),
    Fraction(3),
    Fraction(7),
    Fraction(10),
    Fraction(100),
]


def _make_store(
    kind: str, url: str, clock: FakeClock
) -> tuple[Store, Callable[[], Awaitable[None]]]:
    if kind == "memory":
        memory = MemoryStore(clock=clock)

        async def nothing() -> None:
            return None

        return memory, nothing
    store = (
        RedisStore(fakeredis.FakeAsyncRedis(), clock=clock)
        if kind == "fakeredis"
        else RedisStore.from_url(url, prefix="floodwall", cluster=False, timeout=5, clock=clock)
    )
    return store, store.close


@pytest.mark.parametrize("kind", ["memory", "fakeredis", "redis"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rate=st.sampled_from(RATES),
    burst=st.integers(min_value=1, max_value=20),
    steps=st.lists(
        st.tuples(st.integers(min_value=0, max_value=3000), st.integers(min_value=1, max_value=20)),
        min_size=1,
        max_size=40,
    ),
)
def test_every_store_agrees_with_the_reference_model(
    kind: str,
    redis_server: RedisServer,
    rate: Fraction,
    burst: int,
    steps: list[tuple[int, int]],
) -> None:
    async def run() -> None:
        clock = FakeClock(T0_US / 1e6)
        store, close = _make_store(kind, redis_server.url, clock)
        keys = KEYS.user(uuid.uuid4().hex)
        model = ReferenceBucket(rate, burst, T0_US // 1000)
        at_ms = T0_US // 1000
        try:
            for delta_ms, wanted in steps:
                at_ms += delta_ms
                cost = min(wanted, burst)
                clock.now = at_ms / 1000
                got = await store.check(keys, rate=float(rate), burst=burst, cost=cost)
                model.refill(at_ms)
                # Exact but within TIME_ERROR of the boundary, where rounding may go either way.
                if got.allowed is not (model.tokens >= cost):
                    assert model.near(Fraction(cost)), (model.tokens, cost)
                if got.allowed:
                    model.tokens -= cost
                    assert got.retry_after == 0
                    assert abs(got.remaining - int(model.tokens)) <= (
                        1 if model.near(Fraction(round(model.tokens))) else 0
                    )
                else:
                    assert got.remaining == 0
                    retry_after = (cost - model.tokens) / model.rate
                    assert abs(Fraction(got.retry_after) - retry_after) <= TIME_ERROR
                reset_after = (burst - model.tokens) / model.rate
                assert abs(Fraction(got.reset_after) - reset_after) <= TIME_ERROR
        finally:
            await close()

    asyncio.run(run())


async def test_a_limit_change_does_not_carry_the_old_rates_debt(
    clocked_store: Store, clock: FakeClock
) -> None:
    for _ in range(2):
        await take(clocked_store, clock, T0_US, rate=0.001, burst=2)
    assert not (await take(clocked_store, clock, T0_US, rate=0.001, burst=2)).allowed
    # Back on 10/s: the bucket is empty, not 2,000 seconds in debt.
    assert not (await take(clocked_store, clock, T0_US, rate=10, burst=10)).allowed
    refilled = await take(clocked_store, clock, T0_US + 100_000, rate=10, burst=10)
    assert refilled.allowed
