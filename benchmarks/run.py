"""floodwall's benchmarks, one command: floodwall against its peers, and the incident drill.

Run from the repository root with the project's Python, the ``bench`` extra installed
(``scripts/test`` installs it into ``.venv``: slowapi, asgi-ratelimit, uvloop, httptools,
matplotlib), ``redis-server``, ``redis-cli`` and ``wrk`` on ``PATH`` (Debian/Ubuntu:
``apt-get install redis-server wrk``; the test command never needs wrk)::

    python benchmarks/run.py              # the full run, about 8 minutes (the drill: 4)
    python benchmarks/run.py --quick      # shorter, about 2.5 minutes (the drill: 1)
    python benchmarks/run.py --parts drill
    python benchmarks/run.py --quick --parts drill --results /tmp/drill

It starts its own ``redis-server`` on a free loopback port (no persistence, in a temporary
directory) and stops it at the end; every server and load generator it starts listens and
sends on 127.0.0.1 only, and every load loop is bounded in count and time.

1. ``inprocess``: the ASGI apps called directly (``inprocess.py``);
2. ``http``: the same apps in uvicorn under ``wrk`` (``http_load.py``);
3. ``drill``: a backend with a pool of 8 connections, 30 genuine users and three attacks
   (one account; 200 accounts under their limits; slow requests), each with floodwall off,
   rate limit only, and rate limit + load shedding (``drill.py``).

It prints a table per part, then every target with PASS or MISS next to what was
measured, and writes ``benchmarks/results/{inprocess,http,drill,summary}.json`` (the
summary holds the machine's facts, all targets and the printed report) and the drill's
timelines ``benchmarks/results/drill-{a,b,c}.png``. The machine is
shared and noisy: variants are compared within one run, interleaved; never compare
absolute numbers across runs or machines.

Exit status: 0 when every part ran (targets that MISS are reported, not failures), 1 when
a part warned (a server logged errors, a limiter answered from a fallback...), 2 when a
tool is missing, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any, Final

# Run as a script (python benchmarks/run.py), the repository root is not on the path.
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

import redis

from benchmarks import drill, http_load, inprocess
from benchmarks._common import (
    RESULTS_DIR,
    Interrupted,
    StopRequest,
    event_loop,
    machine_facts,
    write_json,
)
from harness import RedisServer

PARTS: Final = ("inprocess", "http", "drill")
PACKAGES: Final = (
    "floodwall",
    "starlette",
    "redis",
    "hiredis",
    "uvicorn",
    "uvloop",
    "httptools",
    "slowapi",
    "limits",
    "asgi-ratelimit",
    "httpx",
)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="shorter runs of every part")
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to run, from {','.join(PARTS)} (default: all)",
    )
    parser.add_argument(
        "--results", type=pathlib.Path, default=RESULTS_DIR, help="directory of the JSON files"
    )
    args = parser.parse_args(argv)
    args.parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(args.parts) - set(PARTS))
    if unknown or not args.parts:
        parser.error(f"unknown parts {unknown}; choose from {','.join(PARTS)}")
    return args


def missing_tools(parts: Sequence[str]) -> list[str]:
    needed = ["redis-server", "redis-cli"]
    if "http" in parts or "drill" in parts:
        needed.append("wrk")
    return [tool for tool in needed if shutil.which(tool) is None]


def wrk_version() -> str | None:
    binary = shutil.which("wrk")
    if binary is None:
        return None
    completed = subprocess.run([binary, "-v"], capture_output=True, text=True, check=False)
    text = (completed.stdout + completed.stderr).strip().splitlines()
    # "wrk debian/4.1.0-3+b2 [epoll] Copyright (C) 2012 Will Glozer"
    return text[0].split(" Copyright", 1)[0] if text else None


def reset_redis(url: str) -> str:
    """Empty the benchmark's own server and zero its statistics between parts."""
    client = redis.Redis.from_url(url, socket_timeout=5.0)
    try:
        client.flushall()
        client.config_resetstat()
        info: dict[str, Any] = client.info("server")
        return str(info.get("redis_version", "unknown"))
    finally:
        client.close()


def status(target: dict[str, Any]) -> str:
    return "PASS" if target["passed"] else "MISS"


def header(facts: dict[str, Any], quick: bool) -> str:
    git = facts["git"]
    changes = git.get("src_changes")
    packages = ", ".join(f"{name} {version}" for name, version in facts["packages"].items())
    return (
        f"floodwall benchmarks ({'--quick' if quick else 'full run'}), {facts['date']}\n"
        f"machine: {facts['platform']}, {facts['cpu_count']} CPUs ({facts['cpus_usable']}"
        f" usable), load average at start {[round(x, 2) for x in facts['load_average']]}\n"
        f"Python {facts['python']}, redis-server {facts['redis_server']}, {facts['wrk']},"
        f" event loop {facts['event_loop']}\n"
        f"packages: {packages}\n"
        f"commit {git.get('commit')}"
        f"{'' if not changes else f' with uncommitted src changes: {changes}'}"
    )


def part_text(name: str, results: dict[str, Any]) -> str:
    config = results["config"]
    if name == "inprocess":
        title = (
            f"1. In-process hot path: {config['requests_per_variant']:,} requests per variant,"
            f" {config['users']:,} users, {config['rounds']} interleaved rounds; every limit"
            " huge (allowed path); cmds/req counts commands run inside scripts"
        )
        body = (
            inprocess.format_table(results["variants"])
            + "\n\n"
            + inprocess.format_memory(results["memory"])
        )
    elif name == "http":
        title = (
            f"2. HTTP: uvicorn {' '.join(config['uvicorn_options'])}; wrk -t{config['wrk_threads']}"
            f" -c{config['connections']} --latency, {config['users']} rotating users,"
            f" {config['rounds']} interleaved rounds x {config['round_seconds']} s per variant"
        )
        body = http_load.format_table(results["variants"])
    else:
        attacks = "; ".join(
            f"{a['key']}. {a['title']} (wrk -c{a['wrk_connections']} {a['path']})"
            for a in config["attacks"]
        )
        title = (
            f"3. Incident drill: a pool of {config['pool']} connections (503 after"
            f" {config['pool_timeout_s']:g} s); {config['genuine_users']} genuine users at 1-2"
            f" req/s on {config['genuine_path']}; attacks: {attacks}; floodwall on Redis at"
            f" {config['rate']:g}/s, burst {config['burst']}, shedding capacity"
            f" {config['capacity']}; each run {config['lead_seconds']} s without then"
            f" {config['attack_seconds']} s with the attacker"
        )
        body = drill.format_table(results["rows"])
        if results.get("figures"):
            body += "\n\ntimelines: " + ", ".join(results["figures"])
    return f"{title}\n\n{body}"


def targets_text(targets: Sequence[dict[str, Any]]) -> str:
    lines = ["Targets"]
    for target in targets:
        lines.append(f"  {status(target)}  {target['target']}\n        {target['measured']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    missing = missing_tools(args.parts)
    if missing:
        print(
            f"missing on PATH: {', '.join(missing)} (apt-get install redis-server wrk)",
            file=sys.stderr,
        )
        return 2
    loop_factory, loop_name = event_loop()
    stop = StopRequest()
    previous = {number: signal.signal(number, stop) for number in (signal.SIGINT, signal.SIGTERM)}
    # The harness also kills the server at exit, should a second Ctrl-C break out of the
    # `finally` below before it stops.
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="floodwall-bench-"))
    server: RedisServer | None = None
    results: dict[str, dict[str, Any]] = {}
    texts: list[str] = []
    started = time.monotonic()
    try:
        server = RedisServer.start(workdir)
        url = server.url
        redis_version = reset_redis(url)
        facts = machine_facts(redis_version, loop_name, PACKAGES)
        facts["wrk"] = wrk_version()
        print(header(facts, args.quick) + "\n", flush=True)
        with asyncio.Runner(loop_factory=loop_factory) as runner:
            for name in args.parts:
                stop.check()
                reset_redis(url)
                print(f"== {name} ==", file=sys.stderr, flush=True)
                if name == "inprocess":
                    config = inprocess.Config.quick() if args.quick else inprocess.Config()
                    part = runner.run(inprocess.run(config, url, stop))
                elif name == "http":
                    http_config = http_load.Config.quick() if args.quick else http_load.Config()
                    part = http_load.run(http_config, url, stop)
                else:
                    drill_config = drill.Config.quick() if args.quick else drill.Config()
                    part = runner.run(drill.run(drill_config, url, stop, args.results))
                results[name] = part
                text = part_text(name, part)
                texts.append(text)
                print(text + "\n", flush=True)
                write_json(args.results / f"{name}.json", {"machine": facts, **part})
    except Interrupted:
        print("interrupted; the parts that finished are written", file=sys.stderr)
        return 130
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        for number, handler in previous.items():
            signal.signal(number, handler)

    targets = [target for part in results.values() for target in part["targets"]]
    warnings = [f"{name}: {w}" for name, part in results.items() for w in part["warnings"]]
    summary_text = targets_text(targets)
    print(summary_text)
    passed = sum(1 for target in targets if target["passed"])
    print(f"\n{passed} of {len(targets)} targets PASS; {time.monotonic() - started:.0f} s")
    for warning in warnings:
        print(f"WARNING: {warning}", file=sys.stderr)
    write_json(
        args.results / "summary.json",
        {
            "benchmark": "floodwall",
            "schema": 1,
            "quick": args.quick,
            "parts": args.parts,
            "machine": facts,
            "targets": targets,
            "warnings": warnings,
            "report": "\n\n".join([header(facts, args.quick), *texts, summary_text]),
        },
    )
    print(f"results: {args.results}/{{{','.join([*args.parts, 'summary'])}}}.json")
    return 1 if warnings else 0


if __name__ == "__main__":
    sys.exit(main())
