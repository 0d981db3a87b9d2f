"""``floodwall demo`` as a user runs it: a real process, no Redis, answering over HTTP."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import find_free_port


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    port = find_free_port()
    log = (tmp_path / "demo.log").open("wb")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    process = subprocess.Popen(
        [sys.executable, "-m", "floodwall.cli", "demo", "--host", "127.0.0.1", "--port", str(port)],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                httpx.get(url + "/api/hello", timeout=1)
                break
            except httpx.TransportError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"the demo did not start:\n{(tmp_path / 'demo.log').read_text()}")
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(10)
        log.close()


def test_the_demo_logs_in_answers_and_limits(demo_url: str) -> None:
    with httpx.Client(base_url=demo_url, timeout=5) as http:
        login = http.post("/login", json={"user": "alice"})
        assert login.status_code == 200
        token = login.json()["access_token"]
        assert login.json()["token_type"] == "bearer"
        auth = {"authorization": f"Bearer {token}"}
        hello = http.get("/api/hello", headers=auth)
        assert hello.status_code == 200
        assert hello.json() == {"hello": "alice"}
        assert hello.headers["ratelimit-policy"] == '"user";q=10;w=1'
        statuses = [http.get("/api/hello", headers=auth).status_code for _ in range(30)]
        assert 429 in statuses
        limited = http.get("/api/hello", headers=auth)
        if limited.status_code == 429:
            assert limited.headers["content-type"] == "application/problem+json"
            assert int(limited.headers["retry-after"]) >= 1
        bad = http.post("/login", content=b"{not json")
        assert bad.status_code == 422
        assert bad.headers["content-type"] == "application/problem+json"
