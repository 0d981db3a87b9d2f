"""Request bodies: bad ones get 422 (413 when too large) and change nothing; a reason of the
largest allowed size is accepted."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall
from floodwall.core.route_limits import parse_route_limits
from floodwall.limiting.routes import app_routes

from .support import assert_problem, audit, json_body

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
    "ttl-fraction-below-a-second": b'{"reason": "r", "ttl_seconds": 0.5}',
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
    "rate-bad-string": b'{"rate": "5 a fortnight", "burst": 5}',
    "rate-limits-string-too-fast": b'{"rate": "10000000/second", "burst": 5}',
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


async def test_a_live_route_limit_on_a_route_no_app_has_gets_422(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    async def ok(request: Request) -> PlainTextResponse:
        return PlainTextResponse("ok")

    app = Starlette(routes=[Route("/login", ok, methods=["POST"]), Route("/items/{item_id}", ok)])
    # What the middleware publishes when the app starts.
    await floodwall.actions.publish_routes(
        app_routes(app), parse_route_limits("POST /login=1/second")
    )
    typo = await client.put(
        "/limits/routes", json={"route": "GET /itemz/{id}", "limit": "1/minute"}
    )
    problem = assert_problem(typo, 422, "invalid-request")
    assert problem["detail"] == (
        "no app using this store has the route GET /itemz/{id}: name it as the app's router "
        "declares it, 'METHOD /path/{param}'"
    )
    own = await client.put(
        "/users/alice/route-limit", json={"route": "GET /items/{id}", "limit": "1/minute"}
    )
    assert "has no limit to give a user one of their own" in assert_problem(own, 422)["detail"]
    assert json_body(await client.get("/limits/routes"))["routes"] == {}
    fixed = await client.put(
        "/limits/routes", json={"route": "GET /items/{id}", "limit": "1/minute"}
    )
    assert fixed.status_code == 200, fixed.text
    own = await client.put(
        "/users/alice/route-limit", json={"route": "POST /login", "limit": "1/minute"}
    )
    assert own.status_code == 200, own.text
