"""Identity: JWT, Starlette's user, the gateway header, and client addresses."""

from __future__ import annotations

import time

import jwt
import pytest
from starlette.authentication import SimpleUser, UnauthenticatedUser

from floodwall._types import Scope
from floodwall.identity import (
    HeaderIdentity,
    Identity,
    JwtIdentity,
    client_identity,
    default_identify,
    starlette_user,
)
from floodwall.settings import FloodwallSettings

SECRET = "test-signing-key-0123456789abcdef-0123456789"


def _scope(
    headers: dict[str, str] | None = None, client: str = "192.0.2.7", **extra: object
) -> Scope:
    scope: Scope = {
        "type": "http",
        "path": "/",
        "headers": [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
        "client": (client, 50000),
    }
    scope.update(extra)
    return scope


def _token(**claims: object) -> str:
    return jwt.encode(claims, SECRET, algorithm="HS256")


async def test_a_jwt_names_the_user_and_the_credential() -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    now = time.time()
    token = _token(sub="alice", iat=now, jti="c-1", exp=int(now) + 60)
    identity = await identify(_scope({"Authorization": f"Bearer {token}"}))
    assert identity == Identity(
        "alice", issued_at=now, credential_id="c-1", expires_at=int(now) + 60
    )


@pytest.mark.parametrize(
    "header",
    [
        "Bearer not-a-jwt",
        "Basic YWxpY2U6cHc=",
        "Bearer "
        + jwt.encode(
            {"sub": "alice"}, "another-key-0123456789abcdef-0123456789", algorithm="HS256"
        ),
        "Bearer " + jwt.encode({"sub": "alice", "exp": 1}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"iat": 1}, SECRET, algorithm="HS256"),
        "Bearer " + jwt.encode({"sub": "alice"}, "k" * 64, algorithm="HS512"),
    ],
)
async def test_missing_or_invalid_tokens_name_nobody(header: str) -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    assert await identify(_scope({"Authorization": header})) is None


async def test_starlette_user_only_when_authenticated() -> None:
    assert await starlette_user(_scope(user=SimpleUser("bob"))) == Identity("bob")
    assert await starlette_user(_scope(user=UnauthenticatedUser())) is None
    assert await starlette_user(_scope()) is None


async def test_gateway_header() -> None:
    identify = HeaderIdentity("X-User-Id")
    assert await identify(_scope({"x-user-id": "carol"})) == Identity("carol")
    assert await identify(_scope()) is None


@pytest.mark.parametrize(
    ("client", "expected"),
    [
        ("192.0.2.7", "192.0.2.7"),
        ("2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"),
        ("2001:db8:1:2:ffff:ffff:ffff:ffff", "2001:db8:1:2::/64"),
        ("::ffff:192.0.2.9", "192.0.2.9"),
        ("not-an-ip", "not-an-ip"),
    ],
)
def test_client_addresses_group_ipv6_by_64(client: str, expected: str) -> None:
    assert client_identity(_scope(client=client)) == Identity(expected, anonymous=True)


def test_no_client_is_one_unknown_client() -> None:
    scope = _scope()
    del scope["client"]
    assert client_identity(scope) == Identity("unknown", anonymous=True)


async def test_the_default_chain_prefers_the_jwt_then_the_user_then_the_header() -> None:
    identify = default_identify(FloodwallSettings(jwt_secret=SECRET, user_header="x-user-id"))
    token = _token(sub="alice", iat=1, jti="j")
    both = _scope(
        {"authorization": f"Bearer {token}", "x-user-id": "carol"}, user=SimpleUser("bob")
    )
    assert (await identify(both)) == Identity("alice", issued_at=1.0, credential_id="j")
    assert await identify(_scope({"x-user-id": "carol"}, user=SimpleUser("bob"))) == Identity("bob")
    assert await identify(_scope({"x-user-id": "carol"})) == Identity("carol")
    assert await identify(_scope()) is None


async def test_the_header_is_ignored_unless_configured() -> None:
    identify = default_identify(FloodwallSettings())
    assert await identify(_scope({"x-user-id": "carol"})) is None
