"""Who sent a request: the ``Identity`` and the built-in ways to find it."""

from __future__ import annotations

import ipaddress
import math
from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple, TypeAlias

import jwt

from floodwall._types import Scope
from floodwall.errors import ConfigurationError
from floodwall.settings import HMAC_KEY_BYTES, FloodwallSettings

__all__ = [
    "HeaderIdentity",
    "Identify",
    "Identity",
    "IdentityChain",
    "JwtIdentity",
    "client_identity",
    "default_identify",
    "starlette_user",
]


class Identity(NamedTuple):
    """A user, or an anonymous client keyed by its address.

    ``issued_at`` (seconds since the epoch) and ``credential_id`` come from the credential
    that authenticated the request; revocation compares them with the user's state. A
    credential with no usable issue time has ``issued_at=0.0``: issued before any
    revocation, so every revocation refuses it. ``None`` means no credential at all (a
    session user, a gateway header, a client address), which revocation cannot apply to.
    """

    # A named tuple, not a frozen dataclass: one is built per request, at half the cost.
    user_id: str
    anonymous: bool = False
    issued_at: float | None = None
    credential_id: str | None = None


Identify: TypeAlias = Callable[[Scope], Awaitable[Identity | None] | Identity | None]
"""Finds who sent a request, plain or async; ``None`` falls back to the client address.

The middleware decides once, when it is built, whether to await it.
"""


def _header(scope: Scope, name: bytes) -> bytes | None:
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
    return _starlette_user(scope)


def _starlette_user(scope: Scope) -> Identity | None:
    user = scope.get("user")
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    try:
        user_id = user.identity
    except NotImplementedError:
        user_id = user.display_name
    return Identity(str(user_id))


class JwtIdentity:
    """A bearer JWT verified with PyJWT: ``sub`` is the user, ``iat`` and ``jti`` the credential.

    A missing, malformed or invalid token gives ``None``, never an exception: the request
    is then limited as an anonymous client, and the application's own authentication
    refuses it. A token without a usable numeric ``iat`` still names its user, with
    ``issued_at=0.0``, so a revocation refuses it rather than letting it pass as anonymous.
    With one key, a token's ``kid`` header selects nothing and is ignored.
    """

    __slots__ = ("_algorithms", "_audience", "_key")

    def __init__(self, key: str, *, algorithms: list[str], audience: str | None = None) -> None:
        if not algorithms:
            raise ConfigurationError("JwtIdentity needs at least one algorithm")
        if any(name.lower() == "none" for name in algorithms):
            raise ConfigurationError("JwtIdentity refuses the none algorithm (unsigned tokens)")
        # PyJWT would warn on every request whose token names an algorithm the key is too
        # short for (RFC 7518 section 3.2); say it once, here.
        strictest = max(algorithms, key=lambda name: HMAC_KEY_BYTES.get(name, 0))
        needed = HMAC_KEY_BYTES.get(strictest, 0)
        if len(key.encode("utf-8", "surrogatepass")) < needed:
            raise ConfigurationError(
                f"JwtIdentity: the key is shorter than {needed} bytes, the least {strictest} "
                "allows (RFC 7518 section 3.2)"
            )
        self._key = key
        self._algorithms = list(algorithms)
        self._audience = audience

    async def __call__(self, scope: Scope) -> Identity | None:
        """The token's identity, or ``None``."""
        return self.resolve(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine, for the built-in chain."""
        header = _header(scope, b"authorization")
        if header is None or header[:7].lower() != b"bearer ":
            return None
        token = header[7:].strip().decode("latin-1")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                options={
                    "require": ["sub"],
                    "verify_aud": self._audience is not None,
                    # PyJWT refuses a token with a malformed iat, which would make it an
                    # anonymous request that revocation never sees; _issued_at reads it.
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError:
            # Not only InvalidTokenError: e.g. an `alg: none` token raises InvalidKeyError.
            return None
        subject = claims["sub"]
        if not isinstance(subject, str):
            return None
        return Identity(
            subject,
            issued_at=_issued_at(claims.get("iat")),
            credential_id=_text(claims.get("jti")),
        )


def _issued_at(value: object) -> float:
    """``iat`` in seconds, or ``0.0`` (before any revocation) when it is missing, not a
    number, not finite or negative."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return 0.0
    # float() of an int beyond a double's range raises; such an iat is no usable time.
    try:
        seconds = float(value)
    except OverflowError:
        return 0.0
    return seconds if math.isfinite(seconds) and seconds >= 0 else 0.0


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


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
        value = _header(scope, self._name)
        if not value:
            return None
        return Identity(value.decode("utf-8", "surrogateescape"))


class IdentityChain:
    """Resolvers tried in order; the first identity found wins. An ``Identify``."""

    __slots__ = ("_resolvers",)

    def __init__(self, resolvers: list[Callable[[Scope], Identity | None]]) -> None:
        self._resolvers = resolvers

    async def __call__(self, scope: Scope) -> Identity | None:
        """The first resolver's identity, or ``None``."""
        return self.resolve(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine: the middleware calls this on every request."""
        for resolve in self._resolvers:
            identity = resolve(scope)
            if identity is not None:
                return identity
        return None


def default_identify(settings: FloodwallSettings) -> IdentityChain:
    """The built-in chain: a JWT (it also names the credential, so revocation can apply),
    then Starlette's authenticated user, then the gateway header — each if set up."""
    resolvers: list[Callable[[Scope], Identity | None]] = []
    if settings.jwt_secret is not None:
        resolvers.append(
            JwtIdentity(
                settings.jwt_secret.get_secret_value(),
                algorithms=settings.jwt_algorithms,
                audience=settings.jwt_audience,
            ).resolve
        )
    resolvers.append(_starlette_user)
    if settings.user_header:
        resolvers.append(HeaderIdentity(settings.user_header).resolve)
    return IdentityChain(resolvers)
