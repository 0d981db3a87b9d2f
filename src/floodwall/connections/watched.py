"""Open connections as the middleware hands them to the app: a websocket whose every
message is a request, and an HTTP response that, once it streams, the kill switch can end.

Each wraps the server's ``receive`` and ``send``. A close the registry asks for is sent
under the connection's lock, so it never interleaves with a message the app is sending;
after it, the app's sends are dropped, as a server drops them once a client has gone,
and the app learns of the end from ``receive`` (``websocket.disconnect``; for a stream,
the server's ``http.disconnect`` once the response is complete).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Final, Literal

from floodwall.connections.registry import OpenConnections
from floodwall.core.decision import CLOSE_REASONS, Decision, Outcome
from floodwall.core.identity import Identity
from floodwall.core.ids import held
from floodwall.core.types import Message, Receive, Scope, Send
from floodwall.observe.request_log import request_logger

__all__ = ["OverLimit", "WatchedResponse", "WatchedWebSocket"]

OverLimit = Literal["throttle", "close"]

POLICY_VIOLATION: Final = 1008
"""The websocket close code of every close floodwall makes (RFC 6455 7.4.1)."""

_UNAVAILABLE_WAIT: Final = 1.0
"""How long a message waits before it is checked again while the store refuses to answer
(``FLOODWALL_FAIL_MODE=closed``): nothing is lost, and the store is not hammered."""

Check = Callable[..., Awaitable[Decision]]


class _Watched:
    """What both kinds share: who holds the connection, its lock, its close."""

    __slots__ = (
        "_closed",
        "_ending",
        "_lock",
        "_registry",
        "_send",
        "identity",
        "request_id",
        "reset_exempt",
        "scope",
    )
    kind: str

    def __init__(
        self,
        scope: Scope,
        send: Send,
        registry: OpenConnections,
        identity: Identity,
        reset_exempt: bool,
        request_id: str | None,
    ) -> None:
        # Positional and few: an HTTP response is wrapped on every request.
        self.scope = scope
        self._send = send
        self._registry = registry
        self.identity = identity
        self.reset_exempt = reset_exempt
        self.request_id = request_id
        self._closed: str | None = None
        self._lock: asyncio.Lock | None = None
        self._ending: asyncio.Task[None] | None = None

    @property
    def client(self) -> str | None:
        """The client's address, as the network blocks match it."""
        client = self.scope.get("client")
        return str(client[0]) if client else None

    def close(self, reason: str) -> None:
        """End the connection for ``reason``; the app's later sends are dropped."""
        if self._closed is not None:
            return
        self._closed = reason
        if self.request_id is None:
            self.request_id = self._registry.new_request_id()
        _log_close(self, reason)
        self._ending = task = asyncio.get_running_loop().create_task(self._end(reason))
        _CLOSING.add(task)
        task.add_done_callback(_CLOSING.discard)

    async def _end(self, reason: str) -> None:
        async with self._locked():
            # The client may have gone first: the server then refuses the message.
            with contextlib.suppress(Exception):
                await self._send(self._final_message(reason))

    def _locked(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def _final_message(self, reason: str) -> Message:
        raise NotImplementedError


_CLOSING: set[asyncio.Task[None]] = set()
"""Closes being sent, held so none is collected before it is done."""


class WatchedWebSocket(_Watched):
    """A websocket: each message the client sends is checked against its user's limit."""

    __slots__ = ("_check", "_closing", "_cost", "_enforces", "_over_limit", "_receive", "_release")
    kind = "websocket"

    def __init__(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        registry: OpenConnections,
        identity: Identity,
        reset_exempt: bool,
        request_id: str | None,
        *,
        check: Check,
        enforces: Callable[[Decision], bool],
        release: Callable[[Decision], None],
        cost: int,
        over_limit: OverLimit,
    ) -> None:
        super().__init__(scope, send, registry, identity, reset_exempt, request_id)
        self._receive = receive
        self._check = check
        self._enforces = enforces
        self._release = release
        self._cost = cost
        self._over_limit = over_limit
        self._closing = asyncio.Event()

    async def receive(self) -> Message:
        """The next message for the app, once its user's limit lets it through."""
        if self._closed is not None:
            return await self._disconnect()
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive" and self._cost:
            return await self._admit(message)
        if kind == "websocket.disconnect":
            self._registry.discard(self)
        return message

    async def send(self, message: Message) -> None:
        """The app's message to the client; dropped once floodwall closed the socket."""
        async with self._locked():
            if self._closed is not None:
                return
            kind = message["type"]
            if kind == "websocket.accept":
                self._registry.add(self)
            elif kind == "websocket.close":
                self._registry.discard(self)
            await self._send(message)

    async def _admit(self, message: Message) -> Message:
        # The server reads nothing while a message waits here: a flooding client is held
        # to its limit by TCP's own backpressure, and no message is lost.
        while True:
            decision = await self._check(self.identity, self._cost, reset_exempt=self.reset_exempt)
            if decision.lease:
                # A message holds no slot of the user's concurrency: it is no request in flight.
                self._release(decision)
            outcome = decision.outcome
            if outcome is Outcome.ALLOWED or not self._enforces(decision):
                return message
            if outcome is Outcome.LIMITED and self._over_limit == "throttle":
                wait = decision.retry_after
            elif outcome is Outcome.UNAVAILABLE:
                wait = _UNAVAILABLE_WAIT
            else:
                self._registry.close(self, CLOSE_REASONS.get(outcome, "rate-limited"))
                return await self._disconnect()
            if await self._closed_within(wait):
                return await self._disconnect()

    async def _closed_within(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._closing.wait(), timeout=seconds)
        except TimeoutError:
            return False
        return True

    async def _disconnect(self) -> Message:
        # The close frame goes first: an app that returns on hearing of it would end the
        # connection with none.
        if self._ending is not None:
            await self._ending
        return {"type": "websocket.disconnect", "code": POLICY_VIOLATION, "reason": self._closed}

    def close(self, reason: str) -> None:
        super().close(reason)
        self._closing.set()

    def _final_message(self, reason: str) -> Message:
        return {"type": "websocket.close", "code": POLICY_VIOLATION, "reason": reason}


class WatchedResponse(_Watched):
    """An HTTP response: given floodwall's headers on its start, and held against the kill
    switch once its body streams (a first part with more to come)."""

    __slots__ = ("headers", "streaming")
    kind = "stream"

    def __init__(
        self,
        scope: Scope,
        send: Send,
        registry: OpenConnections,
        identity: Identity,
        reset_exempt: bool,
        request_id: str | None,
        headers: list[tuple[bytes, bytes]],
    ) -> None:
        super().__init__(scope, send, registry, identity, reset_exempt, request_id)
        self.headers = headers
        self.streaming = False

    async def send(self, message: Message) -> None:
        """The app's message, with floodwall's headers on the start."""
        if self.streaming:
            await self._send_streamed(message)
            return
        kind = message["type"]
        if kind == "http.response.start":
            if self.headers:
                message["headers"] = [*message.get("headers", ()), *self.headers]
        elif kind == "http.response.body" and message.get("more_body", False):
            self.streaming = True
            self._registry.add(self)
            await self._send_streamed(message)
            return
        await self._send(message)

    async def _send_streamed(self, message: Message) -> None:
        async with self._locked():
            if self._closed is not None:
                return
            await self._send(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            self._registry.discard(self)

    def _final_message(self, reason: str) -> Message:
        # The end of the body: the client sees the stream end, and the server tells the
        # app (http.disconnect) that its response is complete.
        return {"type": "http.response.body", "body": b"", "more_body": False}


def _log_close(connection: _Watched, reason: str) -> None:
    identity = connection.identity
    fields = {
        "event": "floodwall.connection_closed",
        "request_id": connection.request_id,
        "connection": connection.kind,
        "user_id": None if identity.anonymous else held(identity.user_id),
        "client": connection.client,
        "path": connection.scope.get("path"),
        "reason": reason,
    }
    request_logger.info(
        "floodwall: %s closed: %s", connection.kind, reason, extra={"fields": fields}
    )
