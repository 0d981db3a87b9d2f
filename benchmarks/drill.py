"""Part 3 of ``run.py``: the incident drill.

An app whose handler does a few ms of work (``await asyncio.sleep(0.003)`` plus ~0.1 ms
of CPU) runs in uvicorn twice: floodwall OFF (the app alone) and floodwall ON (Redis
store, the default limit of 10 requests/s, burst 10, users from the ``x-user`` header).
Against them:

* 50 genuine users, each its own asyncio loop with its own httpx client (one
  connection), sending a request, then waiting 0.5-1 s (1-2 requests/s each);
* one attacker: ``wrk`` with 32 connections, every request as the one user ``attacker``,
  as fast as it goes.

Phases, each ``phase_seconds`` long, in interleaved rounds (the order rotating each round):
``baseline-off`` and ``baseline-on`` (genuine users alone), ``attack-off`` and
``attack-on`` (genuine users and the attacker). Per phase: genuine success rate (HTTP 200)
and latency (p50, p99, max; measured by the client around each request), the attacker's
requests and those admitted (HTTP 200) per second, and, for ``attack-on``, admitted versus
the bound ``burst + rate x window`` of each attack window (the bucket refills between
rounds), Redis commands per attacker request (``INFO commandstats`` before/after every
attack window, everything; and ``MONITOR``, the commands touching the attacker's keys or
naming it, including those run inside scripts), and whatever uvicorn logged. A line per
second goes to stderr while it runs.

Everything shares the machine's 2 cores: the attacker's wrk, uvicorn, Redis and the
genuine users' client. A genuine user's latency includes its own client's share of a
saturated machine, in every phase alike.
"""

from __future__ import annotations

import asyncio
import math
import random
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import redis.asyncio

from benchmarks import apps
from benchmarks._common import (
    BOOKKEEPING_COMMANDS,
    PATH,
    USER_HEADER,
    StopRequest,
    UvicornServer,
    clean_env,
    command_stats,
    parse_wrk,
    percentile,
    uvicorn_options,
    wrk_command,
)
from harness import RedisMonitor, parse_monitor_line

RATE: Final = 10.0
BURST: Final = 10
PREFIX: Final = "floodwall-drill"
ATTACKER: Final = "attacker"
GENUINE_TIMEOUT: Final = 5.0
GENUINE_PAUSE: Final = (0.5, 1.0)
PAUSE_BETWEEN_PHASES: Final = 1.0
WRK_GRACE: Final = 30.0
PHASES: Final = ("baseline-off", "baseline-on", "attack-off", "attack-on")
SEED: Final = 20240601


@dataclass(frozen=True, slots=True)
class Config:
    rounds: int = 2
    phase_seconds: int = 15
    genuine_users: int = 50
    attacker_connections: int = 32

    @classmethod
    def quick(cls) -> Config:
        return cls(rounds=1, phase_seconds=10)


@dataclass(slots=True)
class Sample:
    at: float
    latency_s: float
    outcome: str  # an HTTP status, or the name of a client error


@dataclass(slots=True)
class Phase:
    name: str
    genuine: list[Sample] = field(default_factory=list)
    attacker: list[dict[str, Any]] = field(default_factory=list)
    windows_s: list[float] = field(default_factory=list)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    commands: Counter[str] = field(default_factory=Counter)
    monitor: Counter[str] = field(default_factory=Counter)


# -- the genuine users ----------------------------------------------------------------------


def genuine_clients(base_url: str, users: int) -> list[httpx.AsyncClient]:
    """One client (one connection) per genuine user, made once: making an httpx client
    costs milliseconds of CPU, which would otherwise land in the first second of a phase."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [
        httpx.AsyncClient(base_url=base_url, timeout=GENUINE_TIMEOUT, limits=limits)
        for _ in range(users)
    ]


async def genuine_user(
    user: int,
    client: httpx.AsyncClient,
    deadline: float,
    samples: list[Sample],
    rng: random.Random,
) -> None:
    most = math.ceil((deadline - time.monotonic()) / GENUINE_PAUSE[0]) + 2
    await asyncio.sleep(rng.uniform(0, GENUINE_PAUSE[1]))
    for _ in range(most):
        if time.monotonic() >= deadline:
            return
        started = time.perf_counter()
        try:
            response = await client.get(PATH, headers={USER_HEADER: f"genuine-{user}"})
            outcome = str(response.status_code)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        samples.append(Sample(time.monotonic(), time.perf_counter() - started, outcome))
        await asyncio.sleep(rng.uniform(*GENUINE_PAUSE))


async def progress(label: str, started: float, seconds: int, samples: list[Sample]) -> None:
    """A line per second on stderr: the genuine users' last second."""
    seen = 0
    while True:
        await asyncio.sleep(1.0)
        fresh = samples[seen:]
        seen = len(samples)
        ok = sum(1 for s in fresh if s.outcome == "200")
        worst = max((s.latency_s for s in fresh), default=0.0) * 1000
        elapsed = min(seconds, round(time.monotonic() - started))
        print(
            f"  [{label} {elapsed:>2}/{seconds} s] genuine: {len(samples)} sent so far;"
            f" last second {len(fresh)} sent, {ok} ok, {len(fresh) - ok} not ok,"
            f" slowest {worst:.1f} ms",
            file=sys.stderr,
            flush=True,
        )


# -- one phase ------------------------------------------------------------------------------


async def run_phase(
    phase: Phase,
    label: str,
    server: UvicornServer,
    clients: list[httpx.AsyncClient],
    config: Config,
    admin: redis.asyncio.Redis,
    port: int,
    round_index: int,
) -> None:
    attack = phase.name.startswith("attack")
    watch = phase.name == "attack-on"
    seconds = config.phase_seconds
    samples: list[Sample] = []
    started = time.monotonic()
    deadline = started + seconds
    wrk: asyncio.subprocess.Process | None = None
    before = await command_stats(admin) if watch else {}
    monitor = RedisMonitor(port) if watch and RedisMonitor.available() else None
    if monitor is not None:
        await monitor.__aenter__()
    ticker = asyncio.create_task(progress(label, started, seconds, samples))
    try:
        if attack:
            wrk = await asyncio.create_subprocess_exec(
                *wrk_command(server.url, seconds, config.attacker_connections),
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                env=clean_env({"BENCH_FIXED_USER": ATTACKER, "BENCH_COUNT_STATUS": "1"}),
            )
        users = [
            genuine_user(n, client, deadline, samples, random.Random(SEED + 1000 * round_index + n))
            for n, client in enumerate(clients)
        ]
        await asyncio.gather(*users)
        if wrk is not None:
            out, err = await asyncio.wait_for(wrk.communicate(), seconds + WRK_GRACE)
            if wrk.returncode != 0:
                raise RuntimeError(f"wrk failed ({wrk.returncode}): {err.decode()[-2000:]}")
            result = parse_wrk(out.decode())
            phase.attacker.append(result)
            phase.windows_s.append(result["duration_us"] / 1e6)
            wrk = None
    finally:
        ticker.cancel()
        if wrk is not None and wrk.returncode is None:
            wrk.kill()
            await wrk.wait()
        if monitor is not None:
            await monitor.__aexit__(None, None, None)
    phase.genuine.extend(samples)
    phase.timeline.extend(_timeline(samples, started, round_index))
    if watch:
        after = await command_stats(admin)
        for command, (calls, _) in after.items():
            old = before.get(command, (0, 0))[0]
            if command not in BOOKKEEPING_COMMANDS and calls > old:
                phase.commands[command] += calls - old
    if monitor is not None:
        phase.monitor.update(_attribute(monitor.lines))


def _timeline(samples: list[Sample], started: float, round_index: int) -> list[dict[str, Any]]:
    """The genuine users' requests second by second: where spikes and refusals fell."""
    seconds: dict[int, list[Sample]] = {}
    for sample in samples:
        seconds.setdefault(int(sample.at - started), []).append(sample)
    return [
        {
            "round": round_index,
            "second": second,
            "sent": len(group),
            "ok": sum(1 for s in group if s.outcome == "200"),
            "max_ms": round(max(s.latency_s for s in group) * 1000, 1),
        }
        for second, group in sorted(seconds.items())
    ]


def _attribute(lines: list[str]) -> Counter[str]:
    """MONITOR lines by whose they are: the attacker's keys or name, a genuine user's,
    something else; each split into sent by a client or run inside a script."""
    counts: Counter[str] = Counter()
    # A script's own commands follow its EVALSHA line and may name no key (TIME).
    script_owner = "other"
    for line in lines:
        parsed = parse_monitor_line(line)
        if parsed is None:
            continue
        client, command = parsed
        if command in ("echo", "info", "monitor"):
            continue
        where = "script" if client == "lua" else "sent"
        if f"{{u:{ATTACKER}}}" in line or f'"u:{ATTACKER}"' in line:
            who = "attacker"
        elif "{u:genuine-" in line or '"u:genuine-' in line:
            who = "genuine"
        else:
            who = script_owner if where == "script" else "other"
        if where == "sent":
            script_owner = who if command in ("evalsha", "eval") else "other"
        counts[f"{who}.{where}"] += 1
        counts[f"{who}.{where}.{command}"] += 1
    return counts


# -- the drill ------------------------------------------------------------------------------


async def run(config: Config, url: str, stop: StopRequest) -> dict[str, Any]:
    """Run every phase in interleaved rounds; return the part's results."""
    port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
    common = {"BENCH_REDIS_URL": url, "BENCH_HANDLER": "work"}
    servers = {
        "off": UvicornServer("drill floodwall OFF", {**common, "BENCH_VARIANT": "bare"}),
        "on": UvicornServer(
            "drill floodwall ON",
            {
                **common,
                "BENCH_VARIANT": "floodwall[redis]",
                "BENCH_RATE": str(RATE),
                "BENCH_BURST": str(BURST),
                "BENCH_PREFIX": PREFIX,
            },
        ),
    }
    phases = {name: Phase(name) for name in PHASES}
    admin = redis.asyncio.Redis.from_url(url, socket_timeout=5.0)
    exit_codes: dict[str, int | None] = {}
    clients: dict[str, list[httpx.AsyncClient]] = {}
    try:
        for key, server in servers.items():
            await asyncio.to_thread(server.start)
            clients[key] = genuine_clients(server.url, config.genuine_users)
        # Warm both servers up with the genuine users alone (not recorded).
        for key in servers:
            stop.check()
            deadline = time.monotonic() + 2.0
            scratch: list[Sample] = []
            await asyncio.gather(
                *(
                    genuine_user(n, client, deadline, scratch, random.Random(n))
                    for n, client in enumerate(clients[key])
                )
            )
        total = config.rounds * len(PHASES)
        done = 0
        for index in range(config.rounds):
            order = [*PHASES[index % len(PHASES) :], *PHASES[: index % len(PHASES)]]
            for name in order:
                stop.check()
                done += 1
                label = f"drill {done}/{total} {name}"
                print(f"{label}: {config.phase_seconds} s", file=sys.stderr, flush=True)
                key = "on" if name.endswith("-on") else "off"
                await run_phase(
                    phases[name], label, servers[key], clients[key], config, admin, port, index
                )
                await asyncio.sleep(PAUSE_BETWEEN_PHASES)
    finally:
        for group in clients.values():
            for client in group:
                await client.aclose()
        logs: dict[str, str] = {}
        for key, server in servers.items():
            exit_codes[key] = await asyncio.to_thread(server.stop)
            logs[key] = server.log_text()
            server.cleanup()
        await admin.aclose()
    rows = [_summarize(phases[name]) for name in PHASES]
    warnings = [
        f"drill {key}: uvicorn exited with {code}"
        for key, code in exit_codes.items()
        if code not in (0, -15, None)
    ]
    results: dict[str, Any] = {
        "part": "drill",
        "config": {
            "rounds": config.rounds,
            "phase_seconds": config.phase_seconds,
            "seconds_per_phase_kind": config.rounds * config.phase_seconds,
            "genuine_users": config.genuine_users,
            "genuine_pause_s": GENUINE_PAUSE,
            "genuine_timeout_s": GENUINE_TIMEOUT,
            "attacker_connections": config.attacker_connections,
            "rate": RATE,
            "burst": BURST,
            "handler": f"asyncio.sleep({apps.WORK_SLEEP}) + sum of squares of"
            f" range({apps.WORK_CPU_LOOP})",
            "uvicorn_options": uvicorn_options(),
        },
        "phases": rows,
        "server_logs": {key: _log_summary(text) for key, text in logs.items()},
        "server_exit_codes": exit_codes,
        "warnings": warnings,
    }
    results["targets"] = targets(results)
    return results


def _log_summary(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.strip()]
    interesting = [
        line
        for line in lines
        if any(word in line for word in ("Traceback", "ERROR", "Error", "WARNING", "floodwall"))
    ]
    return {"lines": len(lines), "notable": Counter(interesting).most_common(20)}


def _summarize(phase: Phase) -> dict[str, Any]:
    latencies = sorted(s.latency_s for s in phase.genuine)
    outcomes = Counter(s.outcome for s in phase.genuine)
    sent = len(phase.genuine)
    ok = outcomes.get("200", 0)
    row: dict[str, Any] = {
        "phase": phase.name,
        "genuine": {
            "sent": sent,
            "ok": ok,
            "success_rate": ok / sent if sent else None,
            "outcomes": dict(sorted(outcomes.items())),
            "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
            "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
            "max_ms": latencies[-1] * 1000 if latencies else None,
            "over_100ms": sum(1 for v in latencies if v > 0.1),
            "timeline": phase.timeline,
        },
        "attacker": None,
        "redis": None,
    }
    if phase.attacker:
        requests = sum(r["requests"] for r in phase.attacker)
        seconds = sum(phase.windows_s)
        statuses: Counter[str] = Counter()
        for r in phase.attacker:
            statuses.update({code: int(n) for code, n in r["statuses"].items()})
        admitted = statuses.get("200", 0)
        bound = sum(BURST + RATE * window for window in phase.windows_s)
        row["attacker"] = {
            "requests": requests,
            "seconds": seconds,
            "requests_per_s": requests / seconds,
            "admitted": admitted,
            "admitted_per_s": admitted / seconds,
            "bound_if_limited": bound,
            "statuses": dict(sorted(statuses.items())),
            "socket_errors": sum(
                r["errors"][kind]
                for r in phase.attacker
                for kind in ("connect", "read", "write", "timeout")
            ),
            "p50_ms": statistics.median(r["latency_us"]["p50"] for r in phase.attacker) / 1000,
            "p99_ms": max(r["latency_us"]["p99"] for r in phase.attacker) / 1000,
            "windows_s": phase.windows_s,
        }
        if phase.commands or phase.monitor:
            attacker_commands = phase.monitor["attacker.sent"] + phase.monitor["attacker.script"]
            row["redis"] = {
                "commands_in_windows": sum(phase.commands.values()),
                "commands_in_windows_by_command": dict(sorted(phase.commands.items())),
                "all_commands_per_attacker_request": sum(phase.commands.values()) / requests,
                "attacker_commands": attacker_commands,
                "attacker_commands_per_request": attacker_commands / requests,
                "attacker_round_trips_per_request": phase.monitor["attacker.sent"] / requests,
                "monitor": dict(sorted(phase.monitor.items())),
            }
    return row


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = {row["phase"]: row for row in results["phases"]}
    on = rows["attack-on"]
    base = rows["baseline-on"]
    genuine, attacker, redis_row = on["genuine"], on["attacker"], on["redis"] or {}
    out = [
        {
            "id": "drill.genuine_success",
            "target": "drill ON: 100 % genuine success",
            "measured": f"{genuine['ok']}/{genuine['sent']} ="
            f" {100 * (genuine['success_rate'] or 0):.2f} % (outcomes {genuine['outcomes']})",
            "passed": genuine["sent"] > 0 and genuine["ok"] == genuine["sent"],
        },
        {
            "id": "drill.attacker_bound",
            "target": "drill ON: attacker admitted ≤ burst + rate x duration",
            "measured": f"{attacker['admitted']} admitted of {attacker['requests']:,} in"
            f" {attacker['seconds']:.1f} s ({attacker['admitted_per_s']:.1f}/s); bound"
            f" {attacker['bound_if_limited']:.0f}",
            "passed": attacker["admitted"] <= attacker["bound_if_limited"],
        },
        {
            "id": "drill.genuine_p99",
            "target": "drill ON: genuine p99 ≤ 2 x baseline p99 (no attacker, floodwall ON)",
            "measured": f"{genuine['p99_ms']:.1f} ms vs 2 x {base['genuine']['p99_ms']:.1f} ms"
            f" = {genuine['p99_ms'] / base['genuine']['p99_ms']:.2f} x baseline",
            "passed": genuine["p99_ms"] <= 2 * base["genuine"]["p99_ms"],
        },
    ]
    per_request = redis_row.get("attacker_commands_per_request")
    out.append(
        {
            "id": "drill.redis_per_attacker_request",
            "target": "drill ON: ≤ 0.01 Redis commands per attacker request",
            "measured": "no MONITOR (redis-cli missing)"
            if per_request is None
            else f"{per_request:.4f} commands touching the attacker per request"
            f" ({redis_row['attacker_round_trips_per_request']:.4f} round trips); all commands"
            f" in the windows, genuine users' included:"
            f" {redis_row['all_commands_per_attacker_request']:.4f} per attacker request",
            "passed": per_request is not None and per_request <= 0.01,
        }
    )
    return out


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'phase':<13} {'genuine':>7} {'ok %':>7} {'p50 ms':>7} {'p99 ms':>7} {'max ms':>7}"
        f" {'attacker req/s':>14} {'admitted/s':>10} {'admitted (bound)':>17}"
        f" {'Redis cmds/attacker req':>23}"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        genuine, attacker, on_redis = row["genuine"], row["attacker"], row["redis"]
        rate = genuine["success_rate"]
        cells = [
            f"{row['phase']:<13}",
            f"{genuine['sent']:>7}",
            f"{'—' if rate is None else format(100 * rate, '.2f'):>7}",
            f"{_ms(genuine['p50_ms']):>7}",
            f"{_ms(genuine['p99_ms']):>7}",
            f"{_ms(genuine['max_ms']):>7}",
        ]
        if attacker is None:
            cells += [f"{'—':>14}", f"{'—':>10}", f"{'—':>17}"]
        else:
            bound = (
                f"{attacker['admitted']} ({attacker['bound_if_limited']:.0f})"
                if row["phase"].endswith("-on")
                else f"{attacker['admitted']}"
            )
            cells += [
                f"{attacker['requests_per_s']:>14,.0f}",
                f"{attacker['admitted_per_s']:>10,.1f}",
                f"{bound:>17}",
            ]
        per = None if on_redis is None else on_redis["attacker_commands_per_request"]
        cells.append(f"{'—' if per is None else format(per, '.4f'):>23}")
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
