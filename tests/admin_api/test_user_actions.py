"""The write routes: block, unblock, revoke, password reset, limits; each one's effect."""

from __future__ import annotations

import httpx

from floodwall import Floodwall, Outcome

from .support import assert_status, audit, change_body, check, json_body, millis


async def test_block_without_a_ttl_blocks_until_unblocked(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.put("/users/alice/block", json={"reason": "credential stuffing"})
    assert response.status_code == 200
    body = change_body(response)
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
    body = change_body(response)
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
    body = change_body(blocked)
    assert millis(body["blocked_until"]) - millis(body["blocked_at"]) == 2_905_000
    limited = await client.put(
        "/users/bob/limit", content=b'{"rate": 2, "burst": 7.0}', headers=json_type
    )
    assert limited.status_code == 200, limited.text
    assert_status(change_body(limited), "bob", rate=2.0, burst=7)
    default = await client.put(
        "/limits/default", content=b'{"rate": 5, "burst": 1.2e1}', headers=json_type
    )
    assert default.status_code == 200, default.text
    assert change_body(default) == {"rate": 5.0, "burst": 12}
    assert type(floodwall.default_limit[1]) is int
    [entry, _, _] = await audit(client)
    assert entry["detail"] == "rate=5.0 burst=12"


async def test_unblock_is_idempotent(floodwall: Floodwall, client: httpx.AsyncClient) -> None:
    never_blocked = json_body(await client.get("/users/alice"))
    await client.put("/users/alice/block", json={"reason": "suspicious", "ttl_seconds": 600})
    first = await client.delete("/users/alice/block")
    second = await client.delete("/users/alice/block")
    assert first.status_code == second.status_code == 200
    assert change_body(first) == change_body(second) == never_blocked
    assert_status(change_body(second), "alice")
    assert json_body(await client.get("/users/alice")) == never_blocked
    assert await check(floodwall, "alice") == Outcome.ALLOWED
    # A user who was never blocked can be unblocked too, and stays as they were.
    bob = await client.request("DELETE", "/users/bob/block", json={"reason": "cleanup"})
    assert bob.status_code == 200
    assert_status(change_body(bob), "bob")
    blocked = json_body(await client.get("/blocked"))
    assert blocked == {"items": [], "next_cursor": None}
    assert [e["action"] for e in await audit(client)] == ["unblock", "unblock", "unblock", "block"]


async def test_revoke_refuses_every_credential_issued_up_to_now(
    floodwall: Floodwall, client: httpx.AsyncClient
) -> None:
    response = await client.post("/users/alice/revoke")
    assert response.status_code == 200
    body = change_body(response)
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
    assert_status(change_body(response), "alice")
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
    body = change_body(required)
    # Requiring a reset revokes too.
    assert_status(body, "alice", reset=True, revoked=True)
    assert json_body(await client.get("/users/alice")) == body
    assert await check(floodwall, "alice") == Outcome.RESET_REQUIRED
    cleared = await client.delete("/users/alice/password-reset")
    assert cleared.status_code == 200
    after = change_body(cleared)
    assert_status(after, "alice", revoked=True)
    assert after["credentials_not_before"] == body["credentials_not_before"]
    assert await check(floodwall, "alice") == Outcome.ALLOWED
    again = await client.delete("/users/alice/password-reset")
    assert change_body(again) == after
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
    body = change_body(response)
    assert_status(body, "alice", rate=0.5, burst=3)
    assert body["limit"]["custom"] is True
    assert json_body(await client.get("/users/alice")) == body
    assert_status(json_body(await client.get("/users/bob")), "bob")
    outcomes = [await check(floodwall, "alice") for _ in range(4)]
    assert outcomes == [Outcome.ALLOWED] * 3 + [Outcome.LIMITED]
    cleared = await client.delete("/users/alice/limit")
    assert cleared.status_code == 200
    assert_status(change_body(cleared), "alice")
    assert change_body(cleared)["limit"]["custom"] is False
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
    assert change_body(response) == {"rate": 5.0, "burst": 7}
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
