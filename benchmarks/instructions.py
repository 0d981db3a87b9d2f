"""Instructions per request, counted by callgrind: the hot path's cost without the noise.

Timings on this shared 2-core machine move by a few tenths of a µs from run to run, as much
as one change to the hot path costs or saves; instructions do not. Each variant's
in-process app (``apps.py``) runs under ``valgrind --tool=callgrind`` twice, after the
same warm-up, with N requests and with none; the difference over N is its instructions
per request, and what floodwall adds is that over ``bare``. ``floodwall[redis]`` talks to
a Redis of its own, whose instructions are not counted. Run from the repository root::

    python benchmarks/instructions.py                      # this tree, about 5 minutes
    python benchmarks/instructions.py --tree /tmp/old      # another checkout of the project

Needs valgrind (``apt install valgrind``); not part of the test command.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parent.parent
VARIANTS = ("bare", "floodwall[memory]", "floodwall[redis]")
WARM_UP = 3_000
USERS = 1_000


async def serve(variant: str, url: str, requests: int) -> None:
    """In the child, with the measured tree first on the path: the requests themselves."""
    from benchmarks import apps
    from benchmarks._common import discard, make_scopes, receive

    scopes = make_scopes(USERS)
    built = apps.build(variant, url if variant == "floodwall[redis]" else None)
    await built.start()
    for n in range(WARM_UP + requests):
        await built.app(dict(scopes[n % USERS]), receive, discard)
    await built.close()


def counted(tree: pathlib.Path, variant: str, url: str, requests: int) -> int:
    """Instructions callgrind counts for a whole child process."""
    env = dict(os.environ, PYTHONPATH=f"{tree / 'src'}{os.pathsep}{tree}", PYTHONHASHSEED="0")
    env = {k: v for k, v in env.items() if not k.startswith("FLOODWALL_")}
    child = [sys.executable, __file__, "--child", variant, url, str(requests)]
    done = subprocess.run(
        ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *child],
        env=env,
        cwd=tree,
        capture_output=True,
        text=True,
        check=False,
    )
    found = re.search(r"Collected : (\d+)", done.stderr)
    if done.returncode != 0 or found is None:
        raise SystemExit(f"{variant}: the child failed:\n{done.stderr[-2000:]}")
    return int(found.group(1))


def main(tree: pathlib.Path, requests: int) -> int:
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (apt install valgrind)", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from harness import RedisServer

    per_request: dict[str, float] = {}
    with (
        tempfile.TemporaryDirectory() as workdir,
        RedisServer.start(pathlib.Path(workdir)) as redis,
    ):
        for variant in VARIANTS:
            with_requests = counted(tree, variant, redis.url, requests)
            without = counted(tree, variant, redis.url, 0)
            per_request[variant] = (with_requests - without) / requests
    print(f"instructions per request, {tree} ({requests} requests, callgrind):")
    for variant, count in per_request.items():
        added = "" if variant == "bare" else f"  (+{count - per_request['bare']:,.0f} over bare)"
        print(f"  {variant:<18} {count:>9,.0f}{added}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        variant, url, requests = sys.argv[2], sys.argv[3], int(sys.argv[4])
        sys.path.insert(0, os.getcwd())
        asyncio.run(serve(variant, url, requests))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=pathlib.Path, default=ROOT, help="checkout to measure")
    parser.add_argument("--requests", type=int, default=5_000)
    options = parser.parse_args()
    sys.exit(main(options.tree.resolve(), options.requests))
