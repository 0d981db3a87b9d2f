"""The listings, /blocked and /audit: pages, limits and cursors."""

from __future__ import annotations

import httpx
import pytest

from .support import assert_problem, assert_status, json_body, user_path


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


async def test_a_page_ending_with_the_empty_id_goes_on_after_it(
    client: httpx.AsyncClient,
) -> None:
    for user in ("", "a"):
        blocked = await client.put("/users/-/block", params={"user_id": user}, json={"reason": "r"})
        assert blocked.status_code == 200
    first = json_body(await client.get("/blocked", params={"limit": 1}))
    assert [item["user_id"] for item in first["items"]] == [""]
    assert first["next_cursor"] == ""
    # An empty cursor is the empty id's, not "from the start" (which never ends).
    second = json_body(await client.get("/blocked", params={"limit": 1, "cursor": ""}))
    assert [item["user_id"] for item in second["items"]] == ["a"]


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
