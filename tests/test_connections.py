"""Open connections in one process: what a websocket message costs, what ``close`` mode
does, the settings' bounds, and the sweep that needs no store (it reads each worker's
mirror, which keeps holding while Redis is down). Across processes and on a real Redis:
``test_open_connections.py``."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.testclient import TestClient

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, Identity, MemoryStore
from floodwall.connections.registry import OpenConnections
from floodwall.core.clock import Clock
from floodwall.core.errors import ConfigurationError
from floodwall.demo import echo
from floodwall.identity.scope import HeaderIdentity


def _echo_app(floodwall: Floodwall) -> Starlette:
    app = Starlette(routes=[WebSocketRoute("/ws", echo)])
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall, identify=HeaderIdentity("x-user"))
    return app


def _floodwall(**settings: Any) -> Floodwall:
    # A bucket that does not refill within a test: every token is counted.
    return Floodwall(FloodwallSettings(rate=0.001, burst=10, **settings), store=MemoryStore())


def _echoed_until_closed(floodwall: Floodwall, messages: int) -> tuple[int, int | None, str]:
    """How many messages were echoed before the socket closed, and its close code and reason."""
    echoed = 0
    with (
        TestClient(_echo_app(floodwall)) as client,
        client.websocket_connect("/ws", headers={"x-user": "alice"}) as websocket,
    ):
        for number in range(messages):
            websocket.send_text(str(number))
            reply = websocket.receive()
            if reply["type"] == "websocket.close":
                return echoed, reply.get("code"), reply.get("reason", "")
            echoed += 1
    return echoed, None, ""


@pytest.mark.parametrize(("cost", "echoed"), [(1, 9), (3, 3), (10, 0)])
def test_a_message_costs_its_tokens_from_the_bucket_of_the_connect(cost: int, echoed: int) -> None:
    # The connect took one token of ten; each message takes `cost`.
    floodwall = _floodwall(websocket_message_cost=cost, websocket_over_limit="close")
    assert _echoed_until_closed(floodwall, 20) == (echoed, 1008, "rate-limited")


def test_a_message_cost_of_zero_counts_no_message() -> None:
    floodwall = _floodwall(websocket_message_cost=0, websocket_over_limit="close")
    assert _echoed_until_closed(floodwall, 30) == (30, None, "")


def test_a_closed_socket_is_counted_by_reason() -> None:
    floodwall = _floodwall(websocket_over_limit="close")
    _echoed_until_closed(floodwall, 20)
    sample = floodwall.metrics.registry.get_sample_value(
        "floodwall_connections_closed_total", {"reason": "rate-limited"}
    )
    assert sample == 1
    untouched = floodwall.metrics.registry.get_sample_value(
        "floodwall_connections_closed_total", {"reason": "account-blocked"}
    )
    assert untouched == 0


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("websocket_message_cost", -1, "FLOODWALL_WEBSOCKET_MESSAGE_COST"),
        ("websocket_message_cost", 1001, "FLOODWALL_WEBSOCKET_MESSAGE_COST"),
        ("websocket_over_limit", "drop", "websocket_over_limit"),
    ],
)
def test_the_websocket_settings_are_bounded(variable: str, value: object, message: str) -> None:
    settings: Any = FloodwallSettings
    with pytest.raises((ConfigurationError, ValueError)) as refused:
        settings(**{variable: value})
    assert message in str(refused.value)


class _Connection:
    """An open connection as the registry sees one, recording how it was closed."""

    def __init__(self, user: str, client: str = "192.0.2.1", *, issued_at: float = 0.0) -> None:
        self.identity = Identity(user, issued_at=issued_at)
        self.reset_exempt = False
        self._client = client
        self.closed: list[str] = []

    @property
    def client(self) -> str | None:
        return self._client

    def close(self, reason: str) -> None:
        self.closed.append(reason)


async def test_the_sweep_reads_the_mirror_alone_and_lifting_closes_nothing() -> None:
    store = MemoryStore()
    floodwall = Floodwall(FloodwallSettings(), store=store)
    await floodwall.start()
    try:
        closes: list[str] = []
        now = [time.time()]
        registry = OpenConnections(
            floodwall.mirror,
            floodwall.networks,
            clock=Clock(wall=lambda: now[0]),
            new_request_id=lambda: "id",
            on_close=closes.append,
        )
        mallory, bob = _Connection("mallory"), _Connection("bob")
        registry.add(mallory)
        registry.add(bob)
        await floodwall.block("mallory", reason="flooding", ttl_seconds=60)
        await floodwall.unblock("bob")
        await floodwall.resync()
        # The store is gone: the mirror still knows, and the sweep asks nothing else.
        await store.close()
        assert registry.sweep() == 1
        assert mallory.closed == ["account-blocked"]
        assert bob.closed == []
        assert closes == ["account-blocked"]
        assert len(registry) == 1
        # A block that has run out closes nothing.
        carol = _Connection("carol")
        registry.add(carol)
        floodwall.mirror.update("carol", await _blocked_for(floodwall, "carol", 60))
        now[0] += 120
        assert registry.sweep() == 0
        await registry.stop()
    finally:
        await floodwall.stop()


async def _blocked_for(floodwall: Floodwall, user: str, seconds: float) -> Any:
    await floodwall.block(user, reason="cool down", ttl_seconds=seconds)
    return await floodwall.store.read_user(user)


def test_a_reset_closes_for_the_reset_not_for_the_revocation_it_brings() -> None:
    async def run() -> list[str]:
        floodwall = Floodwall(FloodwallSettings(), store=MemoryStore())
        await floodwall.start()
        try:
            registry = OpenConnections(
                floodwall.mirror,
                floodwall.networks,
                clock=floodwall.clock,
                new_request_id=lambda: "id",
            )
            connection = _Connection("alice", issued_at=1.0)
            registry.add(connection)
            await floodwall.require_password_reset("alice")
            await floodwall.resync()
            registry.sweep()
            await registry.stop()
            return connection.closed
        finally:
            await floodwall.stop()

    assert asyncio.run(run()) == ["password-reset-required"]
