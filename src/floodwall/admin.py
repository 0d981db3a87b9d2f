"""The admin API: the operator actions over authenticated HTTP, with its OpenAPI document.

Every route needs ``Authorization: Bearer <token>`` matching one of the configured admin
tokens (compared in constant time); the token's name is the actor in the audit log. With
no token configured every request is refused. Bad input gets 422 problem+json and changes
nothing; a failing store gets 503, never a stack trace.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from floodwall.admin_models import (
    AuditPage,
    BlockBody,
    BlockedPage,
    DefaultLimitOut,
    LimitBody,
    Problem,
    ReasonBody,
    RevokeBody,
    TopOut,
    UserStatusOut,
)
from floodwall.errors import StorageError
from floodwall.service import Floodwall
from floodwall.status import UserStatus

__all__ = ["create_admin_app"]

MAX_BODY_BYTES = 16 * 1024
MAX_PAGE = 1000
MAX_WINDOW = 3600
PROBLEM = "urn:floodwall:problem:"


class _UserIdConvertor(Convertor[str]):
    # User ids are any string, "/" and newlines included (percent-encoded in the path).
    regex = r"[\s\S]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("floodwall_user", _UserIdConvertor())


class _Refused(Exception):
    def __init__(self, response: Response) -> None:
        self.response = response


def problem(
    status: int,
    kind: str,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, str]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """An RFC 9457 problem response."""
    body: dict[str, Any] = {
        "type": PROBLEM + kind,
        "title": title,
        "status": status,
        "detail": detail,
    }
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(
        body, status_code=status, headers=headers, media_type="application/problem+json"
    )


def _invalid(detail: str, errors: list[dict[str, str]] | None = None) -> _Refused:
    return _Refused(problem(422, "invalid-request", "Unprocessable Content", detail, errors=errors))


@dataclass(frozen=True)
class _Call:
    """What a handler gets: the request, the acting operator, the parsed body."""

    request: Request
    actor: str
    body: BaseModel | None
    user_id: str = ""
    query: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Floodwall, _Call], Awaitable[BaseModel]]


@dataclass(frozen=True)
class _Spec:
    method: str
    path: str
    summary: str
    response: type[BaseModel]
    handler: Handler
    body: type[BaseModel] | None = None
    body_required: bool = False
    paged: bool = False
    windowed: bool = False

    @property
    def suffix(self) -> str:
        return self.path.partition("{user_id}")[2]

    @property
    def has_user(self) -> bool:
        return "{user_id}" in self.path


def _status_out(status: UserStatus) -> UserStatusOut:
    return UserStatusOut.model_validate(status.to_json())


async def _get_status(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.status(call.user_id))


async def _block(fw: Floodwall, call: _Call) -> BaseModel:
    assert isinstance(call.body, BlockBody)
    body = call.body
    status = await fw.block(
        call.user_id, reason=body.reason, ttl_seconds=body.ttl_seconds, actor=call.actor
    )
    return _status_out(status)


def _reason(call: _Call) -> str | None:
    return call.body.reason if isinstance(call.body, ReasonBody | RevokeBody) else None


async def _unblock(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.unblock(call.user_id, actor=call.actor, reason=_reason(call)))


async def _revoke(fw: Floodwall, call: _Call) -> BaseModel:
    body = call.body if isinstance(call.body, RevokeBody) else RevokeBody()
    if body.credential_id is not None:
        status = await fw.revoke_credential(
            call.user_id, body.credential_id, actor=call.actor, reason=body.reason
        )
    else:
        status = await fw.revoke(call.user_id, actor=call.actor, reason=body.reason)
    return _status_out(status)


async def _require_reset(fw: Floodwall, call: _Call) -> BaseModel:
    status = await fw.require_password_reset(call.user_id, actor=call.actor, reason=_reason(call))
    return _status_out(status)


async def _clear_reset(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.clear_password_reset(call.user_id, actor=call.actor))


async def _set_limit(fw: Floodwall, call: _Call) -> BaseModel:
    assert isinstance(call.body, LimitBody)
    status = await fw.set_limit(
        call.user_id, rate=call.body.rate, burst=call.body.burst, actor=call.actor
    )
    return _status_out(status)


async def _clear_limit(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.clear_limit(call.user_id, actor=call.actor))


async def _set_default(fw: Floodwall, call: _Call) -> BaseModel:
    assert isinstance(call.body, LimitBody)
    rate, burst = await fw.set_default_limit(call.body.rate, call.body.burst, actor=call.actor)
    return DefaultLimitOut(rate=rate, burst=burst)


async def _get_default(fw: Floodwall, call: _Call) -> BaseModel:
    rate, burst = fw.default_limit
    return DefaultLimitOut(rate=rate, burst=burst)


async def _shadow_on(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.set_shadow(call.user_id, True, actor=call.actor))


async def _shadow_off(fw: Floodwall, call: _Call) -> BaseModel:
    return _status_out(await fw.set_shadow(call.user_id, False, actor=call.actor))


async def _top(fw: Floodwall, call: _Call) -> BaseModel:
    window = call.query["window"]
    offenders = await fw.top(window_seconds=window, limit=call.query["limit"])
    return TopOut.model_validate(
        {
            "window_seconds": window,
            "items": [
                {"subject": o.subject, "anonymous": o.anonymous, "refusals": o.refusals}
                for o in offenders
            ],
        }
    )


async def _blocked(fw: Floodwall, call: _Call) -> BaseModel:
    statuses, cursor = await fw.blocked(after=call.query["cursor"], limit=call.query["limit"])
    return BlockedPage(items=[_status_out(s) for s in statuses], next_cursor=cursor)


async def _audit(fw: Floodwall, call: _Call) -> BaseModel:
    records, cursor = await fw.audit_log(before=call.query["cursor"], limit=call.query["limit"])
    return AuditPage.model_validate(
        {"items": [r.to_json() for r in records], "next_cursor": cursor}
    )


SPECS = [
    _Spec("GET", "/users/{user_id}", "A user's status", UserStatusOut, _get_status),
    _Spec("PUT", "/users/{user_id}/block", "Block a user", UserStatusOut, _block, BlockBody, True),
    _Spec(
        "DELETE", "/users/{user_id}/block", "Unblock a user", UserStatusOut, _unblock, ReasonBody
    ),
    _Spec(
        "POST",
        "/users/{user_id}/revoke",
        "Revoke a user's credentials",
        UserStatusOut,
        _revoke,
        RevokeBody,
    ),
    _Spec(
        "POST",
        "/users/{user_id}/password-reset",
        "Require a password reset (revokes too)",
        UserStatusOut,
        _require_reset,
        ReasonBody,
    ),
    _Spec(
        "DELETE",
        "/users/{user_id}/password-reset",
        "Clear a required password reset",
        UserStatusOut,
        _clear_reset,
    ),
    _Spec(
        "PUT",
        "/users/{user_id}/limit",
        "Give a user a limit of their own",
        UserStatusOut,
        _set_limit,
        LimitBody,
        True,
    ),
    _Spec(
        "DELETE",
        "/users/{user_id}/limit",
        "Put a user back on the default limit",
        UserStatusOut,
        _clear_limit,
    ),
    _Spec(
        "PUT",
        "/users/{user_id}/shadow",
        "Observe a user's limit without enforcing it",
        UserStatusOut,
        _shadow_on,
    ),
    _Spec(
        "DELETE",
        "/users/{user_id}/shadow",
        "Enforce a user's limit again",
        UserStatusOut,
        _shadow_off,
    ),
    _Spec("GET", "/limits/default", "The default per-user limit", DefaultLimitOut, _get_default),
    _Spec(
        "PUT",
        "/limits/default",
        "Change the default per-user limit on every worker",
        DefaultLimitOut,
        _set_default,
        LimitBody,
        True,
    ),
    _Spec("GET", "/blocked", "Blocked users, in id order", BlockedPage, _blocked, paged=True),
    _Spec("GET", "/audit", "Operator actions, newest first", AuditPage, _audit, paged=True),
    _Spec(
        "GET", "/top", "The most refused users and clients recently", TopOut, _top, windowed=True
    ),
]


class _Auth:
    """Constant-time bearer-token check; returns the acting token's name."""

    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]

    def actor(self, request: Request) -> str:
        if not self._tokens:
            raise _Refused(
                problem(
                    403,
                    "admin-disabled",
                    "Admin API Disabled",
                    "No admin token is configured (FLOODWALL_ADMIN_TOKEN), so every request "
                    "is refused.",
                )
            )
        scheme, _, presented = request.headers.get("authorization", "").partition(" ")
        candidate = presented.strip().encode("utf-8", "surrogateescape")
        actor = None
        # Compare with every token, so the time taken does not tell which one came close.
        for name, token in self._tokens:
            if hmac.compare_digest(candidate, token) and actor is None:
                actor = name
        if scheme.lower() != "bearer" or actor is None:
            raise _Refused(
                problem(
                    401,
                    "unauthorized",
                    "Unauthorized",
                    "A valid admin bearer token is required.",
                    headers={"WWW-Authenticate": 'Bearer realm="floodwall-admin"'},
                )
            )
        return actor


def _user_id(request: Request, suffix: str) -> str:
    """The user id, read from the raw path so ids that are not UTF-8 survive
    (surrogateescape) instead of collapsing into U+FFFD.

    The route matched the *decoded* path; the raw one must agree, or ``alice%2Fblock``
    (the user ``alice/block``) would act on ``alice``.
    """
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        return str(request.path_params["user_id"])
    raw = raw.partition(b"?")[0]
    # Skip the mount prefix by its segments: percent-encoding never adds a literal "/".
    start = 0
    for _ in range(str(request.scope.get("root_path", "")).count("/")):
        start = raw.find(b"/", start + 1)
        if start < 0:
            raise _not_found()
    relative = raw[start:] if request.scope.get("root_path") else raw
    encoded_suffix = suffix.encode()
    if not relative.startswith(b"/users/") or not relative.endswith(encoded_suffix):
        raise _not_found()
    encoded_id = relative[7 : len(relative) - len(encoded_suffix)]
    if not encoded_id:
        raise _not_found()
    return unquote_to_bytes(encoded_id).decode("utf-8", "surrogateescape")


def _not_found() -> _Refused:
    return _Refused(problem(404, "http-error", "Not Found", "No such route."))


async def _read_body(request: Request, model: type[BaseModel], required: bool) -> BaseModel | None:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY_BYTES:
            raise _Refused(
                problem(
                    413,
                    "body-too-large",
                    "Content Too Large",
                    f"Bodies are limited to {MAX_BODY_BYTES} bytes.",
                )
            )
    if not data.strip():
        if required:
            raise _invalid("This request needs a JSON body.")
        return model()
    try:
        return model.model_validate_json(data)
    except ValidationError as exc:
        errors = [
            {"loc": ".".join(str(part) for part in error["loc"]) or "body", "msg": error["msg"]}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise _invalid("The body is not valid.", errors) from None


def _whole(request: Request, name: str, default: int, highest: int) -> int:
    raw = request.query_params.get(name, str(default))
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= highest:
        raise _invalid(f"{name} is a whole number from 1 to {highest}.")
    return int(raw)


def _query(request: Request, spec: _Spec) -> dict[str, Any]:
    if spec.paged:
        cursor = request.query_params.get("cursor") or None
        return {"limit": _whole(request, "limit", 100, MAX_PAGE), "cursor": cursor}
    if spec.windowed:
        return {
            "window": _whole(request, "window", 60, MAX_WINDOW),
            "limit": _whole(request, "limit", 10, MAX_PAGE),
        }
    return {}


def _endpoint(fw: Floodwall, auth: _Auth, spec: _Spec) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            actor = auth.actor(request)
            body = (
                await _read_body(request, spec.body, spec.body_required)
                if spec.body is not None
                else None
            )
            call = _Call(
                request,
                actor,
                body,
                _user_id(request, spec.suffix) if spec.has_user else "",
                _query(request, spec),
            )
            result = await spec.handler(fw, call)
        except _Refused as refused:
            return refused.response
        except StorageError:
            return problem(
                503,
                "store-unavailable",
                "Service Unavailable",
                "The store did not answer; nothing was changed or the change is unconfirmed. "
                "Retry: every action is idempotent.",
                headers={"Retry-After": "1"},
            )
        except ValueError as exc:
            return _invalid(str(exc)).response
        # ensure_ascii keeps ids that are not UTF-8 as \udcXX escapes that decode back to
        # the bytes sent, where pydantic's own JSON would fail on them or lose them.
        payload = json.dumps(result.model_dump(), ensure_ascii=True, allow_nan=False)
        return Response(payload, media_type="application/json")

    return endpoint


def openapi_document() -> dict[str, Any]:
    """The admin API's OpenAPI 3.1 document, built from the route table and models."""
    schemas: dict[str, Any] = {}

    def ref(model: type[BaseModel]) -> dict[str, str]:
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        return {"$ref": f"#/components/schemas/{model.__name__}"}

    def problem_response(description: str) -> dict[str, Any]:
        return {
            "description": description,
            "content": {"application/problem+json": {"schema": ref(Problem)}},
        }

    paths: dict[str, Any] = {}
    for spec in SPECS:
        parameters: list[dict[str, Any]] = []
        if spec.has_user:
            parameters.append(
                {
                    "name": "user_id",
                    "in": "path",
                    "required": True,
                    "description": "Any string, percent-encoded.",
                    "schema": {"type": "string", "minLength": 1},
                }
            )
        if spec.paged:
            parameters += [
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
                {"name": "cursor", "in": "query", "required": False, "schema": {"type": "string"}},
            ]
        if spec.windowed:
            parameters += [
                {
                    "name": "window",
                    "in": "query",
                    "required": False,
                    "description": "Seconds to look back.",
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_WINDOW},
                },
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE},
                },
            ]
        responses: dict[str, Any] = {
            "200": {
                "description": spec.summary,
                "content": {"application/json": {"schema": ref(spec.response)}},
            },
            "401": problem_response("No valid admin token."),
            "403": problem_response("The admin API is disabled."),
            "503": problem_response("The store did not answer."),
        }
        operation: dict[str, Any] = {
            "summary": spec.summary,
            "operationId": spec.method.lower()
            + "".join(char if char.isalnum() else "_" for char in spec.path),
            "parameters": parameters,
            "responses": responses,
            "security": [{"bearer": []}],
        }
        if spec.body is not None or spec.paged or spec.windowed:
            responses["422"] = problem_response("The request is not valid.")
        if spec.body is not None:
            responses["413"] = problem_response("The body is too large.")
            operation["requestBody"] = {
                "required": spec.body_required,
                "content": {"application/json": {"schema": ref(spec.body)}},
            }
        paths.setdefault(spec.path, {})[spec.method.lower()] = operation
    paths["/openapi.json"] = {
        "get": {
            "summary": "This document",
            "operationId": "get_openapi",
            "security": [{"bearer": []}],
            "responses": {
                "200": {"description": "The OpenAPI document", "content": {"application/json": {}}},
                "401": problem_response("No valid admin token."),
                "403": problem_response("The admin API is disabled."),
            },
        }
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "floodwall admin API", "version": "1"},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }


def create_admin_app(floodwall: Floodwall) -> Starlette:
    """The admin API of ``floodwall`` as a Starlette app (see ``Floodwall.admin_app``)."""
    auth = _Auth(floodwall.settings.named_admin_tokens())
    document = json.dumps(openapi_document()).encode()

    async def openapi(request: Request) -> Response:
        try:
            auth.actor(request)
        except _Refused as refused:
            return refused.response
        return Response(document, media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return problem(
            exc.status_code, "http-error", str(exc.detail), str(exc.detail), headers=exc.headers
        )

    routes = [Route("/openapi.json", openapi, methods=["GET"])]
    for spec in SPECS:
        path = spec.path.replace("{user_id}", "{user_id:floodwall_user}")
        routes.append(Route(path, _endpoint(floodwall, auth, spec), methods=[spec.method]))
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
