"""Bearer JWTs signed with a shared secret (HMAC)."""

from __future__ import annotations

from floodwall.core.errors import ConfigurationError
from floodwall.core.identity import Identity
from floodwall.core.types import Scope
from floodwall.identity.scope import bearer
from floodwall.identity.tokens import TokenRejections, reported, verified
from floodwall.settings import HMAC_KEY_BYTES

__all__ = ["JwtIdentity"]


class JwtIdentity:
    """A bearer JWT verified with PyJWT: ``sub`` is the user, ``iat`` and ``jti`` the credential.

    A missing, malformed or invalid token gives ``None``, never an exception: the request
    is then limited as an anonymous client, and the application's own authentication
    refuses it. A token without a usable numeric ``iat`` still names its user, with
    ``issued_at=0.0``, so a revocation refuses it rather than letting it pass as anonymous.
    With one key, a token's ``kid`` header selects nothing and is ignored.
    """

    __slots__ = (
        "_algorithms",
        "_audience",
        "_issuer",
        "_key",
        "_leeway",
        "_plan_claim",
        "_rejections",
    )

    def __init__(
        self,
        key: str,
        *,
        algorithms: list[str],
        audience: str | None = None,
        issuer: str | None = None,
        leeway: float = 0.0,
        rejections: TokenRejections | None = None,
        plan_claim: str | None = None,
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
        self._plan_claim = plan_claim
        self._rejections = rejections

    async def __call__(self, scope: Scope) -> Identity | None:
        """The token's identity, or ``None``."""
        return self.resolve(scope)

    def resolve(self, scope: Scope) -> Identity | None:
        """``__call__`` without the coroutine, for the built-in chain."""
        token = bearer(scope)
        if token is None:
            return None
        return reported(self._check(token), token, self._rejections)

    def _check(self, token: str) -> Identity | str:
        """The token's identity, or why it is refused (one of ``REJECTION_REASONS``)."""
        return verified(
            token,
            self._key,
            self._algorithms,
            self._audience,
            self._issuer,
            self._leeway,
            self._plan_claim,
        )

    async def _check_waiting(self, token: str) -> Identity | str:
        return self._check(token)
