"""Each worker's open connections, so the kill switch reaches them.

A websocket or a streaming response outlives the check made when it opened. Every worker
keeps its open ones by subject, and sweeps them a few times a second against what the
kill switch says now — the same mirror and network blocks the checker reads, which the
change feed keeps current (and which keep holding while the store is down). A
connection the kill switch now refuses is closed with the reason of its refusal. The
sweep costs a dict lookup per open connection and nothing per HTTP request; with nothing
open, no sweep runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import Final, Protocol

from floodwall.core.clock import Clock
from floodwall.core.decision import CLOSE_REASONS, Outcome
from floodwall.core.identity import Identity
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.killswitch.networks import NetworkBlocks

__all__ = ["SWEEP_SECONDS", "Closable", "OpenConnections"]

logger = logging.getLogger("floodwall")

SWEEP_SECONDS: Final = 0.25
"""How often open connections are held against the kill switch: well within the second
a change has to reach them, at a dict lookup per connection."""


class Closable(Protocol):
    """An open connection: who holds it, from where, and how to end it."""

    identity: Identity
    reset_exempt: bool

    @property
    def client(self) -> str | None:
        """The client's address."""

    def close(self, reason: str) -> None:
        """End the connection for ``reason`` (a value of ``CLOSE_REASONS``); idempotent."""


class OpenConnections:
    """The websockets and started streams of one worker, by subject."""

    def __init__(
        self,
        mirror: KillSwitchMirror,
        networks: NetworkBlocks,
        *,
        clock: Clock,
        new_request_id: Callable[[], str],
        on_close: Callable[[str], None] | None = None,
    ) -> None:
        self.new_request_id = new_request_id
        """Names a connection that had no request id when it is closed (for its log line)."""
        self._mirror = mirror
        self._networks = networks
        self._clock = clock
        self._on_close = on_close
        self._open: set[Closable] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def __len__(self) -> int:
        return len(self._open)

    def add(self, connection: Closable) -> None:
        """Hold ``connection`` against the kill switch until ``discard``."""
        self._open.add(connection)
        if self._sweeper is None or self._sweeper.done():
            self._sweeper = asyncio.get_running_loop().create_task(self._sweep_while_open())

    def discard(self, connection: Closable) -> None:
        """Forget ``connection``: it has ended."""
        self._open.discard(connection)

    def refusal(self, connection: Closable) -> Outcome | None:
        """What the kill switch says now of ``connection``; ``None``: it may stay open."""
        client = connection.client
        if self._networks.any and client is not None and self._networks.match(client) is not None:
            return Outcome.NETWORK_BLOCKED
        now_ms = int(self._clock.wall() * 1000)
        refused = self._mirror.refusal(connection.identity, connection.reset_exempt, now_ms)
        if refused is Outcome.REVOKED and not connection.reset_exempt:
            # A password reset also revokes what was issued before it: the connection is
            # closed for the reset, the operator's action, when one is required.
            user = self._mirror.get(connection.identity.user_id)
            if user is not None and user.kill_switch.reset_required:
                return Outcome.RESET_REQUIRED
        return refused

    def sweep(self) -> int:
        """Close every open connection the kill switch now refuses; how many were closed."""
        closed = 0
        for connection in list(self._open):
            refused = self.refusal(connection)
            if refused is not None:
                self.close(connection, CLOSE_REASONS[refused])
                closed += 1
        return closed

    def close(self, connection: Closable, reason: str) -> None:
        """End ``connection`` for ``reason``, counted."""
        self._open.discard(connection)
        connection.close(reason)
        if self._on_close is not None:
            self._on_close(reason)

    async def stop(self) -> None:
        """Stop sweeping (the service stops); what is open stays open."""
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def _sweep_while_open(self) -> None:
        while self._open:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:
                # A sweep that failed must not end the sweeping: the next one may close.
                logger.exception("floodwall: a sweep of open connections failed")
