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
import ctypes
import datetime
import gc
import importlib
import importlib.metadata
import importlib.resources
import json
import math
import os
import pathlib
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import types
import urllib.parse
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis
import redis.asyncio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Scope

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, RedisStore
from floodwall.keys import Keys

HOST: Final = "127.0.0.1"
PATH: Final = "/api/hello"
USER_HEADER: Final = "x-user"
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
DEFAULT_JSON: Final = pathlib.Path(__file__).resolve().parent / "results" / "hot_path.json"
START_TIMEOUT: Final = 10.0
STOP_TIMEOUT: Final = 5.0
PORT_ATTEMPTS: Final = 5
# INFO and CONFIG are the benchmark's own bookkeeping between batches, not a request's.
BOOKKEEPING_COMMANDS: Final = frozenset({"info", "config|resetstat"})


# -- the app --------------------------------------------------------------------------------


async def hello(request: Request) -> JSONResponse:
    return JSONResponse({"hello": "world"})


def make_app() -> Starlette:
    return Starlette(routes=[Route(PATH, hello, methods=["GET"])])


def make_scopes(users: int) -> list[Scope]:
    """One http scope per user, as a server would build it."""
    scopes: list[Scope] = []
    for user in range(users):
        scopes.append(
            {
                "type": "http",
                "asgi": {"version": "3.0", "spec_version": "2.4"},
                "http_version": "1.1",
                "method": "GET",
                "scheme": "http",
                "path": PATH,
                "raw_path": PATH.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [
                    (b"host", b"bench.local"),
                    (b"user-agent", b"floodwall-bench"),
                    (b"accept", b"*/*"),
                    (USER_HEADER.encode(), f"user-{user}".encode()),
                ],
                "client": ("127.0.0.1", 1234),
                "server": ("127.0.0.1", 8000),
            }
        )
    return scopes


async def receive() -> Message:
    return {"type": "http.request", "body": b"", "more_body": False}


async def discard(message: Message) -> None:
    return None


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


# -- variants -------------------------------------------------------------------------------


@dataclass(slots=True)
class Variant:
    """One thing to time. ``request(user)`` builds the awaitable without running any of it,
    so only the awaiting is timed, the same way for every variant."""

    name: str
    description: str
    request: Callable[[int], Awaitable[object]]
    is_app: bool
    uses_redis: bool
    samples: list[int] = field(default_factory=list)
    round_medians_ns: list[float] = field(default_factory=list)
    next_user: int = 0
    calls: Counter[str] = field(default_factory=Counter)
    usec: Counter[str] = field(default_factory=Counter)


def app_variant(
    name: str, description: str, app: ASGIApp, scopes: Sequence[Scope], *, uses_redis: bool
) -> Variant:
    def request(user: int) -> Awaitable[None]:
        # A fresh scope per request: Starlette writes into it (app, router, endpoint...).
        return app(dict(scopes[user]), receive, discard)

    return Variant(name, description, request, is_app=True, uses_redis=uses_redis)


async def check_app(variant: Variant, app: ASGIApp, scope: Scope, limited: bool) -> None:
    """Fail loudly unless the variant answers 200 (with RateLimit fields when limited)."""
    seen: list[Message] = []

    async def keep(message: Message) -> None:
        seen.append(message)

    await app(dict(scope), receive, keep)
    start = next(m for m in seen if m["type"] == "http.response.start")
    names = {name for name, _ in start.get("headers", ())}
    if start["status"] != 200 or limited != (b"ratelimit" in names):
        raise RuntimeError(f"{variant.name}: unexpected answer {start!r}")


# -- redis-server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def death_signal_preexec() -> Callable[[], None] | None:
    """Have Linux SIGKILL the server if this process dies without running atexit."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def preexec() -> None:
        prctl(1, int(signal.SIGKILL), 0, 0, 0)  # PR_SET_PDEATHSIG
        # The parent died between fork and prctl: the signal will never come.
        if os.getppid() != parent:
            os._exit(1)

    return preexec


class RedisServer:
    """A throwaway ``redis-server`` on a free loopback port, without persistence."""

    def __init__(self) -> None:
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="floodwall-bench-"))
        self.url = ""
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found on PATH (apt-get install redis-server)")
        for _ in range(PORT_ATTEMPTS):
            port = free_port()
            if self._launch(binary, port):
                self.url = f"redis://{HOST}:{port}/0"
                return self.url
        raise RuntimeError(f"redis-server found no free port in {PORT_ATTEMPTS} attempts")

    def _launch(self, binary: str, port: int) -> bool:
        log = self.workdir / "redis.log"
        command = [
            binary,
            *("--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"),
            *("--dir", str(self.workdir), "--daemonize", "no", "--logfile", str(log)),
        ]
        with (self.workdir / "redis.stdout").open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=self.workdir,
                preexec_fn=death_signal_preexec(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        probe = redis.Redis(host=HOST, port=port, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            while time.monotonic() < deadline:
                if self._proc.poll() is not None:
                    text = log.read_text(errors="replace") if log.exists() else ""
                    self._proc = None
                    # Someone took the port between our probe and redis binding it.
                    if "Address already in use" in text:
                        return False
                    raise RuntimeError(f"redis-server exited at start:\n{text[-2000:]}")
                with contextlib.suppress(redis.ConnectionError, redis.TimeoutError):
                    if probe.ping():
                        return True
                time.sleep(0.05)
        finally:
            probe.close()
        self.stop()
        raise RuntimeError(f"redis-server did not answer PING within {START_TIMEOUT} s")

    def stop(self) -> None:
        """Idempotent: called from ``finally`` and again from ``atexit``."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- measuring ------------------------------------------------------------------------------


class Interrupted(Exception):
    """Ctrl-C (or SIGTERM) seen; raised between batches."""


class StopRequest:
    """Signal handler that asks the measurement to stop at the next batch.

    asyncio.Runner would turn Ctrl-C into a cancellation of the main task, but on Python
    3.11 ``asyncio.wait_for`` (which redis-py uses to send every command) swallows a
    cancellation that arrives just as the send completes, and in this loop that is nearly
    always: the benchmark ran on to the end. A flag checked between batches cannot be
    lost; a second signal interrupts at once.
    """

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: types.FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def check(self) -> None:
        if self.requested:
            raise Interrupted


async def run_batch(variant: Variant, count: int, users: int) -> None:
    # Locals, not attribute lookups, inside the loop: the loop's own cost is part of every
    # sample, so keep it small and identical for all variants.
    request = variant.request
    samples = variant.samples
    clock = time.perf_counter_ns
    user = variant.next_user
    first = len(samples)
    for _ in range(count):
        pending = request(user)
        start = clock()
        await pending
        samples.append(clock() - start)
        user += 1
        if user == users:
            user = 0
    variant.next_user = user
    variant.round_medians_ns.append(statistics.median(samples[first:]))


async def command_stats(admin: redis.asyncio.Redis) -> dict[str, tuple[int, int]]:
    """``INFO commandstats`` as command -> (calls, µs spent in Redis)."""
    info: dict[str, Any] = await admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): (int(stats["calls"]), int(stats["usec"]))
        for name, stats in info.items()
        if name.startswith("cmdstat_")
    }


def add_command_delta(
    variant: Variant, before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]
) -> None:
    for name, (calls, usec) in after.items():
        if name in BOOKKEEPING_COMMANDS:
            continue
        old_calls, old_usec = before.get(name, (0, 0))
        if calls > old_calls:
            variant.calls[name] += calls - old_calls
            variant.usec[name] += usec - old_usec


async def measure(
    variants: Sequence[Variant],
    requests: int,
    users: int,
    rounds: int,
    admin: redis.asyncio.Redis,
    stop: StopRequest,
    *,
    reset_stats: bool,
) -> None:
    warmup = max(500, requests // rounds)
    for variant in variants:
        stop.check()
        await run_batch(variant, warmup, users)
        variant.samples.clear()
        variant.round_medians_ns.clear()
    # Per-batch INFO deltas below attribute commands to variants; the reset only makes the
    # server's own totals (kept in the JSON) cover exactly the measured run, so it is left
    # out on someone else's server.
    if reset_stats:
        with contextlib.suppress(redis.ResponseError):
            await admin.config_resetstat()
    gc.collect()
    for round_index in range(rounds):
        count = requests // rounds + (1 if round_index < requests % rounds else 0)
        shift = round_index % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            stop.check()
            if not variant.uses_redis:
                await run_batch(variant, count, users)
                continue
            before = await command_stats(admin)
            await run_batch(variant, count, users)
            add_command_delta(variant, before, await command_stats(admin))


# -- reporting ------------------------------------------------------------------------------


def percentile(sorted_ns: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile: a latency some request actually had."""
    rank = max(1, math.ceil(fraction * len(sorted_ns)))
    return float(sorted_ns[rank - 1])


def spread(values: Sequence[float]) -> dict[str, float]:
    quartiles = statistics.quantiles(values, n=4) if len(values) > 1 else [values[0]] * 3
    return {
        "min": min(values),
        "p25": quartiles[0],
        "median": statistics.median(values),
        "p75": quartiles[2],
        "max": max(values),
    }


def summarize(variant: Variant, bare: Variant | None) -> dict[str, Any]:
    ordered = sorted(variant.samples)
    count = len(ordered)
    median_ns = float(statistics.median(ordered))
    result: dict[str, Any] = {
        "name": variant.name,
        "description": variant.description,
        "requests": count,
        "median_us": median_ns / 1000,
        "p99_us": percentile(ordered, 0.99) / 1000,
        "mean_us": sum(ordered) / count / 1000,
        "min_us": ordered[0] / 1000,
        "requests_per_s": count / (sum(ordered) / 1e9),
        "round_medians_us": [m / 1000 for m in variant.round_medians_ns],
        "added_us_vs_bare": None,
        "ratio_to_bare": None,
        "redis": None,
    }
    # The EVALSHA reference is not an app, so "added to the bare app" means nothing for it.
    if bare is not None and variant.is_app:
        bare_median = float(statistics.median(bare.samples))
        result["added_us_vs_bare"] = (median_ns - bare_median) / 1000
        result["ratio_to_bare"] = median_ns / bare_median
        # Paired per round, so a slow spell of the machine cancels out; its spread says
        # how far to trust the pooled number above.
        added = [
            (v - b) / 1000
            for v, b in zip(variant.round_medians_ns, bare.round_medians_ns, strict=True)
        ]
        result["added_us_per_round"] = spread(added)
        # The machine flips between fast and slow spells that scale every variant alike, so
        # the per-round ratio is steadier than the per-round difference.
        result["ratio_per_round"] = spread(
            [v / b for v, b in zip(variant.round_medians_ns, bare.round_medians_ns, strict=True)]
        )
    if variant.uses_redis:
        total = sum(variant.calls.values())
        result["redis"] = {
            "commands_per_request": total / count,
            "evalsha_per_request": variant.calls["evalsha"] / count,
            "by_command": {
                name: {
                    "calls": calls,
                    "per_request": calls / count,
                    "usec_per_call": variant.usec[name] / calls,
                }
                for name, calls in sorted(variant.calls.items())
            },
        }
    return result


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


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def git_facts() -> dict[str, Any]:
    root = pathlib.Path(__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "src_changes": None}
    # Results of a tree with uncommitted src changes are not those of the commit.
    return {"commit": commit, "src_changes": [line[3:] for line in dirty]}


def machine_facts(redis_version: str, loop_name: str) -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        # A shared machine: the load says how much to trust this run.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "redis_server": redis_version,
        "event_loop": loop_name,
        "packages": {
            name: package_version(name)
            for name in ("floodwall", "starlette", "redis", "hiredis", "uvloop")
        },
        "git": git_facts(),
        "floodwall_env": sorted(name for name in os.environ if name.startswith("FLOODWALL_")),
    }


# -- main -----------------------------------------------------------------------------------


def event_loop() -> tuple[Callable[[], asyncio.AbstractEventLoop] | None, str]:
    """uvloop when installed, as production servers would use it; else plain asyncio."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return None, "asyncio (uvloop not installed)"
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory, f"uvloop {package_version('uvloop')}"


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


async def teardown(steps: Sequence[tuple[str, Callable[[], Awaitable[object]]]]) -> list[str]:
    """Run every step even if one fails, and say what failed.

    The numbers are already measured when teardown runs; a failing ``stop()`` is a bug to
    report, not a reason to lose them.
    """
    errors: list[str] = []
    for name, step in steps:
        try:
            await step()
        except Exception as exc:
            errors.append(f"{name} failed: {type(exc).__name__}: {exc}")
    return errors


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
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"\nresults: {args.json}")
    for warning in results["warnings"]:
        print(f"WARNING: {warning}", file=sys.stderr)
    return 1 if results["warnings"] else 0


if __name__ == "__main__":
    sys.exit(main())
