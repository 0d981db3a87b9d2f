"""Does following operator changes stall a worker at scale? (issue 22, items 8 and 9)

A real redis-server of its own holds ``--networks`` network blocks (9,990: the 10 added
make the 10,000 the rule book allows) and ``--users`` blocked users, written straight into
Redis as ``floodwall`` stores them. One worker (a ``FloodwallMiddleware`` over a tiny
Starlette app, on Redis, called in-process as an ASGI app) answers a steady stream of
``--rate`` requests a second from 1,000 users who are not blocked: open loop, each
request's latency counted from when it was due, so a stalled event loop shows in full.
Measured, one after the other:

- ``quiet``: the worker alone;
- ``networks``: while an operator's process (its own ``Floodwall``, as the CLI has) adds
  10 network blocks, one every 0.2 s, and the worker follows the change feed;
- ``resync``: across two full resyncs of the worker (what its periodic resync and every
  resubscription run), with every user and network above stored.

Printed: requests, p50, p99 and max latency (ms), the longest the event loop was late
(a 1 ms timer's worst overshoot), and each phase's p99 over the quiet one's (issue 22's
target: at most 2).

    .venv/bin/python benchmarks/loop_stalls.py [--parts networks,resync] [--rate 500]
        [--networks 9990] [--users 100000] [--quiet-seconds 6]

About a minute on a 2-core machine, most of it writing the users and the worker's two
resyncs at start.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pathlib
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route
from starlette.types import Scope

from benchmarks._common import PATH, discard, make_scopes, receive
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.killswitch.networks import NetworkBlock
from floodwall.stores.keys import Keys
from floodwall.stores.network_fields import block_text
from harness import RedisServer

PARTS: Final = ("networks", "resync")
PREFIX: Final = "floodwall"
ADDED_NETWORKS: Final = 10
TARGET: Final = 2.0


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def seed(url: str, networks: int, users: int) -> None:
    """Store ``networks`` /24 blocks in 10.0.0.0/8 and ``users`` users blocked with no end."""
    client = redis.Redis.from_url(url)
    keys = Keys(PREFIX)
    try:
        pipe = client.pipeline(transaction=False)
        for index in range(networks):
            cidr = f"10.{index // 256 % 256}.{index % 256}.0/{24}"
            pipe.hset(keys.networks, cidr, block_text(NetworkBlock(cidr, "seed", "ops", 1, None)))
        for index in range(users):
            user = f"stuffed-{index}"
            fields: dict[Any, Any] = {
                "user_id": user,
                "blocked_until": "0",
                "blocked_at": "1800000000000",
                "blocked_by": "ops",
                "reason": "credential stuffing",
            }
            pipe.hset(keys.user(user).state, mapping=fields)
            pipe.zadd(keys.index("users"), {user: 0})
            pipe.zadd(keys.index("blocked"), {user: 0})
            if index % 5000 == 4999:
                pipe.execute()
        pipe.execute()
    finally:
        client.close()


def operator(url: str, go: Any, done: Any) -> None:
    """An operator's process: once ``go`` is set, block 10 networks, one every 0.2 s."""

    async def block() -> None:
        floodwall = Floodwall(FloodwallSettings(redis_url=url, redis_timeout=5))
        try:
            await floodwall.store.start()
            await asyncio.to_thread(go.wait)
            for index in range(ADDED_NETWORKS):
                await floodwall.block_network(f"172.16.{index}.0/24", reason="bench")
                await asyncio.sleep(0.2)
        finally:
            await floodwall.stop()
            done.set()

    asyncio.run(block())


@dataclass
class Load:
    """An open-loop stream of requests and a loop-lag probe, tagged by phase."""

    rate: float
    phase: str = "warmup"
    latencies: dict[str, list[float]] = field(default_factory=dict)
    lags: dict[str, float] = field(default_factory=dict)
    stopped: bool = False

    async def one(self, app: Any, scope: Scope, due: float, phase: str) -> None:
        await app(dict(scope), receive, discard)
        self.latencies.setdefault(phase, []).append(time.perf_counter() - due)

    async def run(self, app: Any, scopes: Sequence[Scope]) -> None:
        interval = 1 / self.rate
        start = time.perf_counter()
        sent = 0
        running: set[asyncio.Task[None]] = set()
        while not self.stopped:
            due = start + sent * interval
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            task = asyncio.create_task(self.one(app, scopes[sent % len(scopes)], due, self.phase))
            running.add(task)
            task.add_done_callback(running.discard)
            sent += 1
        await asyncio.gather(*running)

    async def probe(self) -> None:
        while not self.stopped:
            began = time.perf_counter()
            await asyncio.sleep(0.001)
            late = time.perf_counter() - began - 0.001
            self.lags[self.phase] = max(self.lags.get(self.phase, 0.0), late)


def percentile(samples: Sequence[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def measure(args: argparse.Namespace, url: str) -> dict[str, dict[str, float]]:
    settings = FloodwallSettings(
        redis_url=url,
        user_header="x-user",
        rate=1_000_000,
        burst=1_000_000,
        key_prefix=PREFIX,
        redis_timeout=5,
        resync_seconds=3600,
    )
    floodwall = Floodwall(settings)
    app = FloodwallMiddleware(Starlette(routes=[Route(PATH, hello)]), floodwall=floodwall)
    scopes = make_scopes(1000)
    context = multiprocessing.get_context("spawn")
    go, done = context.Event(), context.Event()
    process = context.Process(target=operator, args=(url, go, done))
    if "networks" in args.parts:
        process.start()
    load = Load(args.rate)
    notes: dict[str, dict[str, float]] = {}
    began = time.perf_counter()
    await floodwall.start()
    await asyncio.wait_for(floodwall.following.wait(), 120)
    print(
        f"worker started and following in {time.perf_counter() - began:.1f} s:"
        f" {len(floodwall.mirror):,} users, {len(floodwall.networks):,} networks mirrored",
        file=sys.stderr,
    )
    tasks = [asyncio.create_task(load.run(app, scopes)), asyncio.create_task(load.probe())]
    try:
        await asyncio.sleep(1.0)  # warm-up: connections, caches
        load.phase = "quiet"
        await asyncio.sleep(args.quiet_seconds)
        if "networks" in args.parts:
            load.phase = "networks"
            began = time.perf_counter()
            go.set()
            expected = len(floodwall.networks) + ADDED_NETWORKS
            while len(floodwall.networks) < expected:
                finished = done.is_set()
                await asyncio.sleep(0.05)
                if finished and len(floodwall.networks) < expected:
                    raise RuntimeError("the operator's network blocks did not all arrive")
            notes["networks"] = {"seconds": time.perf_counter() - began}
        if "resync" in args.parts:
            load.phase = "resync"
            durations = []
            for _ in range(2):
                began = time.perf_counter()
                await floodwall.resync()
                durations.append(time.perf_counter() - began)
            notes["resync"] = {"seconds": sum(durations), "each": max(durations)}
        load.phase = "after"
        await asyncio.sleep(0.5)
    finally:
        load.stopped = True
        await asyncio.gather(*tasks)
        await floodwall.stop()
        if process.is_alive() or process.exitcode is not None:
            process.join(30)
    results: dict[str, dict[str, float]] = {}
    for phase in ("quiet", *args.parts):
        samples = load.latencies.get(phase, [])
        results[phase] = {
            "requests": len(samples),
            "p50_ms": percentile(samples, 0.50) * 1000,
            "p99_ms": percentile(samples, 0.99) * 1000,
            "max_ms": max(samples) * 1000,
            "lag_ms": load.lags.get(phase, 0.0) * 1000,
            **notes.get(phase, {}),
        }
    return results


def report(results: dict[str, dict[str, float]], args: argparse.Namespace) -> str:
    quiet = results["quiet"]["p99_ms"]
    lines = [
        f"{args.rate:g} req/s open loop, 1,000 users; {args.networks:,} network blocks and"
        f" {args.users:,} blocked users stored",
        f"{'phase':<10}{'requests':>9}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}{'loop lag ms':>13}"
        f"{'p99/quiet':>11}",
    ]
    for phase, row in results.items():
        ratio = row["p99_ms"] / quiet
        mark = "" if phase == "quiet" else ("  PASS" if ratio <= TARGET else "  MISS")
        lines.append(
            f"{phase:<10}{row['requests']:>9,}{row['p50_ms']:>9.2f}{row['p99_ms']:>9.2f}"
            f"{row['max_ms']:>9.1f}{row['lag_ms']:>13.1f}{ratio:>11.2f}{mark}"
        )
    if "networks" in results:
        lines.append(
            f"networks: {ADDED_NETWORKS} blocks added and applied in"
            f" {results['networks']['seconds']:.1f} s"
        )
    if "resync" in results:
        lines.append(
            f"resync: two full resyncs in {results['resync']['seconds']:.1f} s"
            f" (the longer {results['resync']['each']:.1f} s)"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts after the quiet one, from {','.join(PARTS)}",
    )
    parser.add_argument("--rate", type=float, default=500.0, help="requests a second")
    parser.add_argument(
        "--networks", type=int, default=9_990, help="stored before the 10 added (at most 9,990)"
    )
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--quiet-seconds", type=float, default=6.0)
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {','.join(PARTS)}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp, RedisServer.start(pathlib.Path(tmp)) as server:
        seed(server.url, args.networks, args.users)
        print(f"seeded in {time.perf_counter() - started:.1f} s", file=sys.stderr)
        results = asyncio.run(measure(args, server.url))
    print(report(results, args))
    print(f"{time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
