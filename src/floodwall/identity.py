"""Who sent a request: the ``Identity`` and the built-in ways to find it.

Its length is the built-in resolvers' (JWT with a shared secret or an identity
provider's keys, Starlette's user, a gateway header, the client address), each
independent and small, and the fetch of an identity provider's keys: in a thread, bounded
in time and size, with requests that wait for a key not at hand. Tokens that fail
verification are reported by reason (``TokenRejections``).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import http.client
import ipaddress
import json
import logging
import math
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, NamedTuple, TypeAlias
from urllib.parse import urlsplit

import jwt

from floodwall import rules
from floodwall._types import Scope
from floodwall.errors import ConfigurationError, IdentityUnavailable
from floodwall.settings import HMAC_KEY_BYTES, FloodwallSettings

__all__ = [
    "REJECTION_REASONS",
    "HeaderIdentity",
    "Identify",
    "Identity",
    "IdentityChain",
    "IdentityPending",
    "JwksIdentity",
    "JwtIdentity",
    "TokenRejections",
    "client_identity",
    "default_identify",
    "starlette_user",
]

logger = logging.getLogger("floodwall")


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

    __slots__ = ("_algorithms", "_audience", "_issuer", "_key", "_leeway", "_rejections")

    def __init__(
        self,
        key: str,
        *,
        algorithms: list[str],
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        rejections: TokenRejections | None = None,
    ) -> None:
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
        self._issuer = issuer
        self._leeway = leeway
        self._rejections = rejections

    async def __call__(self, scope: Scope) -> Identity | None:
        """The token's identity, or ``None``."""
        return self.resolve(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine, for the built-in chain."""
        token = _bearer(scope)
        if token is None:
            return None
        return _reported(self._check(token), token, self._rejections)

    def _check(self, token: str) -> Identity | str:
        """The token's identity, or why it is refused (one of ``REJECTION_REASONS``)."""
        return _verified(
            token, self._key, self._algorithms, self._audience, self._issuer, self._leeway
        )

    async def _check_waiting(self, token: str) -> Identity | str:
        return self._check(token)


REJECTION_REASONS: Final = (
    "expired",
    "not_yet_valid",
    "bad_signature",
    "wrong_issuer",
    "wrong_audience",
    "unknown_key",
    "malformed",
    "algorithm",
)
"""Why a bearer token failed verification, as ``floodwall_token_rejections_total`` counts it."""


class TokenRejections:
    """Bearer tokens that failed verification: each is counted by reason (``count``, one of
    ``REJECTION_REASONS``), and the first of each reason is logged once, with the issuer
    and audience expected and those the token names (never the token itself), so a
    mismatched ``FLOODWALL_JWT_ISSUER`` shows at once.
    """

    __slots__ = ("_audience", "_count", "_issuer", "_logged")

    def __init__(
        self,
        count: Callable[[str], None] | None = None,
        *,
        issuer: str | None = None,
        audience: str | None = None,
    ) -> None:
        self._count = count
        self._issuer = issuer
        self._audience = audience
        self._logged: set[str] = set()

    def reject(self, reason: str, token: str) -> None:
        """Count a token refused for ``reason``; log it if it is the first of its reason."""
        if self._count is not None:
            self._count(reason)
        if reason in self._logged:
            return
        self._logged.add(reason)
        issuer, audience = _claimed(token)
        logger.warning(
            "floodwall: a bearer token was refused (%s): expected issuer %s and audience %s, "
            "the token names issuer %s and audience %s; later refusals for this reason are "
            "only counted (floodwall_token_rejections_total)",
            reason,
            _shown(self._issuer),
            _shown(self._audience),
            issuer,
            audience,
        )


def _claimed(token: str) -> tuple[str, str]:
    """The issuer and audience a token names, unverified, fit for a log line."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except (jwt.PyJWTError, TypeError, ValueError, OverflowError):
        return "(unreadable)", "(unreadable)"
    return _shown(claims.get("iss")), _shown(claims.get("aud"))


# The token's claims are the sender's text: quoted, and cut short.
_MAX_SHOWN: Final = 200


def _shown(value: object) -> str:
    if value is None:
        return "(none)"
    text = repr(value) if isinstance(value, str | list) else f"(a {type(value).__name__})"
    return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN] + "..."


def _reported(
    result: Identity | str, token: str, rejections: TokenRejections | None
) -> Identity | None:
    """The identity, or ``None`` with the refusal reported."""
    if isinstance(result, str):
        if rejections is not None:
            rejections.reject(result, token)
        return None
    return result


def _bearer(scope: Scope) -> str | None:
    header = _header(scope, b"authorization")
    if header is None or header[:7].lower() != b"bearer ":
        return None
    return header[7:].strip().decode("latin-1")


def _verified(
    token: str,
    key: Any,
    algorithms: list[str],
    audience: str | None,
    issuer: str | None,
    leeway: float,
) -> Identity | str:
    """The identity of a token verified with ``key``, or why it is refused."""
    try:
        decoded: dict[str, Any] = jwt.decode_complete(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway,
            options={
                "require": ["sub"],
                "verify_aud": audience is not None,
                # PyJWT refuses a token with a malformed iat, which would make it an
                # anonymous request that revocation never sees; _issued_at reads it.
                "verify_iat": False,
            },
        )
    except jwt.PyJWTError as exc:
        # Not only InvalidTokenError: e.g. an `alg: none` token raises InvalidKeyError.
        return _reason(exc)
    except (TypeError, ValueError, OverflowError):
        # PyJWT before 2.15, for an `exp` of null or Infinity.
        return "malformed"
    claims: dict[str, Any] = decoded["payload"]
    # Refused here whatever the PyJWT version (only its newest releases refuse them): a
    # `crit` header names extensions this verifier does not implement (RFC 7515 4.1.11),
    # and an `exp` or `nbf` that is no finite number would never be enforced.
    if "crit" in decoded["header"] or not all(
        _finite_number(claims[name]) for name in ("exp", "nbf") if name in claims
    ):
        return "malformed"
    subject = claims["sub"]
    if not isinstance(subject, str):
        return "malformed"
    return Identity(
        subject,
        issued_at=_issued_at(claims.get("iat")),
        credential_id=_text(claims.get("jti")),
    )


def _reason(exc: jwt.PyJWTError) -> str:
    """The rejection reason of PyJWT's error (subclasses before their bases)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "not_yet_valid"
    if isinstance(exc, jwt.InvalidSignatureError):
        return "bad_signature"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "wrong_issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "wrong_audience"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return {"iss": "wrong_issuer", "aud": "wrong_audience"}.get(exc.claim, "malformed")
    if isinstance(exc, jwt.InvalidAlgorithmError | jwt.InvalidKeyError):
        return "algorithm"
    return "malformed"


class _Key(NamedTuple):
    key: Any
    """The public key, as PyJWT verifies with it."""
    algorithms: frozenset[str]
    """What it verifies: the JWK's ``alg`` when it names one, else every algorithm of its
    key type (an RSA key published without ``alg`` verifies no ES256 token)."""


_RSA: Final = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
_BY_CURVE: Final = {
    "P-256": frozenset({"ES256"}),
    "P-384": frozenset({"ES384"}),
    "P-521": frozenset({"ES512"}),
    "secp256k1": frozenset({"ES256K"}),
    "Ed25519": frozenset({"EdDSA", "Ed25519"}),
    "Ed448": frozenset({"EdDSA", "Ed448"}),
}


def _algorithms_of(entry: dict[str, Any]) -> frozenset[str]:
    algorithm = entry.get("alg")
    if isinstance(algorithm, str):
        return frozenset({algorithm})
    if entry.get("kty") == "RSA":
        return _RSA
    curve = entry.get("crv")
    return _BY_CURVE.get(curve, frozenset()) if isinstance(curve, str) else frozenset()


class IdentityPending(Exception):
    """A token names a key that is not at hand yet; ``settle`` waits for it (bounded).

    Raised by a plain ``resolve`` that cannot wait; the middleware then awaits ``settle``,
    which gives the identity, ``None`` (the token is invalid), or raises
    ``IdentityUnavailable``.
    """

    def __init__(self, settle: Callable[[Scope], Awaitable[Identity | None]]) -> None:
        super().__init__("the token's key is not at hand yet")
        self.settle = settle


class _Fetch(NamedTuple):
    started: float
    """When the fetch began (monotonic seconds)."""
    ok: bool
    problem: str | None = None
    """Why the provider's answer is no usable key set; ``None`` when it worked, or when the
    provider could not be reached (which may pass)."""


class _Unreachable(Exception):
    """The provider did not answer in time, or answered with a server error."""


class _Garbage(Exception):
    """The provider answered with something that is no usable key set."""


# After a failed fetch the next one waits this long at most (doubling from
# min_refresh_seconds); a token with a key not at hand asks for one sooner.
_MAX_RETRY_SECONDS: Final = 30.0


class JwksIdentity:
    """Bearer JWTs signed by an identity provider, verified with the keys it publishes (a
    JWKS URL: Keycloak, Auth0, Okta, Entra...): ``sub``, ``iat`` and ``jti`` as for
    ``JwtIdentity``, and the issuer, audience and expiry (with ``leeway``) checked.

    The keys are fetched by a thread of this object's own, never on the event loop, each
    fetch within ``timeout`` seconds in all and ``max_bytes`` long at most. The
    middleware's lifespan startup awaits ``load``: the first fetch, bounded by ``timeout``.
    The thread then fetches the keys again every ``refresh_seconds`` (a rotation published
    ahead is known before its first token), sooner after a failure, and when a token names
    a ``kid`` it does not know, at most once every ``min_refresh_seconds`` however many
    tokens name it. A token whose key is not at hand is never taken for an anonymous
    client: its request waits for the next fetch, at most ``wait_seconds``, and is refused
    (``IdentityUnavailable``, a 503) when the key cannot be had. A token that does not
    verify gives ``None``: the app's own authentication refuses it. When the provider
    cannot be reached, the keys at hand keep working; the failure is logged once, and the
    recovery once.
    """

    def __init__(
        self,
        url: str,
        *,
        algorithms: list[str],
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        refresh_seconds: float = 300.0,
        min_refresh_seconds: float = 1.0,
        timeout: float = rules.DEFAULT_JWKS_TIMEOUT_SECONDS,
        max_bytes: int = rules.DEFAULT_JWKS_MAX_BYTES,
        wait_seconds: float | None = None,
        rejections: TokenRejections | None = None,
    ) -> None:
        if not algorithms:
            raise ConfigurationError("JwksIdentity needs at least one algorithm")
        if any(name.lower() == "none" or name in HMAC_KEY_BYTES for name in algorithms):
            raise ConfigurationError(
                "JwksIdentity verifies public-key algorithms only (RS256, ES256, EdDSA, ...)"
            )
        if urlsplit(url).scheme not in ("http", "https"):
            raise ConfigurationError("JwksIdentity: the key set's URL is not http:// or https://")
        self._url = url
        try:
            self.timeout = rules.JWKS_TIMEOUT.number(timeout)
            self._max_bytes = rules.JWKS_MAX_BYTES.whole_number(max_bytes)
        except rules.RuleError as exc:
            raise ConfigurationError(f"JwksIdentity: {exc}") from None
        self._algorithms = frozenset(algorithms)
        self._audience = audience
        self._issuer = issuer
        self._leeway = leeway
        self._refresh_seconds = refresh_seconds
        self._min_refresh_seconds = min_refresh_seconds
        # Long enough for a fetch asked for just after the last one: the wait between
        # fetches, then the fetch.
        self._wait_seconds = (
            wait_seconds if wait_seconds is not None else min_refresh_seconds + timeout
        )
        self._rejections = rejections
        self._keys: dict[str, _Key] = {}
        self._only: _Key | None = None
        self._wanted = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[_Fetch]]] = []
        self._failing = False
        self._failures = 0
        self._last_fetch = -math.inf
        self.fetches = 0
        """Fetches of the key set so far, successful or not."""

    async def __call__(self, scope: Scope) -> Identity | None:
        """The token's identity, or ``None``; waits (bounded) for a key not at hand yet."""
        try:
            return self.resolve(scope)
        except IdentityPending:
            return await self.settle(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine, for the built-in chain; raises
        ``IdentityPending`` for a token whose key is not at hand."""
        token = _bearer(scope)
        if token is None:
            return None
        return _reported(self._check(token), token, self._rejections)

    async def settle(self, scope: Scope) -> Identity | None:
        """The token's identity once the next fetch has ended, at most ``wait_seconds``
        from now; ``IdentityUnavailable`` when its key cannot be had."""
        token = _bearer(scope)
        if token is None:
            return None
        return _reported(await self._check_waiting(token), token, self._rejections)

    def _check(self, token: str) -> Identity | str:
        """The token's identity, or why it is refused; ``IdentityPending`` while its key
        is not at hand."""
        found = self._lookup(token)
        if isinstance(found, str):
            return found
        algorithm, key = found
        if key is None:
            if self._thread is None:
                self.start()
            self._wanted.set()  # the fetcher takes it from here
            raise IdentityPending(self.settle)
        return self._verify(token, algorithm, key)

    async def _check_waiting(self, token: str) -> Identity | str:
        arrived = time.monotonic()
        deadline = arrived + self._wait_seconds
        fetch: _Fetch | None = None
        while True:
            found = self._lookup(token)
            if isinstance(found, str):
                return found
            algorithm, key = found
            if key is not None:
                return self._verify(token, algorithm, key)
            if fetch is not None and fetch.started >= arrived:
                return "unknown_key"  # the keys fetched since the token came hold none of its
            fetch = await self._next_fetch(deadline - time.monotonic())
            if fetch is None or not fetch.ok:
                raise IdentityUnavailable("the identity provider's keys cannot be fetched")

    async def load(self) -> None:
        """Fetch the keys now, for the lifespan startup, waiting at most ``timeout``.

        ``ConfigurationError`` when the provider answers with something that is no usable
        key set; when it cannot be reached, the start goes on and the keys are fetched in
        the background.
        """
        if self._keys:
            return
        fetch = await self._next_fetch(self.timeout)
        if fetch is None:
            logger.warning(
                "floodwall: the identity provider's keys did not arrive within %gs; they "
                "are fetched in the background, and tokens wait for them",
                self.timeout,
            )
        elif fetch.problem is not None:
            raise ConfigurationError(f"FLOODWALL_JWT_JWKS_URL: {fetch.problem}")

    def start(self) -> None:
        """Start fetching the keys in the background (``load`` and the first token do it
        too)."""
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="floodwall-jwks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Stop the background fetches."""
        self._stopping.set()
        self._wanted.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout + 1)

    @property
    def kids(self) -> frozenset[str]:
        """The key ids at hand."""
        return frozenset(self._keys)

    def _lookup(self, token: str) -> tuple[str, _Key | None] | str:
        """The token's algorithm and its key (``None`` while not at hand), or why the token
        is refused from its header alone."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return "malformed"
        algorithm = header.get("alg")
        # Any JSON may stand in the header: a list or an object is no algorithm.
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            return "algorithm"
        kid = header.get("kid")
        found = self._keys.get(kid) if isinstance(kid, str) else None
        if found is None and kid is None:
            found = self._only  # a provider with one key may leave kid out
        return algorithm, found

    def _verify(self, token: str, algorithm: str, key: _Key) -> Identity | str:
        if algorithm not in key.algorithms:
            return "algorithm"
        return _verified(token, key.key, [algorithm], self._audience, self._issuer, self._leeway)

    async def _next_fetch(self, within: float) -> _Fetch | None:
        """The outcome of the next fetch to end, or ``None`` after ``within`` seconds."""
        if within <= 0:
            return None
        loop = asyncio.get_running_loop()
        future: asyncio.Future[_Fetch] = loop.create_future()
        waiter = (loop, future)
        with self._lock:
            self._waiters.append(waiter)
        self._wanted.set()
        self.start()
        try:
            return await asyncio.wait_for(future, within)
        except TimeoutError:
            return None
        finally:
            with self._lock, contextlib.suppress(ValueError):
                self._waiters.remove(waiter)

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._wanted.clear()
            ok = self.refresh()
            if ok:
                self._wanted.wait(self._refresh_seconds)
            else:
                retry = self._min_refresh_seconds * 2 ** min(self._failures - 1, 16)
                self._wanted.wait(min(retry, self._refresh_seconds, _MAX_RETRY_SECONDS))
            # However many tokens asked, at most one fetch per min_refresh_seconds.
            self._stopping.wait(self._last_fetch + self._min_refresh_seconds - time.monotonic())

    def refresh(self) -> bool:
        """Fetch the key set now (blocking); whether it worked. The keys at hand are kept
        when it did not."""
        started = self._last_fetch = time.monotonic()
        self.fetches += 1
        try:
            keys = _usable_keys(_fetch_json(self._url, self.timeout, self._max_bytes))
        except (_Unreachable, _Garbage) as exc:
            self._failures += 1
            if not self._failing:
                self._failing = True
                logger.warning(
                    "floodwall: the identity provider's keys could not be fetched (%s); "
                    "the %d keys at hand keep working",
                    exc,
                    len(self._keys),
                )
            problem = str(exc) if isinstance(exc, _Garbage) else None
            self._wake(_Fetch(started, ok=False, problem=problem))
            return False
        self._keys = keys
        self._only = next(iter(keys.values())) if len(keys) == 1 else None
        self._failures = 0
        if self._failing:
            self._failing = False
            logger.warning("floodwall: the identity provider's keys are fetched again")
        self._wake(_Fetch(started, ok=True))
        return True

    def _wake(self, fetch: _Fetch) -> None:
        with self._lock:
            waiters, self._waiters = self._waiters, []
        for loop, future in waiters:
            # A waiter whose event loop has closed waits for nothing any more.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_resolve_future, future, fetch)


def _resolve_future(future: asyncio.Future[_Fetch], fetch: _Fetch) -> None:
    if not future.done():
        future.set_result(fetch)


# A provider that answers these may answer properly in a moment.
_PASSING_STATUSES: Final = frozenset({408, 429})


def _fetch_json(url: str, timeout: float, max_bytes: int) -> Any:
    """The provider's key set, parsed, fetched within ``timeout`` seconds in all and at
    most ``max_bytes`` long; ``_Unreachable`` or ``_Garbage`` when it is not."""
    watch = _Watch(time.monotonic() + timeout)
    opener = urllib.request.build_opener(_BoundedHandler(watch), _BoundedSecureHandler(watch))
    # The scheme is http or https: JwksIdentity checks it.
    request = urllib.request.Request(url, headers={"User-Agent": "floodwall"})  # noqa: S310
    # A socket timeout bounds one read, not an answer sent a byte at a time: at the
    # deadline the timer shuts the fetch's sockets, which ends any read at once.
    timer = threading.Timer(timeout, watch.cut)
    timer.daemon = True
    timer.start()
    try:
        body = _read(opener, request, timeout, max_bytes)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in _PASSING_STATUSES:
            raise _Unreachable(f"the provider answered HTTP {exc.code}") from None
        raise _Garbage(f"the identity provider answered HTTP {exc.code}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # URLError, a refused connection and a timeout are all OSErrors; a TLS socket shut
        # at the deadline may raise ValueError.
        if watch.cut_off:
            raise _Unreachable(f"the key set took longer than {timeout:g}s") from None
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise _Unreachable(f"{type(reason).__name__}: {reason}") from None
    finally:
        timer.cancel()
    # A read the timer cut short may look like a whole answer.
    if watch.cut_off:
        raise _Unreachable(f"the key set took longer than {timeout:g}s")
    try:
        return json.loads(body)
    except ValueError:
        raise _Garbage("the identity provider's answer is not JSON") from None


def _read(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    timeout: float,
    max_bytes: int,
) -> bytes:
    too_large = f"the identity provider's key set is larger than {max_bytes} bytes"
    with opener.open(request, timeout=timeout) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise _Garbage(too_large)
        body = bytearray()
        while chunk := response.read1(65536):
            body += chunk
            if len(body) > max_bytes:
                raise _Garbage(too_large)
    return bytes(body)


class _Watch:
    """The sockets of one fetch, shut at its deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cut_off = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            late = self.cut_off
        if late:
            _shut(sock)

    def cut(self) -> None:
        """Shut every socket of the fetch: its deadline has come."""
        with self._lock:
            self.cut_off = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would unwrap the
    # connection under the reading thread; this ends its read with an error it handles.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Bounded(http.client.HTTPConnection):
    """An HTTP connection that connects no later than its fetch's deadline and hands its
    socket to the fetch's watch."""

    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        self.timeout = max(self._watch.deadline - time.monotonic(), 0.001)
        super().connect()
        self._watch.add(self.sock)


class _BoundedSecure(_Bounded, http.client.HTTPSConnection):
    """``_Bounded`` over TLS: its ``connect`` wraps the socket before the watch gets it."""


class _BoundedHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Bounded, watch=self._watch), req)


class _BoundedSecureHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(context=self._tls)
        self._watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_BoundedSecure, watch=self._watch)
        return self.do_open(connection, req, context=self._tls)


def _usable_keys(data: Any) -> dict[str, _Key]:
    """kid → key for each signing key of a JWK set that PyJWT can use; none is an error."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise _Garbage("the identity provider's answer is no JWK set (no keys list)")
    keys: dict[str, _Key] = {}
    for entry in entries:
        if not isinstance(entry, dict) or entry.get("use", "sig") != "sig":
            continue
        kid = entry.get("kid")
        try:
            jwk = jwt.PyJWK(entry)
        except (jwt.PyJWTError, ValueError, TypeError, KeyError, AttributeError):
            continue  # a key type or curve PyJWT cannot use; the others still serve
        keys[kid if isinstance(kid, str) else ""] = _Key(jwk.key, _algorithms_of(entry))
    if not keys:
        raise _Garbage("the identity provider's JWK set has no usable signing key")
    return keys


def _finite_number(value: object) -> bool:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an int beyond a double's range
        return False


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
    """Resolvers tried in order; the first identity found wins. An ``Identify``.

    ``loaders`` are awaited by ``load``, at the lifespan startup (an identity provider's
    keys).
    """

    __slots__ = ("_loaders", "_resolvers")

    def __init__(
        self,
        resolvers: list[Callable[[Scope], Identity | None]],
        *,
        loaders: Sequence[Callable[[], Awaitable[None]]] = (),
    ) -> None:
        self._resolvers = resolvers
        self._loaders = list(loaders)

    async def __call__(self, scope: Scope) -> Identity | None:
        """The first resolver's identity, or ``None``; waits (bounded) for a key not at
        hand yet."""
        return await self.settle(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine: the middleware calls this on every request.

        Raises ``IdentityPending`` (whose ``settle`` is the chain's) when a resolver needs
        to wait for a key.
        """
        try:
            for resolve in self._resolvers:
                identity = resolve(scope)
                if identity is not None:
                    return identity
        except IdentityPending:
            raise IdentityPending(self.settle) from None
        return None

    async def settle(self, scope: Scope) -> Identity | None:
        """The first resolver's identity, waiting (bounded) where one asks to; raises
        ``IdentityUnavailable`` when a token's key cannot be had."""
        for resolve in self._resolvers:
            try:
                identity = resolve(scope)
            except IdentityPending as pending:
                identity = await pending.settle(scope)
            if identity is not None:
                return identity
        return None

    async def load(self) -> None:
        """What the resolvers need before the first request (the lifespan startup)."""
        for load in self._loaders:
            await load()


class _Tokens:
    """The bearer token, tried with each verifier (an identity provider's keys, a secret):
    a token refused by all is reported once, for the reason of the verifier whose
    algorithm it names (``algorithm`` when it names none of theirs)."""

    __slots__ = ("_rejections", "_verifiers")

    def __init__(
        self, verifiers: list[JwksIdentity | JwtIdentity], rejections: TokenRejections
    ) -> None:
        self._verifiers = verifiers
        self._rejections = rejections

    def resolve(self, scope: Scope) -> Identity | None:
        token = _bearer(scope)
        if token is None:
            return None
        reason = "algorithm"
        for verifier in self._verifiers:
            try:
                result = verifier._check(token)
            except IdentityPending:
                raise IdentityPending(self.settle) from None
            if not isinstance(result, str):
                return result
            if result != "algorithm":
                reason = result
                break
        self._rejections.reject(reason, token)
        return None

    async def settle(self, scope: Scope) -> Identity | None:
        token = _bearer(scope)
        if token is None:
            return None
        reason = "algorithm"
        for verifier in self._verifiers:
            result = await verifier._check_waiting(token)
            if not isinstance(result, str):
                return result
            if result != "algorithm":
                reason = result
                break
        self._rejections.reject(reason, token)
        return None


def default_identify(
    settings: FloodwallSettings, *, on_rejected: Callable[[str], None] | None = None
) -> IdentityChain:
    """The built-in chain: a JWT (it also names the credential, so revocation can apply),
    then Starlette's authenticated user, then the gateway header — each if set up.

    ``on_rejected`` is called with the reason of each token that fails verification.
    """
    resolvers: list[Callable[[Scope], Identity | None]] = []
    loaders: list[Callable[[], Awaitable[None]]] = []
    verifiers: list[JwksIdentity | JwtIdentity] = []
    if settings.jwt_jwks_url is not None:
        jwks = JwksIdentity(
            settings.jwt_jwks_url,
            algorithms=settings.jwks_algorithms,
            audience=settings.jwt_audience,
            issuer=settings.jwt_issuer,
            leeway=settings.jwt_leeway,
        )
        verifiers.append(jwks)
        loaders.append(jwks.load)
    if settings.jwt_secret is not None:
        verifiers.append(
            JwtIdentity(
                settings.jwt_secret.get_secret_value(),
                algorithms=settings.hmac_algorithms,
                audience=settings.jwt_audience,
                issuer=settings.jwt_issuer,
                leeway=settings.jwt_leeway,
            )
        )
    if verifiers:
        rejections = TokenRejections(
            on_rejected, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        resolvers.append(_Tokens(verifiers, rejections).resolve)
    resolvers.append(_starlette_user)
    if settings.user_header:
        resolvers.append(HeaderIdentity(settings.user_header).resolve)
    return IdentityChain(resolvers, loaders=loaders)
