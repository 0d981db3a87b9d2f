"""Every id the middleware can limit can be named on every user route, in two forms: the
path (``/users/<percent-encoded>/...``) and the query (``/users/-/...?user_id=...``), and
names the subject the middleware limits (the same keys); write answers say how many app
workers received the change."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, MutableMapping
from typing import Any
from urllib.parse import quote_from_bytes

import httpx
import jwt
import pytest
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, JwtIdentity, Outcome
from floodwall.admin.openapi import openapi_document
from floodwall.admin.routes import SPECS, Spec

from .support import AUTH, VALID_BODIES, assert_problem, audit, change_body, check, json_body

# Ids a path cannot hold or used to lose, and ids that look like the query form's syntax.
IDS: dict[str, str] = {
    "empty": "",
    "newline": "x\ny",
    "ends-in-a-route": "a/block\n",
    "lone-surrogate": "\ud800",
    "low-surrogate": "\udcff",
    "dash": "-",
    "plus-and-space": "a+b c",
    "query-syntax": "a&user_id=b",
    "escape-sequence": "\x1b[2J\t\u202e",
}
USER_SPECS = [spec for spec in SPECS if spec.has_user]
JWT_KEY = "id-forms-jwt-signing-key-0123456789abcdef"


def id_bytes(user_id: str) -> str:
    """The id percent-encoded as keys.py stores it: UTF-8 with surrogates passed through."""
    return quote_from_bytes(user_id.encode("utf-8", "surrogatepass"), safe="")


def in_path(user_id: str, suffix: str = "") -> str:
    return f"/users/{id_bytes(user_id)}{suffix}"


def in_query(user_id: str, suffix: str = "") -> str:
    return f"/users/-{suffix}?user_id={id_bytes(user_id)}"


def forms(user_id: str) -> list[str]:
    """The forms that can name the id: a path cannot hold the empty one."""
    return ["query"] if user_id == "" else ["path", "query"]


def url(form: str, user_id: str, suffix: str = "") -> str:
    return (in_path if form == "path" else in_query)(user_id, suffix)


async def send(client: httpx.AsyncClient, spec: Spec, target: str) -> httpx.Response:
    body = VALID_BODIES.get((spec.method, spec.path))
    return await client.request(spec.method, target, json=body)


@pytest.mark.parametrize("spec", USER_SPECS, ids=[f"{s.method} {s.path}" for s in USER_SPECS])
async def test_every_user_route_names_every_id_in_both_forms(
    floodwall: Floodwall, client: httpx.AsyncClient, spec: Spec
) -> None:
    for user_id in IDS.values():
        for form in forms(user_id):
            response = await send(client, spec, url(form, user_id, spec.suffix))
            assert response.status_code == 200, (form, user_id, response.text)
            body = change_body(response) if spec.method != "GET" else json_body(response)
            assert body["user_id"] == user_id, (form, user_id)
            if spec.method != "GET":
                [entry, *_] = await audit(client)
                # audit.py reads an empty user_id back as "no user" (null): a core matter.
                named = (user_id, None) if user_id == "" else (user_id,)
                assert entry["user_id"] in named, (form, user_id)


@pytest.mark.parametrize("user_id", IDS.values(), ids=IDS.keys())
async def test_blocking_an_id_in_either_form_blocks_exactly_it(
    floodwall: Floodwall, client: httpx.AsyncClient, user_id: str
) -> None:
    for form in forms(user_id):
        response = await client.put(url(form, user_id, "/block"), json={"reason": "hostile"})
        assert change_body(response)["blocked"] is True
        assert await check(floodwall, user_id) == Outcome.BLOCKED
        for other in IDS.values():
            if other != user_id:
                assert await check(floodwall, other) == Outcome.ALLOWED, (form, other)
        # Read back in every form: one subject.
        for reading in forms(user_id):
            status = json_body(await client.get(url(reading, user_id)))
            assert (status["user_id"], status["blocked"]) == (user_id, True)
        listed = json_body(await client.get("/blocked"))["items"]
        assert [item["user_id"] for item in listed] == [user_id]
        unblocked = await client.delete(url(form, user_id, "/block"))
        assert change_body(unblocked)["blocked"] is False
        assert await check(floodwall, user_id) == Outcome.ALLOWED


async def test_the_query_is_form_encoded(client: httpx.AsyncClient) -> None:
    assert json_body(await client.get("/users/-?user_id=a+b"))["user_id"] == "a b"
    assert json_body(await client.get("/users/-?user_id=a%2Bb"))["user_id"] == "a+b"
    assert json_body(await client.get("/users/-?user_id"))["user_id"] == ""
    # Other parameters are no concern of the id; the name may be percent-encoded too.
    assert json_body(await client.get("/users/-?x=1&user%5Fid=bob&y"))["user_id"] == "bob"
    # httpx's own encoding of a parameter reads back exactly.
    response = await client.get("/users/-", params={"user_id": "a+b c&d=e/f"})
    assert json_body(response)["user_id"] == "a+b c&d=e/f"


async def test_the_path_segment_dash_alone_is_the_user_dash(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.put("/users/-/block", json={"reason": "r"})
    assert change_body(response)["user_id"] == "-"
    assert (await floodwall.status("-")).blocked is True


@pytest.mark.parametrize(
    "target",
    [
        # Two names for one request: refused, whichever the operator meant.
        "/users/alice/block?user_id=bob",
        "/users/-/block?user_id=alice&user_id=bob",
        # Longer than the rule book allows.
        "/users/-/block?user_id=" + "a" * 16_385,
    ],
)
async def test_an_ambiguous_or_invalid_name_changes_nothing(
    client: httpx.AsyncClient, target: str
) -> None:
    response = await client.put(target, json={"reason": "r"})
    assert_problem(response, 422, "invalid-request")
    assert json_body(await client.get("/blocked"))["items"] == []
    assert await audit(client) == []


async def test_an_encoded_surrogate_is_that_surrogate_not_three_other_characters(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    assert in_path("\ud800") == "/users/%ED%A0%80"
    response = await client.put("/users/%ED%A0%80/block", json={"reason": "r"})
    assert change_body(response)["user_id"] == "\ud800"
    assert (await floodwall.status("\ud800")).blocked is True
    assert (await floodwall.status("\udced\udca0\udc80")).blocked is False
    # Bytes that are not UTF-8 at all still name the id Python reads from them.
    response = await client.put("/users/%FF%FE/block", json={"reason": "r"})
    assert change_body(response)["user_id"] == "\udcff\udcfe"


@pytest.fixture
async def app_of(floodwall: Floodwall) -> AsyncIterator[httpx.AsyncClient]:
    """The app the middleware guards, identifying users by a JWT's ``sub``."""

    async def hello(request: Request) -> PlainTextResponse:
        return PlainTextResponse("hello")

    app = Starlette(routes=[Route("/hello", hello)])
    app.add_middleware(
        FloodwallMiddleware,
        floodwall=floodwall,
        identify=JwtIdentity(JWT_KEY, algorithms=["HS256"]),
    )
    transport = httpx.ASGITransport(app=app)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://app") as client:
            yield client
    finally:
        await floodwall.stop()


@pytest.mark.parametrize("user_id", ["\ud800", "x\udcff", "x\ny", "a/block\n"])
async def test_the_id_named_in_the_admin_api_is_the_subject_the_middleware_limits(
    floodwall: Floodwall, client: httpx.AsyncClient, app_of: httpx.AsyncClient, user_id: str
) -> None:
    # json.dumps (PyJWT's) writes a lone surrogate as \ud800; the app decodes it back.
    token = jwt.encode({"sub": user_id, "iat": 1}, JWT_KEY, algorithm="HS256")
    headers = {"authorization": f"Bearer {token}"}
    assert (await app_of.get("/hello", headers=headers)).status_code == 200
    identity = await JwtIdentity(JWT_KEY, algorithms=["HS256"])(
        {"type": "http", "headers": [(b"authorization", headers["authorization"].encode())]}
    )
    assert identity is not None
    assert identity.user_id == user_id
    await asyncio.wait_for(floodwall.following.wait(), 5)
    for form in forms(user_id):
        response = await client.put(url(form, user_id, "/block"), json={"reason": "r"})
        # The admin app's Floodwall is the app's, started by its first request.
        assert change_body(response, received_by=1)["user_id"] == user_id
        assert floodwall.keys.user(json_body(response)["user_id"]) == floodwall.keys.user(
            identity.user_id
        )
        assert (await app_of.get("/hello", headers=headers)).status_code == 403
        await client.delete(url(form, user_id, "/block"))
        # The unblock reaches the app's local answers through the change feed.
        for _ in range(100):
            if (await app_of.get("/hello", headers=headers)).status_code == 200:
                break
            await asyncio.sleep(0.01)
        else:
            pytest.fail("the unblock never reached the app")


async def test_a_write_answer_counts_the_workers_that_received_it(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    # No app runs: the change is stored, and no worker received it.
    assert change_body(await client.put("/users/alice/block", json={"reason": "r"}))["blocked"]
    assert change_body(await client.put("/limits/default", json={"rate": 2, "burst": 3})) == {
        "rate": 2.0,
        "burst": 3,
    }
    await floodwall.start()
    try:
        await floodwall.following.wait()
        # Every write route, in the form of the route table.
        for spec in SPECS:
            if spec.method == "GET":
                continue
            target = (
                spec.path.replace("{user_id}", "alice")
                .replace("{cidr}", "10.0.0.0%2F8")
                .replace("{name}", "pro")
            )
            response = await client.request(
                spec.method, target, json=VALID_BODIES.get((spec.method, spec.path))
            )
            change_body(response, received_by=1)
        # A read says nothing of the kind.
        read = json_body(await client.get("/users/alice"))
        assert "received_by" not in read
        assert "replicas" not in read
    finally:
        await floodwall.stop()


def test_the_document_names_both_forms_and_received_by() -> None:
    document: dict[str, Any] = openapi_document()
    paths = document["paths"]
    for spec in USER_SPECS:
        by_path = paths[spec.path][spec.method.lower()]
        by_query = paths[spec.query_form][spec.method.lower()]
        [path_parameter] = [p for p in by_path["parameters"] if p["name"] == "user_id"]
        [query_parameter] = [p for p in by_query["parameters"] if p["name"] == "user_id"]
        assert path_parameter["in"] == "path"
        assert path_parameter["schema"]["minLength"] == 1
        assert (query_parameter["in"], query_parameter["required"]) == ("query", True)
        assert query_parameter["schema"]["minLength"] == 0
        assert "422" in by_path["responses"]
        assert by_path["operationId"] != by_query["operationId"]
    schemas = document["components"]["schemas"]
    for name in ("UserChangeOut", "DefaultLimitChangeOut"):
        received_by = schemas[name]["properties"]["received_by"]
        assert [form["type"] for form in received_by["anyOf"]] == ["integer", "null"]
        assert "received_by" in schemas[name]["required"]
    assert "received_by" not in schemas["UserStatusOut"]["properties"]
    for spec in SPECS:
        schema = paths[spec.path][spec.method.lower()]["responses"]["200"]["content"]
        ref = schema["application/json"]["schema"]["$ref"]
        assert ref.endswith("ChangeOut") is (spec.method != "GET"), spec.path


async def test_a_server_without_raw_paths_names_ids_by_the_decoded_path(
    floodwall: Floodwall,
) -> None:
    app = floodwall.admin_app()
    sent: list[Any] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    for path, query, expected in [("/users/\ud800", b"", "\ud800"), ("/users/-", b"user_id=", "")]:
        sent.clear()
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "query_string": query,
            "root_path": "",
            "headers": [(b"authorization", AUTH["Authorization"].encode())],
            "server": ("testserver", 80),
        }
        await app(scope, receive, send)
        assert sent[0]["status"] == 200, sent
        assert json.loads(sent[1]["body"])["user_id"] == expected


@pytest.mark.parametrize("framework", ["starlette", "fastapi"])
async def test_an_id_with_a_newline_reaches_the_mounted_admin_api(
    floodwall: Floodwall, framework: str
) -> None:
    app: Any
    if framework == "starlette":
        app = Starlette(routes=[floodwall.admin_mount("/admin")])
    else:
        app = FastAPI()
        app.router.routes.append(floodwall.admin_mount("/admin"))
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall, exempt_paths=["/admin"])
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://app", headers=AUTH) as http:
        for user_id in ["a\nb", "a/block\n", "\r\n"]:
            target = "/admin" + url("path", user_id, "/block")
            response = await http.put(target, json={"reason": "r"})
            assert change_body(response)["user_id"] == user_id
            assert (await floodwall.status(user_id)).blocked is True
