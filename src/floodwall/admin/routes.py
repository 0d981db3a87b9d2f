"""The admin API's routes: one table (``SPECS``) of method, path, models and handler.

Handlers call the operator actions and the offenders; the table also builds the OpenAPI
document (``admin_openapi``).

Its length is the route table's: one small handler and one table row per route; each
handler only calls an operator action.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from starlette.requests import Request

from floodwall.admin.models import (
    AuditPage,
    BlockBody,
    BlockedPage,
    BulkBlockBody,
    BulkBlockChangeOut,
    ConcurrencyBody,
    DefaultLimitChangeOut,
    DefaultLimitOut,
    LimitBody,
    NetworkBlockBody,
    NetworkChangeOut,
    NetworksOut,
    PlanLimitChangeOut,
    PlanLimitOut,
    PlansOut,
    ReasonBody,
    RevokeBody,
    RouteBody,
    RouteDefaultsChangeOut,
    RouteDefaultsOut,
    RouteLimitBody,
    TopOut,
    UserChangeOut,
    UserStatusOut,
)
from floodwall.control.actions import OperatorActions, bulk_counts
from floodwall.killswitch.status import UserStatus, windows_json
from floodwall.observe.offenders import Offenders

__all__ = ["SPECS", "Call", "Services", "Spec"]


@dataclass(frozen=True, slots=True)
class Services:
    """What the admin API acts through: never the whole service."""

    actions: OperatorActions
    offenders: Offenders


@dataclass(frozen=True)
class Call:
    """What a handler gets: the request, the acting operator, the parsed body."""

    request: Request
    actor: str
    body: BaseModel | None
    user_id: str = ""
    query: dict[str, Any] = field(default_factory=dict)
    network: str = ""
    plan: str = ""


Handler = Callable[[Services, Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class Spec:
    method: str
    path: str
    summary: str
    response: type[BaseModel]
    handler: Handler
    body: type[BaseModel] | None = None
    body_required: bool = False
    paged: bool = False
    windowed: bool = False
    max_body: int = 16 * 1024

    @property
    def suffix(self) -> str:
        return self.path.partition("{user_id}")[2]

    @property
    def has_user(self) -> bool:
        return "{user_id}" in self.path

    @property
    def has_network(self) -> bool:
        return "{cidr}" in self.path

    @property
    def has_plan(self) -> bool:
        return "{name}" in self.path

    @property
    def query_form(self) -> str:
        """The path that names the user in the ``user_id`` query parameter instead."""
        return self.path.replace("{user_id}", "-")


def _status_out(status: UserStatus) -> UserStatusOut:
    return UserStatusOut.model_validate(status.to_json())


async def _delivered(
    on: Services, *, user_id: str | None = None, networks: bool = False
) -> dict[str, Any]:
    # Asked after the change: the replicas first (the answer waits for one to hold it),
    # then the workers (one that subscribes in between reloads the change anyway).
    replicas = await on.actions.replicated(user_id=user_id, networks=networks)
    received_by = await on.actions.listeners()
    return {"received_by": received_by, "replicas": replicas.acknowledged}


async def _changed(on: Services, status: UserStatus) -> UserChangeOut:
    delivered = await _delivered(on, user_id=status.user_id)
    return UserChangeOut.model_validate(status.to_json() | delivered)


async def _get_status(on: Services, call: Call) -> BaseModel:
    return _status_out(await on.actions.status(call.user_id))


async def _block(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, BlockBody)
    body = call.body
    status = await on.actions.block(
        call.user_id, reason=body.reason, ttl_seconds=body.ttl_seconds, actor=call.actor
    )
    return await _changed(on, status)


def _reason(call: Call) -> str | None:
    return call.body.reason if isinstance(call.body, ReasonBody | RevokeBody) else None


async def _unblock(on: Services, call: Call) -> BaseModel:
    return await _changed(
        on, await on.actions.unblock(call.user_id, actor=call.actor, reason=_reason(call))
    )


async def _revoke(on: Services, call: Call) -> BaseModel:
    body = call.body if isinstance(call.body, RevokeBody) else RevokeBody()
    if body.credential_id is not None:
        status = await on.actions.revoke_credential(
            call.user_id, body.credential_id, actor=call.actor, reason=body.reason
        )
    else:
        status = await on.actions.revoke(call.user_id, actor=call.actor, reason=body.reason)
    return await _changed(on, status)


async def _require_reset(on: Services, call: Call) -> BaseModel:
    status = await on.actions.require_password_reset(
        call.user_id, actor=call.actor, reason=_reason(call)
    )
    return await _changed(on, status)


async def _clear_reset(on: Services, call: Call) -> BaseModel:
    return await _changed(on, await on.actions.clear_password_reset(call.user_id, actor=call.actor))


async def _set_limit(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, LimitBody)
    status = await on.actions.set_limit(
        call.user_id, rate=call.body.rate, burst=call.body.burst, actor=call.actor
    )
    return await _changed(on, status)


async def _clear_limit(on: Services, call: Call) -> BaseModel:
    return await _changed(on, await on.actions.clear_limit(call.user_id, actor=call.actor))


async def _set_default(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, LimitBody)
    rate, burst = await on.actions.set_default_limit(
        call.body.rate, call.body.burst, actor=call.actor
    )
    return DefaultLimitChangeOut.model_validate(
        {"rate": rate, "burst": burst} | await _delivered(on)
    )


async def _plan_changed(on: Services, plan: str, limit: tuple[float, int] | None) -> BaseModel:
    rate, burst = limit if limit is not None else (None, None)
    return PlanLimitChangeOut.model_validate(
        {"plan": plan, "rate": rate, "burst": burst} | await _delivered(on)
    )


async def _set_plan(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, LimitBody)
    plan = call.plan
    limit = await on.actions.set_plan_limit(plan, call.body.rate, call.body.burst, actor=call.actor)
    return await _plan_changed(on, plan, limit)


async def _clear_plan(on: Services, call: Call) -> BaseModel:
    plan = call.plan
    return await _plan_changed(on, plan, await on.actions.clear_plan_limit(plan, actor=call.actor))


async def _get_plans(on: Services, call: Call) -> BaseModel:
    plans = on.actions.plan_limits
    return PlansOut(
        plans=[
            PlanLimitOut(plan=name, rate=rate, burst=burst) for name, (rate, burst) in plans.items()
        ]
    )


async def _get_default(on: Services, call: Call) -> BaseModel:
    rate, burst = on.actions.default_limit
    return DefaultLimitOut(rate=rate, burst=burst)


async def _set_route_limit(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, RouteLimitBody)
    status = await on.actions.set_route_limit(
        call.user_id, call.body.route, call.body.limit, actor=call.actor
    )
    return await _changed(on, status)


async def _clear_route_limit(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, RouteBody)
    status = await on.actions.clear_route_limit(call.user_id, call.body.route, actor=call.actor)
    return await _changed(on, status)


async def _get_route_defaults(on: Services, call: Call) -> BaseModel:
    return RouteDefaultsOut.model_validate({"routes": windows_json(on.actions.live_route_limits)})


async def _set_route_default(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, RouteLimitBody)
    routes = await on.actions.set_route_default(call.body.route, call.body.limit, actor=call.actor)
    return RouteDefaultsChangeOut.model_validate(
        {"routes": windows_json(routes)} | await _delivered(on)
    )


async def _clear_route_default(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, RouteBody)
    routes = await on.actions.clear_route_default(call.body.route, actor=call.actor)
    return RouteDefaultsChangeOut.model_validate(
        {"routes": windows_json(routes)} | await _delivered(on)
    )


async def _set_concurrency(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, ConcurrencyBody)
    status = await on.actions.set_concurrency(call.user_id, limit=call.body.limit, actor=call.actor)
    return await _changed(on, status)


async def _clear_concurrency(on: Services, call: Call) -> BaseModel:
    return await _changed(on, await on.actions.clear_concurrency(call.user_id, actor=call.actor))


async def _shadow_on(on: Services, call: Call) -> BaseModel:
    return await _changed(on, await on.actions.set_shadow(call.user_id, True, actor=call.actor))


async def _shadow_off(on: Services, call: Call) -> BaseModel:
    return await _changed(on, await on.actions.set_shadow(call.user_id, False, actor=call.actor))


async def _top(on: Services, call: Call) -> BaseModel:
    window = call.query["window"]
    limit = call.query["limit"]
    offenders = await on.offenders.top(window_seconds=window, limit=limit)
    networks = await on.offenders.top_networks(window_seconds=window, limit=limit)
    return TopOut.model_validate(
        {
            "window_seconds": window,
            "items": [
                {"subject": o.subject, "anonymous": o.anonymous, "refusals": o.refusals}
                for o in offenders
            ],
            "networks": [{"network": n.network, "refusals": n.refusals} for n in networks],
        }
    )


async def _bulk_block(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, BulkBlockBody)
    body = call.body
    results = await on.actions.block_many(
        body.user_ids, reason=body.reason, ttl_seconds=body.ttl_seconds, actor=call.actor
    )
    blocked, failed = bulk_counts(results)
    return BulkBlockChangeOut.model_validate(
        {
            "items": [result.to_json() for result in results],
            "blocked": blocked,
            "failed": failed,
        }
        # On a Cluster the users are on many nodes: the wait is on the last one's.
        | await _delivered(on, user_id=body.user_ids[-1] if body.user_ids else None)
    )


async def _block_network(on: Services, call: Call) -> BaseModel:
    assert isinstance(call.body, NetworkBlockBody)
    body = call.body
    block = await on.actions.block_network(
        call.network,
        reason=body.reason,
        ttl_seconds=body.ttl_seconds,
        force=body.force,
        actor=call.actor,
    )
    return NetworkChangeOut.model_validate(
        block.to_json() | {"blocked": True} | await _delivered(on, networks=True)
    )


async def _unblock_network(on: Services, call: Call) -> BaseModel:
    network = await on.actions.unblock_network(call.network, actor=call.actor, reason=_reason(call))
    return NetworkChangeOut.model_validate(
        {
            "network": network,
            "blocked": False,
            "reason": None,
            "blocked_by": None,
            "blocked_at": None,
            "blocked_until": None,
        }
        | await _delivered(on, networks=True)
    )


async def _networks(on: Services, call: Call) -> BaseModel:
    blocks = await on.actions.networks()
    return NetworksOut.model_validate({"items": [block.to_json() for block in blocks]})


async def _blocked(on: Services, call: Call) -> BaseModel:
    statuses, cursor = await on.actions.blocked(
        after=call.query["cursor"], limit=call.query["limit"]
    )
    return BlockedPage(items=[_status_out(s) for s in statuses], next_cursor=cursor)


async def _audit(on: Services, call: Call) -> BaseModel:
    records, cursor = await on.actions.audit_log(
        before=call.query["cursor"], limit=call.query["limit"]
    )
    return AuditPage.model_validate(
        {"items": [r.to_json() for r in records], "next_cursor": cursor}
    )


SPECS = [
    Spec("GET", "/users/{user_id}", "A user's status", UserStatusOut, _get_status),
    Spec("PUT", "/users/{user_id}/block", "Block a user", UserChangeOut, _block, BlockBody, True),
    Spec("DELETE", "/users/{user_id}/block", "Unblock a user", UserChangeOut, _unblock, ReasonBody),
    Spec(
        "POST",
        "/users/{user_id}/revoke",
        "Revoke a user's credentials",
        UserChangeOut,
        _revoke,
        RevokeBody,
    ),
    Spec(
        "POST",
        "/users/{user_id}/password-reset",
        "Require a password reset (revokes too)",
        UserChangeOut,
        _require_reset,
        ReasonBody,
    ),
    Spec(
        "DELETE",
        "/users/{user_id}/password-reset",
        "Clear a required password reset",
        UserChangeOut,
        _clear_reset,
    ),
    Spec(
        "PUT",
        "/users/{user_id}/limit",
        "Give a user a limit of their own",
        UserChangeOut,
        _set_limit,
        LimitBody,
        True,
    ),
    Spec(
        "DELETE",
        "/users/{user_id}/limit",
        "Put a user back on the default limit",
        UserChangeOut,
        _clear_limit,
    ),
    Spec(
        "PUT",
        "/users/{user_id}/shadow",
        "Observe a user's limit without enforcing it",
        UserChangeOut,
        _shadow_on,
    ),
    Spec(
        "DELETE",
        "/users/{user_id}/shadow",
        "Enforce a user's limit again",
        UserChangeOut,
        _shadow_off,
    ),
    Spec("GET", "/limits/default", "The default per-user limit", DefaultLimitOut, _get_default),
    Spec("GET", "/limits/plans", "Every plan's limit", PlansOut, _get_plans),
    Spec(
        "PUT",
        "/limits/plans/{name}",
        "Change a plan's limit on every worker",
        PlanLimitChangeOut,
        _set_plan,
        LimitBody,
        True,
    ),
    Spec(
        "DELETE",
        "/limits/plans/{name}",
        "Put a plan back on the limit of the settings",
        PlanLimitChangeOut,
        _clear_plan,
    ),
    Spec(
        "PUT",
        "/limits/default",
        "Change the default per-user limit on every worker",
        DefaultLimitChangeOut,
        _set_default,
        LimitBody,
        True,
    ),
    Spec(
        "PUT",
        "/users/{user_id}/route-limit",
        "Give a user a limit of their own on one route",
        UserChangeOut,
        _set_route_limit,
        RouteLimitBody,
        True,
    ),
    Spec(
        "DELETE",
        "/users/{user_id}/route-limit",
        "Put a user back on the app's limit of one route",
        UserChangeOut,
        _clear_route_limit,
        RouteBody,
        True,
    ),
    Spec(
        "PUT",
        "/users/{user_id}/concurrency",
        "Give a user a limit of requests in flight of their own",
        UserChangeOut,
        _set_concurrency,
        ConcurrencyBody,
        True,
    ),
    Spec(
        "DELETE",
        "/users/{user_id}/concurrency",
        "Put a user back on the configured limit of requests in flight",
        UserChangeOut,
        _clear_concurrency,
    ),
    Spec(
        "GET",
        "/limits/routes",
        "Route limits changed for everyone",
        RouteDefaultsOut,
        _get_route_defaults,
    ),
    Spec(
        "PUT",
        "/limits/routes",
        "Change one route's limit on every worker",
        RouteDefaultsChangeOut,
        _set_route_default,
        RouteLimitBody,
        True,
    ),
    Spec(
        "DELETE",
        "/limits/routes",
        "Put every worker back on the app's limit of one route",
        RouteDefaultsChangeOut,
        _clear_route_default,
        RouteBody,
        True,
    ),
    Spec(
        "POST",
        "/blocks",
        "Block up to 1,000 users at once",
        BulkBlockChangeOut,
        _bulk_block,
        BulkBlockBody,
        True,
        max_body=1024 * 1024,
    ),
    Spec(
        "PUT",
        "/networks/{cidr}/block",
        "Block a network (CIDR, percent-encoded: 10.0.0.0%2F8)",
        NetworkChangeOut,
        _block_network,
        NetworkBlockBody,
        True,
    ),
    Spec(
        "DELETE",
        "/networks/{cidr}/block",
        "Lift a network block",
        NetworkChangeOut,
        _unblock_network,
        ReasonBody,
    ),
    Spec("GET", "/networks", "Blocked networks, in address order", NetworksOut, _networks),
    Spec("GET", "/blocked", "Blocked users, in id order", BlockedPage, _blocked, paged=True),
    Spec("GET", "/audit", "Operator actions, newest first", AuditPage, _audit, paged=True),
    Spec("GET", "/top", "The most refused users and clients recently", TopOut, _top, windowed=True),
]
