"""What the admin API tests share: tokens, the routes, request and response helpers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
from pydantic import SecretStr

from floodwall import Floodwall, FloodwallSettings, Outcome
from floodwall.admin.openapi import openapi_document

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
DEFAULT_RATE = 10.0
DEFAULT_BURST = 10

STATUS_FIELDS = {
    "user_id",
    "blocked",
    "reason",
    "blocked_until",
    "credentials_not_before",
    "password_reset_required",
    "limit",
}
PROBLEM_JSON = "application/problem+json"

# The routes of the design's table ("Admin API"), as (method, path template).
DESIGN_ROUTES = {
    ("GET", "/users/{user_id}"),
    ("PUT", "/users/{user_id}/block"),
    ("DELETE", "/users/{user_id}/block"),
    ("POST", "/users/{user_id}/revoke"),
    ("POST", "/users/{user_id}/password-reset"),
    ("DELETE", "/users/{user_id}/password-reset"),
    ("PUT", "/users/{user_id}/limit"),
    ("DELETE", "/users/{user_id}/limit"),
    ("PUT", "/limits/default"),
    ("GET", "/blocked"),
    ("GET", "/audit"),
    ("GET", "/top"),
    ("GET", "/openapi.json"),
}
# A valid body for the routes that need one.
VALID_BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PUT", "/users/{user_id}/block"): {"reason": "flooding"},
    ("PUT", "/users/{user_id}/limit"): {"rate": 1.0, "burst": 2},
    ("PUT", "/limits/default"): {"rate": 1.0, "burst": 2},
    ("PUT", "/limits/plans/{name}"): {"rate": 2, "burst": 3},
    ("PUT", "/users/{user_id}/route-limit"): {"route": "POST /login", "limit": "10/minute"},
    ("PUT", "/users/{user_id}/concurrency"): {"limit": 3},
    ("DELETE", "/users/{user_id}/route-limit"): {"route": "POST /login"},
    ("PUT", "/limits/routes"): {"route": "POST /login", "limit": "10/minute"},
    ("DELETE", "/limits/routes"): {"route": "POST /login"},
    ("POST", "/blocks"): {"user_ids": ["alice", "bob"], "reason": "stuffing"},
    ("PUT", "/networks/{cidr}/block"): {"reason": "stuffing"},
}
NETWORK = "203.0.113.0%2F24"
Route = tuple[str, str, dict[str, Any] | None]


def requests_for(routes: Iterable[tuple[str, str]]) -> list[Route]:
    """One valid request per route, on the user ``alice``."""
    return [
        (
            method,
            path.replace("{user_id}", "alice").replace("{cidr}", NETWORK),
            VALID_BODIES.get((method, path)),
        )
        for method, path in sorted(routes)
    ]


def documented_routes() -> set[tuple[str, str]]:
    """Every route of the admin API's OpenAPI document, as (method, path template)."""
    return {
        (method.upper(), path)
        for path, operations in openapi_document()["paths"].items()
        for method in operations
    }


# Every route the admin app serves (new ones included), and those of the design.
ROUTES = requests_for(documented_routes() | DESIGN_ROUTES)


# -- helpers ---------------------------------------------------------------------------


def settings(**overrides: Any) -> FloodwallSettings:
    """Explicit settings, so no FLOODWALL_* variable of the environment leaks in."""
    values: dict[str, Any] = {
        "admin_token": SecretStr(TOKEN),
        "admin_tokens": {},
        "rate": DEFAULT_RATE,
        "burst": DEFAULT_BURST,
    }
    values.update(overrides)
    return FloodwallSettings(**values)


def client_for(floodwall: Floodwall, headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=floodwall.admin_app(), raise_app_exceptions=False)
    return httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=dict(headers or {})
    )


def user_path(user_id: str | bytes, suffix: str = "") -> str:
    """The path of a user route, the id percent-encoded (bytes for ids that are not UTF-8)."""
    if isinstance(user_id, bytes):
        return "/users/" + quote_from_bytes(user_id, safe="") + suffix
    return "/users/" + quote(user_id, safe="") + suffix


def id_bytes(user_id: str) -> bytes:
    """The bytes an id stands for; ids decoded from non-UTF-8 bytes carry them as surrogates."""
    return user_id.encode("utf-8", "surrogateescape")


def json_body(response: httpx.Response) -> Any:
    assert response.headers["content-type"] == "application/json", response.text
    return response.json()


def change_body(response: httpx.Response, received_by: int = 0) -> Any:
    """A write route's answer: the status (or default limit) it changed, without the
    ``received_by`` count, which is checked (no app follows a Floodwall not started), nor
    the ``replicas`` count, 0 (these stores have no replica)."""
    body = json_body(response)
    assert response.status_code == 200, response.text
    assert type(body["received_by"]) is int
    assert body.pop("received_by") == received_by, response.text
    assert body.pop("replicas") == 0, response.text
    return body


def assert_problem(response: httpx.Response, status: int, kind: str | None = None) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON
    body = response.json()
    assert body["status"] == status
    assert isinstance(body["type"], str)
    assert isinstance(body["title"], str)
    assert isinstance(body["detail"], str)
    if kind is not None:
        assert body["type"].endswith(kind), body
    assert "Traceback" not in response.text
    return body


def utc_time(value: Any) -> datetime:
    """Parse an ISO 8601 time the API sent, and check that it is UTC."""
    assert isinstance(value, str), value
    parsed = datetime.fromisoformat(value)
    assert parsed.utcoffset() == timedelta(0), value
    return parsed


def assert_status(
    body: Any,
    user_id: str,
    *,
    blocked: bool = False,
    reason: str | None = None,
    reset: bool = False,
    revoked: bool = False,
    rate: float = DEFAULT_RATE,
    burst: int = DEFAULT_BURST,
) -> None:
    """The documented shape of a user's status, with the expected values."""
    assert isinstance(body, dict)
    assert body.keys() >= STATUS_FIELDS, body.keys()
    assert body["user_id"] == user_id
    assert body["blocked"] is blocked
    assert body["reason"] == reason
    assert body["password_reset_required"] is reset
    if revoked:
        utc_time(body["credentials_not_before"])
    else:
        assert body["credentials_not_before"] is None
    if body["blocked_until"] is not None:
        assert blocked
        utc_time(body["blocked_until"])
    assert isinstance(body["limit"], dict)
    assert body["limit"]["rate"] == rate
    assert body["limit"]["burst"] == burst
    assert type(body["limit"]["burst"]) is int


def millis(value: Any) -> int:
    return round(utc_time(value).timestamp() * 1000)


async def audit(client: httpx.AsyncClient, limit: int = 1000) -> list[dict[str, Any]]:
    response = await client.get("/audit", params={"limit": limit})
    body = json_body(response)
    assert response.status_code == 200
    items: list[dict[str, Any]] = body["items"]
    return items


async def check(
    floodwall: Floodwall,
    user_id: str,
    *,
    issued_at_ms: int | None = None,
    credential_id: str | None = None,
) -> Outcome:
    """What the hot path decides for one request of ``user_id`` now."""
    decision = await floodwall.store.check(
        floodwall.keys.user(user_id),
        rate=DEFAULT_RATE,
        burst=DEFAULT_BURST,
        issued_at_ms=issued_at_ms,
        credential_id=credential_id,
    )
    return decision.outcome
