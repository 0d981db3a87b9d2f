"""Identity: JWT, Starlette's user, the gateway header, and client addresses."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

import httpx
import jwt
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.authentication import SimpleUser, UnauthenticatedUser
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware
from floodwall.core.errors import ConfigurationError
from floodwall.core.identity import Identity
from floodwall.core.types import Scope
from floodwall.identity.chain import default_identify
from floodwall.identity.scope import HeaderIdentity, client_identity, starlette_user
from floodwall.identity.shared_secret import JwtIdentity
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


@pytest.fixture(autouse=True)
def _no_floodwall_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables of the shell running the tests must not decide what these tests see."""
    for name in list(os.environ):
        if name.upper().startswith("FLOODWALL_"):
            monkeypatch.delenv(name)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _raw_token(header: object, claims: object, signature: str = "c2ln") -> str:
    """A token with any header and claims, signed with nothing."""
    return ".".join(
        [_b64(json.dumps(header).encode()), _b64(json.dumps(claims).encode()), signature]
    )


def _signed(header: dict[str, object], claims: str) -> str:
    """A token with raw claims text (NaN, huge numbers), correctly signed with SECRET."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(claims.encode())}"
    signature = hmac.new(SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


def test_an_identity_is_a_user_its_kind_its_credential_and_its_plan() -> None:
    assert Identity._fields == ("user_id", "anonymous", "issued_at", "credential_id", "plan")


async def test_a_jwt_names_the_user_and_the_credential() -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    now = time.time()
    token = _token(sub="alice", iat=now, jti="c-1", exp=int(now) + 60)
    identity = await identify(_scope({"Authorization": f"Bearer {token}"}))
    assert identity == Identity("alice", issued_at=now, credential_id="c-1")


@pytest.mark.parametrize(
    ("claims", "issued_at"),
    [
        ('{"sub": "alice", "iat": 1700000000}', 1_700_000_000.0),
        ('{"sub": "alice", "iat": 1700000000.25}', 1_700_000_000.25),
        ('{"sub": "alice", "iat": 0}', 0.0),
        ('{"sub": "alice"}', 0.0),
        ('{"sub": "alice", "iat": "1700000000"}', 0.0),
        ('{"sub": "alice", "iat": "yesterday"}', 0.0),
        ('{"sub": "alice", "iat": true}', 0.0),
        ('{"sub": "alice", "iat": null}', 0.0),
        ('{"sub": "alice", "iat": [1700000000]}', 0.0),
        ('{"sub": "alice", "iat": NaN}', 0.0),
        ('{"sub": "alice", "iat": Infinity}', 0.0),
        ('{"sub": "alice", "iat": -Infinity}', 0.0),
        ('{"sub": "alice", "iat": 1e400}', 0.0),
        ('{"sub": "alice", "iat": 1' + "0" * 400 + "}", 0.0),
        ('{"sub": "alice", "iat": -1}', 0.0),
    ],
)
async def test_a_credential_without_a_usable_iat_counts_as_issued_before_any_revocation(
    claims: str, issued_at: float
) -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    token = _signed({"alg": "HS256", "typ": "JWT"}, claims)
    identity = await identify(_scope({"authorization": f"Bearer {token}"}))
    assert identity == Identity("alice", issued_at=issued_at)
    assert identity is not None
    assert identity.issued_at is not None


async def test_identities_without_a_credential_have_no_issue_time() -> None:
    for identity in (
        await starlette_user(_scope(user=SimpleUser("bob"))),
        await HeaderIdentity("x-user-id")(_scope({"x-user-id": "carol"})),
        client_identity(_scope()),
    ):
        assert identity is not None
        assert identity.issued_at is None
        assert identity.credential_id is None


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
        "Bearer " + jwt.encode({"sub": 42}, SECRET, algorithm="HS256"),
        # Unsigned, whatever the spelling of none.
        "Bearer " + _raw_token({"alg": "none"}, {"sub": "alice"}, signature=""),
        "Bearer " + _raw_token({"alg": "None", "typ": "JWT"}, {"sub": "alice"}, signature=""),
        "Bearer " + _raw_token({"alg": "NONE"}, {"sub": "alice"}),
        # Algorithms that are not configured, or not algorithms at all.
        "Bearer " + _raw_token({"alg": "RS256", "kid": "idp-key-1"}, {"sub": "alice"}),
        "Bearer " + _raw_token({"alg": ["HS256"]}, {"sub": "alice"}),
        "Bearer " + _raw_token({"typ": "JWT"}, {"sub": "alice"}),
        # Headers PyJWT refuses to interpret.
        "Bearer " + _raw_token({"alg": "HS256", "kid": 7}, {"sub": "alice"}),
        "Bearer " + jwt.encode({"sub": "alice"}, SECRET, headers={"crit": ["exp"]}),
        "Bearer "
        + jwt.encode(
            {"sub": "alice"},
            "another-key-0123456789abcdef-0123456789",
            algorithm="HS256",
            headers={"kid": "k1"},
        ),
        # Claims that are no object, and malformed times.
        "Bearer " + _signed({"alg": "HS256"}, '["alice"]'),
        "Bearer " + _signed({"alg": "HS256"}, '"alice"'),
        "Bearer " + _signed({"alg": "HS256"}, '{"sub": "alice", "exp": null}'),
        "Bearer " + _signed({"alg": "HS256"}, '{"sub": "alice", "exp": Infinity}'),
        "Bearer " + _signed({"alg": "HS256"}, '{"sub": "alice", "exp": "soon"}'),
        "Bearer " + _signed({"alg": "HS256"}, '{"sub": "alice", "nbf": NaN}'),
        "Bearer " + _signed({"alg": "HS256"}, '{"sub": "alice", "nbf": 1e400}'),
        "Bearer " + _signed({"alg": "HS256"}, "{not json"),
        # Garbage.
        "Bearer ",
        "Bearer a.b.c",
        "Bearer ....",
        "Bearer ===.===.===",
        "Bearer \xff\xfe.\x80.\x00",
        "bearer " + "a" * 10_000,
    ],
)
async def test_missing_or_invalid_tokens_name_nobody(header: str) -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    scope = _scope()
    scope["headers"] = [(b"authorization", header.encode("latin-1"))]
    assert await identify(scope) is None


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.lists(st.binary(max_size=80), min_size=3, max_size=3).map(
            lambda parts: b".".join(base64.urlsafe_b64encode(part) for part in parts)
        ),
        st.dictionaries(
            st.sampled_from(["alg", "kid", "typ", "crit", "b64", "jku", "x5u"]),
            st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=10)),
        ).map(lambda header: _raw_token(header, {"sub": "alice"}).encode()),
    )
)
def test_no_token_makes_the_jwt_identity_raise(token: bytes) -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    scope = _scope()
    scope["headers"] = [(b"authorization", b"Bearer " + token)]
    assert identify.resolve(scope) is None


async def test_a_kid_header_selects_nothing_with_one_shared_secret() -> None:
    identify = JwtIdentity(SECRET, algorithms=["HS256"])
    token = jwt.encode({"sub": "alice", "iat": 5}, SECRET, headers={"kid": "any"})
    assert await identify(_scope({"authorization": f"Bearer {token}"})) == Identity(
        "alice", issued_at=5.0
    )


@pytest.mark.parametrize("algorithms", [[], ["none"], ["HS256", "None"]])
def test_a_jwt_identity_refuses_unsigned_tokens_when_built(algorithms: list[str]) -> None:
    with pytest.raises(ConfigurationError):
        JwtIdentity(SECRET, algorithms=algorithms)


def test_a_jwt_identity_refuses_a_key_too_short_for_its_algorithms() -> None:
    with pytest.raises(ConfigurationError) as caught:
        JwtIdentity("k" * 63, algorithms=["HS256", "HS512"])
    assert str(caught.value) == (
        "JwtIdentity: the key is shorter than 64 bytes, the least HS512 allows "
        "(RFC 7518 section 3.2)"
    )
    assert JwtIdentity("k" * 64, algorithms=["HS256", "HS512"]) is not None


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


def test_refused_tokens_are_counted_by_reason_and_the_first_of_each_is_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counted: list[str] = []
    settings = FloodwallSettings(
        jwt_secret=SECRET, jwt_issuer="https://idp.example.com", jwt_audience="api"
    )
    identify = default_identify(settings, on_rejected=counted.append)
    now = time.time()
    good = {"sub": "alice", "iss": "https://idp.example.com", "aud": "api", "exp": now + 60}
    tokens = {
        "expired": _token(**{**good, "exp": now - 60}),
        "not_yet_valid": _token(**{**good, "nbf": now + 60}),
        "bad_signature": jwt.encode(good, "another-key-0123456789abcdef-0123456789"),
        # The issuer the identity provider writes, with its trailing slash.
        "wrong_issuer": _token(**{**good, "iss": "https://idp.example.com/"}),
        "wrong_audience": _token(**{**good, "aud": "someone-else"}),
        "malformed": "not.a.token",
        "algorithm": jwt.encode(good, SECRET * 2, algorithm="HS512"),
    }
    with caplog.at_level(logging.WARNING, logger="floodwall"):
        assert identify.resolve(_scope({"authorization": f"Bearer {_token(**good)}"})) is not None
        for token in [*tokens.values(), tokens["wrong_issuer"]]:
            assert identify.resolve(_scope({"authorization": f"Bearer {token}"})) is None
    assert counted == [*tokens, "wrong_issuer"]
    lines = [record.getMessage() for record in caplog.records]
    assert len(lines) == len(tokens)  # the first of each reason only
    wrong_issuer = next(line for line in lines if "(wrong_issuer)" in line)
    assert wrong_issuer == (
        "floodwall: a bearer token was refused (wrong_issuer): expected issuer "
        "'https://idp.example.com' and audience 'api', the token names issuer "
        "'https://idp.example.com/' and audience 'api'; later refusals for this reason are "
        "only counted (floodwall_token_rejections_total)"
    )
    assert not any(token in line for token in tokens.values() for line in lines)


async def test_the_middleware_counts_refused_tokens_in_its_metrics() -> None:
    floodwall = Floodwall(FloodwallSettings(jwt_secret=SECRET, jwt_issuer="https://idp/"))
    app = FloodwallMiddleware(PlainTextResponse("hi"), floodwall=floodwall)
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            token = _token(sub="alice", iss="https://idp")
            assert (await http.get("/", headers={"authorization": f"Bearer {token}"})).is_success
    finally:
        await floodwall.stop()
    text = floodwall.metrics.render()[0].decode()
    assert 'floodwall_token_rejections_total{reason="wrong_issuer"} 1.0' in text
    assert 'floodwall_token_rejections_total{reason="expired"} 0.0' in text


async def test_the_app_is_handed_the_identity_floodwall_resolved() -> None:
    seen: list[Identity] = []

    async def endpoint(request: Request) -> PlainTextResponse:
        seen.append(request.state.floodwall_identity)
        return PlainTextResponse("hi")

    floodwall = Floodwall(FloodwallSettings(jwt_secret=SECRET))
    app = Starlette(
        routes=[Route("/", endpoint)],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall)],
    )
    transport = httpx.ASGITransport(app=app, client=("192.0.2.7", 123))
    token = _token(sub="alice", iat=1_700_000_000, jti="c-1")
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            await http.get("/", headers={"authorization": f"Bearer {token}"})
            await http.get("/")
    finally:
        await floodwall.stop()
    assert seen == [
        Identity("alice", issued_at=1_700_000_000.0, credential_id="c-1"),
        Identity("192.0.2.7", anonymous=True),
    ]


async def test_the_identity_is_added_to_a_state_the_server_set() -> None:
    scopes: list[Scope] = []

    async def app(scope: Scope, receive: object, send: object) -> None:
        scopes.append(scope)

    floodwall = Floodwall(FloodwallSettings(user_header="x-user"))
    middleware = FloodwallMiddleware(app, floodwall=floodwall)
    state = {"db": "pool"}
    scope: Scope = {**_scope({"x-user": "bob"}), "state": state}
    try:
        await middleware(scope, _never_receive, _never_send)
    finally:
        await floodwall.stop()
    assert scopes[0]["state"] is state
    assert state == {"db": "pool", "floodwall_identity": Identity("bob")}


async def _never_receive() -> Any:
    raise AssertionError("not called")


async def _never_send(message: Any) -> None:
    raise AssertionError("not called")


async def test_the_plan_comes_from_the_claim_the_settings_name() -> None:
    settings = FloodwallSettings(jwt_secret=SECRET, jwt_plan_claim="tier")
    identify = default_identify(settings)
    now = time.time()
    token = _token(sub="alice", iat=now, tier="pro", plan="free")
    identity = await identify(_scope({"Authorization": f"Bearer {token}"}))
    assert identity is not None
    assert identity.plan == "pro"
    # A claim that is no text names no plan: the default limit applies.
    odd = _token(sub="bob", iat=now, tier=["pro"])
    found = await identify(_scope({"Authorization": f"Bearer {odd}"}))
    assert found is not None
    assert found.plan is None
    # Without the setting no claim is read.
    plain = await default_identify(FloodwallSettings(jwt_secret=SECRET))(
        _scope({"Authorization": f"Bearer {token}"})
    )
    assert plain is not None
    assert plain.plan is None


async def test_a_gateways_plan_header_names_the_plan_of_a_user_without_one() -> None:
    settings = FloodwallSettings(
        jwt_secret=SECRET, jwt_plan_claim="tier", user_header="x-user", plan_header="x-plan"
    )
    identify = default_identify(settings)
    by_gateway = await identify(_scope({"x-user": "carol", "x-plan": "team"}))
    assert by_gateway == Identity("carol", plan="team")
    # The token's own claim wins over the header; an anonymous client has no plan.
    token = _token(sub="alice", iat=time.time(), tier="pro")
    claimed = await identify(_scope({"Authorization": f"Bearer {token}", "x-plan": "team"}))
    assert claimed is not None
    assert claimed.plan == "pro"
    assert await identify(_scope({"x-plan": "team"})) is None
