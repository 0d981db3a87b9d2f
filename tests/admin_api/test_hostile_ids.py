"""User ids chosen to break things: braces, newlines, 10 kB, bytes that are not UTF-8."""

from __future__ import annotations

import httpx
import pytest

from floodwall import Floodwall

from .support import assert_status, id_bytes, json_body, user_path

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
