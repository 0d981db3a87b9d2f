"""The tarpit: a flooding subject's refusals are held back while the worker lags, and
only then; the answer itself is unchanged."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr, ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.core import rules
from floodwall.protection.shedding import Shedder
from floodwall.protection.tarpit import FLOOD_REFUSALS, HOLD_SECONDS, LAG_SECONDS, Tarpit
from floodwall.settings import settings_error
from harness import find_free_port

SECONDS = 0.05


class Clock:
    """Time the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tarpit(clock: Callable[[], float], **options: Any) -> Tarpit:
    return Tarpit(SECONDS, clock=clock, jitter=lambda: 0.5, **options)


async def lag(pit: Tarpit, clock: Clock, seconds: float = 2 * LAG_SECONDS) -> None:
    """A refusal while the loop takes ``seconds`` to come back to its probe."""
    pit.delay("someone")
    clock.now += seconds
    await asyncio.sleep(0)


def flood(pit: Tarpit, subject: str) -> float:
    """A subject refused FLOOD_REFUSALS times at once: the delay of the last refusal."""
    for _ in range(FLOOD_REFUSALS - 1):
        assert pit.delay(subject) == 0.0
    return pit.delay(subject)


async def quiet(clock: Clock, seconds: float) -> None:
    """Time passes with no lag: the loop comes back to a pending probe at once first."""
    await asyncio.sleep(0)
    clock.now += seconds


async def test_a_quiet_worker_answers_every_refusal_at_once() -> None:
    clock = Clock()
    pit = tarpit(clock)
    for _ in range(1000):
        assert pit.delay("flooder") == 0.0
        await asyncio.sleep(0)


async def test_a_subject_refused_while_the_loop_lags_is_held_back_until_it_stops() -> None:
    clock = Clock()
    pit = tarpit(clock)
    await lag(pit, clock)
    assert flood(pit, "flooder") == SECONDS
    # Refused a few times while the worker lags: not a flood.
    assert pit.delay("another") == 0.0
    # No longer lagging (the flood is held back): the flooder stays held back while it
    # keeps being refused, and others are answered at once.
    await quiet(clock, 2.0)
    for _ in range(5):
        assert pit.delay("flooder") == SECONDS
        assert pit.delay("another") == 0.0
        await quiet(clock, HOLD_SECONDS / 2)
    # Not refused for longer than HOLD_SECONDS: answered at once again.
    await quiet(clock, HOLD_SECONDS / 2 + 0.001)
    assert pit.delay("flooder") == 0.0
    await asyncio.sleep(0)
    assert pit.delay("flooder") == 0.0


async def test_a_short_stall_or_an_old_one_holds_nobody_back() -> None:
    clock = Clock()
    pit = tarpit(clock)
    await lag(pit, clock, LAG_SECONDS / 2)
    assert flood(pit, "a") == 0.0
    await asyncio.sleep(0)
    await lag(pit, clock)
    await quiet(clock, 1.5)
    assert flood(pit, "b") == 0.0
    # The probes go on: the next lag is seen.
    await asyncio.sleep(0)
    await lag(pit, clock)
    assert flood(pit, "c") == SECONDS


async def test_a_few_refusals_while_the_worker_lags_hold_nobody_back() -> None:
    clock = Clock()
    pit = tarpit(clock)
    await lag(pit, clock)
    # Refused more than FLOOD_REFUSALS times, but never that many within a second.
    for _ in range(3):
        for _ in range(FLOOD_REFUSALS // 2):
            assert pit.delay("client") == 0.0
        await lag(pit, clock, 1.1)


async def test_the_loops_real_lag_is_what_is_measured() -> None:
    pit = Tarpit(SECONDS, clock=time.perf_counter, jitter=lambda: 0.5)
    assert pit.delay("flooder") == 0.0
    # The loop cannot come back to the probe while this pass blocks it.
    time.sleep(2 * LAG_SECONDS)  # noqa: ASYNC251 - blocking the loop is the point
    await asyncio.sleep(0)
    assert flood(pit, "flooder") == SECONDS


async def test_held_refusals_and_remembered_subjects_are_bounded() -> None:
    clock = Clock()
    pit = tarpit(clock, max_held=2, max_subjects=3)
    await lag(pit, clock)
    assert flood(pit, "a") == SECONDS
    waits = [asyncio.create_task(pit.hold(SECONDS)) for _ in range(2)]
    await asyncio.sleep(0)
    assert pit.held == 2
    # Full: answered at once, and still remembered as held back.
    assert pit.delay("a") == 0.0
    await asyncio.gather(*waits)
    assert pit.held == 0
    for subject in ("b", "c", "d"):
        assert flood(pit, subject) == SECONDS
    # "a" was the oldest of four: forgotten once the lag is, the others still held back.
    await quiet(clock, 2.0)
    assert [pit.delay(s) for s in ("a", "b", "c", "d")] == [0.0, SECONDS, SECONDS, SECONDS]


async def test_jitter_spreads_holds_by_half_either_way() -> None:
    clock = Clock()
    draws = iter([0.0, 0.999])
    pit = Tarpit(1.0, clock=clock, jitter=lambda: next(draws))
    await lag(pit, clock)
    assert flood(pit, "a") == 0.5
    assert pit.delay("a") == pytest.approx(1.499)


# -- in the middleware ---------------------------------------------------------------------


def tarpitted(floodwall: Floodwall) -> float | None:
    return floodwall.metrics.registry.get_sample_value("floodwall_tarpitted_refusals_total")


async def hello(request: Request) -> Response:
    return PlainTextResponse("hello")


def app_with(floodwall: Floodwall, pit: Tarpit | None) -> Starlette:
    return Starlette(
        routes=[Route("/", hello)],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall, tarpit=pit)],
    )


@pytest.fixture
async def lagging() -> AsyncIterator[tuple[httpx.AsyncClient, Tarpit, Floodwall]]:
    """A worker whose loop comes back to every probe 10 ms late."""
    floodwall = Floodwall(FloodwallSettings(rate=0.1, burst=1, user_header="x-user"))
    pit = tarpit(itertools.count(0, 2 * LAG_SECONDS).__next__)
    transport = httpx.ASGITransport(app=app_with(floodwall, pit), client=("192.0.2.1", 1))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, pit, floodwall


async def test_a_held_back_refusal_is_the_same_answer_later(
    lagging: tuple[httpx.AsyncClient, Tarpit, Floodwall],
) -> None:
    http, pit, floodwall = lagging
    user = {"x-user": "flooder"}
    assert (await http.get("/", headers=user)).status_code == 200
    # Answered at once until the worker saw it flood: the first refusal's probe is the
    # first to find the loop lagging; from the next, FLOOD_REFUSALS make it a flood.
    for _ in range(FLOOD_REFUSALS):
        first = await http.get("/", headers=user)
        await asyncio.sleep(0)  # each probe finds the loop lagging
    assert tarpitted(floodwall) == 0
    later = asyncio.create_task(http.get("/", headers=user))
    for _ in range(100):
        if pit.held:
            break
        await asyncio.sleep(0)
    assert pit.held == 1
    assert not later.done()
    second = await later
    assert pit.held == 0
    for answer in (first, second):
        assert answer.status_code == 429
        assert answer.headers["retry-after"] == "10"
        assert answer.json()["type"] == "urn:floodwall:problem:quota-exceeded"
    assert tarpitted(floodwall) == 1
    # Another user is not held back: the tarpit only ever delays refusals.
    assert (await http.get("/", headers={"x-user": "alice"})).status_code == 200
    text, _ = floodwall.metrics.render()
    assert b"floodwall_tarpitted_refusals_total 1.0" in text


async def test_a_store_that_cannot_answer_is_nobodys_flood() -> None:
    # A port nothing listens on: every check fails, and closed mode refuses with 503.
    url = SecretStr(f"redis://127.0.0.1:{find_free_port()}/0")
    settings = FloodwallSettings(redis_url=url, user_header="x-user", fail_mode="closed")
    floodwall = Floodwall(settings)
    pit = tarpit(itertools.count(0, 2 * LAG_SECONDS).__next__)
    transport = httpx.ASGITransport(app=app_with(floodwall, pit))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            answers = []
            for _ in range(2 * FLOOD_REFUSALS):
                answers.append(await http.get("/", headers={"x-user": "u"}))
                await asyncio.sleep(0)  # the probe finds the loop lagging
    finally:
        await floodwall.stop()
    assert {a.status_code for a in answers} == {503}
    assert tarpitted(floodwall) == 0


async def test_a_shed_request_gives_its_concurrency_slot_back_before_it_is_held() -> None:
    settings = FloodwallSettings(user_header="x-user", concurrency=1, rate=1000, burst=1000)
    floodwall = Floodwall(settings)
    gate = asyncio.Event()

    async def slow(request: Request) -> Response:
        await gate.wait()
        return PlainTextResponse("done")

    loop = asyncio.get_running_loop()
    pit = Tarpit(0.2, clock=itertools.count(0, 2 * LAG_SECONDS).__next__, flood_refusals=1)
    app = Starlette(
        routes=[Route("/", slow)],
        middleware=[
            Middleware(
                FloodwallMiddleware,
                floodwall=floodwall,
                shedder=Shedder(1, max_wait=0.01, clock=loop.time),
                tarpit=pit,
            )
        ],
    )
    transport = httpx.ASGITransport(app=app)
    user = {"x-user": "u"}
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        hog = asyncio.create_task(http.get("/", headers={"x-user": "hog"}))
        for _ in range(100):
            if floodwall.checker._leases:
                break
            await asyncio.sleep(0)
        first = await http.get("/", headers=user)  # shed, and answered at once
        assert first.json()["type"] == "urn:floodwall:problem:overloaded"
        await asyncio.sleep(0)  # its probe finds the loop lagging
        held = asyncio.create_task(http.get("/", headers=user))
        for _ in range(200):  # after its wait for a slot (10 ms)
            if pit.held:
                break
            await asyncio.sleep(0.005)
        assert pit.held == 1
        gate.set()
        assert (await hog).status_code == 200
        await floodwall.checker.settle_releases()
        # The held refusal's slot is free already: u's one slot is there for this request.
        assert (await http.get("/", headers=user)).status_code == 200
        refused = await held
    assert refused.status_code == 503
    assert refused.json()["type"] == "urn:floodwall:problem:overloaded"
    await floodwall.stop()


def test_the_setting_turns_it_off_or_is_refused_in_one_line() -> None:
    off = FloodwallMiddleware(Starlette(), floodwall=Floodwall(FloodwallSettings(tarpit_seconds=0)))
    assert off._tarpit is None
    on = FloodwallMiddleware(Starlette(), floodwall=Floodwall(FloodwallSettings()))
    assert on._tarpit is not None
    for value in (-0.1, 10.5, "nan", "soon"):
        with pytest.raises(ValidationError) as caught:
            FloodwallSettings(tarpit_seconds=value)
        line = settings_error(caught.value)
        assert line.startswith("bad settings: FLOODWALL_TARPIT_SECONDS: ")
        if value != "soon":
            assert line.endswith(rules.TARPIT_SECONDS.message)
        # The same rule in Python.
        if not isinstance(value, str):
            with pytest.raises(rules.RuleError, match=rules.TARPIT_SECONDS.message):
                Tarpit(value, clock=time.perf_counter)
        assert "\n" not in line
        assert str(value) not in line
