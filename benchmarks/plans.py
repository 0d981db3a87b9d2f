"""What plans add to a request: users on plans against the same users with none.

Run from the repository root with the project's Python (``redis-server`` on ``PATH``)::

    python benchmarks/plans.py            # about 30 seconds
    python benchmarks/plans.py --quick    # about 10

The same app is called in-process (no HTTP server) with 32 concurrent callers and 200
users, through floodwall on a real Redis of its own: once with no plans configured, once
with ``FLOODWALL_PLANS`` of three plans and each request naming one (a gateway's
``x-plan`` header). Every limit is huge, so nothing is refused. The two variants
alternate in rounds; the median of the rounds' µs per request is reported and written to
``benchmarks/results/plans.json``. Issue 26's target: no measurable cost (within the
rounds' own spread, and at most 3 %).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pathlib
import statistics
import sys
import tempfile
from collections.abc import MutableMapping
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

from benchmarks._common import PATH, make_scopes, per_request_us  # noqa: E402
from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings  # noqa: E402
from harness import RedisServer  # noqa: E402

USERS = 200
TARGET = 1.03
PLANS = "free=1000000,1000000;pro=1000000,1000000;team=1000000,1000000"
RESULTS = ROOT / "benchmarks" / "results" / "plans.json"


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


def build(url: str, prefix: str, plans: str) -> tuple[Floodwall, Any]:
    settings = FloodwallSettings(
        redis_url=url,
        user_header="x-user",
        plan_header="x-plan",
        plans=plans,
        rate=1_000_000,
        burst=1_000_000,
        key_prefix=prefix,
        redis_timeout=2,
    )
    floodwall = Floodwall(settings)
    app = FloodwallMiddleware(Starlette(routes=[Route(PATH, hello)]), floodwall=floodwall)
    return floodwall, app


def with_plans(scopes: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    names = [b"free", b"pro", b"team"]
    return [
        {**scope, "headers": [*scope["headers"], (b"x-plan", names[n % 3])]}
        for n, scope in enumerate(scopes)
    ]


async def main(quick: bool) -> int:
    rounds, requests = (5, 4_000) if quick else (11, 10_000)
    plain = make_scopes(USERS)
    with (
        tempfile.TemporaryDirectory() as workdir,
        RedisServer.start(pathlib.Path(workdir)) as redis,
    ):
        variants = {
            "no plans": (*build(redis.url, "bench-no-plans", ""), plain),
            "three plans": (*build(redis.url, "bench-plans", PLANS), with_plans(plain)),
        }
        for floodwall, app, scopes in variants.values():
            await floodwall.start()
            await per_request_us(app, scopes, 2_000)  # connect, load the script, fill the caches
        samples: dict[str, list[float]] = {name: [] for name in variants}
        for round_number in range(rounds):
            order = list(variants) if round_number % 2 == 0 else list(reversed(variants))
            for name in order:
                _, app, scopes = variants[name]
                samples[name].append(await per_request_us(app, scopes, requests))
        for floodwall, _, _ in variants.values():
            await floodwall.stop()
    medians = {name: statistics.median(values) for name, values in samples.items()}
    ratio = medians["three plans"] / medians["no plans"]
    for name, value in medians.items():
        spread = max(samples[name]) - min(samples[name])
        print(f"{name:<12} {value:7.1f} µs per request (median of {rounds}; spread {spread:.1f})")
    verdict = "PASS" if ratio <= TARGET else "MISS"
    print(f"plans: {ratio:.3f} x no plans (target <= {TARGET}): {verdict}")
    RESULTS.parent.mkdir(exist_ok=True)
    report = {"samples_us": samples, "median_us": medians, "ratio": ratio, "target": TARGET}
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    sys.exit(asyncio.run(main(parser.parse_args().quick)))
