"""The admin HTTP API, driven over httpx's ASGI transport, on every store.

Each test runs on the in-memory store, on fakeredis and on a real redis-server (the
``store`` fixture). App exceptions are not re-raised by the transport: a crash is what a
real server would send, a 500, and the tests say that it must never happen.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, quote_from_bytes

import httpx
import pytest
from pydantic import SecretStr
from starlette.applications import Starlette
from starlette.routing import Mount

from floodwall import Floodwall, FloodwallSettings, Outcome, RedisStore, Store
from floodwall.admin_openapi import openapi_document

TOKEN = "admin-token-0123456789abcdef"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
OPS_TOKEN = "ops-token-0123456789abcdef"
ONCALL_TOKEN = "oncall-token-0123456789abcdef"
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
}
Route = tuple[str, str, dict[str, Any] | None]


def requests_for(routes: Iterable[tuple[str, str]]) -> list[Route]:
    """One valid request per route, on the user ``alice``."""
    return [
        (method, path.replace("{user_id}", "alice"), VALID_BODIES.get((method, path)))
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


@pytest.fixture
def floodwall(store: Store) -> Floodwall:
    return Floodwall(settings(), store=store)


@pytest.fixture
async def client(floodwall: Floodwall) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(floodwall, AUTH) as admin:
        yield admin


# -- authentication --------------------------------------------------------------------

BAD_AUTHORIZATION: dict[str, dict[str, str]] = {
    "missing": {},
    "empty": {"Authorization": ""},
    "basic": {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="},
    "basic-with-the-token": {"Authorization": f"Basic {TOKEN}"},
    "bearer-alone": {"Authorization": "Bearer"},
    "bearer-empty": {"Authorization": "Bearer "},
    "wrong-scheme": {"Authorization": f"Token {TOKEN}"},
    "no-scheme": {"Authorization": TOKEN},
    "wrong-token": {"Authorization": "Bearer not-the-admin-token-at-all"},
    "token-prefix": {"Authorization": f"Bearer {TOKEN[:-1]}"},
    "token-extended": {"Authorization": f"Bearer {TOKEN}x"},
}


@pytest.mark.parametrize("headers", BAD_AUTHORIZATION.values(), ids=BAD_AUTHORIZATION.keys())
async def test_requests_without_a_valid_token_get_401_and_change_nothing(
    floodwall: Floodwall, headers: dict[str, str]
) -> None:
    async with client_for(floodwall, headers) as anonymous:
        for method, path, body in ROUTES:
            response = await anonymous.request(method, path, json=body)
            assert_problem(response, 401, "unauthorized")
            assert response.headers["www-authenticate"].startswith("Bearer"), (method, path)
    async with client_for(floodwall, AUTH) as admin:
        assert_status(json_body(await admin.get("/users/alice")), "alice")
        assert await audit(admin) == []
        assert json_body(await admin.get("/limits/default")) == {
            "rate": DEFAULT_RATE,
            "burst": DEFAULT_BURST,
        }


@pytest.mark.parametrize(
    "headers",
    [{}, AUTH, {"Authorization": "Bearer "}, {"Authorization": "Basic dXNlcjpwYXNzd29yZA=="}],
    ids=["no-header", "a-plausible-token", "empty-bearer", "basic"],
)
async def test_with_no_token_configured_every_route_is_refused(
    store: Store, headers: dict[str, str]
) -> None:
    floodwall = Floodwall(settings(admin_token=None, admin_tokens={}), store=store)
    async with client_for(floodwall, headers) as anyone:
        for method, path, body in ROUTES:
            response = await anyone.request(method, path, json=body)
            assert_problem(response, 403, "admin-disabled")
    assert (await floodwall.status("alice")).blocked is False
    assert (await floodwall.audit_log())[0] == []


async def test_a_valid_token_is_accepted_and_the_scheme_is_case_insensitive(
    floodwall: Floodwall,
) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        async with client_for(floodwall, {"Authorization": f"{scheme} {TOKEN}"}) as admin:
            response = await admin.get("/users/alice")
            assert response.status_code == 200
            assert_status(json_body(response), "alice")
            document = json_body(await admin.get("/openapi.json"))
            assert document["openapi"].startswith("3.")


async def test_named_tokens_act_as_themselves_in_the_audit_log(store: Store) -> None:
    floodwall = Floodwall(
        settings(
            admin_token=None,
            admin_tokens={"ops": SecretStr(OPS_TOKEN), "oncall": SecretStr(ONCALL_TOKEN)},
        ),
        store=store,
    )
    ops = client_for(floodwall, {"Authorization": f"Bearer {OPS_TOKEN}"})
    oncall = client_for(floodwall, {"Authorization": f"Bearer {ONCALL_TOKEN}"})
    async with ops, oncall:
        blocked = await ops.put("/users/mallory/block", json={"reason": "6000 rps"})
        assert blocked.status_code == 200
        assert json_body(blocked)["blocked_by"] == "ops"
        unblocked = await oncall.request(
            "DELETE", "/users/mallory/block", json={"reason": "false alarm"}
        )
        assert unblocked.status_code == 200
        reset = await oncall.post("/users/mallory/password-reset")
        assert reset.status_code == 200
        entries = await audit(ops)
        # The name of a token is not a token.
        nobody = client_for(floodwall, {"Authorization": "Bearer ops"})
        async with nobody:
            assert_problem(await nobody.get("/audit"), 401)
    assert [(e["actor"], e["action"], e["user_id"], e["reason"]) for e in entries] == [
        ("oncall", "require-password-reset", "mallory", None),
        ("oncall", "unblock", "mallory", "false alarm"),
        ("ops", "block", "mallory", "6000 rps"),
    ]
    for entry in entries:
        utc_time(entry["time"])


# -- the write routes ------------------------------------------------------------------


async def test_block_without_a_ttl_blocks_until_unblocked(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.put("/users/alice/block", json={"reason": "credential stuffing"})
    assert response.status_code == 200
    body = json_body(response)
    assert_status(body, "alice", blocked=True, reason="credential stuffing")
    assert body["blocked_until"] is None
    assert json_body(await client.get("/users/alice")) == body
    assert_status(json_body(await client.get("/users/bob")), "bob")
    assert await check(floodwall, "alice") == Outcome.BLOCKED
    assert await check(floodwall, "bob") == Outcome.ALLOWED
    [entry] = await audit(client)
    assert (entry["actor"], entry["action"], entry["user_id"], entry["reason"]) == (
        "admin",
        "block",
        "alice",
        "credential stuffing",
    )
    assert entry["expires"] is None


async def test_block_with_a_ttl_ends_ttl_seconds_after_it_began(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.put("/users/alice/block", json={"reason": "burst", "ttl_seconds": 90})
    assert response.status_code == 200
    body = json_body(response)
    assert_status(body, "alice", blocked=True, reason="burst")
    assert millis(body["blocked_until"]) - millis(body["blocked_at"]) == 90_000
    assert json_body(await client.get("/users/alice")) == body
    assert await check(floodwall, "alice") == Outcome.BLOCKED
    [entry] = await audit(client)
    assert entry["action"] == "block"
    assert entry["expires"] == body["blocked_until"]


async def test_whole_numbers_sent_as_floats_are_whole_numbers(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    # Clients that hold every JSON number as a double send 2905 as 2905.0 (JSON Schema's
    # "integer" includes it); 2905.5, true and "2905" are refused (the bad-body table).
    json_type = {"content-type": "application/json"}
    blocked = await client.put(
        "/users/alice/block", content=b'{"reason": "r", "ttl_seconds": 2905.0}', headers=json_type
    )
    assert blocked.status_code == 200, blocked.text
    body = json_body(blocked)
    assert millis(body["blocked_until"]) - millis(body["blocked_at"]) == 2_905_000
    limited = await client.put(
        "/users/bob/limit", content=b'{"rate": 2, "burst": 7.0}', headers=json_type
    )
    assert limited.status_code == 200, limited.text
    assert_status(json_body(limited), "bob", rate=2.0, burst=7)
    default = await client.put(
        "/limits/default", content=b'{"rate": 5, "burst": 1.2e1}', headers=json_type
    )
    assert default.status_code == 200, default.text
    assert json_body(default) == {"rate": 5.0, "burst": 12}
    assert type(floodwall.default_limit[1]) is int
    [entry, _, _] = await audit(client)
    assert entry["detail"] == "rate=5.0 burst=12"


async def test_unblock_is_idempotent(floodwall: Floodwall, client: httpx.AsyncClient) -> None:
    never_blocked = json_body(await client.get("/users/alice"))
    await client.put("/users/alice/block", json={"reason": "suspicious", "ttl_seconds": 600})
    first = await client.delete("/users/alice/block")
    second = await client.delete("/users/alice/block")
    assert first.status_code == second.status_code == 200
    assert json_body(first) == json_body(second) == never_blocked
    assert_status(json_body(second), "alice")
    assert json_body(await client.get("/users/alice")) == never_blocked
    assert await check(floodwall, "alice") == Outcome.ALLOWED
    # A user who was never blocked can be unblocked too, and stays as they were.
    bob = await client.request("DELETE", "/users/bob/block", json={"reason": "cleanup"})
    assert bob.status_code == 200
    assert_status(json_body(bob), "bob")
    blocked = json_body(await client.get("/blocked"))
    assert blocked == {"items": [], "next_cursor": None}
    assert [e["action"] for e in await audit(client)] == ["unblock", "unblock", "unblock", "block"]


async def test_revoke_refuses_every_credential_issued_up_to_now(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.post("/users/alice/revoke")
    assert response.status_code == 200
    body = json_body(response)
    assert_status(body, "alice", revoked=True)
    assert json_body(await client.get("/users/alice")) == body
    not_before = millis(body["credentials_not_before"])
    assert await check(floodwall, "alice", issued_at_ms=not_before - 1000) == Outcome.REVOKED
    assert await check(floodwall, "alice", issued_at_ms=not_before + 1000) == Outcome.ALLOWED
    assert await check(floodwall, "bob", issued_at_ms=not_before - 1000) == Outcome.ALLOWED
    [entry] = await audit(client)
    assert (entry["action"], entry["user_id"]) == ("revoke", "alice")


async def test_revoke_by_credential_id_refuses_only_that_credential(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.post(
        "/users/alice/revoke", json={"credential_id": "jti-leaked", "reason": "token in a log"}
    )
    assert response.status_code == 200
    # Other credentials stay valid, so there is no "not before" time.
    assert_status(json_body(response), "alice")
    assert await check(floodwall, "alice", credential_id="jti-leaked") == Outcome.REVOKED
    assert await check(floodwall, "alice", credential_id="jti-other") == Outcome.ALLOWED
    assert await check(floodwall, "bob", credential_id="jti-leaked") == Outcome.ALLOWED
    [entry] = await audit(client)
    assert (entry["action"], entry["user_id"], entry["reason"]) == (
        "revoke-credential",
        "alice",
        "token in a log",
    )
    assert "jti-leaked" in entry["detail"]


async def test_password_reset_is_required_then_cleared(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    required = await client.post("/users/alice/password-reset", json={"reason": "phished"})
    assert required.status_code == 200
    body = json_body(required)
    # Requiring a reset revokes too.
    assert_status(body, "alice", reset=True, revoked=True)
    assert json_body(await client.get("/users/alice")) == body
    assert await check(floodwall, "alice") == Outcome.RESET_REQUIRED
    cleared = await client.delete("/users/alice/password-reset")
    assert cleared.status_code == 200
    after = json_body(cleared)
    assert_status(after, "alice", revoked=True)
    assert after["credentials_not_before"] == body["credentials_not_before"]
    assert await check(floodwall, "alice") == Outcome.ALLOWED
    again = await client.delete("/users/alice/password-reset")
    assert json_body(again) == after
    actions = [(e["action"], e["reason"]) for e in await audit(client)]
    assert actions == [
        ("clear-password-reset", None),
        ("clear-password-reset", None),
        ("require-password-reset", "phished"),
    ]


async def test_a_per_user_limit_is_set_enforced_and_cleared(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.put("/users/alice/limit", json={"rate": 0.5, "burst": 3})
    assert response.status_code == 200
    body = json_body(response)
    assert_status(body, "alice", rate=0.5, burst=3)
    assert body["limit"]["custom"] is True
    assert json_body(await client.get("/users/alice")) == body
    assert_status(json_body(await client.get("/users/bob")), "bob")
    outcomes = [await check(floodwall, "alice") for _ in range(4)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    cleared = await client.delete("/users/alice/limit")
    assert cleared.status_code == 200
    assert_status(json_body(cleared), "alice")
    assert json_body(cleared)["limit"]["custom"] is False
    assert [await check(floodwall, "alice") for _ in range(4)] == [Outcome.ALLOWED] * 4
    assert [(e["action"], e["user_id"]) for e in await audit(client)] == [
        ("clear-limit", "alice"),
        ("set-limit", "alice"),
    ]


async def test_the_default_limit_changes_for_everyone_without_their_own(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    await client.put("/users/alice/limit", json={"rate": 0.5, "burst": 3})
    response = await client.put("/limits/default", json={"rate": 5, "burst": 7})
    assert response.status_code == 200
    assert json_body(response) == {"rate": 5.0, "burst": 7}
    assert json_body(await client.get("/limits/default")) == {"rate": 5.0, "burst": 7}
    assert_status(json_body(await client.get("/users/bob")), "bob", rate=5.0, burst=7)
    assert_status(json_body(await client.get("/users/alice")), "alice", rate=0.5, burst=3)
    assert floodwall.default_limit == (5.0, 7)
    [entry, _] = await audit(client)
    assert (entry["actor"], entry["action"], entry["user_id"]) == (
        "admin",
        "set-default-limit",
        None,
    )


async def test_blocked_users_page_with_limit_and_cursor(client: httpx.AsyncClient) -> None:
    users = ["mallory", "eve", "trudy", "oscar", "sybil"]
    for user in users:
        assert (
            await client.put(user_path(user, "/block"), json={"reason": "r"})
        ).status_code == 200
    seen: list[str] = []
    pages = 0
    cursor: str | None = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = json_body(await client.get("/blocked", params=params))
        pages += 1
        assert len(page["items"]) <= 2
        for item in page["items"]:
            assert_status(item, item["user_id"], blocked=True, reason="r")
        seen += [item["user_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert pages < 10, "the cursor never ends"
    assert seen == sorted(users)
    assert pages == 3
    await client.delete("/users/trudy/block")
    everyone = json_body(await client.get("/blocked"))
    assert [item["user_id"] for item in everyone["items"]] == sorted(set(users) - {"trudy"})
    assert everyone["next_cursor"] is None


async def test_the_audit_log_pages_newest_first(client: httpx.AsyncClient) -> None:
    for index in range(5):
        await client.put(f"/users/u{index}/block", json={"reason": f"r{index}"})
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(10):
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        page = json_body(await client.get("/audit", params=params))
        seen += [item["user_id"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["u4", "u3", "u2", "u1", "u0"]


async def test_every_route_of_the_design_is_served_and_documented(
    client: httpx.AsyncClient,
) -> None:
    document = json_body(await client.get("/openapi.json"))
    assert document == openapi_document()
    assert DESIGN_ROUTES - documented_routes() == set()
    # "GET /top: users with the most refused requests recently" (its shape is not specified).
    response = await client.get("/top")
    assert response.status_code == 200, response.text
    assert isinstance(json_body(response), dict)


# -- bad input -------------------------------------------------------------------------

TOO_LONG = "x" * 501
MAX_REASON = "x" * 500

NOT_A_JSON_OBJECT: dict[str, bytes] = {
    "not-json": b"reason=flooding",
    "truncated-json": b'{"reason": "flooding"',
    "not-utf8": b"\xff\xfe{}",
    "json-array": b'["flooding"]',
    "json-string": b'"flooding"',
    "json-number": b"1",
    "json-null": b"null",
}
REASON_BODIES: dict[str, bytes] = {
    "reason-empty": b'{"reason": ""}',
    "reason-too-long": json.dumps({"reason": TOO_LONG}).encode(),
    "reason-number": b'{"reason": 5}',
    "reason-bool": b'{"reason": true}',
    "reason-list": b'{"reason": ["a"]}',
    "unknown-field": b'{"reason": "ok", "actor": "root"}',
}
BLOCK_BODIES: dict[str, bytes] = {
    "empty-body": b"",
    "empty-object": b"{}",
    "reason-null": b'{"reason": null}',
    "ttl-zero": b'{"reason": "r", "ttl_seconds": 0}',
    "ttl-negative": b'{"reason": "r", "ttl_seconds": -60}',
    "ttl-string": b'{"reason": "r", "ttl_seconds": "60"}',
    "ttl-bool": b'{"reason": "r", "ttl_seconds": true}',
    "ttl-fraction": b'{"reason": "r", "ttl_seconds": 1.5}',
    "ttl-huge": b'{"reason": "r", "ttl_seconds": 100000000000000000000}',
    "ttl-nan": b'{"reason": "r", "ttl_seconds": NaN}',
    "ttl-infinity": b'{"reason": "r", "ttl_seconds": Infinity}',
    "ttl-exponent": b'{"reason": "r", "ttl_seconds": 1e400}',
    "ttl-whole-float-too-big": b'{"reason": "r", "ttl_seconds": 1e300}',
    "ttl-whole-float-zero": b'{"reason": "r", "ttl_seconds": 0.0}',
}
REVOKE_BODIES: dict[str, bytes] = {
    "credential-empty": b'{"credential_id": ""}',
    "credential-number": b'{"credential_id": 7}',
    "credential-too-long": json.dumps({"credential_id": "j" * 257}).encode(),
    "credential-list": b'{"credential_id": ["a", "b"]}',
}
LIMIT_BODIES: dict[str, bytes] = {
    "empty-body": b"",
    "empty-object": b"{}",
    "missing-burst": b'{"rate": 5}',
    "missing-rate": b'{"burst": 5}',
    "rate-string": b'{"rate": "5", "burst": 5}',
    "rate-limits-string": b'{"rate": "10/second", "burst": 5}',
    "burst-string": b'{"rate": 5, "burst": "10"}',
    "burst-bool": b'{"rate": 5, "burst": true}',
    "rate-bool": b'{"rate": true, "burst": 5}',
    "rate-null": b'{"rate": null, "burst": 5}',
    "rate-zero": b'{"rate": 0, "burst": 5}',
    "rate-negative": b'{"rate": -1, "burst": 5}',
    "burst-zero": b'{"rate": 5, "burst": 0}',
    "burst-negative": b'{"rate": 5, "burst": -5}',
    "burst-fraction": b'{"rate": 5, "burst": 2.5}',
    "burst-whole-float-too-big": b'{"rate": 5, "burst": 2e6}',
    "rate-huge": b'{"rate": 1e12, "burst": 5}',
    "burst-huge": b'{"rate": 5, "burst": 100000000000000000000000000000}',
    "rate-nan": b'{"rate": NaN, "burst": 5}',
    "rate-infinity": b'{"rate": Infinity, "burst": 5}',
    "rate-minus-infinity": b'{"rate": -Infinity, "burst": 5}',
    "rate-overflow": b'{"rate": 1e400, "burst": 5}',
    "unknown-field": b'{"rate": 5, "burst": 5, "user": "everyone"}',
}


def _cases() -> Iterator[Any]:
    optional_reason = NOT_A_JSON_OBJECT | REASON_BODIES
    table: list[tuple[str, str, dict[str, bytes]]] = [
        ("PUT", "/users/victim/block", NOT_A_JSON_OBJECT | REASON_BODIES | BLOCK_BODIES),
        ("DELETE", "/users/victim/block", optional_reason),
        ("POST", "/users/victim/revoke", optional_reason | REVOKE_BODIES),
        ("POST", "/users/victim/password-reset", optional_reason),
        ("PUT", "/users/victim/limit", NOT_A_JSON_OBJECT | LIMIT_BODIES),
        ("PUT", "/limits/default", NOT_A_JSON_OBJECT | LIMIT_BODIES),
    ]
    for method, path, bodies in table:
        for name, content in bodies.items():
            yield pytest.param(method, path, content, id=f"{method} {path} {name}")


async def _snapshot(client: httpx.AsyncClient) -> tuple[Any, Any, Any, list[dict[str, Any]]]:
    return (
        json_body(await client.get("/users/victim")),
        json_body(await client.get("/limits/default")),
        json_body(await client.get("/blocked")),
        await audit(client),
    )


@pytest.fixture
async def victim(client: httpx.AsyncClient) -> httpx.AsyncClient:
    """A client whose user ``victim`` is blocked and has a limit of their own."""
    await client.put("/users/victim/block", json={"reason": "before"})
    await client.put("/users/victim/limit", json={"rate": 3.0, "burst": 3})
    return client


@pytest.mark.parametrize(("method", "path", "content"), list(_cases()))
async def test_bad_bodies_get_422_and_change_nothing(
    victim: httpx.AsyncClient, method: str, path: str, content: bytes
) -> None:
    before = await _snapshot(victim)
    response = await victim.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "invalid-request")
    assert await _snapshot(victim) == before


async def test_a_reason_of_500_characters_is_accepted(client: httpx.AsyncClient) -> None:
    response = await client.put("/users/alice/block", json={"reason": MAX_REASON})
    assert response.status_code == 200
    assert json_body(response)["reason"] == MAX_REASON


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("PUT", "/users/victim/block", {"reason": "x" * 20_000}),
        ("DELETE", "/users/victim/block", {"reason": "x" * 20_000}),
        ("POST", "/users/victim/revoke", {"credential_id": "x" * 20_000}),
        ("POST", "/users/victim/password-reset", {"reason": "x" * 20_000}),
        ("PUT", "/users/victim/limit", {"rate": 1, "burst": 1, "pad": "x" * 20_000}),
        ("PUT", "/limits/default", {"rate": 1, "burst": 1, "pad": "x" * 20_000}),
    ],
)
async def test_bodies_over_16_kib_get_413_and_change_nothing(
    victim: httpx.AsyncClient, method: str, path: str, body: dict[str, Any]
) -> None:
    before = await _snapshot(victim)
    content = json.dumps(body).encode()
    assert len(content) > 16 * 1024
    response = await victim.request(
        method, path, content=content, headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413)
    assert await _snapshot(victim) == before


@pytest.mark.parametrize("path", ["/blocked", "/audit"])
@pytest.mark.parametrize("limit", ["0", "-1", "abc", "1001", "", "1.5", "99999999999999999999"])
async def test_bad_page_limits_get_422(client: httpx.AsyncClient, path: str, limit: str) -> None:
    assert_problem(await client.get(path, params={"limit": limit}), 422, "invalid-request")


@pytest.mark.parametrize("limit", ["1", "1000"])
async def test_page_limits_at_the_bounds_are_accepted(
    client: httpx.AsyncClient, limit: str
) -> None:
    for path in ("/blocked", "/audit"):
        response = await client.get(path, params={"limit": limit})
        assert response.status_code == 200, response.text


@pytest.mark.parametrize(
    "cursor",
    [
        "abc",
        "not a cursor",
        "{}",
        "1-",
        # Larger than any stream id (64-bit).
        "99999999999999999999-1",
        # Digits, but not ASCII ones (FULLWIDTH DIGIT ONE).
        "\uff11-\uff11",
    ],
)
async def test_an_audit_cursor_the_api_never_issued_is_bad_input(
    client: httpx.AsyncClient, cursor: str
) -> None:
    # Bad input is 422 on every store; a 503 ("retry") would never heal.
    await client.put("/users/alice/block", json={"reason": "r"})
    response = await client.get("/audit", params={"cursor": cursor})
    assert_problem(response, 422, "invalid-request")


async def test_an_audit_cursor_older_than_everything_gives_an_empty_page(
    client: httpx.AsyncClient,
) -> None:
    await client.put("/users/alice/block", json={"reason": "r"})
    response = await client.get("/audit", params={"cursor": "0-0"})
    assert response.status_code == 200, response.text
    assert json_body(response) == {"items": [], "next_cursor": None}


# -- hostile user ids ------------------------------------------------------------------

LONG_ID = "a" * 10_240
HOSTILE_IDS: dict[str, str] = {
    "open-brace": "{",
    "close-brace": "}",
    "colon": "a:b",
    "newline": "x\ny",
    "10kb": LONG_ID,
    "10kb-last-differs": LONG_ID[:-1] + "b",
    "non-ascii": "\u00fcn\u00ef",
    "star": "*",
    "slash": "a/b",
    "plain-a": "a",
    "encoded-brace-lookalike": "%7B",
    "replacement-chars": "\ufffd\ufffd",
}
NOT_UTF8 = b"\xff\xfe"
# How the server names the id of the raw bytes FF FE (Python's surrogateescape).
NOT_UTF8_ID = NOT_UTF8.decode("utf-8", "surrogateescape")


@pytest.mark.parametrize("target", HOSTILE_IDS.values(), ids=HOSTILE_IDS.keys())
async def test_blocking_a_hostile_id_blocks_exactly_it(
    floodwall: Floodwall, client: httpx.AsyncClient, target: str
) -> None:
    response = await client.put(user_path(target, "/block"), json={"reason": "hostile"})
    assert response.status_code == 200, response.text
    assert_status(json_body(response), target, blocked=True, reason="hostile")
    for other in HOSTILE_IDS.values():
        status = await client.get(user_path(other))
        assert status.status_code == 200, (other, status.text)
        body = json_body(status)
        assert body["user_id"] == other
        assert body["blocked"] is (other == target), other
    # The id that is not UTF-8 is read through the service here: its own test below
    # shows what the API does with it.
    assert (await floodwall.status(NOT_UTF8_ID)).blocked is False
    listing = await client.get("/blocked")
    assert listing.status_code == 200, listing.text
    assert [item["user_id"] for item in json_body(listing)["items"]] == [target]


async def test_the_blocked_listing_names_exactly_the_blocked_hostile_ids(
    client: httpx.AsyncClient,
) -> None:
    ids = list(HOSTILE_IDS.values())
    blocked = ids[::2]
    for user_id in blocked:
        response = await client.put(user_path(user_id, "/block"), json={"reason": "hostile"})
        assert response.status_code == 200, (user_id, response.text)
    for user_id in ids:
        body = json_body(await client.get(user_path(user_id)))
        assert body["blocked"] is (user_id in blocked), user_id
    listing = await client.get("/blocked", params={"limit": 1000})
    assert listing.status_code == 200, listing.text
    listed = [item["user_id"] for item in json_body(listing)["items"]]
    assert sorted(listed) == sorted(blocked)


async def test_an_id_that_is_not_utf8_is_blocked_exactly_and_listed_as_sent(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    path = user_path(NOT_UTF8, "/block")
    assert path == "/users/%FF%FE/block"
    response = await client.put(path, json={"reason": "hostile"})
    assert response.status_code == 200, response.text
    body = json_body(response)
    # JSON has no bytes: the id comes back as the server decoded it, and encodes back to
    # exactly the bytes that were sent.
    assert id_bytes(body["user_id"]) == NOT_UTF8
    assert body["blocked"] is True
    status = await client.get(user_path(NOT_UTF8))
    assert status.status_code == 200, status.text
    assert id_bytes(json_body(status)["user_id"]) == NOT_UTF8
    assert json_body(status)["blocked"] is True
    # Not collapsed into U+FFFD, nor into its own percent-encoding.
    for other in ("\ufffd\ufffd", "%FF%FE", "\u00ff\u00fe"):
        assert json_body(await client.get(user_path(other)))["blocked"] is False, other
    listing = await client.get("/blocked")
    assert listing.status_code == 200, listing.text
    assert [id_bytes(item["user_id"]) for item in json_body(listing)["items"]] == [NOT_UTF8]
    assert (await floodwall.status(NOT_UTF8_ID)).blocked is True


async def test_one_non_utf8_id_does_not_break_the_listings_for_everyone(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    await client.put("/users/alice/block", json={"reason": "flooding"})
    # Blocked through the Python API, as the CLI would do it.
    await floodwall.block(NOT_UTF8_ID, reason="hostile")
    blocked = await client.get("/blocked")
    assert blocked.status_code == 200, blocked.text
    assert "alice" in [item["user_id"] for item in json_body(blocked)["items"]]
    entries = await client.get("/audit")
    assert entries.status_code == 200, entries.text
    assert "alice" in [item["user_id"] for item in json_body(entries)["items"]]


@pytest.mark.parametrize(
    "path",
    [
        # The id "alice/block": PUT /users/{user_id} is no route.
        "/users/alice%2Fblock",
        # A newline after the route's suffix is not the route either.
        "/users/alice/block%0A",
    ],
)
async def test_a_path_that_is_no_route_blocks_no_one(client: httpx.AsyncClient, path: str) -> None:
    response = await client.put(path, json={"reason": "misrouted"})
    assert response.status_code in {404, 405}, (response.status_code, response.text)
    assert response.headers["content-type"] == PROBLEM_JSON
    assert json_body(await client.get("/users/alice"))["blocked"] is False
    assert json_body(await client.get("/blocked"))["items"] == []
    assert await audit(client) == []


@pytest.mark.parametrize("prefix", ["/admin", "/ops/users/admin"])
async def test_mounted_under_a_prefix_the_id_is_the_one_after_it(
    floodwall: Floodwall, prefix: str
) -> None:
    app = Starlette(routes=[Mount(prefix, app=floodwall.admin_app())])
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://testserver", headers=AUTH
    ) as mounted:
        response = await mounted.put(f"{prefix}/users/carol/block", json={"reason": "r"})
        assert response.status_code == 200, response.text
        assert json_body(response)["user_id"] == "carol"
        status = json_body(await mounted.get(f"{prefix}/users/carol"))
        assert status["user_id"] == "carol"
        assert status["blocked"] is True
        listing = json_body(await mounted.get(f"{prefix}/blocked"))
        assert [item["user_id"] for item in listing["items"]] == ["carol"]


# -- a failing store -------------------------------------------------------------------


@pytest.fixture
def closed_port() -> Iterator[int]:
    """A loopback port that is bound, so no one else takes it, but never listens."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])


@pytest.fixture
async def dead_redis(closed_port: int) -> AsyncIterator[Floodwall]:
    """A RedisStore configured as floodwall configures one, on a port where nothing listens."""
    store = RedisStore.from_url(
        f"redis://127.0.0.1:{closed_port}/0", prefix="floodwall", cluster=False, timeout=0.2
    )
    try:
        yield Floodwall(settings(), store=store)
    finally:
        await store.close()


# Every route of the design's table but the two that need no store.
STORE_ROUTES = requests_for(DESIGN_ROUTES - {("GET", "/openapi.json"), ("GET", "/limits/default")})


async def test_a_failing_store_gives_503_with_retry_after(dead_redis: Floodwall) -> None:
    async with client_for(dead_redis, AUTH) as admin:
        for method, path, body in STORE_ROUTES:
            started = time.monotonic()
            response = await admin.request(method, path, json=body)
            elapsed = time.monotonic() - started
            problem = assert_problem(response, 503, "store-unavailable")
            assert int(response.headers["retry-after"]) >= 1, (method, path)
            assert "127.0.0.1" not in problem["detail"]
            assert elapsed < 2, (method, path, elapsed)
        # Routes that need no store still answer.
        assert (await admin.get("/openapi.json")).status_code == 200
        assert (await admin.get("/limits/default")).status_code == 200
        # Bad input is still bad input, whatever the store.
        assert_problem(await admin.put("/users/alice/limit", json={"rate": 0, "burst": 1}), 422)
