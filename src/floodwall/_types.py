"""ASGI type aliases and the ``Identify`` callable shared by the package."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any, TypeAlias

if TYPE_CHECKING:
    from floodwall.identity import Identity

Scope: TypeAlias = MutableMapping[str, Any]
Message: TypeAlias = MutableMapping[str, Any]
Receive: TypeAlias = Callable[[], Awaitable[Message]]
Send: TypeAlias = Callable[[Message], Awaitable[None]]
ASGIApp: TypeAlias = Callable[[Scope, Receive, Send], Awaitable[None]]

Identify: TypeAlias = Callable[[Scope], "Awaitable[Identity | None] | Identity | None"]
"""Finds who sent a request, plain or async; ``None`` falls back to the client address."""
