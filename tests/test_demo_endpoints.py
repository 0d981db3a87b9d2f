"""The demo's incident endpoints, landing page and metrics route, driven in-process."""

from __future__ import annotations

import asyncio
import html
import subprocess
import sys

import httpx
import pytest
from test_jwks import AUDIENCE, ISSUER, Provider, rsa_key

from floodwall import FloodwallSettings
from floodwall.core.errors import ConfigurationError
from floodwall.demo import LOGIN_OFF, create_app, demo_pool_size


def _client(**options: object) -> httpx.AsyncClient:
    settings = FloodwallSettings(rate=1000, burst=1000)
    app = create_app(settings, **options)  # type: ignore[arg-type]
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app, client=("127.0.0.1", 123)),
        base_url="http://demo.test",
    )


async def test_the_landing_page_explains_the_demo() -> None:
    async with _client() as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    text = page.text
    assert text.count("curl ") == 3
    assert "http://demo.test/login" in text
    assert 'href="http://demo.test/admin/openapi.json"' in text
    assert 'href="http://demo.test/metrics"' in text


async def test_metrics_are_served_at_metrics_without_a_redirect() -> None:
    async with _client() as http:
        await http.get("/api/hello")
        scrape = await http.get("/metrics")
    assert scrape.status_code == 200
    assert scrape.headers["content-type"].startswith("text/plain")
    assert 'floodwall_decisions_total{result="allowed"} 1.0' in scrape.text


async def test_slow_waits_the_milliseconds_asked() -> None:
    async with _client() as http:
        started = asyncio.get_running_loop().time()
        answer = await http.get("/api/slow", params={"ms": 50})
        waited = asyncio.get_running_loop().time() - started
    assert answer.status_code == 200
    assert answer.json() == {"waited_ms": 50}
    assert waited >= 0.05


@pytest.mark.parametrize("ms", ["10001", "-1", "1.5", "abc", "", "\uff11"])
async def test_milliseconds_out_of_bounds_are_refused(ms: str) -> None:
    async with _client() as http:
        for path in ("/api/slow", "/api/work"):
            answer = await http.get(path, params={"ms": ms})
            assert answer.status_code == 422
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.json()["detail"] == (
                "ms is a whole number of milliseconds from 0 to 10000."
            )


async def test_work_holds_a_pool_connection_and_times_out_with_503() -> None:
    async with _client(pool_size=2, pool_timeout=0.1) as http:
        # Two requests hold the pool's two connections; a third waits past the timeout.
        holders = [asyncio.create_task(http.get("/api/work", params={"ms": 500})) for _ in "ab"]
        await asyncio.sleep(0.05)
        starved = await http.get("/api/work")
        held = await asyncio.gather(*holders)
        after = await http.get("/api/work")
    assert [answer.json() for answer in held] == [{"held_ms": 500, "pool": 2}] * 2
    assert starved.status_code == 503
    assert starved.headers["retry-after"] == "1"
    assert starved.json()["detail"] == (
        "No database connection was free within 0.1 s (a pool of 2)."
    )
    assert after.json() == {"held_ms": 20, "pool": 2}


def test_the_pool_size_is_read_from_the_environment() -> None:
    assert demo_pool_size({}) == 8
    assert demo_pool_size({"FLOODWALL_DEMO_POOL": " 1000 "}) == 1000
    for bad in ("0", "1001", "-3", "eight", "2.5", ""):
        with pytest.raises(ConfigurationError) as caught:
            demo_pool_size({"FLOODWALL_DEMO_POOL": bad})
        assert str(caught.value) == (
            "FLOODWALL_DEMO_POOL: the demo's database pool is a whole number of connections "
            "from 1 to 1000"
        )


def test_a_bad_pool_size_is_one_line_at_start() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "floodwall.cli", "demo", "--port", "1"],
        env={"FLOODWALL_DEMO_POOL": "lots", "PATH": ""},
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr == (
        "floodwall: error: bad settings: FLOODWALL_DEMO_POOL: the demo's database pool is a "
        "whole number of connections from 1 to 1000\n"
    )


async def test_with_only_an_identity_providers_algorithms_the_demo_serves_its_tokens() -> None:
    # FLOODWALL_JWT_ALGORITHMS=RS256,ES256 names no HMAC algorithm: the demo adds no secret
    # of its own (its middleware would refuse one), says /login is off, and greets the
    # identity provider's users.
    key = rsa_key("demo-rsa")
    provider = Provider([key])
    provider.serve()
    try:
        settings = FloodwallSettings(
            rate=1000,
            burst=1000,
            jwt_jwks_url=provider.url,
            jwt_algorithms=["RS256", "ES256"],
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
        )
        app = create_app(settings)
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
        async with httpx.AsyncClient(transport=transport, base_url="http://demo.test") as http:
            login = await http.post("/login", json={"user": "alice"})
            page = await http.get("/")
            bearer = {"authorization": f"Bearer {key.token('carol')}"}
            # The first token starts the key fetch; until the keys arrive it names no one.
            for _ in range(500):
                hello = await http.get("/api/hello", headers=bearer)
                if hello.status_code != 401:
                    break
                await asyncio.sleep(0.01)
    finally:
        provider.stop()
    assert login.status_code == 404
    assert login.json()["detail"] == LOGIN_OFF
    assert html.escape(LOGIN_OFF) in page.text
    assert hello.status_code == 200
    assert hello.json() == {"hello": "carol"}
