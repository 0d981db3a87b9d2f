"""``floodwall demo`` as a user runs it: a real process, no Redis, answering over HTTP."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from demo_process import demo_process


@pytest.fixture
def demo_url(tmp_path: Path) -> Iterator[str]:
    with demo_process(tmp_path) as url:
        yield url


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


def test_the_demo_believes_x_forwarded_for_only_from_trusted_proxies(demo_url: str) -> None:
    # No FLOODWALL_TRUSTED_PROXIES: every anonymous request is 127.0.0.1's, whatever it
    # claims to be forwarded for, so one client cannot mint itself fresh buckets.
    with httpx.Client(base_url=demo_url, timeout=5) as http:
        statuses = [
            http.get("/api/hello", headers={"x-forwarded-for": f"203.0.113.{n}"}).status_code
            for n in range(30)
        ]
    assert 429 in statuses


def test_the_demo_believes_its_trusted_proxy(tmp_path: Path) -> None:
    with (
        demo_process(tmp_path, FLOODWALL_TRUSTED_PROXIES="127.0.0.1") as url,
        httpx.Client(base_url=url, timeout=5) as http,
    ):
        statuses = [
            http.get("/api/hello", headers={"x-forwarded-for": f"203.0.113.{n}"}).status_code
            for n in range(30)
        ]
    assert statuses == [200] * 30
