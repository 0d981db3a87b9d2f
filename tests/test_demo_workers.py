"""``floodwall demo --workers 3`` as a real process: one scrape of ``/metrics`` adds up every
worker (prometheus-client's multi-process mode), whichever worker answers it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from demo_process import wait_until_serving
from prometheus_client.mmap_dict import MmapedDict

from harness import RedisServer, find_free_port, wait_until

pytestmark = pytest.mark.slow

ALLOWED = re.compile(r'^floodwall_decisions_total\{result="allowed"\} (\S+)$', re.MULTILINE)


def test_every_scrape_shows_the_totals_of_all_workers(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    port = find_free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    files = tmp_path / "prometheus"
    files.mkdir()
    environment["PROMETHEUS_MULTIPROC_DIR"] = str(files)
    # Every request allowed.
    environment.update(
        FLOODWALL_RATE="1000",
        FLOODWALL_BURST="1000",
        FLOODWALL_REDIS_URL=redis_server.url,
        FLOODWALL_KEY_PREFIX="workers-metrics",
    )
    log_path = tmp_path / "demo.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "floodwall.cli", "demo", "--port", str(port), "--workers", "3"],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(process, url, log_path)
            sent = 60
            for _ in range(sent):
                # A connection each, so the workers share the requests.
                assert httpx.get(url + "/api/hello", timeout=5).status_code == 200
            totals = []
            for _ in range(20):
                scrape = httpx.get(url + "/metrics", timeout=5)
                assert scrape.status_code == 200  # /metrics itself, no redirect
                match = ALLOWED.search(scrape.text)
                assert match is not None, scrape.text
                totals.append(float(match.group(1)))
        finally:
            process.terminate()
            process.wait(10)
    assert totals == [sent] * 20
    assert log_path.read_text().count("Started server process") == 3
    # The requests really were spread: more than one worker's file counts some.
    assert len(_allowed_by_worker(files)) > 1


def _allowed_by_worker(files: Path) -> dict[str, float]:
    counts = {}
    for path in files.glob("counter_*.db"):
        for key, value, _, _ in MmapedDict.read_all_values_from_file(str(path)):  # type: ignore[no-untyped-call]
            if '"floodwall_decisions_total"' in key and '"allowed"' in key and value:
                counts[path.name] = value
    return counts


def test_workers_must_be_a_small_whole_number() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floodwall.cli", "demo", "--workers", "0"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().endswith("--workers is a whole number from 1 to 64")


def test_workers_on_the_in_memory_store_are_refused_in_one_line() -> None:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    result = subprocess.run(
        [sys.executable, "-m", "floodwall.cli", "demo", "--workers", "3"],
        capture_output=True,
        text=True,
        check=False,
        env=environment,
        timeout=30,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "--workers 3 needs FLOODWALL_REDIS_URL" in lines[0]


WORKERS_APP = """
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings


async def hello(request):
    return PlainTextResponse("hello")


app = FloodwallMiddleware(
    Starlette(routes=[Route("/", hello)]), floodwall=Floodwall(FloodwallSettings())
)
"""

ONE_WORKERS_SHARE = "is one of 2 and PROMETHEUS_MULTIPROC_DIR is unset"


@pytest.mark.parametrize("multiprocess", [False, True], ids=["unset", "set"])
def test_several_workers_without_the_metrics_directory_say_so(
    tmp_path: Path, redis_server: RedisServer, multiprocess: bool
) -> None:
    (tmp_path / "workers_app.py").write_text(WORKERS_APP)
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    environment.pop("WEB_CONCURRENCY", None)
    environment["FLOODWALL_REDIS_URL"] = redis_server.url
    if multiprocess:
        files = tmp_path / "prometheus"
        files.mkdir()
        environment["PROMETHEUS_MULTIPROC_DIR"] = str(files)
    port = find_free_port()
    log_path = tmp_path / "uvicorn.log"
    command = [sys.executable, "-m", "uvicorn", "workers_app:app", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "--workers", "2"],
            cwd=tmp_path,
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"

            def both_started() -> bool:
                return log_path.read_text().count("Application startup complete") == 2

            wait_until(both_started, "both workers start", within=30, interval=0.1)
            assert httpx.get(url + "/", timeout=5).status_code == 200
        finally:
            process.terminate()
            process.wait(15)
    written = log_path.read_text()
    assert written.count(ONE_WORKERS_SHARE) == (0 if multiprocess else 2), written
