"""Part 3 of ``run.py``: the incident drill (v2), against a backend of finite capacity.

The app (``apps.build(handler="pool")``) serves ``GET /api/work?ms=N``: it holds one of
``POOL`` simulated database connections for N ms and answers 503 after waiting 2 s for
one — the demo's ``/api/work``. So floodwall OFF reproduces the incident: once the pool's
queue is longer than 2 s, genuine requests are dropped.

Genuine users: ``genuine_users`` of them, each its own httpx client (one connection),
sending ``/api/work?ms=WORK_MS``, then pausing 0.5-1 s (about 40 requests/s in all, half the
pool's capacity). Three attacks, each by ``wrk`` (``wrk_users.lua``):

* **a. one account** as fast as it can go: ``-c256``, every request as ``attacker``;
* **b. 200 accounts**, each under its rate limit: ``-c400`` rotating over 200 accounts, each
  connection pausing 400 ms before each request (at most about 5 requests/s per account);
* **c. slow requests**: 3 accounts, ``-c60``, each request holding a connection for 2 s
  (``ms=2000``; an export), pausing 100 ms between requests.

Each attack runs against each variant, one after the other, with the genuine users
running throughout: ``lead_seconds`` without the attacker (the "no attack" figures), then
``attack_seconds`` with it; between runs the pool drains. Variants, each its own uvicorn
(one worker): **off** (the app alone), **rate limit** (floodwall on Redis, 10/s, burst 10),
**rate limit + shedding** (and ``FLOODWALL_CAPACITY=POOL``), and, once floodwall has
``FLOODWALL_CONCURRENCY``, **rate limit + concurrency + shedding** (``CONCURRENCY``) and the
same with the tarpit off (``FLOODWALL_TARPIT_SECONDS=0``; the others have floodwall's
default).

Per attack, variant and phase: genuine success (HTTP 200) % and the failures by who
refused them (``503 overloaded`` is shedding, ``503 pool`` the backend's pool, ``429 ...``
floodwall's limits by problem type, else the client's error), p50/p99 against the same
variant's no-attack p99 (pooled over the three runs), the attacker's requests and those
admitted (HTTP 200), and Redis commands per attacker request (``INFO commandstats`` over
the attack window, less what the genuine users' requests cost in the lead-in). A line per
second goes to stderr; a PNG timeline per attack (genuine success and p99 per second,
attack windows shaded) goes next to the JSON.

Everything shares the machine's 2 cores: wrk, uvicorn, Redis and the genuine users' client.
"""

from __future__ import annotations

import asyncio
import math
import pathlib
import random
import statistics
import sys
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import redis.asyncio

from benchmarks import apps
from benchmarks._common import (
    BOOKKEEPING_COMMANDS,
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
from floodwall.http.responses import PROBLEM_TYPE_BASE

RATE: Final = 10.0
BURST: Final = 10
POOL: Final = 8
WORK_MS: Final = 80
CAPACITY: Final = POOL
"""Shedding's in-flight limit: what the backend serves at once (the pool)."""
CONCURRENCY: Final = 2
"""Per-user concurrency, for the variant that needs FLOODWALL_CONCURRENCY."""
GENUINE_PATH: Final = f"{apps.WORK_PATH}?ms={WORK_MS}"
GENUINE_TIMEOUT: Final = 5.0
GENUINE_PAUSE: Final = (0.5, 1.0)
DRAIN_LIMIT: Final = 10.0
WRK_GRACE: Final = 30.0
SEED: Final = 20240601
TARGET_SUCCESS: Final = 0.999
TARGET_P99_RATIO: Final = 2.0


@dataclass(frozen=True, slots=True)
class Attack:
    key: str
    title: str
    connections: int
    path: str
    env: dict[str, str]


ATTACKS: Final = (
    Attack(
        "a",
        "one account as fast as it can go",
        256,
        f"{apps.WORK_PATH}?ms={WORK_MS}",
        {"BENCH_FIXED_USER": "attacker"},
    ),
    Attack(
        "b",
        "200 accounts, each under its rate limit",
        400,
        f"{apps.WORK_PATH}?ms={WORK_MS}",
        {"BENCH_USERS": "200", "BENCH_USER_PREFIX": "attacker-b-", "BENCH_DELAY_MS": "400"},
    ),
    Attack(
        "c",
        "3 accounts holding slow requests (2 s each)",
        60,
        f"{apps.WORK_PATH}?ms=2000",
        {"BENCH_USERS": "3", "BENCH_USER_PREFIX": "attacker-c-", "BENCH_DELAY_MS": "100"},
    ),
)


@dataclass(frozen=True, slots=True)
class Variant:
    key: str
    title: str
    env: dict[str, str]
    floodwall: bool


def variants() -> list[Variant]:
    limited = {
        "BENCH_VARIANT": "floodwall[redis]",
        "BENCH_RATE": str(RATE),
        "BENCH_BURST": str(BURST),
    }
    found = [
        Variant("off", "floodwall off", {"BENCH_VARIANT": "bare"}, False),
        Variant("limit", "rate limit", limited, True),
        Variant(
            "shed", "rate limit + shedding", {**limited, "BENCH_CAPACITY": str(CAPACITY)}, True
        ),
    ]
    if apps.supports_concurrency():
        # The hook for per-user concurrency (FLOODWALL_CONCURRENCY): runs once it exists.
        found.append(
            Variant(
                "concurrency",
                "rate limit + concurrency + shedding",
                {
                    **limited,
                    "BENCH_CAPACITY": str(CAPACITY),
                    "BENCH_CONCURRENCY": str(CONCURRENCY),
                },
                True,
            )
        )
        # What the tarpit (on in every variant above, as by default) brings: the same
        # protection with it off.
        found.append(
            Variant(
                "no-tarpit",
                "rate limit + concurrency + shedding, no tarpit",
                {**found[-1].env, "BENCH_TARPIT_SECONDS": "0"},
                True,
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class Config:
    lead_seconds: int = 5
    attack_seconds: int = 12
    genuine_users: int = 30
    warmup_seconds: float = 2.0

    @classmethod
    def quick(cls) -> Config:
        return cls(lead_seconds=2, attack_seconds=3, warmup_seconds=1.0)


@dataclass(slots=True)
class Sample:
    at: float  # seconds since the run started, when sent
    latency_s: float
    outcome: str  # an HTTP status, or the name of a client error


@dataclass(slots=True)
class Run:
    """One attack against one variant."""

    attack: Attack
    variant: Variant
    offset: float = 0.0  # where this run starts on the attack's timeline
    samples: list[Sample] = field(default_factory=list)
    attacker: dict[str, Any] | None = None
    lead_commands: int = 0
    attack_commands: int = 0


# -- the genuine users ----------------------------------------------------------------------


def genuine_clients(base_url: str, users: int) -> list[httpx.AsyncClient]:
    """One client (one connection) per genuine user, made once: making an httpx client
    costs milliseconds of CPU, which would otherwise land in the first second of a run."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    return [
        httpx.AsyncClient(base_url=base_url, timeout=GENUINE_TIMEOUT, limits=limits)
        for _ in range(users)
    ]


async def genuine_user(
    user: int,
    client: httpx.AsyncClient,
    started: float,
    deadline: float,
    samples: list[Sample],
    rng: random.Random,
) -> None:
    most = math.ceil((deadline - time.monotonic()) / GENUINE_PAUSE[0]) + 2
    await asyncio.sleep(rng.uniform(0, GENUINE_PAUSE[1]))
    for _ in range(most):
        if time.monotonic() >= deadline:
            return
        sent = time.monotonic()
        try:
            response = await client.get(GENUINE_PATH, headers={USER_HEADER: f"genuine-{user}"})
            outcome = _outcome(response)
        except httpx.HTTPError as exc:
            outcome = type(exc).__name__
        samples.append(Sample(sent - started, time.monotonic() - sent, outcome))
        await asyncio.sleep(rng.uniform(*GENUINE_PAUSE))


def _outcome(response: httpx.Response) -> str:
    """``200``, or a refusal with who refused it: floodwall names its problem type
    (``503 overloaded``, ``429 concurrency-exceeded``...), the pool does not (``503 pool``)."""
    status = str(response.status_code)
    if response.status_code == 200:
        return status
    try:
        kind = response.json().get("type", "")
    except ValueError:
        kind = ""
    if isinstance(kind, str) and kind.startswith(PROBLEM_TYPE_BASE):
        return f"{status} {kind.removeprefix(PROBLEM_TYPE_BASE)}"
    return f"{status} pool" if response.status_code == 503 else status


async def progress(label: str, started: float, lead: int, samples: list[Sample]) -> None:
    """A line per second on stderr: the genuine users' last second."""
    seen = 0
    while True:
        await asyncio.sleep(1.0)
        fresh = samples[seen:]
        seen = len(samples)
        ok = sum(1 for s in fresh if s.outcome == "200")
        worst = max((s.latency_s for s in fresh), default=0.0) * 1000
        elapsed = round(time.monotonic() - started)
        phase = "no attack" if elapsed <= lead else "attack"
        print(
            f"  [{label} {elapsed:>3} s, {phase}] genuine last second: {len(fresh)} answered,"
            f" {ok} ok, {len(fresh) - ok} failed, slowest {worst:.0f} ms",
            file=sys.stderr,
            flush=True,
        )


# -- one run --------------------------------------------------------------------------------


async def run_one(
    run: Run,
    label: str,
    server: UvicornServer,
    clients: list[httpx.AsyncClient],
    config: Config,
    admin: redis.asyncio.Redis,
    seed: int,
) -> None:
    attack = run.attack
    started = time.monotonic()
    deadline = started + config.lead_seconds + config.attack_seconds
    samples = run.samples
    ticker = asyncio.create_task(progress(label, started, config.lead_seconds, samples))
    users = asyncio.gather(
        *(
            genuine_user(n, client, started, deadline, samples, random.Random(seed + n))
            for n, client in enumerate(clients)
        )
    )
    wrk: asyncio.subprocess.Process | None = None
    try:
        at_start = await command_stats(admin)
        await asyncio.sleep(config.lead_seconds)
        at_attack = await command_stats(admin)
        wrk = await asyncio.create_subprocess_exec(
            *wrk_command(server.url, config.attack_seconds, attack.connections, path=attack.path),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=clean_env({**attack.env, "BENCH_COUNT_STATUS": "1"}),
        )
        out, err = await asyncio.wait_for(wrk.communicate(), config.attack_seconds + WRK_GRACE)
        at_end = await command_stats(admin)
        if wrk.returncode != 0:
            raise RuntimeError(f"wrk failed ({wrk.returncode}): {err.decode()[-2000:]}")
        run.attacker = parse_wrk(out.decode())
        wrk = None
        await users
    finally:
        ticker.cancel()
        if wrk is not None and wrk.returncode is None:
            wrk.kill()
            await wrk.wait()
        if not users.done():
            users.cancel()
            await asyncio.gather(users, return_exceptions=True)
    run.lead_commands = _commands(at_start, at_attack)
    run.attack_commands = _commands(at_attack, at_end)


def _commands(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]]) -> int:
    return sum(
        calls - before.get(name, (0, 0))[0]
        for name, (calls, _) in after.items()
        if name not in BOOKKEEPING_COMMANDS
    )


async def drain(server: UvicornServer) -> float:
    """Wait until the pool is free again (a probe is answered quickly); the seconds taken.

    Requests the attacker left behind still hold connections or wait for one (up to 2 s,
    and a slow request 2 s more); each probe is a new user, so no limit refuses it.
    """
    started = time.monotonic()
    async with httpx.AsyncClient(base_url=server.url, timeout=5.0) as client:
        for probe in range(1000):
            sent = time.monotonic()
            try:
                response = await client.get(
                    f"{apps.WORK_PATH}?ms=0", headers={USER_HEADER: f"probe-{probe}"}
                )
                if response.status_code == 200 and time.monotonic() - sent < 0.05:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() - started > DRAIN_LIMIT:
                break
            await asyncio.sleep(0.2)
    return time.monotonic() - started


# -- the drill ------------------------------------------------------------------------------


async def run(
    config: Config, url: str, stop: StopRequest, results_dir: pathlib.Path | None = None
) -> dict[str, Any]:
    """Every attack against every variant; return the part's results (and draw the
    timelines into ``results_dir``)."""
    chosen = variants()
    servers = {
        variant.key: UvicornServer(
            f"drill {variant.title}",
            {
                **variant.env,
                "BENCH_REDIS_URL": url,
                "BENCH_HANDLER": "pool",
                "BENCH_POOL": str(POOL),
                "BENCH_PREFIX": f"floodwall-drill-{variant.key}",
            },
        )
        for variant in chosen
    }
    admin = redis.asyncio.Redis.from_url(url, socket_timeout=5.0)
    runs: list[Run] = []
    clients: dict[str, list[httpx.AsyncClient]] = {}
    exit_codes: dict[str, int | None] = {}
    logs: dict[str, str] = {}
    drains: list[float] = []
    try:
        for key, server in servers.items():
            await asyncio.to_thread(server.start)
            clients[key] = genuine_clients(server.url, config.genuine_users)
        for variant in chosen:
            # Warm each server up with the genuine users alone (not recorded).
            stop.check()
            now = time.monotonic()
            await asyncio.gather(
                *(
                    genuine_user(n, client, now, now + config.warmup_seconds, [], random.Random(n))
                    for n, client in enumerate(clients[variant.key])
                )
            )
        total = len(ATTACKS) * len(chosen)
        for a, attack in enumerate(ATTACKS):
            offset = 0.0
            for v, variant in enumerate(chosen):
                stop.check()
                number = a * len(chosen) + v + 1
                label = f"drill {number}/{total} attack {attack.key}, {variant.title}"
                print(
                    f"{label}: {config.lead_seconds} s without, {config.attack_seconds} s with"
                    f" the attacker ({attack.title})",
                    file=sys.stderr,
                    flush=True,
                )
                one = Run(attack, variant, offset)
                await run_one(
                    one,
                    label,
                    servers[variant.key],
                    clients[variant.key],
                    config,
                    admin,
                    SEED + 1000 * number,
                )
                runs.append(one)
                offset += config.lead_seconds + config.attack_seconds
                drains.append(await drain(servers[variant.key]))
    finally:
        for group in clients.values():
            for client in group:
                await client.aclose()
        for key, server in servers.items():
            exit_codes[key] = await asyncio.to_thread(server.stop)
            logs[key] = server.log_text()
            server.cleanup()
        await admin.aclose()
    rows = summarize(runs, config)
    warnings = [
        f"drill {key}: uvicorn exited with {code}"
        for key, code in exit_codes.items()
        if code not in (0, -15, None)
    ]
    results: dict[str, Any] = {
        "part": "drill",
        "config": {
            "lead_seconds": config.lead_seconds,
            "attack_seconds": config.attack_seconds,
            "genuine_users": config.genuine_users,
            "genuine_pause_s": GENUINE_PAUSE,
            "genuine_timeout_s": GENUINE_TIMEOUT,
            "genuine_path": GENUINE_PATH,
            "pool": POOL,
            "pool_timeout_s": apps.POOL_TIMEOUT_SECONDS,
            "rate": RATE,
            "burst": BURST,
            "capacity": CAPACITY,
            "concurrency": CONCURRENCY if apps.supports_concurrency() else None,
            "attacks": [
                {
                    "key": attack.key,
                    "title": attack.title,
                    "wrk_connections": attack.connections,
                    "path": attack.path,
                    "env": attack.env,
                }
                for attack in ATTACKS
            ],
            "variants": [variant.title for variant in chosen],
            "uvicorn_options": uvicorn_options(),
            "drain_seconds": [round(d, 2) for d in drains],
        },
        "rows": rows,
        "timelines": {attack.key: timeline(runs, attack) for attack in ATTACKS},
        "server_logs": {key: _log_summary(text) for key, text in logs.items()},
        "server_exit_codes": exit_codes,
        "warnings": warnings,
    }
    results["targets"] = targets(results)
    if results_dir is not None:
        results["figures"] = draw(results, runs, config, results_dir)
    return results


def _log_summary(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.strip()]
    interesting = [
        line
        for line in lines
        if any(word in line for word in ("Traceback", "ERROR", "Error", "WARNING", "floodwall"))
    ]
    return {"lines": len(lines), "notable": Counter(interesting).most_common(20)}


def _phase_of(sample: Sample, config: Config) -> str:
    # By when it was sent: the attacker starts at the end of the lead-in.
    return "no attack" if sample.at < config.lead_seconds else "attack"


def _genuine(samples: list[Sample]) -> dict[str, Any]:
    latencies = sorted(s.latency_s for s in samples)
    outcomes = Counter(s.outcome for s in samples)
    sent = len(samples)
    ok = outcomes.get("200", 0)
    return {
        "sent": sent,
        "ok": ok,
        "success_rate": ok / sent if sent else None,
        "outcomes": dict(sorted(outcomes.items())),
        "p50_ms": statistics.median(latencies) * 1000 if latencies else None,
        "p99_ms": percentile(latencies, 0.99) * 1000 if latencies else None,
        "max_ms": latencies[-1] * 1000 if latencies else None,
    }


def summarize(runs: list[Run], config: Config) -> list[dict[str, Any]]:
    """A row per attack, variant and phase."""
    # The no-attack reference of each variant: its lead-ins, pooled over the attacks.
    quiet: dict[str, list[Sample]] = {}
    for one in runs:
        quiet.setdefault(one.variant.key, []).extend(
            s for s in one.samples if _phase_of(s, config) == "no attack"
        )
    reference = {key: _genuine(samples)["p99_ms"] for key, samples in quiet.items()}
    rows = []
    for one in runs:
        lead = [s for s in one.samples if _phase_of(s, config) == "no attack"]
        during = [s for s in one.samples if _phase_of(s, config) == "attack"]
        per_genuine = one.lead_commands / len(lead) if lead else 0.0
        for phase, samples in (("no attack", lead), ("attack", during)):
            genuine = _genuine(samples)
            base = reference[one.variant.key]
            genuine["p99_vs_no_attack"] = (
                genuine["p99_ms"] / base if genuine["p99_ms"] is not None and base else None
            )
            row: dict[str, Any] = {
                "attack": one.attack.key,
                "variant": one.variant.key,
                "variant_title": one.variant.title,
                "phase": phase,
                "genuine": genuine,
                "no_attack_p99_ms": base,
                "attacker": None,
            }
            if phase == "attack" and one.attacker is not None:
                wrk = one.attacker
                seconds = wrk["duration_us"] / 1e6
                statuses = {str(k): v for k, v in wrk.get("statuses", {}).items()}
                admitted = statuses.get("200", 0)
                attacker: dict[str, Any] = {
                    "requests": wrk["requests"],
                    "seconds": seconds,
                    "requests_per_s": wrk["requests"] / seconds if seconds else None,
                    "admitted": admitted,
                    "admitted_per_s": admitted / seconds if seconds else None,
                    "statuses": dict(sorted(statuses.items())),
                    "errors": wrk["errors"],
                    "redis_commands_per_request": None,
                }
                if one.variant.floodwall and wrk["requests"]:
                    # Everything in the window, less what the genuine users' requests cost
                    # (per request, as measured in the lead-in).
                    theirs = max(0.0, one.attack_commands - per_genuine * len(samples))
                    attacker["redis_commands_per_request"] = theirs / wrk["requests"]
                    attacker["redis_commands_in_window"] = one.attack_commands
                row["attacker"] = attacker
            rows.append(row)
    return rows


def timeline(runs: list[Run], attack: Attack) -> list[dict[str, Any]]:
    """Genuine requests second by second over the attack's runs, one after the other."""
    out = []
    for one in runs:
        if one.attack is not attack:
            continue
        seconds: dict[int, list[Sample]] = {}
        for sample in one.samples:
            seconds.setdefault(int(sample.at), []).append(sample)
        for second, group in sorted(seconds.items()):
            latencies = sorted(s.latency_s for s in group)
            out.append(
                {
                    "variant": one.variant.key,
                    "t": one.offset + second,
                    "sent": len(group),
                    "ok": sum(1 for s in group if s.outcome == "200"),
                    "p99_ms": round(percentile(latencies, 0.99) * 1000, 1),
                }
            )
    return out


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    rows = [row for row in results["rows"] if row["phase"] == "attack"]
    by = {(row["attack"], row["variant"]): row for row in rows}
    protected = "concurrency" if any(row["variant"] == "concurrency" for row in rows) else "shed"
    out = []
    for attack in ATTACKS:
        row = by[(attack.key, protected)]
        genuine = row["genuine"]
        rate = genuine["success_rate"] or 0.0
        ratio = genuine["p99_vs_no_attack"]
        out.append(
            {
                "id": f"drill.{attack.key}.genuine_success",
                "target": f"drill {attack.key} ({attack.title}), {row['variant_title']}:"
                " >= 99.9 % genuine success",
                "measured": f"{genuine['ok']}/{genuine['sent']} = {100 * rate:.2f} %"
                f" (outcomes {genuine['outcomes']})",
                "passed": genuine["sent"] > 0 and rate >= TARGET_SUCCESS,
            }
        )
        out.append(
            {
                "id": f"drill.{attack.key}.genuine_p99",
                "target": f"drill {attack.key}, {row['variant_title']}: genuine p99 <= 2 x its"
                " no-attack p99",
                "measured": "no requests"
                if ratio is None
                else f"{genuine['p99_ms']:.1f} ms vs {row['no_attack_p99_ms']:.1f} ms"
                f" = {ratio:.2f} x",
                "passed": ratio is not None and ratio <= TARGET_P99_RATIO,
            }
        )
    for key in ("a", "b"):
        off = by[(key, "off")]["genuine"]
        out.append(
            {
                "id": f"drill.{key}.off_drops",
                "target": f"drill {key}, floodwall off: genuine requests are dropped (the"
                " incident reproduced)",
                "measured": f"{off['ok']}/{off['sent']} ="
                f" {100 * (off['success_rate'] or 0):.2f} % ok (outcomes {off['outcomes']})",
                "passed": off["sent"] > 0 and off["ok"] < off["sent"],
            }
        )
    return out


# -- figures ----------------------------------------------------------------------------------


def draw(
    results: dict[str, Any], runs: list[Run], config: Config, directory: pathlib.Path
) -> list[str]:
    """A PNG timeline per attack; the file names written. Needs matplotlib (``bench``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written = []
    span = config.lead_seconds + config.attack_seconds
    for attack in ATTACKS:
        points = results["timelines"][attack.key]
        figure, (top, bottom) = plt.subplots(2, 1, figsize=(10, 5.5), sharex=True)
        for one in runs:
            if one.attack is not attack:
                continue
            mine = [p for p in points if p["variant"] == one.variant.key]
            t = [p["t"] + 0.5 for p in mine]
            top.plot(t, [100 * p["ok"] / p["sent"] for p in mine], color="tab:blue", lw=1.5)
            bottom.plot(t, [p["p99_ms"] for p in mine], color="tab:red", lw=1.5)
            for axis in (top, bottom):
                axis.axvspan(
                    one.offset + config.lead_seconds,
                    one.offset + span,
                    color="tab:orange",
                    alpha=0.15,
                    lw=0,
                )
                axis.axvline(one.offset, color="grey", lw=0.8)
            top.text(
                one.offset + span / 2,
                104,
                textwrap.fill(one.variant.title, 20),
                ha="center",
                va="bottom",
                fontsize=8,
            )
        top.set_ylim(-5, 145)
        top.set_yticks(range(0, 101, 20))
        top.set_ylabel("genuine ok, % per s")
        bottom.set_yscale("log")
        bottom.set_ylabel("genuine p99, ms per s")
        bottom.set_xlabel(
            f"seconds (each run: {config.lead_seconds} s no attack, then"
            f" {config.attack_seconds} s attack, shaded)"
        )
        figure.suptitle(f"Drill, attack {attack.key}: {attack.title}", y=0.99)
        figure.tight_layout()
        name = f"drill-{attack.key}.png"
        figure.savefig(directory / name, dpi=100)
        plt.close(figure)
        written.append(name)
    return written


def format_table(rows: list[dict[str, Any]]) -> str:
    header = (
        f"{'attack':<6} {'variant':<48} {'phase':<9} {'genuine':>7} {'ok %':>7}"
        f" {'p50 ms':>7} {'p99 ms':>7} {'p99 x':>6} {'attacker req/s':>14}"
        f" {'admitted':>8} {'Redis cmds/att. req':>19}  genuine failures"
    )
    lines = [header, "-" * len(header)]
    for row in rows:
        genuine, attacker = row["genuine"], row["attacker"]
        rate = genuine["success_rate"]
        ratio = genuine["p99_vs_no_attack"]
        cells = [
            f"{row['attack']:<6}",
            f"{row['variant_title']:<48}",
            f"{row['phase']:<9}",
            f"{genuine['sent']:>7}",
            f"{'—' if rate is None else format(100 * rate, '.2f'):>7}",
            f"{_ms(genuine['p50_ms']):>7}",
            f"{_ms(genuine['p99_ms']):>7}",
            f"{'—' if ratio is None else format(ratio, '.2f'):>6}",
        ]
        if attacker is None:
            cells += [f"{'—':>14}", f"{'—':>8}", f"{'—':>19}"]
        else:
            per = attacker["redis_commands_per_request"]
            cells += [
                f"{attacker['requests_per_s']:>14,.0f}",
                f"{attacker['admitted']:>8,}",
                f"{'—' if per is None else format(per, '.3f'):>19}",
            ]
        failures = {k: v for k, v in genuine["outcomes"].items() if k != "200"}
        cells.append(" " + (", ".join(f"{v} {k}" for k, v in failures.items()) or "—"))
        lines.append(" ".join(cells))
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}"
