"""The kill switch end to end: two demo processes on one real Redis, driven over HTTP."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import redis
from demo_process import demo_process

from harness import RedisServer, client_commands, wait_until

ADMIN_TOKEN = "e2e-admin-token-0123456789"
ADMIN = {"authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
def instances(redis_server: RedisServer, tmp_path: Path) -> Iterator[list[httpx.Client]]:
    """Two demo processes sharing one Redis, one JWT key and one admin token."""
    flush = redis.Redis.from_url(redis_server.url)
    flush.flushall()
    flush.close()
    env = {
        "FLOODWALL_REDIS_URL": redis_server.url,
        "FLOODWALL_REDIS_TIMEOUT": "2",
        "FLOODWALL_JWT_SECRET": "e2e-jwt-signing-key-0123456789abcdef",
        "FLOODWALL_ADMIN_TOKEN": ADMIN_TOKEN,
        "FLOODWALL_RATE": "1000",
        "FLOODWALL_BURST": "1000",
    }
    with ExitStack() as stack:
        urls = [stack.enter_context(demo_process(tmp_path, **env)) for _ in range(2)]
        clients = [stack.enter_context(httpx.Client(base_url=url, timeout=5)) for url in urls]
        yield clients


def login(client: httpx.Client, user: str) -> dict[str, str]:
    response = client.post("/login", json={"user": user})
    assert response.status_code == 200
    return {"authorization": f"Bearer {response.json()['access_token']}"}


def hello(client: httpx.Client, auth: dict[str, str]) -> httpx.Response:
    return client.get("/api/hello", headers=auth)


def lifted(request: Callable[[], httpx.Response]) -> None:
    """Wait (within a second) until ``request`` passes: a lift reaches other workers'
    mirrors by the change feed, which a loaded machine may hold up a little."""
    wait_until(lambda: request().status_code == 200, "the lift reaches the other worker", within=1)


def kind(response: httpx.Response) -> str:
    assert response.headers["content-type"] == "application/problem+json"
    return str(response.json()["type"]).rsplit(":", 1)[-1]


def test_a_block_holds_on_the_other_instance_at_once(instances: list[httpx.Client]) -> None:
    a, b = instances
    alice = login(a, "alice")
    assert hello(b, alice).json() == {"hello": "alice"}
    blocked = a.put("/admin/users/alice/block", json={"reason": "flooding"}, headers=ADMIN)
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    refused = hello(b, alice)
    assert refused.status_code == 403
    assert kind(refused) == "account-blocked"
    assert "flooding" not in refused.text
    assert hello(b, login(b, "bob")).status_code == 200
    for _ in range(2):
        lifted = b.delete("/admin/users/alice/block", headers=ADMIN)
        assert lifted.status_code == 200
        assert lifted.json()["blocked"] is False
    assert hello(a, alice).status_code == 200


def test_a_temporary_block_expires(instances: list[httpx.Client]) -> None:
    a, b = instances
    alice = login(a, "alice")
    a.put("/admin/users/alice/block", json={"reason": "cool down", "ttl_seconds": 1}, headers=ADMIN)
    assert hello(b, alice).status_code == 403
    time.sleep(1.1)
    assert hello(b, alice).status_code == 200
    assert b.get("/admin/blocked", headers=ADMIN).json()["items"] == []


def test_revocation_refuses_old_tokens_and_accepts_new_ones(instances: list[httpx.Client]) -> None:
    a, b = instances
    old = login(a, "alice")
    assert b.post("/admin/users/alice/revoke", headers=ADMIN).status_code == 200
    refused = hello(a, old)
    assert refused.status_code == 401
    assert refused.headers["www-authenticate"] == 'Bearer error="invalid_token"'
    assert kind(refused) == "credentials-revoked"
    new = login(b, "alice")
    assert hello(a, new).status_code == 200
    assert hello(b, new).status_code == 200


def test_one_credential_can_be_revoked_by_id(instances: list[httpx.Client]) -> None:
    import jwt

    a, b = instances
    first, second = login(a, "alice"), login(a, "alice")
    jti = jwt.decode(first["authorization"][7:], options={"verify_signature": False})["jti"]
    revoked = b.post("/admin/users/alice/revoke", json={"credential_id": jti}, headers=ADMIN)
    assert revoked.status_code == 200
    assert hello(a, first).status_code == 401
    assert hello(a, second).status_code == 200


def test_a_password_reset_refuses_until_cleared(instances: list[httpx.Client]) -> None:
    a, b = instances
    old = login(a, "alice")
    required = a.post("/admin/users/alice/password-reset", headers=ADMIN)
    assert required.json()["password_reset_required"] is True
    assert hello(b, old).status_code == 401
    fresh = login(b, "alice")
    refused = hello(a, fresh)
    assert refused.status_code == 403
    assert kind(refused) == "password-reset-required"
    # The app's reset flow stays open, and clears the flag once the password is changed.
    assert b.post("/account/password", headers=fresh).status_code == 200
    # A lift reaches the other worker's mirror by the change feed: at once, or nearly.
    lifted(lambda: hello(a, fresh))
    again = login(a, "alice")
    # A credential issued in the same millisecond as the reset still counts as issued after
    # it (iat < not_before); on a fast machine the two can share one.
    time.sleep(0.005)
    b.post("/admin/users/alice/password-reset", headers=ADMIN)
    assert b.delete("/admin/users/alice/password-reset", headers=ADMIN).status_code == 200
    lifted(lambda: hello(a, login(a, "alice")))
    assert hello(a, again).status_code == 401


def test_a_per_user_limit_applies_and_goes_away(instances: list[httpx.Client]) -> None:
    a, b = instances
    alice = login(a, "alice")
    custom = a.put("/admin/users/alice/limit", json={"rate": 0.001, "burst": 2}, headers=ADMIN)
    assert custom.json()["limit"] == {"rate": 0.001, "burst": 2, "custom": True, "shadow": False}
    statuses = [hello(instances[i % 2], alice).status_code for i in range(3)]
    assert statuses == [200, 200, 429]
    assert hello(b, login(b, "bob")).status_code == 200
    assert b.delete("/admin/users/alice/limit", headers=ADMIN).status_code == 200
    assert hello(a, alice).status_code == 200
    assert hello(a, alice).headers["ratelimit-policy"] == '"user";q=1000;w=1'


def test_allowed_requests_still_cost_one_redis_command(
    instances: list[httpx.Client], redis_server: RedisServer
) -> None:
    a, _ = instances
    alice = login(a, "alice")
    a.post("/admin/users/alice/revoke", headers=ADMIN)
    alice = login(a, "alice")
    a.put("/admin/users/alice/limit", json={"rate": 500, "burst": 500}, headers=ADMIN)
    for client in instances:
        hello(client, alice)
    with client_commands(redis_server.port) as seen:
        statuses = [hello(instances[i % 2], alice).status_code for i in range(20)]
    assert statuses == [200] * 20
    # Nothing else may reach Redis meanwhile but each worker's once-a-second config read.
    assert seen.count("EVALSHA") == 20
    assert set(seen) <= {"EVALSHA", "HGETALL"}


def test_the_cli_acts_through_the_same_service_and_is_audited(
    instances: list[httpx.Client], redis_server: RedisServer
) -> None:
    a, _ = instances
    alice = login(a, "alice")
    env = {"FLOODWALL_REDIS_URL": redis_server.url, "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "floodwall.cli"]
    done = subprocess.run(
        [*command, "block", "alice", "--reason", "from the terminal", "--actor", "cli:oncall"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "from the terminal" in done.stdout
    assert hello(a, alice).status_code == 403
    audit = a.get("/admin/audit", headers=ADMIN).json()["items"]
    assert audit[0]["actor"] == "cli:oncall"
    assert audit[0]["action"] == "block"
    assert audit[0]["user_id"] == "alice"
    assert audit[0]["reason"] == "from the terminal"
    a.delete("/admin/users/alice/block", headers=ADMIN)
    newest = a.get("/admin/audit?limit=1", headers=ADMIN).json()["items"][0]
    assert newest["actor"] == "admin"
    assert newest["action"] == "unblock"
    bad = subprocess.run(
        [*command, "block", "alice", "--reason", "x", "--ttl", "soon"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr
    assert hello(a, alice).status_code == 200


def test_a_user_id_with_a_slash_is_one_user(instances: list[httpx.Client]) -> None:
    a, b = instances
    user = "team/alice"
    auth = login(a, user)
    a.put(f"/admin/users/{quote(user, safe='')}/block", json={"reason": "x"}, headers=ADMIN)
    assert hello(b, auth).status_code == 403
    assert hello(b, login(b, "alice")).status_code == 200
    assert hello(b, login(b, "team")).status_code == 200
