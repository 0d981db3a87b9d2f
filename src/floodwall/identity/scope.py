"""Identities read from the ASGI scope: the client address, Starlette's authenticated
user, a gateway's header, and the bearer token a request carries."""

from __future__ import annotations

import ipaddress

from floodwall.core.identity import Identity
from floodwall.core.types import Scope

__all__ = [
    "HeaderIdentity",
    "bearer",
    "client_identity",
    "header_value",
    "starlette_identity",
    "starlette_user",
]


def header_value(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value)
    return None


def client_identity(scope: Scope) -> Identity:
    """The anonymous identity of the client address; IPv6 clients are grouped by /64.

    Forwarded headers are not read here: mount with ``trusted_proxies`` and uvicorn's
    ``ProxyHeadersMiddleware`` rewrites the client address from trusted proxies only.
    """
    client = scope.get("client")
    host = str(client[0]) if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return Identity(host or "unknown", anonymous=True)
    if isinstance(address, ipaddress.IPv6Address):
        mapped = address.ipv4_mapped
        if mapped is not None:
            return Identity(str(mapped), anonymous=True)
        return Identity(str(ipaddress.IPv6Network((address, 64), strict=False)), anonymous=True)
    return Identity(str(address), anonymous=True)


async def starlette_user(scope: Scope) -> Identity | None:
    """The user set by Starlette's ``AuthenticationMiddleware``, when authenticated."""
    return starlette_identity(scope)


def starlette_identity(scope: Scope) -> Identity | None:
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        user_id = user.identity
    except NotImplementedError:
        user_id = user.display_name
    return Identity(str(user_id))


class HeaderIdentity:
    """The user id in a header set by a trusted gateway (never expose this header publicly)."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name.lower().encode("latin-1")

    async def __call__(self, scope: Scope) -> Identity | None:
        """The header's user, or ``None``."""
        return self.resolve(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine, for the built-in chain."""
        value = header_value(scope, self._name)
        if not value:
            return None
        return Identity(value.decode("utf-8", "surrogateescape"))


def bearer(scope: Scope) -> str | None:
    """The bearer token of the ``Authorization`` header, or ``None``."""
    header = header_value(scope, b"authorization")
    if header is None or header[:7].lower() != b"bearer ":
        return None
    return header[7:].strip().decode("latin-1")
