"""The routes: those of the design are served and in the OpenAPI document; paths that are
no route, and the app mounted under a prefix."""

from __future__ import annotations

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from floodwall import Floodwall
from floodwall.admin.openapi import openapi_document

from .support import AUTH, DESIGN_ROUTES, PROBLEM_JSON, audit, documented_routes, json_body


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
