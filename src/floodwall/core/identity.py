"""Who sent a request: a user, or an anonymous client keyed by its address."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Final, NamedTuple, TypeAlias

from floodwall.core.types import Scope

__all__ = ["REJECTION_REASONS", "Identify", "Identity"]


class Identity(NamedTuple):
    """A user, or an anonymous client keyed by its address.

    ``issued_at`` (seconds since the epoch) and ``credential_id`` come from the credential
    that authenticated the request; revocation compares them with the user's state. A
    credential with no usable issue time has ``issued_at=0.0``: issued before any
    revocation, so every revocation refuses it. ``None`` means no credential at all (a
    session user, a gateway header, a client address), which revocation cannot apply to.
    ``plan`` names the user's plan (``FLOODWALL_PLANS``): its limit applies unless an
    operator set the user's own; no plan, or one not configured, gets the default limit.
    """

    # A named tuple, not a frozen dataclass: one is built per request, at half the cost.
    user_id: str
    anonymous: bool = False
    issued_at: float | None = None
    credential_id: str | None = None
    plan: str | None = None


Identify: TypeAlias = Callable[[Scope], Awaitable[Identity | None] | Identity | None]
"""Finds who sent a request, plain or async; ``None`` falls back to the client address.

The middleware decides once, when it is built, whether to await it.
"""


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
