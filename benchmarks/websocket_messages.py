"""Websocket messages through floodwall: messages per second against the bare app's echo.

Run from the repository root with the project's Python (``redis-server`` on ``PATH``)::

    python benchmarks/websocket_messages.py            # about a minute
    python benchmarks/websocket_messages.py --quick    # about 20 seconds

Three uvicorn servers of ``apps.py`` (one worker each, the same options) serve ``WS_PATH``,
an echo: ``bare``, ``floodwall[memory]`` and ``floodwall[redis]`` (on a redis-server of its
own), every limit huge so nothing is refused. Each round, 16 clients (16 users, one
websocket each, ``websockets``' asyncio client in this process) send a message and wait
for its echo, as fast as they can, for a few seconds, against one server at a time; the
order rotates each round. Every message through floodwall is one check (one EVALSHA on
Redis). Reported: messages per second per variant (the median over rounds), the ratio to
``bare``, and Redis commands per message; written to
``benchmarks/results/websocket_messages.json``. The clients share the machine's two cores
with the server and Redis: the ratios are the point, not the absolute figures.
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
from typing import Any, Final

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis as redis_client  # noqa: E402
from websockets.asyncio.client import ClientConnection, connect  # noqa: E402

from benchmarks._common import USER_HEADER, UvicornServer, clean_env  # noqa: E402
from benchmarks.apps import WS_PATH  # noqa: E402
from harness import RedisServer  # noqa: E402

VARIANTS: Final = ("bare", "floodwall[memory]", "floodwall[redis]")
CLIENTS: Final = 16


async def _ping_pong(socket: ClientConnection, until: float) -> int:
    sent = 0
    while time.monotonic() < until:
        await socket.send("ping")
        await socket.recv()
        sent += 1
    return sent


async def _round(url: str, seconds: float) -> float:
    """Messages per second of CLIENTS clients, each on its own websocket."""
    target = "ws" + url.removeprefix("http") + WS_PATH
    sockets = [
        await connect(target, additional_headers={USER_HEADER: f"user-{number}"})
        for number in range(CLIENTS)
    ]
    try:
        began = time.monotonic()
        counts = await asyncio.gather(*(_ping_pong(s, began + seconds) for s in sockets))
        return sum(counts) / (time.monotonic() - began)
    finally:
        await asyncio.gather(*(socket.close() for socket in sockets))


def _commands(url: str) -> int:
    client = redis_client.Redis.from_url(url)
    try:
        stats: dict[str, Any] = client.info("commandstats")
        return sum(
            int(value["calls"])
            for name, value in stats.items()
            if name.removeprefix("cmdstat_") in ("evalsha", "eval")
        )
    finally:
        client.close()


async def _measure(
    servers: dict[str, str], redis_url: str, rounds: int, seconds: float
) -> dict[str, Any]:
    rates: dict[str, list[float]] = {name: [] for name in servers}
    checks: dict[str, list[float]] = {"floodwall[redis]": []}
    names = list(servers)
    for warmup in names:
        await _round(servers[warmup], 0.5)
    for number in range(rounds):
        order = names[number % len(names) :] + names[: number % len(names)]
        for name in order:
            before = _commands(redis_url)
            rate = await _round(servers[name], seconds)
            rates[name].append(rate)
            if name == "floodwall[redis]":
                checks[name].append((_commands(redis_url) - before) / (rate * seconds))
    bare = statistics.median(rates["bare"])
    return {
        name: {
            "messages_per_second": statistics.median(values),
            "ratio_to_bare": statistics.median(values) / bare,
            "rounds": values,
            **({"scripts_per_message": statistics.median(checks[name])} if name in checks else {}),
        }
        for name, values in rates.items()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="3 rounds of 1 s (default 5 of 3 s)")
    args = parser.parse_args()
    rounds, seconds = (3, 1.0) if args.quick else (5, 3.0)
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="floodwall-bench-ws-"))
    redis_server = RedisServer.start(workdir)
    servers: dict[str, UvicornServer] = {}
    try:
        for name in VARIANTS:
            env = {"BENCH_VARIANT": name, "BENCH_REDIS_URL": redis_server.url}
            servers[name] = UvicornServer(name, clean_env(env))
            servers[name].start()
        urls = {name: server.url for name, server in servers.items()}
        results = asyncio.run(_measure(urls, redis_server.url, rounds, seconds))
    finally:
        for server in servers.values():
            server.stop()
        redis_server.stop()
    print(f"websocket echo, {CLIENTS} clients, {rounds} rounds of {seconds:g} s")
    print(f"{'variant':<20}{'messages/s':>12}{'vs bare':>10}{'EVALSHA/msg':>13}")
    for name, row in results.items():
        scripts = row.get("scripts_per_message")
        shown = f"{scripts:.2f}" if scripts is not None else "-"
        print(
            f"{name:<20}{row['messages_per_second']:>12,.0f}"
            f"{row['ratio_to_bare']:>9.2f}x{shown:>13}"
        )
    out = ROOT / "benchmarks" / "results" / "websocket_messages.json"
    out.write_text(
        json.dumps(
            {"clients": CLIENTS, "rounds": rounds, "seconds": seconds, "results": results}, indent=2
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
