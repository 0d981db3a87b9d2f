"""The built-in identity chain: a JWT, then Starlette's user, then a gateway header."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from floodwall.core.identity import Identity
from floodwall.core.types import Scope
from floodwall.identity.jwks import JwksIdentity
from floodwall.identity.scope import HeaderIdentity, bearer, header_value, starlette_identity
from floodwall.identity.shared_secret import JwtIdentity
from floodwall.identity.tokens import IdentityPending, TokenRejections
from floodwall.settings import FloodwallSettings

__all__ = ["IdentityChain", "default_identify"]


class IdentityChain:
    """Resolvers tried in order; the first identity found wins. An ``Identify``.

    ``loaders`` are awaited by ``load``, at the lifespan startup (an identity provider's
    keys). ``plan_header`` names a header a trusted gateway sets to the user's plan: it
    gives the plan of an identity that names none of its own.
    """

    __slots__ = ("_loaders", "_plan_header", "_resolvers")

    def __init__(
        self,
        resolvers: list[Callable[[Scope], Identity | None]],
        *,
        loaders: Sequence[Callable[[], Awaitable[None]]] = (),
        plan_header: str | None = None,
    ) -> None:
        self._resolvers = resolvers
        self._loaders = list(loaders)
        self._plan_header = plan_header.lower().encode("latin-1") if plan_header else None

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
                    return identity if self._plan_header is None else self._planned(identity, scope)
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
                return identity if self._plan_header is None else self._planned(identity, scope)
        return None

    def _planned(self, identity: Identity, scope: Scope) -> Identity:
        if identity.plan is not None or identity.anonymous or self._plan_header is None:
            return identity
        plan = header_value(scope, self._plan_header)
        if not plan:
            return identity
        # Built whole: NamedTuple._replace cost a µs a request, a new tuple a tenth of it.
        user_id, anonymous, issued_at, credential_id, _ = identity
        return Identity(user_id, anonymous, issued_at, credential_id, plan.decode("latin-1"))

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
        token = bearer(scope)
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
        token = bearer(scope)
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
            plan_claim=settings.jwt_plan_claim,
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
                plan_claim=settings.jwt_plan_claim,
            )
        )
    if verifiers:
        rejections = TokenRejections(
            on_rejected, issuer=settings.jwt_issuer, audience=settings.jwt_audience
        )
        resolvers.append(_Tokens(verifiers, rejections).resolve)
    resolvers.append(starlette_identity)
    if settings.user_header:
        resolvers.append(HeaderIdentity(settings.user_header).resolve)
    return IdentityChain(resolvers, loaders=loaders, plan_header=settings.plan_header)
