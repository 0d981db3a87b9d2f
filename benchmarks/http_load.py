"""Part 2 of ``run.py``: the same apps over HTTP, uvicorn under ``wrk``.

Every variant of ``apps.py`` runs in its own uvicorn (one worker, ``--no-access-log``,
uvloop and httptools when installed, the same options for all) on a free loopback port;
all of them are started first and stopped at the end. ``wrk`` (one thread, 32
connections, ``--latency``, ``wrk_users.lua``: each request carries the next of 1000
rotating ``x-user`` values) loads one server at a time: a warm-up per server, then
interleaved rounds, the order rotating each round, so drift on the shared machine hits
every variant alike.

Per variant: requests/s over all rounds, the median over rounds of wrk's p50 and p99
latency (and the worst round's p99), the ratio of requests/s to ``bare`` (pooled and the
median of per-round ratios), non-2xx answers and socket errors (there should be none:
every limit is huge), and Redis commands per request from ``INFO commandstats`` around
each round. wrk runs on the same 2 cores as the server and Redis: the absolute figures are
those of this machine, the ratios are the point.
"""

from __future__ import annotations

import statistics
import subprocess
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import redis

from benchmarks import apps
from benchmarks._common import (
    BOOKKEEPING_COMMANDS,
    StopRequest,
    UvicornServer,
    clean_env,
    parse_wrk,
    uvicorn_options,
    wrk_command,
)

CONNECTIONS: Final = 32
THREADS: Final = 1
USERS: Final = 1000
WRK_GRACE: Final = 30.0


@dataclass(frozen=True, slots=True)
class Config:
    warmup_seconds: int = 2
    rounds: int = 5
    round_seconds: int = 2

    @classmethod
    def quick(cls) -> Config:
        return cls(warmup_seconds=1, rounds=3, round_seconds=1)


@dataclass(slots=True)
class Load:
    name: str
    server: UvicornServer
    rounds: list[dict[str, Any]] = field(default_factory=list)
    commands: Counter[str] = field(default_factory=Counter)


def _command_calls(admin: redis.Redis) -> dict[str, int]:
    info: dict[str, Any] = admin.info("commandstats")
    return {
        name.removeprefix("cmdstat_"): int(stats["calls"])
        for name, stats in info.items()
        if name.startswith("cmdstat_")
    }


def _wrk(url: str, seconds: int) -> dict[str, Any]:
    env = {"BENCH_USERS": str(USERS), "BENCH_COUNT_STATUS": "1"}
    completed = subprocess.run(
        wrk_command(url, seconds, CONNECTIONS, THREADS),
        capture_output=True,
        text=True,
        timeout=seconds + WRK_GRACE,
        env=clean_env(env),
        check=False,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"wrk failed ({completed.returncode}): {completed.stderr[-2000:]}")
    return parse_wrk(completed.stdout)


def run(config: Config, url: str, stop: StopRequest) -> dict[str, Any]:
    """Load every variant's server in interleaved rounds; return the part's results."""
    loads = [
        Load(
            name,
            UvicornServer(
                name, {"BENCH_VARIANT": name, "BENCH_REDIS_URL": url, "BENCH_HANDLER": "hello"}
            ),
        )
        for name in apps.VARIANTS
    ]
    admin = redis.Redis.from_url(url, socket_timeout=5.0)
    warnings: list[str] = []
    exit_codes: dict[str, int | None] = {}
    try:
        for load in loads:
            stop.check()
            load.server.start()
        for load in loads:
            stop.check()
            _wrk(load.server.url, config.warmup_seconds)
        for index in range(config.rounds):
            shift = index % len(loads)
            for load in [*loads[shift:], *loads[:shift]]:
                stop.check()
                before = _command_calls(admin)
                result = _wrk(load.server.url, config.round_seconds)
                after = _command_calls(admin)
                result["round"] = index
                load.rounds.append(result)
                for command, calls in after.items():
                    old = before.get(command, 0)
                    if command not in BOOKKEEPING_COMMANDS and calls > old:
                        load.commands[command] += calls - old
    finally:
        logs: dict[str, str] = {}
        for load in loads:
            exit_codes[load.name] = load.server.stop()
            logs[load.name] = load.server.log_text()
            load.server.cleanup()
        admin.close()
    for load in loads:
        # uvicorn re-raises the SIGTERM it stopped on once shut down: -15 is a clean stop.
        if exit_codes[load.name] not in (0, -15, None):
            warnings.append(f"{load.name}: uvicorn exited with {exit_codes[load.name]}")
        text = logs[load.name]
        if "Traceback" in text or "ERROR" in text:
            warnings.append(f"{load.name}: uvicorn logged errors:\n{text[-1500:]}")
    rows = [_summarize(load) for load in loads]
    bare = rows[0]
    for row in rows:
        row["ratio_to_bare"] = row["requests_per_s"] / bare["requests_per_s"]
        row["ratio_to_bare_per_round"] = statistics.median(
            mine["requests"]
            / (mine["duration_us"] / 1e6)
            / (b["requests"] / (b["duration_us"] / 1e6))
            for mine, b in zip(row["rounds"], bare["rounds"], strict=True)
        )
        if row["non_2xx"] or row["socket_errors"]:
            warnings.append(
                f"{row['name']}: {row['non_2xx']} non-2xx answers and {row['socket_errors']}"
                f" socket errors (statuses {row['statuses']})"
            )
    results: dict[str, Any] = {
        "part": "http",
        "config": {
            "warmup_seconds": config.warmup_seconds,
            "rounds": config.rounds,
            "round_seconds": config.round_seconds,
            "seconds_per_variant": config.rounds * config.round_seconds,
            "connections": CONNECTIONS,
            "wrk_threads": THREADS,
            "users": USERS,
            "uvicorn_options": uvicorn_options(),
        },
        "variants": rows,
        "server_exit_codes": exit_codes,
        "warnings": warnings,
    }
    results["targets"] = targets(results)
    return results


def _rate(result: dict[str, Any]) -> float:
    return float(result["requests"]) / (float(result["duration_us"]) / 1e6)


def _summarize(load: Load) -> dict[str, Any]:
    requests = sum(r["requests"] for r in load.rounds)
    seconds = sum(r["duration_us"] for r in load.rounds) / 1e6
    statuses: Counter[str] = Counter()
    for r in load.rounds:
        statuses.update({code: int(n) for code, n in r["statuses"].items()})
    socket_errors = sum(
        r["errors"][kind] for r in load.rounds for kind in ("connect", "read", "write", "timeout")
    )
    row: dict[str, Any] = {
        "name": load.name,
        "requests": requests,
        "seconds": seconds,
        "requests_per_s": requests / seconds,
        "p50_ms": statistics.median(r["latency_us"]["p50"] for r in load.rounds) / 1000,
        "p99_ms": statistics.median(r["latency_us"]["p99"] for r in load.rounds) / 1000,
        "worst_round_p99_ms": max(r["latency_us"]["p99"] for r in load.rounds) / 1000,
        "max_ms": max(r["latency_us"]["max"] for r in load.rounds) / 1000,
        "statuses": dict(sorted(statuses.items())),
        "non_2xx": sum(r["errors"]["status"] for r in load.rounds),
        "socket_errors": socket_errors,
        "redis": None,
        "rounds": load.rounds,
    }
    if load.name in apps.REDIS_VARIANTS:
        row["redis"] = {
            "commands_per_request": sum(load.commands.values()) / requests,
            "evalsha_per_request": load.commands["evalsha"] / requests,
            "by_command": dict(sorted(load.commands.items())),
        }
    return row


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {row["name"]: row for row in results["variants"]}
    fw = rows["floodwall[redis]"]
    bare = rows["bare"]
    best = max(apps.PEERS, key=lambda name: rows[name]["requests_per_s"])
    versus_peer = fw["requests_per_s"] / rows[best]["requests_per_s"]
    return [
        {
            "id": "http.vs_bare",
            "target": "over HTTP floodwall[redis] ≥ 0.70 x bare req/s",
            "measured": f"{fw['requests_per_s']:,.0f} vs {bare['requests_per_s']:,.0f} req/s ="
            f" {fw['ratio_to_bare']:.2f} x bare (median per-round ratio"
            f" {fw['ratio_to_bare_per_round']:.2f})",
            "passed": fw["ratio_to_bare"] >= 0.70,
        },
        {
            "id": "http.vs_best_peer",
            "target": "over HTTP floodwall[redis] ≥ 1.4 x best peer req/s",
            "measured": f"{fw['requests_per_s']:,.0f} vs {best} {rows[best]['requests_per_s']:,.0f}"
            f" req/s = {versus_peer:.2f} x",
            "passed": versus_peer >= 1.4,
        },
    ]


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'variant':<24} {'req/s':>8} {'x bare':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'worst p99':>9} {'non-2xx':>7} {'cmds/req':>8} {'EVALSHA/req':>11}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        on_redis = row["redis"] or {}
        commands = on_redis.get("commands_per_request")
        evalsha = on_redis.get("evalsha_per_request")
        lines.append(
            " ".join(
                [
                    f"{row['name']:<24}",
                    f"{row['requests_per_s']:>8,.0f}",
                    f"{row['ratio_to_bare']:>7.2f}",
                    f"{row['p50_ms']:>7.2f}",
                    f"{row['p99_ms']:>7.2f}",
                    f"{row['worst_round_p99_ms']:>9.2f}",
                    f"{row['non_2xx'] + row['socket_errors']:>7}",
                    f"{'—' if commands is None else format(commands, '.3f'):>8}",
                    f"{'—' if evalsha is None else format(evalsha, '.3f'):>11}",
                ]
            )
        )
    return "\n".join(lines)
