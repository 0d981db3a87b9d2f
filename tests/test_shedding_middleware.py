"""Load shedding in the middleware: a real Starlette app whose handlers wait on gates the
test opens, driven over httpx's ASGI transport."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.testclient import TestClient
from starlette.websockets import WebSocket, WebSocketDisconnect

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.observe.metrics import RESULTS
from floodwall.protection.shedding import Shedder

ROOMY: dict[str, Any] = {"rate": 1000, "burst": 1000, "user_header": "x-user"}


class Gates:
    """Each request to /work waits until the test opens its gate."""

    def __init__(self) -> None:
        self.entered: asyncio.Queue[asyncio.Event] = asyncio.Queue()

    async def work(self, request: Request) -> Response:
        if request.query_params.get("fail"):
            raise RuntimeError("the app failed")
        gate = asyncio.Event()
        await self.entered.put(gate)
        await gate.wait()
        return JSONResponse({"user": request.headers.get("x-user")})

    async def next_gate(self) -> asyncio.Event:
        return await asyncio.wait_for(self.entered.get(), 5)


def app_with(floodwall: Floodwall, gates: Gates, **options: Any) -> Starlette:
    async def websocket(socket: WebSocket) -> None:
        await socket.accept()
        await socket.receive_text()
        await socket.close()

    return Starlette(
        routes=[
            Route("/work", gates.work),
            Route("/pay", gates.work),
            WebSocketRoute("/ws", websocket),
        ],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall, **options)],
    )


@pytest.fixture
def gates() -> Gates:
    return Gates()


@pytest.fixture
async def client(gates: Gates) -> AsyncIterator[tuple[httpx.AsyncClient, Shedder, Floodwall]]:
    floodwall = Floodwall(FloodwallSettings(**ROOMY))
    shedder = Shedder(4, max_wait=5.0, critical_paths=True, clock=asyncio.get_running_loop().time)
    app = app_with(floodwall, gates, shedder=shedder, critical_paths=["/pay"])
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
        yield http, shedder, floodwall


def get(http: httpx.AsyncClient, user: str, path: str = "/work") -> asyncio.Task[httpx.Response]:
    return asyncio.create_task(http.get(path, headers={"x-user": user}))


async def until(condition: Any) -> None:
    for _ in range(1000):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


async def test_a_hog_is_refused_while_a_subject_under_its_share_is_served(
    client: tuple[httpx.AsyncClient, Shedder, Floodwall], gates: Gates
) -> None:
    http, shedder, floodwall = client
    # Three regular slots (one of four is reserved for /pay): one subject holds at most
    # one of them.
    hog = get(http, "hog")
    hog_gate = await gates.next_gate()
    alice = get(http, "alice")
    alice_gate = await gates.next_gate()
    refused = await http.get("/work", headers={"x-user": "hog"})
    assert refused.status_code == 503
    assert refused.headers["content-type"] == "application/problem+json"
    assert refused.headers["retry-after"] == "1"
    assert refused.json()["type"] == "urn:floodwall:problem:overloaded"
    assert "x-request-id" in refused.headers
    carol = get(http, "carol")
    carol_gate = await gates.next_gate()
    # Bob holds nothing: within his share he waits for the next slot, which the hog cannot
    # take from him.
    bob = get(http, "bob")
    await until(lambda: len(shedder._waiters) == 1)
    assert (await http.get("/work", headers={"x-user": "hog"})).status_code == 503
    hog_gate.set()
    assert (await hog).status_code == 200
    bob_gate = await gates.next_gate()
    for gate in (bob_gate, alice_gate, carol_gate):
        gate.set()
    assert [(await task).status_code for task in (bob, alice, carol)] == [200, 200, 200]
    assert shedder.in_flight == 0
    assert floodwall.metrics.hot.results[RESULTS.index("overloaded")] == 2


async def test_critical_paths_are_served_while_regular_ones_are_shed(
    client: tuple[httpx.AsyncClient, Shedder, Floodwall], gates: Gates
) -> None:
    http, shedder, _ = client
    held = [get(http, user) for user in ("a", "b", "c")]
    opened = [await gates.next_gate() for _ in held]
    shedder._max_wait = 0.01
    assert (await http.get("/work", headers={"x-user": "d"})).status_code == 503
    pay = get(http, "d", "/pay")
    pay_gate = await gates.next_gate()
    pay_gate.set()
    assert (await pay).status_code == 200
    for gate in opened:
        gate.set()
    assert {(await task).status_code for task in held} == {200}
    assert shedder.in_flight == 0


async def test_slots_come_back_when_the_app_raises(
    client: tuple[httpx.AsyncClient, Shedder, Floodwall],
) -> None:
    http, shedder, _ = client
    for _ in range(6):
        with pytest.raises(RuntimeError, match="the app failed"):
            await http.get("/work?fail=1", headers={"x-user": "alice"})
    assert shedder.in_flight == 0
    assert shedder.held((False, "alice")) == 0


async def test_slots_come_back_when_the_client_goes_away(
    client: tuple[httpx.AsyncClient, Shedder, Floodwall], gates: Gates
) -> None:
    http, shedder, _ = client
    held = [get(http, user) for user in ("a", "b", "c")]
    for _ in held:
        await gates.next_gate()
    waiting = get(http, "d")
    await until(lambda: len(shedder._waiters) == 1)
    assert shedder.in_flight == 3
    for task in [*held, waiting]:
        task.cancel()
    results = await asyncio.gather(*held, waiting, return_exceptions=True)
    assert all(isinstance(result, asyncio.CancelledError) for result in results)
    assert shedder.in_flight == 0
    assert shedder._waiters == []


def test_a_websocket_holds_a_slot_while_open() -> None:
    floodwall = Floodwall(FloodwallSettings(**ROOMY, capacity=2))
    app = app_with(floodwall, Gates())
    with TestClient(app) as test_client:
        shedder = _shedder_of(app)
        with test_client.websocket_connect("/ws", headers={"x-user": "alice"}) as socket:
            assert shedder.in_flight == 1
            socket.send_text("bye")
        assert shedder.in_flight == 0


def test_settings_turn_shedding_on_and_report_the_limit() -> None:
    off = Floodwall(FloodwallSettings(**ROOMY))
    fixed = Floodwall(FloodwallSettings(**ROOMY, capacity=7))
    auto = Floodwall(FloodwallSettings(**ROOMY, capacity="auto", critical_paths=["/pay"]))
    assert FloodwallMiddleware(_noop, floodwall=off)._shedder is None
    assert "floodwall_capacity_limit" not in off.metrics.render()[0].decode()
    FloodwallMiddleware(_noop, floodwall=fixed)
    assert "floodwall_capacity_limit 7.0" in fixed.metrics.render()[0].decode()
    shedder = FloodwallMiddleware(_noop, floodwall=auto)._shedder
    assert shedder is not None
    assert shedder.usable(critical=False) < shedder.limit
    assert f"floodwall_capacity_limit {shedder.limit}.0" in auto.metrics.render()[0].decode()


async def _noop(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("never called")


def _shedder_of(app: Starlette) -> Shedder:
    layer: Any = app.middleware_stack
    while not isinstance(layer, FloodwallMiddleware):
        layer = layer.app
    assert layer._shedder is not None
    return layer._shedder


async def test_genuine_users_are_served_while_an_anonymous_hog_holds_slow_requests(
    gates: Gates,
) -> None:
    # Eight slots; the anonymous client comes to a worker that has seen nobody else and
    # sends ten slow requests at once.
    floodwall = Floodwall(FloodwallSettings(**ROOMY))
    shedder = Shedder(8, max_wait=0.05, clock=asyncio.get_running_loop().time)
    app = app_with(floodwall, gates, shedder=shedder)
    hog_transport = httpx.ASGITransport(app=app, client=("192.0.2.66", 40000))
    transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 40000))
    async with (
        httpx.AsyncClient(transport=hog_transport, base_url="http://testserver") as hog_http,
        httpx.AsyncClient(transport=transport, base_url="http://testserver") as http,
    ):
        hog = [asyncio.create_task(hog_http.get("/work")) for _ in range(10)]
        try:
            await settled(lambda: sum(task.done() for task in hog) + shedder.in_flight == 10)
            # Whatever it saw before, it holds at most half the worker; the rest is refused.
            assert shedder.in_flight == 4
            assert {(await task).status_code for task in hog if task.done()} == {503}
            users = [get(http, f"user-{n}") for n in range(4)]
            await settled(lambda: gates.entered.qsize() == 8)
            open_all(gates)
            assert [(await task).status_code for task in users] == [200] * 4
            assert [(await task).status_code for task in hog].count(200) == 4
        finally:
            open_all(gates)
    assert shedder.in_flight == 0


async def test_genuine_users_are_served_while_an_anonymous_hog_holds_websockets(
    gates: Gates,
) -> None:
    floodwall = Floodwall(FloodwallSettings(**ROOMY, capacity=8))
    app = app_with(floodwall, gates)
    sockets = [await _open_websocket(app, ("192.0.2.66", 40000 + n)) for n in range(8)]
    try:
        shedder = _shedder_of(app)
        answers = [sent[0]["type"] for sent, _ in sockets]
        # Whatever it saw before, it holds at most half the worker; the rest is refused.
        assert answers.count("websocket.accept") == 4
        assert shedder.in_flight == 4
        transport = httpx.ASGITransport(app=app, client=("192.0.2.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            users = [get(http, f"user-{n}") for n in range(4)]
            try:
                await settled(lambda: gates.entered.qsize() == 4)
            finally:
                open_all(gates)
            assert [(await task).status_code for task in users] == [200] * 4
    finally:
        for _, close in sockets:
            await close()
    assert shedder.in_flight == 0


async def settled(condition: Any) -> None:
    # Waits that end on a timer (a refusal after ``max_wait``) take real time.
    for _ in range(500):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition never held")


def open_all(gates: Gates) -> None:
    while not gates.entered.empty():
        gates.entered.get_nowait().set()


async def _open_websocket(
    app: Starlette, client: tuple[str, int]
) -> tuple[list[dict[str, Any]], Any]:
    # A websocket driven through the app's ASGI interface: open until ``close`` is awaited.
    sent: list[dict[str, Any]] = []
    inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    scope = {
        "type": "websocket",
        "path": "/ws",
        "raw_path": b"/ws",
        "query_string": b"",
        "headers": [],
        "client": client,
        "subprotocols": [],
    }

    async def send(message: Any) -> None:
        sent.append(message)

    task = asyncio.create_task(app(scope, inbox.get, send))
    await until(lambda: bool(sent))

    async def close() -> None:
        await inbox.put({"type": "websocket.disconnect", "code": 1000})
        # The app's socket was waiting for a message: it hears the client leave.
        with contextlib.suppress(WebSocketDisconnect):
            await task

    return sent, close
