"""Redis as deployed: what TLS and Sentinel cost a request, and how long a failover takes.

Run from the repository root with the project's Python (``redis-server`` on ``PATH``)::

    python benchmarks/redis_deployed.py            # about two minutes
    python benchmarks/redis_deployed.py --quick    # about one

``wrk`` on ``PATH`` (``apt-get install wrk``) for the HTTP part.

1. The same app is called in-process (no HTTP server) with 32 concurrent callers and 200
   users, through floodwall on real servers of its own: a plain redis-server, a TLS-only
   one (a CA and certificates made here, clients asked for theirs), and a primary with a
   replica behind three Sentinels. Variants: plain Redis (the lean wire client), TLS (the
   lean wire client over TLS), TLS through redis-py (what a fallback to it would cost),
   plain Redis through redis-py, and Sentinel (checks through redis-py). They alternate in
   rounds; the median of the rounds' µs per request is reported, each as a ratio to plain
   Redis.
2. Over HTTP: the same app in uvicorn (``benchmarks/apps.py``, variant ``floodwall[redis]``,
   one worker each), on the plain and on the TLS server, loaded by ``wrk`` (32
   connections, 1,000 rotating users) in interleaved rounds: requests/s on TLS against
   plain.
3. Failovers: a worker through the Sentinels; the primary is killed (SIGKILL), and the time
   from the kill to limits exact again (a fresh user gets its burst, then a 429) is
   measured, once per failover, each on a new Sentinel group. Exact means decided by the
   new primary (the user's bucket is there): a worker's own limits in the fail mode would
   pass for exact too.

Results go to ``benchmarks/results/redis_deployed.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import MutableMapping
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402
import redis.asyncio  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks import http_load  # noqa: E402
from benchmarks._common import (  # noqa: E402
    PATH,
    USER_HEADER,
    UvicornServer,
    discard,
    make_scopes,
    receive,
)
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings  # noqa: E402
from floodwall.stores import RedisStore  # noqa: E402
from harness import SERVICE, RedisSentinelGroup, RedisServer, make_certificates  # noqa: E402

CALLERS = 32
USERS = 200
BURST = 5
RESULTS = ROOT / "benchmarks" / "results" / "redis_deployed.json"


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def build(prefix: str, *, redis_py_url: str | None = None, **where: Any) -> tuple[Floodwall, Any]:
    """A worker on the store ``where`` names, or on redis-py alone at ``redis_py_url``."""
    settings = FloodwallSettings(
        **where,
        user_header=USER_HEADER,
        rate=1_000_000,
        burst=1_000_000,
        key_prefix=prefix,
        redis_timeout=2,
    )
    store = None
    if redis_py_url is not None:
        client = redis.asyncio.Redis.from_url(redis_py_url, socket_timeout=2)
        store = RedisStore(client, prefix=prefix)
    floodwall = Floodwall(settings, store=store)
    app = FloodwallMiddleware(Starlette(routes=[Route(PATH, hello)]), floodwall=floodwall)
    return floodwall, app


async def timed(app: Any, scopes: list[MutableMapping[str, Any]], requests: int) -> float:
    """µs per request, with CALLERS requests in flight."""
    per_caller = requests // CALLERS

    async def caller(offset: int) -> None:
        for n in range(per_caller):
            await app(dict(scopes[(offset + n) % len(scopes)]), receive, discard)

    started = time.perf_counter()
    await asyncio.gather(*(caller(c * 7) for c in range(CALLERS)))
    return (time.perf_counter() - started) / (per_caller * CALLERS) * 1e6


async def costs(workdir: pathlib.Path, rounds: int, requests: int) -> dict[str, Any]:
    """Part 1: µs per request of each variant, medians of interleaved rounds."""
    certificates = make_certificates(workdir / "certs")
    with (
        RedisServer.start(workdir / "plain") as plain,
        RedisServer.start(workdir / "tls", tls=certificates) as tls,
        RedisSentinelGroup.start(workdir / "sentinel") as group,
    ):
        variants = {
            "plain Redis (wire client)": build("b-plain", redis_url=plain.url),
            "TLS (wire client)": build("b-tls", redis_url=tls.url),
            "TLS (redis-py)": build("b-tls-py", redis_py_url=tls.url),
            "plain Redis (redis-py)": build("b-plain-py", redis_py_url=plain.url),
            "Sentinel (redis-py)": build(
                "b-sentinel",
                redis_sentinels=group.sentinel_addresses,
                redis_sentinel_service=SERVICE,
            ),
        }
        scopes = make_scopes(USERS)
        for floodwall, app in variants.values():
            await floodwall.start()
            await timed(app, scopes, 2_000)  # connect, load the script, fill the caches
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                samples[name].append(await timed(variants[name][1], scopes, requests))
        for floodwall, _ in variants.values():
            await floodwall.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    base = medians["plain Redis (wire client)"]
    print(f"in-process, {CALLERS} callers, {USERS} users, medians of {rounds} rounds:")
    for name, value in medians.items():
        print(f"  {name:<28} {value:7.1f} µs per request  {value / base:5.2f} x plain Redis")
    return {
        "samples_us": samples,
        "median_us": medians,
        "ratio_to_plain": {name: value / base for name, value in medians.items()},
    }


def over_http(workdir: pathlib.Path, rounds: int, seconds: int) -> dict[str, Any]:
    """Part 2: requests/s of uvicorn on the plain and the TLS server, interleaved rounds."""
    certificates = make_certificates(workdir / "certs")
    with (
        RedisServer.start(workdir / "plain") as plain,
        RedisServer.start(workdir / "tls", tls=certificates) as tls,
    ):
        servers = {
            name: UvicornServer(
                name,
                {"BENCH_VARIANT": "floodwall[redis]", "BENCH_REDIS_URL": url, "BENCH_PREFIX": name},
            )
            for name, url in (("plain", plain.url), ("tls", tls.url))
        }
        try:
            urls = {name: server.start() for name, server in servers.items()}
            for url in urls.values():
                http_load._wrk(url, 2)  # warm up: connect, load the script
            rates: dict[str, list[float]] = {name: [] for name in servers}
            for round_number in range(rounds):
                order = list(servers) if round_number % 2 == 0 else list(reversed(servers))
                for name in order:
                    rates[name].append(http_load._rate(http_load._wrk(urls[name], seconds)))
        finally:
            for server in servers.values():
                server.stop()
    ratios = [t / p for t, p in zip(rates["tls"], rates["plain"], strict=True)]
    medians = {name: statistics.median(values) for name, values in rates.items()}
    ratio = statistics.median(ratios)
    print(
        f"HTTP, uvicorn under wrk, medians of {rounds} rounds of {seconds} s: plain "
        f"{medians['plain']:,.0f} req/s, TLS {medians['tls']:,.0f} req/s: TLS {ratio:.2f} x plain"
    )
    return {"requests_per_s": rates, "median_requests_per_s": medians, "tls_to_plain": ratio}


async def _codes(app: Any, user: str, count: int) -> list[int]:
    codes: list[int] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        if message["type"] == "http.response.start":
            codes.append(message["status"])

    for _ in range(count):
        scope = make_scopes(1)[0]
        scope["headers"] = [(USER_HEADER.encode(), user.encode())]
        await app(scope, receive, send)
    return codes


def _holds(group: RedisSentinelGroup, old: RedisServer, key: str) -> bool:
    """Whether a server other than the killed primary holds ``key``."""
    for server in group.servers:
        if server is not old:
            with redis.Redis(port=server.port, socket_timeout=1) as client:
                if client.exists(key):
                    return True
    return False


async def failover(workdir: pathlib.Path) -> float:
    """Part 2: seconds from killing the primary to exact limits again, on one group."""
    with RedisSentinelGroup.start(workdir) as group:
        settings = FloodwallSettings(
            redis_sentinels=group.sentinel_addresses,
            redis_sentinel_service=SERVICE,
            user_header=USER_HEADER,
            rate=0.01,
            burst=BURST,
            redis_timeout=0.5,
            breaker_cooldown=0.2,
            key_prefix=f"f{uuid.uuid4().hex[:8]}",
        )
        floodwall = Floodwall(settings)
        app = FloodwallMiddleware(Starlette(routes=[Route(PATH, hello)]), floodwall=floodwall)
        await floodwall.start()
        try:
            assert await _codes(app, "warm", BURST + 1) == [200] * BURST + [429]
            old = group.kill_primary()
            killed = time.monotonic()
            while True:
                user = f"fresh-{uuid.uuid4().hex[:6]}"
                exact = await _codes(app, user, BURST + 1) == [200] * BURST + [429]
                # Each worker's own limits in the fail mode look exact too: only a bucket on
                # a new primary says the store decided.
                if exact and _holds(group, old, floodwall.store.keys.user(user).bucket):
                    return time.monotonic() - killed
                if time.monotonic() - killed > 60:
                    raise RuntimeError("limits not exact a minute after the kill")
                await asyncio.sleep(0.05)
        finally:
            await floodwall.stop()


async def main(quick: bool) -> int:
    rounds, requests, failovers = (5, 4_000, 2) if quick else (11, 10_000, 3)
    http_rounds, seconds = (3, 3) if quick else (6, 5)
    with tempfile.TemporaryDirectory() as folder:
        workdir = pathlib.Path(folder)
        results = await costs(workdir / "costs", rounds, requests)
        results["http"] = over_http(workdir / "http", http_rounds, seconds)
        times = [await failover(workdir / f"failover-{n}") for n in range(failovers)]
    print(
        "kill to exact limits: "
        + ", ".join(f"{t:.1f} s" for t in times)
        + f" (median {statistics.median(times):.1f} s of {failovers} failovers)"
    )
    results["failover_s"] = times
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
