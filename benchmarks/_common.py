"""Shared helpers of the benchmarks: the ASGI request harness, interleaved in-process
measurement, uvicorn servers and wrk, Redis command accounting, statistics, machine facts
and JSON results. Redis servers, MONITOR and waiting come from the shared ``harness``.

Used by ``inprocess.py``, ``http_load.py``, ``drill.py`` and ``run.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import gc
import http.client
import importlib
import importlib.metadata
import importlib.util
import json
import logging
import math
import os
import pathlib
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import types
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import redis
import redis.asyncio
from starlette.types import ASGIApp, Message, Scope

from harness import HOST, death_signal_preexec, find_free_port, wait_until

PATH: Final = "/api/hello"
USER_HEADER: Final = "x-user"
RESULTS_DIR: Final = pathlib.Path(__file__).resolve().parent / "results"
PORT_ATTEMPTS: Final = 5
# INFO and CONFIG are the benchmark's own bookkeeping between batches, not a request's.
BOOKKEEPING_COMMANDS: Final = frozenset({"info", "config|resetstat"})


# -- the request harness --------------------------------------------------------------------


def make_scopes(users: int, name: str = "user") -> list[Scope]:
    """One http scope per user (``x-user: <name>-<n>``), as a server would build it."""
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
                    (USER_HEADER.encode(), f"{name}-{user}".encode()),
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
    # Awaited after each batch, outside the timing and the command accounting (deferred
    # work of the variant, so it lands in no other variant's window).
    after_batch: Callable[[], Awaitable[None]] | None = None


def app_variant(
    name: str, description: str, app: ASGIApp, scopes: Sequence[Scope], *, uses_redis: bool
) -> Variant:
    def request(user: int) -> Awaitable[None]:
        # A fresh scope per request: Starlette writes into it (app, router, endpoint...).
        return app(dict(scopes[user]), receive, discard)

    return Variant(name, description, request, is_app=True, uses_redis=uses_redis)


async def answer(app: ASGIApp, scope: Scope) -> tuple[int, set[bytes]]:
    """One request to ``app``: its status and the names of its response headers."""
    seen: list[Message] = []

    async def keep(message: Message) -> None:
        seen.append(message)

    await app(dict(scope), receive, keep)
    start = next(m for m in seen if m["type"] == "http.response.start")
    return int(start["status"]), {bytes(name) for name, _ in start.get("headers", ())}


async def check_app(
    variant: Variant, app: ASGIApp, scope: Scope, limited: bool | None, status: int = 200
) -> None:
    """Fail loudly unless the variant answers ``status`` (with RateLimit fields when
    ``limited``; ``None``: whatever headers)."""
    got, names = await answer(app, scope)
    if got != status or (limited is not None and limited != (b"ratelimit" in names)):
        raise RuntimeError(f"{variant.name}: unexpected answer {got} {sorted(names)!r}")


# -- logging ---------------------------------------------------------------------------------


class CountingHandler(logging.Handler):
    """Counts log records by logger, level and message template instead of printing them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.counts: Counter[tuple[str, str, str]] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[(record.name, record.levelname, str(record.msg))] += 1

    def summary(self) -> list[dict[str, Any]]:
        return [
            {"logger": name, "level": level, "message": message, "count": count}
            for (name, level, message), count in self.counts.most_common()
        ]


# -- uvicorn and wrk --------------------------------------------------------------------------


REPO_ROOT: Final = pathlib.Path(__file__).resolve().parent.parent
WRK_SCRIPT: Final = pathlib.Path(__file__).resolve().parent / "wrk_users.lua"
SERVER_START_TIMEOUT: Final = 30.0
SERVER_STOP_TIMEOUT: Final = 10.0


def uvicorn_options() -> list[str]:
    """The same server options for every variant: uvloop and httptools when installed."""
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return ["--workers", "1", "--no-access-log", "--loop", loop, "--http", http]


def clean_env(extra: dict[str, str]) -> dict[str, str]:
    """This environment without FLOODWALL_* (the apps set every setting), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLOODWALL_", "BENCH_"))}
    env.update(extra)
    return env


class _PortTaken(Exception):
    """The chosen port was taken before uvicorn bound it."""


class UvicornServer:
    """``uvicorn benchmarks.apps:uvicorn_app --factory`` on a free loopback port."""

    def __init__(self, name: str, env: dict[str, str]) -> None:
        self.name = name
        self.env = env
        self.workdir = pathlib.Path(tempfile.mkdtemp(prefix="floodwall-bench-uvicorn-"))
        self.log = self.workdir / "uvicorn.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"

    def start(self) -> str:
        for _ in range(PORT_ATTEMPTS):
            self.port = find_free_port()
            if self._launch():
                return self.url
        raise RuntimeError(f"{self.name}: uvicorn found no free port in {PORT_ATTEMPTS} attempts")

    def _launch(self) -> bool:
        command = [
            sys.executable,
            *("-m", "uvicorn", "benchmarks.apps:uvicorn_app", "--factory"),
            *("--host", HOST, "--port", str(self.port), "--app-dir", str(REPO_ROOT)),
            *("--log-level", "warning", "--lifespan", "on", *uvicorn_options()),
        ]
        with self.log.open("ab") as out:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=REPO_ROOT,
                env=clean_env(self.env),
                preexec_fn=death_signal_preexec(),
            )
        try:
            wait_until(
                self._answers,
                f"{self.name}: uvicorn answers",
                within=SERVER_START_TIMEOUT,
                interval=0.1,
            )
        except _PortTaken:
            self._proc = None
            return False
        except BaseException:
            self.stop()
            raise
        return True

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            text = self.log_text()
            # Someone took the port between our probe and uvicorn binding it.
            if "address already in use" in text.lower():
                raise _PortTaken
            raise RuntimeError(f"{self.name}: uvicorn exited at start:\n{text[-2000:]}")
        connection = http.client.HTTPConnection(HOST, self.port, timeout=2.0)
        try:
            connection.request("GET", PATH, headers={USER_HEADER: "readiness-probe"})
            return connection.getresponse().status == 200
        except OSError:
            return False
        finally:
            connection.close()

    def stop(self) -> int | None:
        """Stop gracefully (SIGTERM runs the lifespan shutdown); its exit code. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(SERVER_STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def wrk_command(
    url: str,
    seconds: int,
    connections: int,
    threads: int = 1,
    timeout: float = 5.0,
    path: str = PATH,
) -> list[str]:
    binary = shutil.which("wrk")
    if binary is None:
        raise RuntimeError("wrk not found on PATH (apt-get install wrk)")
    return [
        binary,
        *(f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout:g}s"),
        *("--latency", "-s", str(WRK_SCRIPT), url + path),
    ]


def parse_wrk(output: str) -> dict[str, Any]:
    """The ``WRKJSON`` line of ``wrk_users.lua``'s ``done``."""
    for line in output.splitlines():
        if line.startswith("WRKJSON "):
            data: dict[str, Any] = json.loads(line.removeprefix("WRKJSON "))
            return data
    raise RuntimeError(f"wrk printed no WRKJSON line:\n{output[-2000:]}")


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
        if variant.after_batch is not None:
            await variant.after_batch()
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
            else:
                before = await command_stats(admin)
                await run_batch(variant, count, users)
                add_command_delta(variant, before, await command_stats(admin))
            if variant.after_batch is not None:
                await variant.after_batch()


# -- reporting ------------------------------------------------------------------------------


# -- statistics -----------------------------------------------------------------------------


def percentile(sorted_ns: Sequence[float], fraction: float) -> float:
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


PACKAGES: Final = ("floodwall", "starlette", "redis", "hiredis", "uvloop")


def machine_facts(
    redis_version: str, loop_name: str, packages: Iterable[str] = PACKAGES
) -> dict[str, Any]:
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
        "packages": {name: package_version(name) for name in packages},
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


def write_json(path: pathlib.Path, data: object) -> None:
    """Write results atomically: a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".tmp")
    partial.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    partial.replace(path)


async def per_request_us(
    app: Any, scopes: list[MutableMapping[str, Any]], requests: int, callers: int = 32
) -> float:
    """µs per request of ``app`` called in-process, with ``callers`` requests in flight,
    each caller going through ``scopes`` from its own offset."""
    per_caller = requests // callers

    async def caller(offset: int) -> None:
        for n in range(per_caller):
            await app(dict(scopes[(offset + n) % len(scopes)]), receive, discard)

    started = time.perf_counter()
    await asyncio.gather(*(caller(c * 7) for c in range(callers)))
    return (time.perf_counter() - started) / (per_caller * callers) * 1e6
