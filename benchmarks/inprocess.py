"""Part 1 of ``run.py``: the in-process hot path, floodwall against its peers.

Every app of ``apps.py`` is called directly as an ASGI app (no server, no sockets except
to Redis), one request at a time, in one event loop, requests rotating over many distinct
``x-user`` values; plus one raw redis-py ``EVALSHA`` of floodwall's own ``check.lua`` (the
round trip floodwall cannot avoid), and two refusals floodwall answers from local state:

* ``fw[redis] 429 known-limited``: users whose bucket is deep in debt (a Floodwall whose
  default limit is 1 per hour, burst 1; each user primed with two requests), so the
  refusal is certain for the whole run and answered in-process;
* ``fw[redis] 403 blocked``: users blocked by an operator (``Floodwall.block``), primed
  with one request each.

After a warm-up the variants run in interleaved rounds (order rotating each round), so
drift on a shared machine hits all alike. Per variant: median and p99 µs per request, the
ratio of medians to ``bare`` and the µs added over it, Redis commands per request from
``INFO commandstats`` deltas around each batch (commands run inside a Lua script count
too: one floodwall ``EVALSHA`` shows up as EVALSHA + TIME + HMGET + GET + SET), and round
trips per request from a short ``MONITOR`` pass after the timing (commands sent by a
client, not those run inside scripts).

Then Redis memory per active user: ``MEMORY USAGE`` of a bucket key after one request on
floodwall's default limit (10/s, burst 10), the ``used_memory`` growth over many users,
and whether an idle user's key is gone once its bucket would be full again.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import importlib.resources
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import redis
import redis.asyncio

from benchmarks import apps
from benchmarks._common import (
    BOOKKEEPING_COMMANDS,
    CountingHandler,
    StopRequest,
    Variant,
    app_variant,
    check_app,
    command_stats,
    make_scopes,
    measure,
    summarize,
    teardown,
)
from floodwall import Floodwall, Identity, RedisStore
from floodwall.stores.keys import Keys
from harness import RedisMonitor, parse_monitor_line

RAW_KEY_PREFIX: Final = "floodwall-bench-raw"
LIMITED_PREFIX: Final = "floodwall-bench-limited"
BLOCKED_PREFIX: Final = "floodwall-bench-blocked"
MEMORY_PREFIX: Final = "floodwall-bench-memory"
# A certain refusal for the whole run: one request an hour, and every user already in debt.
LIMITED_RATE: Final = 1 / 3600
LIMITED_BURST: Final = 1
DEFAULT_RATE: Final = 10.0
DEFAULT_BURST: Final = 10
MONITOR_REQUESTS: Final = 200
EXPIRY_WATCH_SECONDS: Final = 3.0

LIMITED: Final = "fw[redis] 429 known-limited"
BLOCKED: Final = "fw[redis] 403 blocked"
RAW: Final = "evalsha (ref)"


@dataclass(frozen=True, slots=True)
class Config:
    requests: int = 20_000
    users: int = 1000
    rounds: int = 20
    blocked_users: int = 100
    memory_users: int = 10_000

    @classmethod
    def quick(cls) -> Config:
        return cls(requests=5000, users=1000, rounds=10, blocked_users=100, memory_users=2000)


# -- round trips, from MONITOR ----------------------------------------------------------------


Pass = tuple[str, Callable[[], Awaitable[None]], Callable[[], Awaitable[None]] | None]


async def monitor_pass(
    port: int, admin: redis.asyncio.Redis, passes: Sequence[Pass]
) -> dict[str, dict[str, Any]]:
    """Run each pass under ``redis-cli monitor`` and count, per pass, the commands clients
    sent (round trips; a pipeline's commands count one each) and those run inside scripts.

    A pass is (name, requests, deferred work or None); the deferred work runs outside any
    pass. Passes are separated by ``ECHO`` markers in the stream. Background work of any
    client falling inside a pass is counted with it (it shows up in ``sent_by_command``).
    """
    if not RedisMonitor.available():
        return {}
    async with RedisMonitor(port) as monitor:
        for name, run, after in passes:
            await admin.echo(f"bench-mark:{name}")
            await run()
            await admin.echo("bench-mark:-")
            if after is not None:
                await after()
    return _parse_monitor(monitor.lines)


def _parse_monitor(lines: Sequence[str]) -> dict[str, dict[str, Any]]:
    counts: dict[str, dict[str, Counter[str]]] = {}
    current: str | None = None
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None:
            continue
        client, command = parsed
        if command == "echo" and '"bench-mark:' in line:
            current = line.rsplit('"bench-mark:', 1)[1].rstrip('"')
            current = None if current in ("end", "-") else current
            if current is not None:
                counts.setdefault(current, {"sent": Counter(), "script": Counter()})
            continue
        if current is None:
            continue
        counts[current]["script" if client == "lua" else "sent"][command] += 1
    return {
        name: {
            "round_trips": sum(kinds["sent"].values()),
            "script_commands": sum(kinds["script"].values()),
            "sent_by_command": dict(sorted(kinds["sent"].items())),
            "script_by_command": dict(sorted(kinds["script"].items())),
        }
        for name, kinds in counts.items()
    }


# -- memory ---------------------------------------------------------------------------------


async def memory_per_user(url: str, users: int) -> dict[str, Any]:
    """Redis memory of active users on floodwall's default limit, and their keys' expiry.

    Runs in database 1 of the benchmark's own server, with nothing else running.
    """
    db_url = url.rsplit("/", 1)[0] + "/1"
    admin = redis.asyncio.Redis.from_url(db_url, socket_timeout=5.0)
    default = Floodwall(apps.floodwall_settings(db_url, rate=DEFAULT_RATE, burst=DEFAULT_BURST))
    # Same key and value shape, but a key that lives a minute: all users' keys at once.
    slow = Floodwall(
        apps.floodwall_settings(
            db_url, rate=1 / 60, burst=DEFAULT_BURST, prefix=MEMORY_PREFIX + "-slow"
        )
    )
    result: dict[str, Any] = {"rate": DEFAULT_RATE, "burst": DEFAULT_BURST, "users": users}
    try:
        await admin.flushdb()
        await default.start()
        await slow.start()
        keys = default.keys

        # One request: the key lives until the bucket is full again, 1/rate seconds.
        probe = keys.user("memory-probe")
        await default.check(Identity("memory-probe"))
        pttl = int(await admin.pttl(probe.bucket))
        result["memory_usage_bucket_key_bytes"] = await admin.memory_usage(probe.bucket, samples=0)
        result["other_keys_of_an_active_user"] = [
            name for name in (probe.state, probe.revoked) if await admin.exists(name)
        ]
        result["pttl_after_one_request_ms"] = pttl
        result["expected_full_again_ms"] = 1000 / DEFAULT_RATE
        await asyncio.sleep(max(pttl, 0) / 1000 + 0.02)
        result["key_exists_after_full_again"] = bool(await admin.exists(probe.bucket))

        # A whole burst: the key lives burst/rate seconds.
        for _ in range(DEFAULT_BURST):
            await default.check(Identity("memory-burst"))
        result["pttl_after_burst_ms"] = int(await admin.pttl(keys.user("memory-burst").bucket))
        result["expected_full_again_after_burst_ms"] = 1000 * DEFAULT_BURST / DEFAULT_RATE

        # used_memory growth over many users, one request each, one connection.
        await asyncio.sleep(1.1)
        before_keys = int(await admin.dbsize())
        before = int((await admin.info("memory"))["used_memory"])
        for n in range(users):
            await slow.check(Identity(f"memory-{n}"))
        after = int((await admin.info("memory"))["used_memory"])
        added = int(await admin.dbsize()) - before_keys
        result["keys_added"] = added
        result["used_memory_growth_bytes"] = after - before
        result["used_memory_per_user_bytes"] = (after - before) / max(1, added)
        await admin.flushdb()

        # Idle users on the default limit: their keys go without anyone touching them.
        for start in range(0, users, 50):
            await asyncio.gather(
                *(
                    default.check(Identity(f"idle-{n}"))
                    for n in range(start, min(users, start + 50))
                )
            )
        filled = time.monotonic()
        watch: list[tuple[float, int]] = [(0.0, int(await admin.dbsize()))]
        while time.monotonic() - filled < EXPIRY_WATCH_SECONDS and watch[-1][1] > 0:
            await asyncio.sleep(0.1)
            watch.append((round(time.monotonic() - filled, 2), int(await admin.dbsize())))
        result["dbsize_after_seconds"] = watch
        result["all_gone_after_s"] = next((t for t, n in watch if n == 0), None)
    finally:
        await default.stop()
        await slow.stop()
        with contextlib.suppress(redis.RedisError):
            await admin.flushdb()
        await admin.aclose()
    return result


# -- the benchmark --------------------------------------------------------------------------


async def run(config: Config, url: str, stop: StopRequest) -> dict[str, Any]:
    """Measure every variant in interleaved rounds; return the part's results."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    scopes = make_scopes(config.users)
    built = {name: apps.build(name, url) for name in apps.VARIANTS}
    # The refusals' own cost, without the tarpit: refusing one user after another for
    # milliseconds without yielding is, to the tarpit, a flood that makes the loop lag, and
    # their refusals would be held back.
    limited = apps.build(
        "floodwall[redis]",
        url,
        rate=LIMITED_RATE,
        burst=LIMITED_BURST,
        prefix=LIMITED_PREFIX,
        tarpit_seconds=0.0,
    )
    blocked = apps.build("floodwall[redis]", url, prefix=BLOCKED_PREFIX, tarpit_seconds=0.0)
    on_redis = built["floodwall[redis]"].floodwall
    assert on_redis is not None
    assert limited.floodwall is not None
    assert blocked.floodwall is not None
    # The reference client is floodwall's own (same timeouts, same retry policy).
    if not isinstance(on_redis.store, RedisStore) or not isinstance(
        on_redis.store.client, redis.asyncio.Redis
    ):
        raise RuntimeError("floodwall did not build a RedisStore on a redis.asyncio.Redis")
    raw_client = on_redis.store.client
    script = raw_client.register_script(
        importlib.resources.files("floodwall.stores.redis")
        .joinpath("lua", "check.lua")
        .read_text("utf-8")
    )
    raw_keys = [
        (subject.bucket, subject.state, subject.revoked)
        for subject in (Keys(RAW_KEY_PREFIX).user(f"user-{n}") for n in range(config.users))
    ]
    # What RedisStore.check passes for an allowed request without a credential.
    raw_args = (repr(float(apps.ALLOW_ALL_RATE)), apps.ALLOW_ALL_BURST, 1, "", "", "0", "")

    def raw_request(user: int) -> Awaitable[object]:
        return script(keys=raw_keys[user], args=raw_args)

    limited_scopes = make_scopes(config.users, "limited")
    blocked_pool = make_scopes(config.blocked_users, "blocked")
    blocked_scopes = [blocked_pool[n % len(blocked_pool)] for n in range(config.users)]
    descriptions = {
        "bare": "Starlette app alone",
        "floodwall[memory]": "FloodwallMiddleware, in-memory store",
        "floodwall[redis]": "FloodwallMiddleware, Redis store",
        "slowapi[decorator]": "slowapi @limiter.limit, limits RedisStorage (sync redis-py)",
        "slowapi[middleware]": "slowapi SlowAPIASGIMiddleware, limits RedisStorage",
        "asgi-ratelimit[redis]": "asgi-ratelimit RateLimitMiddleware, RedisBackend",
    }
    variants = [
        app_variant(
            name,
            descriptions[name],
            built[name].app,
            scopes,
            uses_redis=name in apps.REDIS_VARIANTS,
        )
        for name in apps.VARIANTS
    ]
    variants.append(
        Variant(
            RAW,
            "one redis-py EVALSHA of floodwall's check.lua, no app",
            raw_request,
            is_app=False,
            uses_redis=True,
        )
    )
    variants.append(
        app_variant(
            LIMITED,
            "refusal of a user known to be limited (in debt for an hour)",
            limited.app,
            limited_scopes,
            uses_redis=True,
        )
    )
    variants.append(
        app_variant(
            BLOCKED,
            f"refusal of a blocked user ({config.blocked_users} blocked users)",
            blocked.app,
            blocked_scopes,
            uses_redis=True,
        )
    )
    by_name = {variant.name: variant for variant in variants}

    admin = redis.asyncio.Redis.from_url(url, socket_timeout=5.0)
    # A refusal costs no round trip, but floodwall counts it for "top offenders" and adds
    # the counts to Redis once a second: a ZINCRBY per distinct refused user (at most 100)
    # into the 10 s, 1 min and 10 min blocks holding this second. Flushed
    # right after each batch here, so that work lands in no other variant's window; its
    # commands are counted apart.
    deferred: dict[str, Counter[str]] = {LIMITED: Counter(), BLOCKED: Counter()}
    flushes: Counter[str] = Counter()

    def flusher(name: str, floodwall: Floodwall) -> Callable[[], Awaitable[None]]:
        async def flush() -> None:
            before = await command_stats(admin)
            await floodwall.flush_refusals()
            after = await command_stats(admin)
            flushes[name] += 1
            for command, (calls, _) in after.items():
                old = before.get(command, (0, 0))[0]
                if command not in BOOKKEEPING_COMMANDS and calls > old:
                    deferred[name][command] += calls - old

        return flush

    by_name[LIMITED].after_batch = flusher(LIMITED, limited.floodwall)
    by_name[BLOCKED].after_batch = flusher(BLOCKED, blocked.floodwall)
    log = CountingHandler()
    floodwall_logger = logging.getLogger("floodwall")
    floodwall_logger.addHandler(log)
    propagate, floodwall_logger.propagate = floodwall_logger.propagate, False
    monitor: dict[str, dict[str, Any]] = {}
    try:
        for item in [*built.values(), limited, blocked]:
            await item.start()
        for n in range(config.blocked_users):
            await blocked.floodwall.block(f"blocked-{n}", reason="benchmark", actor="bench")
        # Let the block events come back over pub/sub before priming.
        await asyncio.sleep(0.5)
        for name in apps.VARIANTS:
            await check_app(
                by_name[name], built[name].app, scopes[0], limited=name.startswith("floodwall")
            )
        reply = await raw_request(0)
        if not isinstance(reply, list) or int(reply[0]) != 0:
            raise RuntimeError(f"check.lua did not allow the reference request: {reply!r}")
        for scope in limited_scopes:
            await check_app(by_name[LIMITED], limited.app, scope, limited=None, status=200)
            await check_app(by_name[LIMITED], limited.app, scope, limited=True, status=429)
        for scope in blocked_pool:
            await check_app(by_name[BLOCKED], blocked.app, scope, limited=None, status=403)
        await measure(
            variants, config.requests, config.users, config.rounds, admin, stop, reset_stats=True
        )

        def one_pass(variant: Variant) -> Callable[[], Awaitable[None]]:
            async def go() -> None:
                for n in range(MONITOR_REQUESTS):
                    await variant.request(n % config.users)

            return go

        gc.collect()
        monitor = await monitor_pass(
            port, admin, [(v.name, one_pass(v), v.after_batch) for v in variants if v.uses_redis]
        )
    finally:
        floodwall_logger.removeHandler(log)
        floodwall_logger.propagate = propagate
        teardown_errors = await teardown(
            [
                *((f"{name} close", item.close) for name, item in built.items()),
                ("limited close", limited.close),
                ("blocked close", blocked.close),
                ("admin close", admin.aclose),
            ]
        )
    stop.check()
    memory = await memory_per_user(url, config.memory_users)

    bare = variants[0]
    rows = [summarize(variant, bare) for variant in variants]
    for row in rows:
        if row["name"] in deferred:
            flushed = deferred[row["name"]]
            # A ZINCRBY per distinct refused user and block per flush (and each block's trim
            # and expiry): flushed per batch here, once a second per worker in production.
            row["deferred_refusal_counting"] = {
                "flushes": flushes[row["name"]],
                "by_command": dict(sorted(flushed.items())),
                "commands_per_flush": sum(flushed.values()) / max(1, flushes[row["name"]]),
            }
        seen = monitor.get(row["name"])
        row["monitor"] = None
        if seen is not None:
            row["monitor"] = {
                **seen,
                "requests": MONITOR_REQUESTS,
                "round_trips_per_request": seen["round_trips"] / MONITOR_REQUESTS,
                "script_commands_per_request": seen["script_commands"] / MONITOR_REQUESTS,
            }
    results: dict[str, Any] = {
        "part": "inprocess",
        "config": {
            "requests_per_variant": config.requests,
            "users": config.users,
            "rounds": config.rounds,
            "blocked_users": config.blocked_users,
            "allowed_path_rate": apps.ALLOW_ALL_RATE,
            "allowed_path_burst": apps.ALLOW_ALL_BURST,
            "peer_limit": apps.PEER_LIMIT,
            "limited_rate": LIMITED_RATE,
            "limited_burst": LIMITED_BURST,
            "monitor_requests": MONITOR_REQUESTS,
        },
        "variants": rows,
        "memory": memory,
        "floodwall_log_records": log.summary(),
        "warnings": [*teardown_errors, *_warnings(rows)],
    }
    results["targets"] = targets(results)
    return results


def _warnings(rows: Sequence[dict[str, Any]]) -> list[str]:
    warnings = []
    for row in rows:
        redis_row = row["redis"]
        if row["name"] in ("floodwall[redis]", RAW) and redis_row is not None:
            per = redis_row["evalsha_per_request"]
            if abs(per - 1) > 1e-9:
                warnings.append(f"{row['name']} sent {per:.3f} EVALSHA per request (fallback?)")
    return warnings


def _row(results: dict[str, Any], name: str) -> dict[str, Any]:
    return next(row for row in results["variants"] if row["name"] == name)


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The in-process targets, each with what was measured and PASS/MISS."""
    out: list[dict[str, Any]] = []
    fw = _row(results, "floodwall[redis]")
    raw = _row(results, RAW)
    added = fw["added_us_vs_bare"]
    bound = 1.1 * raw["median_us"]
    out.append(
        {
            "id": "inprocess.added_vs_evalsha",
            "target": "floodwall[redis] added cost ≤ 1.1 x one raw EVALSHA",
            "measured": f"+{added:.1f} µs vs 1.1 x {raw['median_us']:.1f} = {bound:.1f} µs"
            f" ({added / raw['median_us']:.2f} x EVALSHA)",
            "passed": added <= bound,
        }
    )
    peers = {name: _row(results, name)["added_us_vs_bare"] for name in apps.PEERS}
    cheapest = min(peers, key=lambda name: peers[name])
    out.append(
        {
            "id": "inprocess.added_vs_peers",
            "target": "floodwall[redis] added cost below every peer's",
            "measured": f"+{added:.1f} µs vs cheapest peer {cheapest} +{peers[cheapest]:.1f} µs",
            "passed": all(added < value for value in peers.values()),
        }
    )
    for name in (LIMITED, BLOCKED):
        row = _row(results, name)
        redis_row = row["redis"] or {}
        evalsha = redis_row.get("evalsha_per_request", 0.0)
        everything = redis_row.get("commands_per_request", 0.0)
        seen = row["monitor"] or {}
        monitor_evalsha = seen.get("sent_by_command", {}).get("evalsha", 0)
        ratio = row["ratio_to_bare"]
        out.append(
            {
                "id": f"inprocess.refusal.{'limited' if name == LIMITED else 'blocked'}",
                "target": f"{name}: 0 Redis commands on the request path, ≤ 3 x bare",
                "measured": f"{evalsha:.4f} EVALSHA/req ({everything:.4f} commands/req incl."
                f" background flushes/polls), {row['median_us']:.1f} µs = {ratio:.2f} x bare",
                "passed": evalsha == 0 and monitor_evalsha == 0 and ratio <= 3,
            }
        )
    memory = results["memory"]
    gone = not memory["key_exists_after_full_again"] and (
        memory["pttl_after_one_request_ms"] <= memory["expected_full_again_ms"] + 1
    )
    out.append(
        {
            "id": "memory.idle_key_gone",
            "target": "an idle user's bucket key is gone once the bucket is full again",
            "measured": f"PTTL {memory['pttl_after_one_request_ms']} ms after one request"
            f" (full again after {memory['expected_full_again_ms']:.0f} ms), exists after:"
            f" {memory['key_exists_after_full_again']}; {memory['users']} users' keys all"
            f" expired (DBSIZE) after {memory['all_gone_after_s']} s",
            "passed": gone,
        }
    )
    return out


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    header = (
        f"{'variant':<28} {'median µs':>9} {'p99 µs':>8} {'x bare':>7} {'+µs vs bare':>11} "
        f"{'cmds/req':>8} {'EVALSHA/req':>11} {'round trips/req':>15}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        added, ratio = row["added_us_vs_bare"], row["ratio_to_bare"]
        on_redis = row["redis"]
        seen = row["monitor"]
        cells = [
            f"{row['name']:<28}",
            f"{row['median_us']:>9.1f}",
            f"{row['p99_us']:>8.1f}",
            f"{'—' if ratio is None else format(ratio, '.2f'):>7}",
            f"{'—' if added is None else format(added, '+.1f'):>11}",
            f"{'—' if on_redis is None else format(on_redis['commands_per_request'], '.3f'):>8}",
            f"{'—' if on_redis is None else format(on_redis['evalsha_per_request'], '.3f'):>11}",
            f"{'—' if seen is None else format(seen['round_trips_per_request'], '.2f'):>15}",
        ]
        lines.append(" ".join(cells))
    return "\n".join(lines)


def format_memory(memory: dict[str, Any]) -> str:
    return (
        f"Redis memory per active user (rate {memory['rate']:g}/s, burst {memory['burst']}):"
        f" MEMORY USAGE of the bucket key {memory['memory_usage_bucket_key_bytes']} B;"
        f" used_memory growth {memory['used_memory_per_user_bytes']:.0f} B/user over"
        f" {memory['keys_added']:,} users; other keys of an active user:"
        f" {memory['other_keys_of_an_active_user'] or 'none'}\n"
        f"bucket key PTTL after 1 request {memory['pttl_after_one_request_ms']} ms"
        f" (expected {memory['expected_full_again_ms']:.0f}), after a burst of"
        f" {memory['burst']} {memory['pttl_after_burst_ms']} ms (expected"
        f" {memory['expected_full_again_after_burst_ms']:.0f}); key exists once full again:"
        f" {memory['key_exists_after_full_again']}; {memory['users']:,} idle users' keys"
        f" expired by Redis's active expiry after {memory['all_gone_after_s']} s"
        f" (DBSIZE at 0, 0.1, 0.2 s: {[n for _, n in memory['dbsize_after_seconds'][:3]]})"
    )
