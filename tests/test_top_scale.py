"""Top offenders at attack scale: the heavy-hitter summary, trimmed slices, and reading
``top`` when a million distinct subjects were refused (issue 12)."""

from __future__ import annotations

import random
import time
from collections import Counter

import redis.asyncio
from conftest import FakeClock

from floodwall import Clock, Floodwall, FloodwallSettings, Identity
from floodwall.core.decision import Decision, Outcome
from floodwall.observe.top import (
    KEPT,
    PUBLISHED,
    SLICE_SECONDS,
    SUMMARY_SIZE,
    HeavyHitters,
    blocks_of,
    cover,
    network_of,
)
from floodwall.stores.base import TopBlock
from floodwall.stores.protocols import Store
from harness import RedisServer

LIMITED = Decision(Outcome.LIMITED, 10.0, 10, 0, 1.0, 1.0)
WINDOW_SLICES = 3600 // SLICE_SECONDS + 1


def test_the_summary_never_overcounts_and_undercounts_within_n_over_k_plus_1() -> None:
    rng = random.Random(12)
    summary = HeavyHitters(size=50)
    stream = [f"s{rng.paretovariate(1.1):.0f}" for _ in range(20_000)]
    stream += [f"unique-{i}" for i in range(5_000)]
    rng.shuffle(stream)
    for name in stream:
        summary.add(name)
    assert summary.added == len(stream)
    assert len(summary) <= 100
    bound = len(stream) / 51
    true = Counter(stream)
    kept = summary.take(100)
    for name, count in kept.items():
        assert true[name] - bound <= count <= true[name]
    # Everything heavier than the bound is still there.
    for name, count in true.items():
        if count > bound:
            assert name in kept
    assert summary.take(10) == {}
    assert summary.added == 0


def test_only_the_largest_counts_are_taken() -> None:
    summary = HeavyHitters(size=10)
    for name, times in (("a", 5), ("b", 3), ("c", 1)):
        for _ in range(times):
            summary.add(name)
    assert summary.take(2) == {"a": 5, "b": 3}


def test_anonymous_subjects_are_reported_by_their_slash_24_or_slash_64() -> None:
    assert network_of("203.0.113.77") == "203.0.113.0/24"
    assert network_of("2001:db8:1:2::/64") == "2001:db8:1:2::/64"
    assert network_of("unknown") is None
    assert network_of("fe80::1") is None
    assert network_of("evil\x1b[2J.x") is None
    assert network_of("x/64") is None


async def test_a_block_keeps_its_largest_members_and_top_returns_only_the_first(
    store: Store,
) -> None:
    seven, eight, minute = TopBlock(10, 7), TopBlock(10, 8), TopBlock(60, 1)
    await store.add_refusals([seven], {"u:a": 5, "u:b": 1, "u:c": 3}, ttl_seconds=60, keep=2)
    await store.add_refusals([seven], {"u:b": 10}, ttl_seconds=60, keep=2)
    await store.add_refusals([eight, minute], {"u:c": 4, "a:x": 1}, ttl_seconds=60, keep=2)
    # Block 7 kept a and c, then b came back with 10 and pushed c out.
    assert await store.top_refusals([seven, eight], count=2) == [("u:b", 10), ("u:a", 5)]
    assert await store.top_refusals([seven, eight], count=10) == [
        ("u:b", 10),
        ("u:a", 5),
        ("u:c", 4),
        ("a:x", 1),
    ]
    # A block of another length is another set, even at the same number.
    assert await store.top_refusals([TopBlock(10, 1)], count=5) == []
    assert await store.top_refusals([minute], count=5) == [("u:c", 4), ("a:x", 1)]
    assert await store.top_refusals([TopBlock(10, 9)], count=5) == []
    assert await store.top_refusals([], count=5) == []
    await store.add_refusals([seven], {"10.0.0.0/24": 9}, ttl_seconds=60, keep=2, board="networks")
    assert await store.top_refusals([seven], count=5, board="networks") == [("10.0.0.0/24", 9)]


async def test_ties_rank_the_greater_member_first_on_every_store(store: Store) -> None:
    block = TopBlock(10, 3)
    await store.add_refusals(
        [block], {"u:b": 2, "u:ab": 2, "u:é": 2, "u:z": 1}, ttl_seconds=60, keep=3
    )
    assert await store.top_refusals([block], count=5) == [("u:é", 2), ("u:b", 2), ("u:ab", 2)]


def test_blocks_cover_a_window_exactly_with_at_most_32() -> None:
    longest = 0
    for first in range(1, 1_300):
        for slices in (1, 6, 7, 60, 61, 180, 355, WINDOW_SLICES):
            last = first + slices - 1
            blocks = cover(first, last)
            held = [
                slice_id
                for seconds, number in blocks
                for slice_id in range(
                    number * seconds // SLICE_SECONDS, (number + 1) * seconds // SLICE_SECONDS
                )
            ]
            assert held == list(range(first, last + 1))
            longest = max(longest, len(blocks))
    assert max(len(cover(f, f + WINDOW_SLICES - 1)) for f in range(600)) == 21
    assert longest <= 32
    assert blocks_of(600) == [TopBlock(10, 600), TopBlock(60, 100), TopBlock(600, 10)]


async def test_networks_refused_most_are_named(clock: FakeClock) -> None:
    floodwall = Floodwall(FloodwallSettings(), clock=Clock(wall=clock, monotonic=clock))
    try:
        for host in range(200):
            floodwall.offenders.count(
                Identity(f"198.51.100.{host}", anonymous=True), LIMITED, enforced=True
            )
        for host in range(3):
            floodwall.offenders.count(
                Identity(f"192.0.2.{host}", anonymous=True), LIMITED, enforced=True
            )
        floodwall.offenders.count(Identity("2001:db8::/64", anonymous=True), LIMITED, enforced=True)
        floodwall.offenders.count(Identity("alice"), LIMITED, enforced=True)
        networks = await floodwall.top_networks(window_seconds=60)
        assert [(n.network, n.refusals) for n in networks] == [
            ("198.51.100.0/24", 200),
            ("192.0.2.0/24", 3),
            ("2001:db8::/64", 1),
        ]
    finally:
        await floodwall.stop()


async def test_a_million_refused_subjects_leave_top_fast_bounded_and_right(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    floodwall = Floodwall(FloodwallSettings(redis_url=redis_server.url, redis_timeout=5))
    offenders = floodwall.offenders
    heavy = {f"heavy-{rank}": 60_000 - 10_000 * rank for rank in range(5)}
    stream = [name for name, count in heavy.items() for _ in range(count)]
    stream += [f"user-{index}" for index in range(1_000_000)]
    random.Random(7).shuffle(stream)
    flushes = 10
    per_flush = len(stream) // flushes + 1
    try:
        started = time.perf_counter()
        for start in range(0, len(stream), per_flush):
            # A second of refusals on this worker, then its flush.
            for name in stream[start : start + per_flush]:
                offenders.count(Identity(name), LIMITED, enforced=True)
            await offenders.flush()
        fed = time.perf_counter() - started
        # The bound stated in floodwall.top: per flush, N/(k+1) from the summary (these
        # subjects are always among the P largest, and among a block's K largest).
        bound = flushes * per_flush / (SUMMARY_SIZE + 1)
        reads = []
        for _ in range(5):
            began = time.perf_counter()
            top = await floodwall.top(window_seconds=60, limit=10)
            reads.append(time.perf_counter() - began)
        assert [o.subject for o in top[:5]] == list(heavy)
        for entry in top[:5]:
            assert heavy[entry.subject] - bound <= entry.refusals <= heavy[entry.subject]
        assert sorted(reads)[2] < 0.050, reads
        # Redis holds at most KEPT members per block, whatever was refused.
        blocks = [key async for key in redis_client.scan_iter(match="floodwall:{top}:*")]
        sizes = [await redis_client.zcard(key) for key in blocks]
        assert blocks
        assert max(sizes) <= KEPT
        memory = sum([await redis_client.memory_usage(key) or 0 for key in blocks])
        assert memory <= len(blocks) * KEPT * _BYTES_PER_MEMBER
        print(
            f"\n1,250,000 refusals of 1,000,005 subjects: fed in {fed:.1f} s; top read median "
            f"{sorted(reads)[2] * 1000:.1f} ms; {len(blocks)} blocks, {memory} bytes; "
            f"heavy counts {[o.refusals for o in top[:5]]}, bound {bound:.0f}"
        )
    finally:
        await floodwall.stop()


# A sorted-set member of a short id (skiplist and dict entries, the string itself), with
# room: MEMORY USAGE measured about 145 bytes for ids of 20 characters.
_BYTES_PER_MEMBER = 160


async def test_a_full_hour_of_full_blocks_reads_within_50_ms_and_the_memory_bound(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer, clock: FakeClock
) -> None:
    settings = FloodwallSettings(redis_url=redis_server.url, redis_timeout=5)
    floodwall = Floodwall(settings, clock=Clock(wall=clock, monotonic=time.perf_counter))
    store = floodwall.store
    now = int(clock()) // SLICE_SECONDS
    try:
        for slice_id in range(now - WINDOW_SLICES + 1, now + 1):
            # More than a slice keeps: a flush from each of 12 workers.
            counts = {f"u:user-{slice_id}-{i}": 1 + i % 50 for i in range(PUBLISHED * 12)}
            counts["u:always"] = 100
            await store.add_refusals(blocks_of(slice_id), counts, ttl_seconds=3600, keep=KEPT)
        reads = []
        for _ in range(5):
            began = time.perf_counter()
            top = await floodwall.top(window_seconds=3600, limit=10)
            reads.append(time.perf_counter() - began)
        assert top[0].subject == "always"
        assert top[0].refusals == 100 * WINDOW_SLICES
        assert sorted(reads)[2] < 0.050, reads
        keys = [key async for key in redis_client.scan_iter(match="floodwall:{top}:*")]
        written = {block for s in range(now - WINDOW_SLICES + 1, now + 1) for block in blocks_of(s)}
        # 361 slices, and the 61 or 62 minutes and 7 or 8 ten minutes they fall in.
        assert len(keys) == len(written) <= WINDOW_SLICES + 62 + 8
        sizes = [await redis_client.zcard(key) for key in keys]
        assert max(sizes) <= KEPT
        memory = sum([await redis_client.memory_usage(key) or 0 for key in keys])
        assert memory <= len(keys) * KEPT * _BYTES_PER_MEMBER
        print(
            f"\nan hour of full blocks: {len(keys)} x {KEPT} members, {memory} bytes; "
            f"top read median {sorted(reads)[2] * 1000:.1f} ms"
        )
    finally:
        await floodwall.stop()
