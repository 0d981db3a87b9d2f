"""Bearer JWTs signed by an identity provider, verified with the keys it publishes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import threading
import time
from typing import Any, Final, NamedTuple
from urllib.parse import urlsplit

import jwt

from floodwall.core import rules
from floodwall.core.errors import ConfigurationError, IdentityUnavailable
from floodwall.core.identity import Identity
from floodwall.core.types import Scope
from floodwall.identity.fetch import Garbage, Unreachable, fetch_json
from floodwall.identity.scope import bearer
from floodwall.identity.tokens import IdentityPending, TokenRejections, reported, verified
from floodwall.settings import HMAC_KEY_BYTES

__all__ = ["JwksIdentity"]

logger = logging.getLogger("floodwall")


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


class _Fetch(NamedTuple):
    started: float
    """When the fetch began (monotonic seconds)."""
    ok: bool
    problem: str | None = None
    """Why the provider's answer is no usable key set; ``None`` when it worked, or when the
    provider could not be reached (which may pass)."""


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
        plan_claim: str | None = None,
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
        self._plan_claim = plan_claim
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
        token = bearer(scope)
        if token is None:
            return None
        return reported(self._check(token), token, self._rejections)

    async def settle(self, scope: Scope) -> Identity | None:
        """The token's identity once the next fetch has ended, at most ``wait_seconds``
        from now; ``IdentityUnavailable`` when its key cannot be had."""
        token = bearer(scope)
        if token is None:
            return None
        return reported(await self._check_waiting(token), token, self._rejections)

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
        return verified(
            token,
            key.key,
            [algorithm],
            self._audience,
            self._issuer,
            self._leeway,
            self._plan_claim,
        )

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
            keys = _usable_keys(fetch_json(self._url, self.timeout, self._max_bytes))
        except (Unreachable, Garbage) as exc:
            self._failures += 1
            if not self._failing:
                self._failing = True
                logger.warning(
                    "floodwall: the identity provider's keys could not be fetched (%s); "
                    "the %d keys at hand keep working",
                    exc,
                    len(self._keys),
                )
            problem = str(exc) if isinstance(exc, Garbage) else None
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


def _usable_keys(data: Any) -> dict[str, _Key]:
    """kid → key for each signing key of a JWK set that PyJWT can use; none is an error."""
    entries = data.get("keys") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise Garbage("the identity provider's answer is no JWK set (no keys list)")
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
        raise Garbage("the identity provider's JWK set has no usable signing key")
    return keys
