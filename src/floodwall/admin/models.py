"""The admin API's request and response bodies (pydantic), shared with its OpenAPI document."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from floodwall.core import rules

__all__ = [
    "AuditPage",
    "AuditRecordOut",
    "BlockBody",
    "BlockedPage",
    "BulkBlockBody",
    "BulkBlockChangeOut",
    "BulkBlockResultOut",
    "ConcurrencyBody",
    "DefaultLimitChangeOut",
    "DefaultLimitOut",
    "LimitBody",
    "LimitOut",
    "NetworkBlockBody",
    "NetworkBlockOut",
    "NetworkChangeOut",
    "NetworksOut",
    "OffenderOut",
    "Problem",
    "ReasonBody",
    "RefusingNetworkOut",
    "RevokeBody",
    "RouteBody",
    "RouteDefaultsChangeOut",
    "RouteDefaultsOut",
    "RouteLimitBody",
    "TopOut",
    "UserChangeOut",
    "UserStatusOut",
    "WindowOut",
]

# Inputs are never echoed in errors: a body may hold a token pasted in the wrong place.
_BODY = ConfigDict(extra="forbid", strict=True, hide_input_in_errors=True)


def _bounded(bound: rules.Bound) -> Any:
    # The rule book checks the value as JSON parsed it, before pydantic's own type check,
    # so a wrong type gets the same message as on every surface (and 2905.0 counts as a
    # whole number, as JSON Schema's "integer" and the Python API have it); the schema
    # shows its bounds.
    return (
        BeforeValidator(bound.check),
        Field(json_schema_extra={"minimum": bound.low, "maximum": bound.high}),
    )


def _text(text: rules.Text) -> Any:
    return Field(json_schema_extra={"minLength": text.low, "maxLength": text.high})


Reason = Annotated[str, AfterValidator(rules.REASON.check), _text(rules.REASON)]
TtlSeconds = Annotated[float, *_bounded(rules.TTL_SECONDS)]
# A rate as the Python API and the CLI take it: a number, or text such as "600/minute".
Rate = Annotated[
    float,
    BeforeValidator(rules.rate),
    Field(json_schema_extra={"minimum": rules.RATE.low, "maximum": rules.RATE.high}),
]
Burst = Annotated[int, *_bounded(rules.BURST)]
RouteText = Annotated[str, AfterValidator(rules.ROUTE.check), _text(rules.ROUTE)]
CredentialId = Annotated[str, AfterValidator(rules.CREDENTIAL_ID.check), _text(rules.CREDENTIAL_ID)]
UserId = Annotated[str, AfterValidator(rules.USER_ID.check), _text(rules.USER_ID)]


def _bulk_size(user_ids: list[str]) -> list[str]:
    rules.BULK_USER_IDS.whole_number(len(user_ids))
    return user_ids


UserIds = Annotated[
    list[UserId],
    AfterValidator(_bulk_size),
    Field(
        json_schema_extra={
            "minItems": int(rules.BULK_USER_IDS.low),
            "maxItems": int(rules.BULK_USER_IDS.high),
        }
    ),
]


class BlockBody(BaseModel):
    """Block a user now, for ``ttl_seconds`` or until unblocked."""

    model_config = _BODY
    reason: Reason
    ttl_seconds: TtlSeconds | None = None


class BulkBlockBody(BaseModel):
    """Block up to 1,000 users at once, each as ``PUT /users/{user_id}/block`` would."""

    model_config = _BODY
    user_ids: UserIds
    reason: Reason
    ttl_seconds: TtlSeconds | None = None


class NetworkBlockBody(BaseModel):
    """Block a network now, for ``ttl_seconds`` or until lifted; ``force`` allows networks
    broader than a /8 (IPv4) or a /32 (IPv6)."""

    model_config = _BODY
    reason: Reason
    ttl_seconds: TtlSeconds | None = None
    force: bool = False


class ReasonBody(BaseModel):
    """An optional reason, recorded in the audit log."""

    model_config = _BODY
    reason: Reason | None = None


class RevokeBody(BaseModel):
    """Revoke every credential issued up to now, or only ``credential_id``."""

    model_config = _BODY
    reason: Reason | None = None
    credential_id: CredentialId | None = None


class LimitBody(BaseModel):
    """A limit: ``rate`` requests per second, bursts of up to ``burst``."""

    model_config = _BODY
    rate: Rate
    burst: Burst

    @model_validator(mode="after")
    def _refills(self) -> LimitBody:
        rules.limit(self.rate, self.burst)
        return self


class LimitOut(BaseModel):
    """A user's effective limit; ``custom`` when it is the user's own, ``shadow`` when it
    is observed but not enforced."""

    rate: float
    burst: int
    custom: bool
    shadow: bool


class WindowOut(BaseModel):
    """A route limit: at most ``limit`` requests in any ``period_seconds``."""

    limit: int
    period_seconds: float


class RouteLimitBody(BaseModel):
    """A route's limit: ``route`` as the app names it (``POST /login``), ``limit`` such as
    ``10/minute``."""

    model_config = _BODY
    route: RouteText
    limit: Annotated[str, AfterValidator(rules.ROUTE_RATE.check), _text(rules.ROUTE_RATE)]


class ConcurrencyBody(BaseModel):
    """A user's own limit of requests in flight at once."""

    model_config = _BODY
    limit: Annotated[int, *_bounded(rules.CONCURRENCY)]


class RouteBody(BaseModel):
    """A route as the app names it (``POST /login``)."""

    model_config = _BODY
    route: RouteText


class RouteDefaultsOut(BaseModel):
    """Route limits an operator changed for everyone, by route."""

    routes: dict[str, WindowOut]


class UserStatusOut(BaseModel):
    """A user's status; times are ISO 8601 UTC or null; ``route_limits`` are the user's own
    limits of routes, in place of the app's."""

    user_id: str
    blocked: bool
    reason: str | None
    blocked_by: str | None
    blocked_at: str | None
    blocked_until: str | None
    credentials_not_before: str | None
    password_reset_required: bool
    limit: LimitOut
    route_limits: dict[str, WindowOut] = Field(default_factory=dict)
    concurrency: int | None = None
    plan: str | None = Field(
        default=None, description="The plan the user's requests name, as last seen."
    )


ReceivedBy = Annotated[
    int | None,
    Field(
        description="How many app workers follow changes on this store and key prefix, and so "
        "received this one. 0: the change is stored, but no running app has received it "
        "(an admin app outside a started app, or another key prefix). null: the change is "
        "stored, but the store could not count them (see the app's log).",
    ),
]


Replicas = Annotated[
    int,
    Field(
        description="How many replicas of the store's primary acknowledged the change "
        "(WAIT, bounded by FLOODWALL_REDIS_WAIT_TIMEOUT) before this answer: a change they "
        "hold survives a failover. 0 where the primary has no replica connected (nothing "
        "to wait for), or none acknowledged in time.",
    ),
]


class UserChangeOut(UserStatusOut):
    """The user's status after a change, how many app workers received the change, and how
    many replicas acknowledged it."""

    received_by: ReceivedBy
    replicas: Replicas


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


class RefusingNetworkOut(BaseModel):
    """A network (the /24 of IPv4 clients, the /64 of IPv6 ones) and the refusals of its
    anonymous clients."""

    network: str
    refusals: int


class TopOut(BaseModel):
    """The most refused subjects over the last ``window_seconds``, across workers, and the
    networks whose anonymous clients were refused most. Counts are never over, and under
    by at most about 1 % of one worker's refusals per second (see docs/operations.md)."""

    window_seconds: int
    items: list[OffenderOut]
    networks: list[RefusingNetworkOut]


class BulkBlockResultOut(BaseModel):
    """What a bulk block did to one user (in the order asked); ``error`` when that user's
    update failed (the others are blocked)."""

    user_id: str
    blocked: bool
    blocked_until: str | None
    error: str | None


class BulkBlockChangeOut(BaseModel):
    """One result per id asked for, how many were blocked and failed, how many app workers
    received the change, and how many replicas acknowledged it."""

    items: list[BulkBlockResultOut]
    blocked: int
    failed: int
    received_by: ReceivedBy
    replicas: Replicas


class NetworkBlockOut(BaseModel):
    """A blocked network; times are ISO 8601 UTC or null (no end)."""

    network: str
    reason: str | None
    blocked_by: str | None
    blocked_at: str | None
    blocked_until: str | None


class NetworkChangeOut(BaseModel):
    """A network after a change (``blocked``: whether it is blocked now), how many app
    workers received the change, and how many replicas acknowledged it."""

    network: str
    blocked: bool
    reason: str | None
    blocked_by: str | None
    blocked_at: str | None
    blocked_until: str | None
    received_by: ReceivedBy
    replicas: Replicas


class NetworksOut(BaseModel):
    """Every network block that holds now (at most 10,000), in address order."""

    items: list[NetworkBlockOut]


class DefaultLimitOut(BaseModel):
    """The default per-user limit every worker applies."""

    rate: float
    burst: int


class PlanLimitOut(BaseModel):
    """A plan's limit: ``null`` rate and burst when the plan has none (its users get the
    default limit)."""

    plan: str
    rate: float | None
    burst: int | None


class PlanLimitChangeOut(PlanLimitOut):
    """A plan's limit after a change, how many app workers received the change, and how
    many replicas acknowledged it."""

    received_by: ReceivedBy
    replicas: Replicas


class PlansOut(BaseModel):
    """Every plan's limit on the worker that answers."""

    plans: list[PlanLimitOut]


class DefaultLimitChangeOut(DefaultLimitOut):
    """The default limit after a change, how many app workers received the change, and how
    many replicas acknowledged it."""

    received_by: ReceivedBy
    replicas: Replicas


class RouteDefaultsChangeOut(RouteDefaultsOut):
    """The route limits after a change, how many app workers received the change, and how
    many replicas acknowledged it."""

    received_by: ReceivedBy
    replicas: Replicas


class Problem(BaseModel):
    """An RFC 9457 problem."""

    type: str
    title: str
    status: int
    detail: str
    errors: list[dict[str, str]] | None = None
