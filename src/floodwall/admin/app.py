"""The admin API: the operator actions over authenticated HTTP, with its OpenAPI document.

Every route needs ``Authorization: Bearer <token>`` matching one of the configured admin
tokens (compared in constant time); the token's name is the actor in the audit log. With
no token configured every request is refused. The operator console's page and assets
(``floodwall.admin.console``) are the exception: they hold no data, and its data calls need
the token like any other. Bad input gets 422 problem+json and changes nothing; a failing
store gets 503, never a stack trace.

Its length is the HTTP edge's: authentication, two ways of naming a user, body and
query parsing and problem responses, each small; the routes themselves are in
``admin_routes``.
"""

from __future__ import annotations

import hmac
import json
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote_to_bytes

from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route

from floodwall.admin.console import console_routes
from floodwall.admin.openapi import openapi_document
from floodwall.admin.routes import SPECS, Call, Services, Spec
from floodwall.control.actions import OperatorActions
from floodwall.core import rules
from floodwall.core.errors import StoreCommandError, StoreUnavailable
from floodwall.core.naming import id_from_bytes
from floodwall.http.responses import PROBLEM_TYPE_BASE
from floodwall.observe.offenders import Offenders

__all__ = ["AdminMount", "create_admin_app", "problem"]

MAX_BODY_BYTES = 16 * 1024


class _UserIdConvertor(Convertor[str]):
    # User ids are any string, "/" and newlines included (percent-encoded in the path); a
    # network's CIDR holds a "/" too.
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
        "type": PROBLEM_TYPE_BASE + kind,
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


AUTH_FAILURES = 50
"""Wrong tokens one client address may present per ``AUTH_WINDOW_SECONDS``; beyond, its
requests are refused (429) without a token check until the window ends."""
AUTH_WINDOW_SECONDS = 60.0
_AUTH_CLIENTS = 10_000


class _Auth:
    """Constant-time bearer-token check; returns the acting token's name. A client address
    that keeps presenting wrong tokens is refused for the rest of the window: guessing
    costs the guesser time, and a flood of them costs no token check or log line each."""

    def __init__(self, tokens: Mapping[str, str], clock: Callable[[], float]) -> None:
        self._tokens = [(name, token.encode()) for name, token in tokens.items()]
        self._clock = clock
        # Client address -> (wrong tokens, since when); oldest first, bounded.
        self._failures: dict[str, tuple[int, float]] = {}

    def _throttled(self, client: str, now: float) -> float:
        """Seconds until ``client`` may try again; 0.0: it may now."""
        failures = self._failures.get(client)
        if failures is None:
            return 0.0
        count, since = failures
        left = since + AUTH_WINDOW_SECONDS - now
        if left <= 0:
            del self._failures[client]
            return 0.0
        return left if count >= AUTH_FAILURES else 0.0

    def _failed(self, client: str, now: float) -> None:
        count, since = self._failures.pop(client, (0, now))
        if len(self._failures) >= _AUTH_CLIENTS:
            del self._failures[next(iter(self._failures))]
        self._failures[client] = (count + 1, since)

    def actor(self, request: Request) -> str:
        client = request.client.host if request.client else ""
        now = self._clock()
        wait = self._throttled(client, now)
        if wait:
            raise _Refused(
                problem(
                    429,
                    "too-many-attempts",
                    "Too Many Attempts",
                    "Too many wrong admin tokens from this address; try again later.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
            )
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
            self._failed(client, now)
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


QUERY_FORM = b"-"
"""The path segment that says the user id is in the ``user_id`` query parameter."""


def _user_id(request: Request, suffix: str) -> str:
    """The user id: from the path (percent-encoded), or from the ``user_id`` query
    parameter when the path names ``-`` (ids a path cannot hold: the empty one).

    Both are read raw, so the bytes name the id as ``floodwall.core.naming`` says (UTF-8 with
    surrogates passed through, else ``surrogateescape``) instead of collapsing into
    U+FFFD. The route matched the *decoded* path; the raw one must agree, or
    ``alice%2Fblock`` (the user ``alice/block``) would act on ``alice``.
    """
    in_path = _path_id(request, suffix)
    in_query = _query_id(request)
    if in_query is None:
        return id_from_bytes(in_path)
    if in_path != QUERY_FORM:
        raise _invalid(
            "Name the user once: in the path, or as /users/-/...?user_id=<percent-encoded id>."
        )
    return in_query


def _path_id(request: Request, suffix: str) -> bytes:
    raw = request.scope.get("raw_path")
    if not isinstance(raw, bytes):
        # No raw path from this server: the decoded one is all there is.
        return str(request.path_params["user_id"]).encode("utf-8", "surrogatepass")
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
    return unquote_to_bytes(encoded_id)


def _query_id(request: Request) -> str | None:
    """The ``user_id`` query parameter (form-encoded: ``+`` is a space), if given."""
    query = request.scope.get("query_string", b"")
    values = [
        value
        for name, _, value in (part.partition(b"=") for part in query.split(b"&"))
        if _form_bytes(name) == b"user_id"
    ]
    if not values:
        return None
    if len(values) > 1:
        raise _invalid("user_id is given more than once.")
    return id_from_bytes(_form_bytes(values[0]))


def _form_bytes(text: bytes) -> bytes:
    return unquote_to_bytes(text.replace(b"+", b" "))


def _not_found() -> _Refused:
    return _Refused(problem(404, "http-error", "Not Found", "No such route."))


async def _read_body(
    request: Request, model: type[BaseModel], required: bool, limit: int = MAX_BODY_BYTES
) -> BaseModel | None:
    data = b""
    async for chunk in request.stream():
        data += chunk
        if len(data) > limit:
            raise _Refused(
                problem(
                    413,
                    "body-too-large",
                    "Content Too Large",
                    f"Bodies of this route are limited to {limit} bytes.",
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
            {"loc": ".".join(str(part) for part in error["loc"]) or "body", "msg": _message(error)}
            for error in exc.errors(include_url=False, include_input=False)
        ]
        raise _invalid("The body is not valid.", errors) from None


def _message(error: Any) -> str:
    # A rule book refusal reads the same as on every other surface, without pydantic's
    # "Value error, " in front.
    cause = error.get("ctx", {}).get("error")
    return str(cause) if isinstance(cause, rules.RuleError) else str(error["msg"])


def _whole(request: Request, bound: rules.Bound, default: int) -> int:
    raw = request.query_params.get(bound.name, str(default))
    try:
        return int(bound.from_text(raw))
    except rules.RuleError as exc:
        raise _invalid(str(exc)) from None


def _query(request: Request, spec: Spec) -> dict[str, Any]:
    if spec.paged:
        # Present but empty is a cursor too: the empty user id's.
        cursor = request.query_params.get("cursor")
        return {"limit": _whole(request, rules.PAGE_SIZE, 100), "cursor": cursor}
    if spec.windowed:
        return {
            "window": _whole(request, rules.WINDOW_SECONDS, 60),
            "limit": _whole(request, rules.PAGE_SIZE, 10),
        }
    return {}


def _endpoint(
    services: Services, auth: _Auth, spec: Spec
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        try:
            actor = auth.actor(request)
            body = (
                await _read_body(request, spec.body, spec.body_required, spec.max_body)
                if spec.body is not None
                else None
            )
            call = Call(
                request,
                actor,
                body,
                _user_id(request, spec.suffix) if spec.has_user else "",
                _query(request, spec),
                str(request.path_params.get("cidr", "")),
                str(request.path_params.get("name", "")),
            )
            result = await spec.handler(services, call)
        except _Refused as refused:
            return refused.response
        except StoreCommandError:
            return problem(
                500,
                "store-error",
                "Store Error",
                "The store could not carry out this action (see the app's log); nothing "
                "else is affected.",
            )
        except StoreUnavailable:
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


class AdminMount(Mount):
    """A ``Mount`` for the admin API whose path may hold any character. Starlette's own
    matches its ``{path:path}`` with ``.*``, which stops at a newline: a user id with one
    (``/users/a%0Ab/block``) would be 404 before reaching the admin API."""

    def __init__(self, path: str, app: Starlette, name: str | None = None) -> None:
        super().__init__(path, app=app, name=name)
        self.path_regex = re.compile(self.path_regex.pattern, re.DOTALL)


def create_admin_app(
    actions: OperatorActions,
    offenders: Offenders,
    *,
    tokens: Mapping[str, str],
    clock: Callable[[], float],
) -> Starlette:
    """The admin API as a Starlette app (see ``Floodwall.admin_app``): ``tokens`` maps
    each operator's name (the actor in the audit log) to their bearer token; ``clock``
    (monotonic seconds) times the refusal of clients that keep guessing."""
    services = Services(actions, offenders)
    auth = _Auth(tokens, clock)
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

    # The console's page and assets hold no data: they need no token (its data calls do).
    routes = [Route("/openapi.json", openapi, methods=["GET"]), *console_routes()]
    for spec in SPECS:
        # A CIDR holds a "/": percent-encoded (10.0.0.0%2F8) or not, it reaches the route
        # decoded.
        path = spec.path.replace("{user_id}", "{user_id:floodwall_user}")
        path = path.replace("{cidr}", "{cidr:floodwall_user}")
        routes.append(Route(path, _endpoint(services, auth, spec), methods=[spec.method]))
    return Starlette(routes=routes, exception_handlers={HTTPException: http_error})
