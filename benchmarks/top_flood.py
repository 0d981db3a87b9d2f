"""Does reading ``top`` hurt the hot path during a flood? And what does counting cost?

A real redis-server of its own; one worker (a ``FloodwallMiddleware`` called in-process as
an ASGI app, on Redis) takes a flood of ``--subjects`` distinct users, three requests each
on a limit of 1 an hour (the first allowed, the second refused by Redis, the third by the
deny cache): every subject is refused, so top's summary sees them all. The same flood runs
three times per round: alone; while an operator's process (its own ``Floodwall``, as the
CLI has) reads ``top`` and ``top_networks`` over the last hour in a loop, every
``--interval`` seconds (0.1: twenty ``floodwall top`` live views at their default 2 s; 0:
back to back, a core's worth of reads); and, as a control, while the same kind of process
sends two ``PING``s per turn of the same loop instead. The control is what any client
this busy costs the flood (its round trips and its core, on a machine whose cores the
flood, the reader and Redis share), whatever it asks; the part that is top's own is the
reads' p99 over the control's. Rounds alternate the order. Printed: p50 and p99 µs per
request of each, their ratios, and the turns of each loop; then the cost of counting one
refusal.

    .venv/bin/python benchmarks/top_flood.py [--subjects 100000] [--rounds 2] [--interval 0.1]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import pathlib
import sys
import tempfile
import time
import timeit
from typing import Any

import redis.asyncio

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchmarks._common import discard, make_scopes, receive
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity
from floodwall.core.decision import Decision, Outcome
from floodwall.observe.top import HeavyHitters
from harness import RedisServer


async def hello(scope: object, receive: object, send: object) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": []})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"hi"})  # type: ignore[operator]


async def flood(url: str, subjects: int, tag: str) -> list[float]:
    settings = FloodwallSettings(redis_url=url, rate=1 / 3600, burst=1, user_header="x-user")
    floodwall = Floodwall(settings)
    app = FloodwallMiddleware(hello, floodwall=floodwall)
    scopes = make_scopes(subjects, name=f"flood-{tag}")
    samples: list[float] = []
    await floodwall.start()
    try:
        for _ in range(3):
            for scope in scopes:
                began = time.perf_counter()
                await app(dict(scope), receive, discard)
                samples.append(time.perf_counter() - began)
    finally:
        await floodwall.stop()
    return samples


def reader(url: str, interval: float, reads_top: bool, stop: Any, count: Any, total: Any) -> None:
    """An operator's ``floodwall top`` in a process of its own, reading every ``interval``
    seconds (back to back at 0), or the control: two PINGs per turn instead of the two
    reads. ``count`` and ``total`` (seconds) are shared values."""

    async def loop() -> None:
        floodwall = Floodwall(FloodwallSettings(redis_url=url, redis_timeout=2))
        client = redis.asyncio.Redis.from_url(url)
        try:
            while not stop.is_set():
                began = time.perf_counter()
                if reads_top:
                    await floodwall.top(window_seconds=3600, limit=20)
                    await floodwall.top_networks(window_seconds=3600, limit=20)
                else:
                    await client.ping()
                    await client.ping()
                with count.get_lock():
                    count.value += 1
                    total.value += time.perf_counter() - began
                await asyncio.sleep(interval)
        finally:
            await client.aclose()
            await floodwall.stop()

    asyncio.run(loop())


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def counting_cost() -> None:
    summary = HeavyHitters()
    names = [f"u:user-{index}" for index in range(1_000_000)]
    repeated = timeit.timeit(lambda: summary.add("u:mallory"), number=1_000_000)
    fresh = iter(names)
    distinct = timeit.timeit(lambda: summary.add(next(fresh)), number=1_000_000)
    limited = Decision(Outcome.LIMITED, 1.0, 1, 0, 1.0, 1.0)
    offenders = Floodwall(FloodwallSettings()).offenders
    anonymous = Identity("203.0.113.7", anonymous=True)
    user = Identity("mallory")
    per_user = timeit.timeit(lambda: offenders.count(user, limited, enforced=True), number=500_000)
    per_anon = timeit.timeit(
        lambda: offenders.count(anonymous, limited, enforced=True), number=500_000
    )
    print("counting one refusal (ns):")
    print(f"  HeavyHitters.add, same subject       {repeated * 1000:.0f}")
    print(f"  HeavyHitters.add, a new subject each {distinct * 1000:.0f} (decrements amortised)")
    print(f"  Offenders.count, a user              {per_user * 2000:.0f}")
    print(f"  Offenders.count, an anonymous client {per_anon * 2000:.0f} (and its /24)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=100_000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--interval", type=float, default=0.1, help="seconds between reads")
    args = parser.parse_args()
    variants = ("alone", "top", "ping")
    samples: dict[str, list[float]] = {variant: [] for variant in variants}
    counts: dict[str, Any] = {variant: multiprocessing.Value("i", 0) for variant in variants}
    totals: dict[str, Any] = {variant: multiprocessing.Value("d", 0.0) for variant in variants}
    with tempfile.TemporaryDirectory() as tmp, RedisServer.start(pathlib.Path(tmp)) as server:
        for round_ in range(args.rounds):
            for variant in variants if round_ % 2 == 0 else variants[::-1]:
                stop = multiprocessing.Event()
                process = None
                if variant != "alone":
                    count, total = counts[variant], totals[variant]
                    process = multiprocessing.Process(
                        target=reader,
                        args=(server.url, args.interval, variant == "top", stop, count, total),
                    )
                    process.start()
                    # The flood starts once the loop is under way.
                    before = count.value
                    while count.value == before:
                        time.sleep(0.01)
                tag = f"{round_}-{variant}"
                samples[variant].extend(asyncio.run(flood(server.url, args.subjects, tag)))
                stop.set()
                if process is not None:
                    process.join()
    p50 = {variant: percentile(samples[variant], 0.5) for variant in variants}
    p99 = {variant: percentile(samples[variant], 0.99) for variant in variants}
    labels = {
        "alone": "flood alone",
        "top": f"+ top, top_networks every {args.interval:g} s",
        "ping": f"+ 2 PINGs every {args.interval:g} s (control)",
    }
    print(f"{args.subjects:,} subjects x 3 requests, {args.rounds} rounds; µs per request:")
    for variant in variants:
        line = (
            f"  {labels[variant]:<38} p50 {p50[variant] * 1e6:7.1f}  p99 {p99[variant] * 1e6:7.1f}"
        )
        if variant != "alone":
            line += f"  p99 x alone {p99[variant] / p99['alone']:5.2f}"
            line += f"  turns {counts[variant].value}, mean"
            line += f" {totals[variant].value / counts[variant].value * 1000:.2f} ms"
        print(line)
    print(
        f"  top's own share: p99 with reads / p99 with the control {p99['top'] / p99['ping']:.2f}"
    )
    counting_cost()


if __name__ == "__main__":
    main()
