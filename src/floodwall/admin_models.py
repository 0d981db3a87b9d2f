"""The admin API's request and response bodies (pydantic), shared with its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

__all__ = [
    "AuditPage",
    "AuditRecordOut",
    "BlockBody",
    "BlockedPage",
    "DefaultLimitOut",
    "LimitBody",
    "LimitOut",
    "OffenderOut",
    "Problem",
    "ReasonBody",
    "RevokeBody",
    "TopOut",
    "UserStatusOut",
]

_BODY = ConfigDict(extra="forbid", strict=True)
_REASON = Field(default=None, min_length=1, max_length=500)


def _integral(value: Any) -> Any:
    # JSON has one number type, and JSON Schema's "integer" includes 2905.0: clients that
    # keep every number as a double send that. Everything else (2905.5, true, "2905") is
    # left to strict int validation to refuse.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# For int fields: Annotated[int, Field(...), _INTEGRAL]. The bounds go inside, before it:
# on the outside of "| None" pydantic writes them into the schema as "ge"/"le", which
# JSON Schema ignores.
_INTEGRAL = BeforeValidator(_integral)


class BlockBody(BaseModel):
    """Block a user now, for ``ttl_seconds`` or until unblocked."""

    model_config = _BODY
    reason: str = Field(min_length=1, max_length=500)
    ttl_seconds: Annotated[int, Field(ge=1, le=10 * 365 * 24 * 3600), _INTEGRAL] | None = None


class ReasonBody(BaseModel):
    """An optional reason, recorded in the audit log."""

    model_config = _BODY
    reason: str | None = _REASON


class RevokeBody(BaseModel):
    """Revoke every credential issued up to now, or only ``credential_id``."""

    model_config = _BODY
    reason: str | None = _REASON
    credential_id: str | None = Field(default=None, min_length=1, max_length=256)


class LimitBody(BaseModel):
    """A limit: ``rate`` requests per second, bursts of up to ``burst``."""

    model_config = _BODY
    rate: float = Field(gt=0, le=1_000_000, allow_inf_nan=False)
    burst: Annotated[int, Field(ge=1, le=1_000_000), _INTEGRAL]


class LimitOut(BaseModel):
    """A user's effective limit; ``custom`` when it is the user's own, ``shadow`` when it
    is observed but not enforced."""

    rate: float
    burst: int
    custom: bool
    shadow: bool


class UserStatusOut(BaseModel):
    """A user's status; times are ISO 8601 UTC or null."""

    user_id: str
    blocked: bool
    reason: str | None
    blocked_by: str | None
    blocked_at: str | None
    blocked_until: str | None
    credentials_not_before: str | None
    password_reset_required: bool
    limit: LimitOut


class BlockedPage(BaseModel):
    """A page of blocked users; pass ``next_cursor`` as ``cursor`` for the next one."""

    items: list[UserStatusOut]
    next_cursor: str | None


class AuditRecordOut(BaseModel):
    """One operator action."""

    id: str
    time: str | None
    actor: str
    action: str
    user_id: str | None
    reason: str | None
    expires: str | None
    detail: str | None


class AuditPage(BaseModel):
    """Audit records, newest first; pass ``next_cursor`` as ``cursor`` for older ones."""

    items: list[AuditRecordOut]
    next_cursor: str | None


class OffenderOut(BaseModel):
    """A subject (a user, or an anonymous client's address) and its refusals."""

    subject: str
    anonymous: bool
    refusals: int


class TopOut(BaseModel):
    """The most refused subjects over the last ``window_seconds``, across workers."""

    window_seconds: int
    items: list[OffenderOut]


class DefaultLimitOut(BaseModel):
    """The default per-user limit every worker applies."""

    rate: float
    burst: int


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
