"""Who may use the admin API: the admin token, named tokens, none configured."""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from floodwall import Floodwall, Store
from floodwall.admin.app import AUTH_FAILURES, AUTH_WINDOW_SECONDS
from floodwall.core.clock import Clock

from .support import (
    AUTH,
    DEFAULT_BURST,
    DEFAULT_RATE,
    ROUTES,
    TOKEN,
    assert_problem,
    assert_status,
    audit,
    client_for,
    json_body,
    settings,
    utc_time,
)

OPS_TOKEN = "ops-token-0123456789abcdef"
ONCALL_TOKEN = "oncall-token-0123456789abcdef"


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


async def test_a_client_that_keeps_guessing_is_refused_for_the_rest_of_the_window() -> None:
    now = [1000.0]
    floodwall = Floodwall(settings(), clock=Clock(wall=lambda: now[0], monotonic=lambda: now[0]))
    app = floodwall.admin_app()

    def client(address: str) -> httpx.AsyncClient:
        transport = httpx.ASGITransport(app=app, client=(address, 4321))
        return httpx.AsyncClient(transport=transport, base_url="http://testserver")

    wrong = {"Authorization": "Bearer a-guess-0123456789"}
    try:
        async with client("203.0.113.5") as guesser, client("198.51.100.7") as operator:
            tries = AUTH_FAILURES + 2
            guesses = [
                (await guesser.get("/blocked", headers=wrong)).status_code for _ in range(tries)
            ]
            assert guesses == [401] * AUTH_FAILURES + [429] * 2
            # Refused before any token check: the right token waits out the window too.
            refused = await guesser.get("/blocked", headers=AUTH)
            assert_problem(refused, 429, "too-many-attempts")
            assert 1 <= int(refused.headers["retry-after"]) <= AUTH_WINDOW_SECONDS
            assert TOKEN not in refused.text
            # Another address is not held back by this one's guesses.
            assert (await operator.get("/blocked", headers=AUTH)).status_code == 200
            now[0] += AUTH_WINDOW_SECONDS
            assert (await guesser.get("/blocked", headers=AUTH)).status_code == 200
    finally:
        await floodwall.stop()
