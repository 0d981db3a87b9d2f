"""Verifying a bearer token with PyJWT, and reporting the tokens refused, by reason."""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Any, Final

import jwt

from floodwall.core.identity import Identity
from floodwall.core.types import Scope

__all__ = ["IdentityPending", "TokenRejections", "reported", "verified"]

logger = logging.getLogger("floodwall")


class IdentityPending(Exception):
    """A token names a key that is not at hand yet; ``settle`` waits for it (bounded).

    Raised by a plain ``resolve`` that cannot wait; the middleware then awaits ``settle``,
    which gives the identity, ``None`` (the token is invalid), or raises
    ``IdentityUnavailable``.
    """

    def __init__(self, settle: Callable[[Scope], Awaitable[Identity | None]]) -> None:
        super().__init__("the token's key is not at hand yet")
        self.settle = settle


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


def reported(
    result: Identity | str, token: str, rejections: TokenRejections | None
) -> Identity | None:
    """The identity, or ``None`` with the refusal reported."""
    if isinstance(result, str):
        if rejections is not None:
            rejections.reject(result, token)
        return None
    return result


def verified(
    token: str,
    key: Any,
    algorithms: list[str],
    audience: str | None,
    issuer: str | None,
    leeway: float,
    plan_claim: str | None = None,
) -> Identity | str:
    """The identity of a token verified with ``key``, or why it is refused; its plan is the
    claim ``plan_claim`` names, when that is text."""
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
        plan=None if plan_claim is None else _text(claims.get(plan_claim)),
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
