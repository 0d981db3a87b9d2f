"""One clock for the whole service: ``Floodwall(clock=...)`` reaches every part that reads
time on this server, so an app's tests move time instead of sleeping."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity
from floodwall.core.clock import Clock
from floodwall.core.decision import Outcome


class MovedByHand:
    """A wall clock and a monotonic one that move together, by hand."""

    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def wall(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self.now - 1_700_000_000.0

    def clock(self) -> Clock:
        return Clock(wall=self.wall, monotonic=self.monotonic)


@pytest.fixture
def hand() -> MovedByHand:
    return MovedByHand()


async def test_the_default_in_memory_store_reads_the_services_clock(hand: MovedByHand) -> None:
    floodwall = Floodwall(FloodwallSettings(rate=1, burst=1), clock=hand.clock())
    try:
        alice = Identity("alice")
        assert (await floodwall.check(alice)).outcome is Outcome.ALLOWED
        assert (await floodwall.check(alice)).outcome is Outcome.LIMITED
        hand.now += 3600
        assert (await floodwall.check(alice)).outcome is Outcome.ALLOWED
    finally:
        await floodwall.stop()


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def refusal_lines() -> Iterator[Lines]:
    handler = Lines()
    logger = logging.getLogger("floodwall.requests")
    previous = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(previous)


async def ok(request: Request) -> PlainTextResponse:
    return PlainTextResponse("ok")


async def test_the_middlewares_refusal_log_reads_the_services_clock(
    hand: MovedByHand, refusal_lines: Lines
) -> None:
    settings = FloodwallSettings(user_header="x-user", rate=0.001, burst=1, tarpit_seconds=0)
    floodwall = Floodwall(settings, clock=hand.clock())
    app = FloodwallMiddleware(Starlette(routes=[Route("/", ok)]), floodwall=floodwall)
    mallory = {"x-user": "mallory"}
    try:
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t"
        ) as http:
            assert (await http.get("/", headers=mallory)).status_code == 200
            for _ in range(5):
                assert (await http.get("/", headers=mallory)).status_code == 429
            # The first refusal has its line; the next four are summed up in the next line.
            assert len(refusal_lines.records) == 1
            hand.now += 60
            assert (await http.get("/", headers=mallory)).status_code == 429
    finally:
        await floodwall.stop()
    assert len(refusal_lines.records) == 2
    assert refusal_lines.records[1].__dict__["fields"]["refusals_since_last_line"] == 5
