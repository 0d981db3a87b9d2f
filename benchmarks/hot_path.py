"""Hot-path benchmark: what floodwall adds to one allowed request.

Run from the repository root, with the Python of the project's virtualenv::

    python benchmarks/hot_path.py              # 20 000 requests per variant, 1000 users, ~15 s
    python benchmarks/hot_path.py --requests 50000 --users 10000 --rounds 40 --json out.json
    python benchmarks/hot_path.py --redis-url redis://127.0.0.1:6379/0   # an existing Redis

Without ``--redis-url`` it starts its own ``redis-server`` (from ``PATH``) on a free
loopback port, without persistence, in a temporary directory, and stops it at the end.
A Redis given with ``--redis-url`` should be idle: other clients' commands would be
counted as the benchmark's (its statistics are not reset, and only keys under
``floodwall-bench*`` are written).

It measures the same tiny Starlette app (``GET /api/hello`` answering a small JSON body) in
these variants, each called in-process as an ASGI app (no HTTP server, no sockets except to
Redis), one request at a time, in one event loop (uvloop when installed, else asyncio):

* ``bare``: the app alone;
* ``floodwall[memory]``: wrapped in ``FloodwallMiddleware`` with the in-memory store;
* ``floodwall[redis]``: wrapped in ``FloodwallMiddleware`` with the Redis store;
* ``evalsha (ref)``: no app, just one redis-py ``EVALSHA`` of floodwall's own
  ``check.lua`` with the keys and arguments floodwall passes: the cost of the round trip
  the Redis variant cannot avoid.

Rate and burst are huge, so every request takes the *allowed* path. Requests rotate over
``--users`` distinct ``x-user`` header values. After a warm-up, the variants run in
interleaved rounds (the order rotates each round), so drift on a shared machine hits
every variant alike; compare the variants within one run, never absolute numbers across
machines or runs.

Reported per variant: median and p99 latency per request (``perf_counter_ns`` around
each awaited request), sequential requests per second, the median added over ``bare`` and
the ratio of medians to ``bare``, and for the Redis variants the Redis commands per
request from ``INFO commandstats`` (commands run inside the script count too: one
``EVALSHA`` of ``check.lua`` shows up as EVALSHA + TIME + HMGET + GET + SET). Results and
facts about the machine go to ``--json`` (default ``benchmarks/results/hot_path.json``).

Reading the numbers: ``bare`` and ``floodwall[memory]`` never wait on I/O, so they run with
hot CPU caches; on the 2-core VM this was written on, the same Python code ran 2-3x slower
right after a wait on a socket.
That is why ``floodwall[redis]`` costs more than ``bare`` + ``evalsha (ref)`` + the memory
variant's extra, and why a real server (which waits on its own sockets every request) will
see more than the in-memory "added" figure.

The exit status is 1 when something is off (a teardown step failed, or the Redis variant
sent fewer EVALSHA than requests, i.e. it answered from its fallback); the results are
still written.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.resources
import pathlib
import signal
import sys
import urllib.parse
from collections.abc import Awaitable, Sequence
from typing import Any, Final

# Run as a script (python benchmarks/hot_path.py), the repository root is not on the path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from benchmarks._common import (
    PATH,
    RESULTS_DIR,
    USER_HEADER,
    Interrupted,
    RedisServer,
    StopRequest,
    Variant,
    app_variant,
    check_app,
    command_stats,
    event_loop,
    machine_facts,
    make_scopes,
    measure,
    summarize,
    teardown,
    write_json,
)
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, RedisStore
from floodwall.keys import Keys

# Huge enough that no bucket ever runs dry: the benchmark is about the allowed path.
RATE: Final = 1e9
BURST: Final = 10**9
REDIS_TIMEOUT: Final = 1.0
# A prefix of its own so a benchmark against an existing Redis never touches real keys;
# the buckets it writes expire within a millisecond anyway.
KEY_PREFIX: Final = "floodwall-bench"
RAW_KEY_PREFIX: Final = "floodwall-bench-raw"
DEFAULT_REQUESTS: Final = 20_000
DEFAULT_USERS: Final = 1000
DEFAULT_ROUNDS: Final = 20
DEFAULT_JSON: Final = RESULTS_DIR / "hot_path.json"


# -- the app --------------------------------------------------------------------------------


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def make_app() -> Starlette:
    return Starlette(routes=[Route(PATH, hello, methods=["GET"])])


def settings(redis_url: str | None) -> FloodwallSettings:
    # Everything that changes the hot path is explicit, so stray FLOODWALL_* variables in
    # the environment cannot turn this into a different benchmark.
    return FloodwallSettings(
        redis_url=redis_url,
        redis_timeout=REDIS_TIMEOUT,
        key_prefix=KEY_PREFIX,
        rate=RATE,
        burst=BURST,
        anonymous_rate=None,
        anonymous_burst=None,
        rate_limit_headers=True,
        fail_mode="open",
        jwt_secret=None,
        user_header=USER_HEADER,
        trusted_proxies=[],
        exempt_paths=[],
        password_reset_paths=[],
    )


# -- reporting ------------------------------------------------------------------------------


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'variant':<19} {'median µs':>10} {'p99 µs':>9} {'req/s':>9} {'+µs vs bare':>12} "
        f"{'round IQR':>13} {'ratio':>7} {'cmds/req':>9} {'EVALSHA/req':>12}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        added, ratio = row["added_us_vs_bare"], row["ratio_to_bare"]
        spread = row.get("added_us_per_round")
        on_redis = row["redis"]
        cells = [
            f"{row['name']:<19}",
            f"{row['median_us']:>10.1f}",
            f"{row['p99_us']:>9.1f}",
            f"{row['requests_per_s']:>9,.0f}",
            f"{'—' if added is None else format(added, '+.1f'):>12}",
            f"{'—' if spread is None else _span(spread['p25'], spread['p75']):>13}",
            f"{'—' if ratio is None else format(ratio, '.2f'):>7}",
            f"{'—' if on_redis is None else format(on_redis['commands_per_request'], '.2f'):>9}",
            f"{'—' if on_redis is None else format(on_redis['evalsha_per_request'], '.2f'):>12}",
        ]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _span(low: float, high: float) -> str:
    return f"{low:.1f}…{high:.1f}"


def derived(rows: Sequence[dict[str, Any]]) -> dict[str, float | None]:
    by_name = {row["name"]: row for row in rows}
    memory, on_redis, raw = (
        by_name["floodwall[memory]"],
        by_name["floodwall[redis]"],
        by_name["evalsha (ref)"],
    )
    evalsha = (raw["redis"] or {}).get("by_command", {}).get("evalsha")
    return {
        # What floodwall costs in Python when no I/O is involved.
        "floodwall_python_us": memory["added_us_vs_bare"],
        # What the Redis variant adds beyond the one round trip it cannot avoid.
        "floodwall_redis_beyond_evalsha_us": on_redis["added_us_vs_bare"] - raw["median_us"],
        # Redis's own accounting of the script; the rest of a round trip is client and kernel.
        "evalsha_server_us": None if evalsha is None else evalsha["usec_per_call"],
    }


# -- facts ----------------------------------------------------------------------------------


# -- main -----------------------------------------------------------------------------------


async def benchmark(
    args: argparse.Namespace, url: str, loop_name: str, stop: StopRequest
) -> dict[str, Any]:
    scopes = make_scopes(args.users)
    in_memory = Floodwall(settings(None))
    on_redis = Floodwall(settings(url))
    # The reference client is built exactly as floodwall builds its own (timeouts, retry).
    if not isinstance(on_redis.store, RedisStore) or not isinstance(
        on_redis.store.client, redis.asyncio.Redis
    ):
        raise RuntimeError("floodwall did not build a RedisStore on a redis.asyncio.Redis")
    raw_client = on_redis.store.client
    script = raw_client.register_script(
        importlib.resources.files("floodwall").joinpath("lua", "check.lua").read_text("utf-8")
    )
    raw_keys = [
        (subject.bucket, subject.state, subject.revoked)
        for subject in (Keys(RAW_KEY_PREFIX).user(f"user-{user}") for user in range(args.users))
    ]
    # What RedisStore.check passes for an allowed request without a credential.
    raw_args = (repr(float(RATE)), BURST, 1, "", "", "0", "")

    def raw_request(user: int) -> Awaitable[object]:
        return script(keys=raw_keys[user], args=raw_args)

    bare_app = make_app()
    memory_app = FloodwallMiddleware(make_app(), floodwall=in_memory)
    redis_app = FloodwallMiddleware(make_app(), floodwall=on_redis)
    variants = [
        app_variant("bare", "Starlette app alone", bare_app, scopes, uses_redis=False),
        app_variant(
            "floodwall[memory]",
            "FloodwallMiddleware, in-memory store",
            memory_app,
            scopes,
            uses_redis=False,
        ),
        app_variant(
            "floodwall[redis]",
            "FloodwallMiddleware, Redis store",
            redis_app,
            scopes,
            uses_redis=True,
        ),
        Variant(
            "evalsha (ref)",
            "one redis-py EVALSHA of check.lua, no app",
            raw_request,
            is_app=False,
            uses_redis=True,
        ),
    ]

    admin = redis.asyncio.Redis.from_url(url, socket_timeout=5.0)
    totals: dict[str, tuple[int, int]] = {}
    try:
        # As the lifespan would: connect before the first request.
        await in_memory.start()
        await on_redis.start()
        info: dict[str, Any] = await admin.info("server")
        redis_version = str(info.get("redis_version", "unknown"))
        await check_app(variants[0], bare_app, scopes[0], limited=False)
        await check_app(variants[1], memory_app, scopes[0], limited=True)
        await check_app(variants[2], redis_app, scopes[0], limited=True)
        reply = await raw_request(0)
        if not isinstance(reply, list) or int(reply[0]) != 0:
            raise RuntimeError(f"check.lua did not allow the reference request: {reply!r}")
        await measure(
            variants,
            args.requests,
            args.users,
            args.rounds,
            admin,
            stop,
            reset_stats=args.redis_url is None,
        )
        with contextlib.suppress(redis.RedisError):
            totals = await command_stats(admin)
    finally:
        teardown_errors = await teardown(
            [
                ("floodwall[redis] stop", on_redis.stop),
                ("floodwall[memory] stop", in_memory.stop),
                # Floodwall's own client, closed again in case its stop() failed halfway.
                ("redis client close", raw_client.aclose),
                ("admin client close", admin.aclose),
            ]
        )

    rows = [summarize(variant, variants[0]) for variant in variants]
    return {
        "benchmark": "hot_path",
        "schema": 1,
        "config": {
            "requests_per_variant": args.requests,
            "users": args.users,
            "rounds": args.rounds,
            "rate": RATE,
            "burst": BURST,
            "redis": "external" if args.redis_url else "own redis-server",
        },
        "machine": machine_facts(redis_version, loop_name),
        "variants": rows,
        "derived": derived(rows),
        # Only meaningful on our own server, whose statistics were reset before the run.
        "redis_totals_measured_run": None
        if args.redis_url
        else {name: {"calls": calls, "usec": usec} for name, (calls, usec) in totals.items()},
        "warnings": [*teardown_errors, *evalsha_warnings(rows)],
    }


def evalsha_warnings(rows: Sequence[dict[str, Any]]) -> list[str]:
    # Fewer EVALSHA than requests means floodwall answered from its fallback, so the
    # "Redis" numbers would be those of the in-memory fail-open path.
    return [
        f"{row['name']} sent {row['redis']['evalsha_per_request']:.3f} EVALSHA per request"
        " (store fallback?)"
        for row in rows
        if row["redis"] is not None and abs(row["redis"]["evalsha_per_request"] - 1) > 1e-9
    ]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=DEFAULT_REQUESTS, help="per variant")
    parser.add_argument("--users", type=int, default=DEFAULT_USERS, help="distinct users")
    parser.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="interleaved rounds")
    parser.add_argument("--json", type=pathlib.Path, default=DEFAULT_JSON, help="results file")
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.users < 1 or args.requests < args.rounds:
        parser.error("need rounds >= 1, users >= 1 and requests >= rounds")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    loop_factory, loop_name = event_loop()
    server: RedisServer | None = None
    stop = StopRequest()
    # asyncio.Runner installs its own SIGINT handler only over the default one, so this one
    # stays in charge.
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    try:
        if args.redis_url:
            url = args.redis_url
            parts = urllib.parse.urlsplit(url)
            # Never print the URL itself: it may carry a password.
            where = f"the Redis at {parts.hostname}:{parts.port or 6379}"
        else:
            server = RedisServer()
            # Also if a second Ctrl-C breaks out of the `finally` below before the server stops.
            atexit.register(server.stop)
            url = server.start()
            where = f"its own redis-server at {url}"
        print(
            f"floodwall hot path: {args.requests:,} requests per variant, {args.users:,} users,"
            f" {args.rounds} interleaved rounds, {loop_name}, {where}",
            flush=True,
        )
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            results = runner.run(benchmark(args, url, loop_name, stop))
    except Interrupted:
        print("interrupted; nothing written", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        for number, handler in previous.items():
            signal.signal(number, handler)

    machine = results["machine"]
    print(
        f"Python {machine['python']}, {machine['cpu_count']} CPUs, "
        f"redis-server {machine['redis_server']}, load {machine['load_average']}\n"
    )
    print(format_table(results["variants"]))
    facts = results["derived"]
    server_us = facts["evalsha_server_us"]
    print(
        f"\nfloodwall's own Python work (memory - bare):   {facts['floodwall_python_us']:+7.1f} µs"
        f"\nRedis variant minus bare minus one raw EVALSHA: "
        f"{facts['floodwall_redis_beyond_evalsha_us']:+7.1f} µs"
        f"\ntime inside Redis per EVALSHA (commandstats):  "
        f"{'—' if server_us is None else format(server_us, '7.1f')} µs"
    )
    write_json(args.json, results)
    print(f"\nresults: {args.json}")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 1 if results["warnings"] else 0


if __name__ == "__main__":
    sys.exit(main())
