"""What route limits add to a request: three route limits against the global limit alone.

Run from the repository root with the project's Python (``redis-server`` on ``PATH``)::

    python benchmarks/route_limits.py            # about 30 seconds
    python benchmarks/route_limits.py --quick    # about 10

The same app is called in-process (no HTTP server) with 32 concurrent callers and 200
users, through floodwall on a real Redis of its own: once with only the global per-user
limit, once with three route limits on the requested path as well (all in the same one
EVALSHA). The two variants alternate in rounds; the median of the rounds' µs per request
is reported, with the time Redis spent in each EVALSHA (``INFO commandstats``), and
written to ``benchmarks/results/route_limits.json``. Issue 14's target:
three route limits add at most 10 % to a request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import tempfile
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis as redis_client  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks._common import PATH, make_scopes, per_request_us  # noqa: E402
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings  # noqa: E402
from harness import RedisServer  # noqa: E402

USERS = 200
TARGET = 1.10
RESULTS = ROOT / "benchmarks" / "results" / "route_limits.json"


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def build(url: str, route_limits: dict[str, str], prefix: str) -> tuple[Floodwall, Any]:
    settings = FloodwallSettings(
        redis_url=url,
        user_header="x-user",
        rate=1_000_000,
        burst=1_000_000,
        key_prefix=prefix,
        redis_timeout=2,
    )
    floodwall = Floodwall(settings)
    app = FloodwallMiddleware(
        Starlette(routes=[Route(PATH, hello)]), floodwall=floodwall, route_limits=route_limits
    )
    return floodwall, app


async def main(quick: bool) -> int:
    rounds, requests = (5, 4_000) if quick else (11, 10_000)
    with (
        tempfile.TemporaryDirectory() as workdir,
        RedisServer.start(pathlib.Path(workdir)) as redis,
    ):
        # Never refused here (a user sends some hundreds of requests in a run): the windows
        # hold every request they count, as a route limit's would.
        limits = {
            f"GET {PATH}": "10000/minute",
            PATH: "10000/hour",
            "/{anything:path}": "5000/minute",
        }
        variants = {
            "global only": build(redis.url, {}, "bench-global"),
            "global + 3 route limits": build(redis.url, limits, "bench-routes"),
        }
        scopes = make_scopes(USERS)
        for floodwall, app in variants.values():
            await floodwall.start()
            await per_request_us(app, scopes, 2_000)  # connect, load the script, fill the caches
        samples: dict[str, list[float]] = {name: [] for name in variants}
        # Redis's side too: the time its one thread spends in each EVALSHA.
        in_redis: dict[str, list[float]] = {name: [] for name in variants}
        stats = redis_client.Redis.from_url(redis.url)
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                stats.config_resetstat()
                samples[name].append(await per_request_us(variants[name][1], scopes, requests))
                in_redis[name].append(
                    stats.info("commandstats")["cmdstat_evalsha"]["usec_per_call"]
                )
        stats.close()
        for floodwall, _ in variants.values():
            await floodwall.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    redis_medians = {name: statistics.median(values) for name, values in in_redis.items()}
    ratio = medians["global + 3 route limits"] / medians["global only"]
    for name, value in medians.items():
        print(
            f"{name:<26} {value:7.1f} µs per request; Redis busy {redis_medians[name]:5.1f} µs "
            f"per EVALSHA (medians of {rounds} rounds)"
        )
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(
        f"three route limits: {ratio:.3f} x the global limit alone (target <= {TARGET}): {verdict}"
    )
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "samples_us": samples,
                "median_us": medians,
                "redis_evalsha_us": redis_medians,
                "ratio": ratio,
                "target": TARGET,
            },
            indent=2,
        )
        + "\n"
    )
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
