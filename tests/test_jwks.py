"""Identity-provider tokens: a local JWKS server with keys the test makes."""

from __future__ import annotations

import asyncio
import contextlib
import http.server
import json
import logging
import os
import pathlib
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings, JwksIdentity
from floodwall.core import rules
from floodwall.core.errors import ConfigurationError, IdentityUnavailable
from floodwall.core.identity import Identity
from floodwall.identity.tokens import IdentityPending, TokenRejections
from floodwall.settings import settings_error
from harness import wait_until, wait_until_async

ISSUER = "https://idp.example.com/"
AUDIENCE = "floodwall-tests"


@dataclass
class SigningKey:
    kid: str
    algorithm: str
    private: Any
    jwk: dict[str, Any]

    def token(self, sub: str = "alice", **claims: Any) -> str:
        now = time.time()
        body = {"sub": sub, "iat": now, "exp": now + 600, "iss": ISSUER, "aud": AUDIENCE}
        body.update(claims)
        return jwt.encode(body, self.private, algorithm=self.algorithm, headers={"kid": self.kid})


def rsa_key(kid: str) -> SigningKey:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "RS256", private, {**jwk, "kid": kid, "use": "sig", "alg": "RS256"})


def ec_key(kid: str) -> SigningKey:
    private = ec.generate_private_key(ec.SECP256R1())
    jwk = ECAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "ES256", private, {**jwk, "kid": kid, "use": "sig"})


def ed_key(kid: str) -> SigningKey:
    private = ed25519.Ed25519PrivateKey.generate()
    jwk = OKPAlgorithm.to_jwk(private.public_key(), as_dict=True)
    return SigningKey(kid, "EdDSA", private, {**jwk, "kid": kid})


@dataclass
class Provider:
    """A JWKS endpoint on a free loopback port; ``keys`` is what it serves."""

    keys: list[SigningKey]
    hits: int = 0
    down: bool = False
    delay: float = 0.0
    body: bytes | None = None
    """Served instead of the key set, when set."""
    status: int = 200
    server: http.server.ThreadingHTTPServer | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/.well-known/jwks.json"

    def serve(self) -> None:
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with provider.lock:
                    provider.hits += 1
                time.sleep(provider.delay)
                if provider.down or provider.status != 200:
                    self.send_error(503 if provider.down else provider.status)
                    return
                body = (
                    provider.body or json.dumps({"keys": [k.jwk for k in provider.keys]}).encode()
                )
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def rsa_a() -> SigningKey:
    return rsa_key("rsa-a")


@pytest.fixture(scope="module")
def ec_a() -> SigningKey:
    return ec_key("ec-a")


@pytest.fixture
def provider(rsa_a: SigningKey, ec_a: SigningKey) -> Iterator[Provider]:
    provider = Provider([rsa_a, ec_a])
    provider.serve()
    try:
        yield provider
    finally:
        provider.stop()


@pytest.fixture
def identity(provider: Provider) -> Iterator[JwksIdentity]:
    identity = JwksIdentity(
        provider.url,
        algorithms=["RS256", "ES256", "EdDSA"],
        audience=AUDIENCE,
        issuer=ISSUER,
        leeway=5,
    )
    try:
        yield identity
    finally:
        identity.close()


def scope(token: str) -> dict[str, Any]:
    return {"type": "http", "headers": [(b"authorization", f"Bearer {token}".encode())]}


def resolved(identity: JwksIdentity, token: str, within: float = 5) -> Identity:
    found: list[Identity] = []

    def ready() -> bool:
        try:
            result = identity.resolve(scope(token))
        except IdentityPending:
            return False
        if result is not None:
            found.append(result)
        return result is not None

    wait_until(ready, "the token is identified", within=within, interval=0.01)
    return found[0]


async def test_rs256_and_es256_tokens_identify_their_users(
    identity: JwksIdentity, rsa_a: SigningKey, ec_a: SigningKey
) -> None:
    # The first token starts the fetch: a plain resolve cannot wait for it, awaiting can.
    token = rsa_a.token("alice", jti="c-1", iat=1_800_000_000.5)
    with pytest.raises(IdentityPending):
        identity.resolve(scope(token))
    assert await identity(scope(token)) == Identity(
        "alice", issued_at=1_800_000_000.5, credential_id="c-1"
    )
    assert identity.resolve(scope(ec_a.token("bob"))) is not None
    assert identity.resolve(scope(ec_a.token("bob")))[0] == "bob"  # type: ignore[index]


def test_eddsa_tokens_identify_their_users(provider: Provider, identity: JwksIdentity) -> None:
    ed = ed_key("ed-a")
    provider.keys = [ed]
    assert resolved(identity, ed.token("carol")).user_id == "carol"


def test_issuer_audience_expiry_and_signature_are_checked(
    identity: JwksIdentity, rsa_a: SigningKey, ec_a: SigningKey
) -> None:
    resolved(identity, rsa_a.token())
    now = time.time()
    assert identity.resolve(scope(rsa_a.token(iss="https://evil.example.com/"))) is None
    assert identity.resolve(scope(rsa_a.token(aud="someone-else"))) is None
    assert identity.resolve(scope(rsa_a.token(exp=now - 2))) is not None  # within the leeway
    assert identity.resolve(scope(rsa_a.token(exp=now - 30))) is None
    assert identity.resolve(scope(rsa_a.token(nbf=now + 30))) is None
    # Signed by another key under a known kid; an algorithm the key does not declare.
    forged = rsa_key("rsa-a")
    assert identity.resolve(scope(forged.token())) is None
    swapped = jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE},
        ec_a.private,
        algorithm="ES256",
        headers={"kid": rsa_a.kid},
    )
    assert identity.resolve(scope(swapped)) is None
    # HS256 with the public key as a secret, and unsigned tokens, are not public-key tokens.
    assert (
        identity.resolve(scope(jwt.encode({"sub": "a"}, "k" * 32, headers={"kid": "rsa-a"})))
        is None
    )
    assert identity.resolve(scope("e30.e30.")) is None


async def test_a_rotated_key_works_without_a_restart(
    provider: Provider, identity: JwksIdentity, rsa_a: SigningKey
) -> None:
    resolved(identity, rsa_a.token())
    rotated = rsa_key("rsa-b")
    provider.keys = [rotated]
    assert resolved(identity, rotated.token("dave")).user_id == "dave"
    # The key that was rotated out verifies nothing any more: its token waits for a fetch
    # that does not have it, and is invalid.
    assert await identity(scope(rsa_a.token())) is None


def test_a_thousand_unknown_kids_cause_a_few_fetches(
    provider: Provider, identity: JwksIdentity, rsa_a: SigningKey
) -> None:
    resolved(identity, rsa_a.token())
    before = provider.hits
    unknown = rsa_key("never-published")
    token = unknown.token()
    for _ in range(1000):
        with pytest.raises(IdentityPending):
            identity.resolve(scope(token))
    time.sleep(1.5)
    # At most one refresh a second, whatever the number of tokens that ask.
    assert provider.hits - before <= 2


def test_the_event_loop_never_waits_for_the_provider(
    provider: Provider, identity: JwksIdentity, rsa_a: SigningKey
) -> None:
    resolved(identity, rsa_a.token())
    provider.delay = 1.0
    started = time.perf_counter()
    for n in range(100):
        with contextlib.suppress(IdentityPending):
            identity.resolve(scope(rsa_key(f"new-{n % 2}").token() if n < 2 else rsa_a.token()))
    assert time.perf_counter() - started < 0.5


def test_when_the_provider_is_down_the_known_keys_keep_working(
    provider: Provider,
    identity: JwksIdentity,
    rsa_a: SigningKey,
    ec_a: SigningKey,
    caplog: pytest.LogCaptureFixture,
) -> None:
    resolved(identity, rsa_a.token())
    provider.down = True
    with caplog.at_level(logging.WARNING, logger="floodwall"):
        for _ in range(3):
            assert identity.refresh() is False
        assert identity.resolve(scope(rsa_a.token("erin")))[0] == "erin"  # type: ignore[index]
        assert identity.resolve(scope(ec_a.token("frank")))[0] == "frank"  # type: ignore[index]
        provider.stop()  # now not even a connection
        assert identity.refresh() is False
        assert identity.resolve(scope(rsa_a.token("erin"))) is not None
        with pytest.raises(IdentityPending):
            identity.resolve(scope(rsa_key("new").token()))
    warnings = [record.getMessage() for record in caplog.records]
    assert len(warnings) == 1
    assert warnings[0].startswith("floodwall: the identity provider's keys could not be fetched")
    assert warnings[0].endswith("the 2 keys at hand keep working")
    provider.serve()  # a new port: the test only needs the fixture's stop to work


def test_the_recovery_is_logged_once(
    provider: Provider, identity: JwksIdentity, caplog: pytest.LogCaptureFixture
) -> None:
    assert identity.refresh() is True
    provider.down = True
    with caplog.at_level(logging.WARNING, logger="floodwall"):
        identity.refresh()
        provider.down = False
        assert identity.refresh() is True
        assert identity.refresh() is True
    assert [record.getMessage() for record in caplog.records][1:] == [
        "floodwall: the identity provider's keys are fetched again"
    ]


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


async def test_the_middleware_limits_the_token_s_user(
    provider: Provider, rsa_a: SigningKey
) -> None:
    settings = FloodwallSettings(
        jwt_jwks_url=provider.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE
    )
    floodwall = Floodwall(settings)
    app = Starlette(
        routes=[Route("/", _hello)],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall)],
    )
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 123))
    headers = {"authorization": f"Bearer {rsa_a.token()}"}
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            policies: list[str] = []

            async def user_policy() -> bool:
                answer = await http.get("/", headers=headers)
                policies.append(answer.headers["ratelimit-policy"])
                return answer.headers["ratelimit-policy"].startswith('"user"')

            deadline = time.monotonic() + 5
            while not await user_policy():
                assert time.monotonic() < deadline, policies
                await _sleep(0.01)
    finally:
        # ASGITransport sends no lifespan events: the service the first request started
        # is stopped here, or its tasks outlive the test's event loop.
        await floodwall.stop()


def _app(floodwall: Floodwall, **options: Any) -> Starlette:
    return Starlette(
        routes=[Route("/", _hello)],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall, **options)],
    )


def _jwks_settings(provider: Provider) -> FloodwallSettings:
    return FloodwallSettings(jwt_jwks_url=provider.url, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)


async def test_a_fresh_worker_refuses_a_blocked_user_s_first_token(
    provider: Provider, rsa_a: SigningKey
) -> None:
    floodwall = Floodwall(_jwks_settings(provider))
    await floodwall.block("alice", reason="abuse")
    transport = httpx.ASGITransport(app=_app(floodwall), client=("127.0.0.1", 123))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            # No lifespan ran: the keys are not at hand, and the request waits for them.
            answer = await http.get("/", headers={"authorization": f"Bearer {rsa_a.token()}"})
    finally:
        await floodwall.stop()
    assert answer.status_code == 403
    assert answer.json()["type"] == "urn:floodwall:problem:account-blocked"


async def test_a_token_whose_key_cannot_be_had_is_refused_with_503(
    provider: Provider, rsa_a: SigningKey
) -> None:
    provider.down = True
    floodwall = Floodwall(_jwks_settings(provider))
    transport = httpx.ASGITransport(app=_app(floodwall), client=("127.0.0.1", 123))
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            answer = await http.get("/", headers={"authorization": f"Bearer {rsa_a.token()}"})
            anonymous = await http.get("/")
    finally:
        await floodwall.stop()
    assert answer.status_code == 503
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.headers["retry-after"] == "1"
    assert answer.json()["type"] == "urn:floodwall:problem:identity-unavailable"
    # A request without a token has nothing to verify.
    assert anonymous.status_code == 200


async def test_an_awaited_jwks_identity_raises_when_the_key_cannot_be_had(
    provider: Provider, identity: JwksIdentity, rsa_a: SigningKey
) -> None:
    provider.down = True
    with pytest.raises(IdentityUnavailable):
        await identity(scope(rsa_a.token()))


async def _lifespan(app: Any, *, then: Any = None) -> list[dict[str, Any]]:
    """The messages the app sends for a startup (then ``then()``) and a shutdown."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    queue.put_nowait({"type": "lifespan.startup"})
    sent: list[dict[str, Any]] = []

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)
        if message["type"] == "lifespan.startup.complete":
            if then is not None:
                await then()
            queue.put_nowait({"type": "lifespan.shutdown"})

    with contextlib.suppress(ConfigurationError):
        await app({"type": "lifespan", "asgi": {"version": "3.0"}, "state": {}}, queue.get, send)
    return sent


async def test_the_keys_are_fetched_at_the_lifespan_startup(provider: Provider) -> None:
    hits_at_start: list[int] = []

    async def started() -> None:
        hits_at_start.append(provider.hits)

    sent = await _lifespan(_app(Floodwall(_jwks_settings(provider))), then=started)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    assert hits_at_start == [1]


async def test_a_provider_answering_garbage_stops_the_start(provider: Provider) -> None:
    for body, problem in [
        (b"<html>login</html>", "the identity provider's answer is not JSON"),
        (b"2" * 4096, "the identity provider's key set is larger than 1024 bytes"),
        (b'{"issuer": "x"}', "the identity provider's answer is no JWK set (no keys list)"),
        (
            b'{"keys": [{"kty": "RSA"}]}',
            "the identity provider's JWK set has no usable signing key",
        ),
    ]:
        provider.body = body
        identity = JwksIdentity(provider.url, algorithms=["RS256"], max_bytes=1024)
        sent = await _lifespan(_app(Floodwall(_jwks_settings(provider)), identify=identity))
        assert sent == [
            {
                "type": "lifespan.startup.failed",
                "message": f"floodwall: FLOODWALL_JWT_JWKS_URL: {problem}",
            }
        ]


async def test_an_unreachable_provider_is_retried_in_the_background(provider: Provider) -> None:
    provider.down = True
    floodwall = Floodwall(_jwks_settings(provider))

    async def retried() -> None:
        await wait_until_async(
            _async(lambda: provider.hits >= 2), "the keys are fetched again", within=10
        )

    sent = await _lifespan(_app(floodwall), then=retried)
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]


def _async(condition: Any) -> Any:
    async def check() -> bool:
        return bool(condition())

    return check


async def _sleep(seconds: float) -> None:
    import asyncio

    await asyncio.sleep(seconds)


# --- settings --------------------------------------------------------------------


def _refusal(**settings: Any) -> str:
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings(**settings)
    return settings_error(caught.value)


def test_public_key_algorithms_are_allowed_with_a_jwks_url() -> None:
    url = "https://idp.example.com/jwks"
    settings = FloodwallSettings(jwt_jwks_url=url, jwt_algorithms="RS256,es256,EdDSA")
    assert settings.jwks_algorithms == ["RS256", "ES256", "EdDSA"]
    assert settings.hmac_algorithms == []
    assert FloodwallSettings(jwt_jwks_url=url).jwks_algorithms == ["RS256", "ES256", "EdDSA"]
    both = FloodwallSettings(jwt_jwks_url=url, jwt_secret="k" * 32)
    assert both.hmac_algorithms == ["HS256"]
    assert both.jwt_leeway == 5.0


def test_jwks_settings_that_cannot_work_are_refused() -> None:
    url = "https://idp.example.com/jwks"
    assert _refusal(jwt_jwks_url=url, jwt_algorithms="RS256,none") == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: none is refused (it admits unsigned tokens)"
    )
    assert _refusal(jwt_jwks_url=url, jwt_algorithms="HS256") == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS names no public-key algorithm, so "
        "FLOODWALL_JWT_JWKS_URL could verify no token (use RS256, ES256, EdDSA)"
    )
    assert _refusal(jwt_jwks_url=url, jwt_algorithms="RS256", jwt_secret="k" * 32) == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS names no HMAC algorithm, so "
        "FLOODWALL_JWT_SECRET could verify no token (add one of HS256, HS384, HS512)"
    )
    assert _refusal(jwt_jwks_url=url, jwt_algorithms="Ed448") == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: Ed448 is not supported by the installed PyJWT"
    )
    for bad in ("file:///etc/passwd", "idp.example.com/jwks", "https://"):
        assert _refusal(jwt_jwks_url=bad) == (
            "bad settings: FLOODWALL_JWT_JWKS_URL is not an http:// or https:// URL"
        )
    assert _refusal(jwt_leeway=301).startswith("bad settings: FLOODWALL_JWT_LEEWAY: ")
    assert _refusal(jwt_leeway=-1).startswith("bad settings: FLOODWALL_JWT_LEEWAY: ")


def test_jwks_identity_refuses_symmetric_algorithms() -> None:
    from floodwall.core.errors import ConfigurationError

    for algorithms in ([], ["HS256"], ["RS256", "none"]):
        with pytest.raises(ConfigurationError):
            JwksIdentity("https://idp.example.com/jwks", algorithms=algorithms)


def _forged(header: dict[str, Any], key: Any, algorithm: str) -> str:
    return jwt.encode(
        {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "exp": time.time() + 600},
        key,
        algorithm=algorithm,
        headers=header,
    )


async def test_hostile_algorithm_headers_are_refused_cleanly(
    provider: Provider, identity: JwksIdentity, ec_a: SigningKey
) -> None:
    # An RSA key published without alg, as Entra publishes its keys.
    entra = rsa_key("entra")
    entra.jwk.pop("alg")
    provider.keys = [entra, ec_a]
    assert identity.refresh() is True
    assert resolved(identity, entra.token("alice")).user_id == "alice"
    es256_on_rsa = _forged({"kid": "entra"}, ec_a.private, "ES256")
    assert identity.resolve(scope(es256_on_rsa)) is None
    rs256_on_ec = _forged({"kid": ec_a.kid}, entra.private, "RS256")
    assert identity.resolve(scope(rs256_on_ec)) is None
    # A header whose alg is a list, an object or a number names no algorithm.
    for alg in (["RS256"], {"RS256": 1}, 256):
        token = entra.token()
        rest = token.split(".", 1)[1]
        hostile = jwt.utils.base64url_encode(
            json.dumps({"alg": alg, "kid": "entra", "typ": "JWT"}).encode()
        ).decode()
        assert identity.resolve(scope(f"{hostile}.{rest}")) is None


async def test_jwks_refusals_are_reported_by_reason(provider: Provider, rsa_a: SigningKey) -> None:
    counted: list[str] = []
    identity = JwksIdentity(
        provider.url,
        algorithms=["RS256", "ES256"],
        audience=AUDIENCE,
        issuer=ISSUER,
        rejections=TokenRejections(counted.append, issuer=ISSUER, audience=AUDIENCE),
    )
    try:
        assert identity.refresh() is True
        assert await identity(scope(rsa_key("never-published").token())) is None
        assert await identity(scope(rsa_a.token(iss="https://idp.example.com"))) is None
        assert await identity(scope(_forged({"kid": "rsa-a"}, rsa_a.private, "RS512"))) is None
        assert await identity(scope(rsa_key("rsa-a").token())) is None
        assert await identity(scope("e30")) is None
    finally:
        identity.close()
    assert counted == ["unknown_key", "wrong_issuer", "algorithm", "bad_signature", "malformed"]


@dataclass
class HostileProvider:
    """A key-set endpoint that drips its answer, or sends far too much of it."""

    drip_seconds: float = 0.0
    huge_bytes: int = 0
    server: http.server.ThreadingHTTPServer | None = None
    stopping: threading.Event = field(default_factory=threading.Event)

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}/jwks.json"

    def serve(self) -> None:
        provider = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body = json.dumps({"keys": [rsa_key("slow").jwk]}).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                if provider.huge_bytes:
                    # No content-length: only the bytes counted as they come can stop it.
                    self.end_headers()
                    block = b" " * 65536
                    with contextlib.suppress(OSError):
                        for _ in range(provider.huge_bytes // len(block)):
                            self.wfile.write(block)
                    return
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    for byte in body:
                        if provider.stopping.wait(provider.drip_seconds):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        assert self.server is not None
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hostile() -> Iterator[HostileProvider]:
    provider = HostileProvider()
    provider.serve()
    try:
        yield provider
    finally:
        provider.stop()


def test_a_dripping_key_set_is_given_up_at_the_fetch_deadline(
    hostile: HostileProvider, caplog: pytest.LogCaptureFixture
) -> None:
    # Each byte comes well within a read timeout; the whole would take minutes.
    hostile.drip_seconds = 0.2
    identity = JwksIdentity(hostile.url, algorithms=["RS256"], timeout=0.5)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="floodwall"):
        assert identity.refresh() is False
    # The deadline, plus this machine's slack; the dripped answer needs over 100 s.
    assert time.monotonic() - started < 5
    assert "took longer than 0.5s" in caplog.records[0].getMessage()


def test_a_huge_key_set_is_refused_at_the_size_cap(hostile: HostileProvider) -> None:
    hostile.huge_bytes = 64 * 1024 * 1024
    identity = JwksIdentity(hostile.url, algorithms=["RS256"], max_bytes=1024 * 1024)
    assert identity.refresh() is False


async def test_a_huge_key_set_stops_the_start(hostile: HostileProvider) -> None:
    hostile.huge_bytes = 64 * 1024 * 1024
    sent = await _lifespan(_app(Floodwall(FloodwallSettings(jwt_jwks_url=hostile.url))))
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "floodwall: FLOODWALL_JWT_JWKS_URL: the identity provider's key set is "
            "larger than 1048576 bytes",
        }
    ]


def test_jwks_fetch_bounds_come_from_the_rule_book() -> None:
    url = "https://idp.example.com/jwks"
    with pytest.raises(ConfigurationError) as refused:
        JwksIdentity(url, algorithms=["RS256"], timeout=0)
    assert str(refused.value) == f"JwksIdentity: {rules.JWKS_TIMEOUT.message}"
    with pytest.raises(ConfigurationError) as refused:
        JwksIdentity(url, algorithms=["RS256"], max_bytes=10)
    assert str(refused.value) == f"JwksIdentity: {rules.JWKS_MAX_BYTES.message}"


def test_an_unknown_algorithm_with_a_jwks_url_is_told_the_public_key_ones() -> None:
    url = "https://idp.example.com/jwks"
    # A JSON list where a comma-separated one is read: its one entry is no algorithm.
    assert _refusal(jwt_jwks_url=url, jwt_algorithms='["RS256"]') == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: entry 1 is not a JWT algorithm "
        "(use RS256, ES256, EdDSA)"
    )
    assert _refusal(jwt_jwks_url=url, jwt_secret="k" * 32, jwt_algorithms="RS256,RS257") == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: entry 2 is not a JWT algorithm "
        "(use RS256, ES256, EdDSA for FLOODWALL_JWT_JWKS_URL and HS256, HS384, HS512 for "
        "FLOODWALL_JWT_SECRET)"
    )


_APP = """
from starlette.applications import Starlette
from starlette.middleware import Middleware
from floodwall import Floodwall, FloodwallMiddleware
app = Starlette(middleware=[Middleware(FloodwallMiddleware, floodwall=Floodwall())])
"""


def test_uvicorn_exits_when_the_provider_answers_garbage(
    provider: Provider, tmp_path: pathlib.Path
) -> None:
    provider.body = b"<html>sign in</html>"
    (tmp_path / "jwks_app.py").write_text(_APP)
    environment = {
        name: value for name, value in os.environ.items() if not name.startswith("FLOODWALL_")
    }
    environment["FLOODWALL_JWT_JWKS_URL"] = provider.url
    finished = subprocess.run(
        [sys.executable, "-m", "uvicorn", "jwks_app:app", "--port", "0"],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert finished.returncode != 0
    assert "FLOODWALL_JWT_JWKS_URL: the identity provider's answer is not JSON" in finished.stderr
    assert "Traceback" not in finished.stderr


async def test_a_provider_answering_not_found_stops_the_start(provider: Provider) -> None:
    provider.status = 404
    sent = await _lifespan(_app(Floodwall(_jwks_settings(provider))))
    assert sent == [
        {
            "type": "lifespan.startup.failed",
            "message": "floodwall: FLOODWALL_JWT_JWKS_URL: the identity provider answered HTTP 404",
        }
    ]


async def test_a_slow_provider_does_not_hold_the_start_past_the_timeout(
    provider: Provider, caplog: pytest.LogCaptureFixture
) -> None:
    provider.delay = 3.0
    identity = JwksIdentity(provider.url, algorithms=["RS256"], timeout=0.3)
    try:
        with caplog.at_level(logging.WARNING, logger="floodwall"):
            sent = await _lifespan(_app(Floodwall(_jwks_settings(provider)), identify=identity))
    finally:
        identity.close()
    assert [message["type"] for message in sent] == [
        "lifespan.startup.complete",
        "lifespan.shutdown.complete",
    ]
    # Whichever ends first, the fetch (timed out) or the wait for it, says so.
    assert any(
        record.getMessage().startswith("floodwall: the identity provider's keys ")
        for record in caplog.records
    )


async def test_a_token_of_a_key_the_provider_does_not_publish_is_anonymous_and_counted(
    provider: Provider,
) -> None:
    floodwall = Floodwall(_jwks_settings(provider))
    transport = httpx.ASGITransport(app=_app(floodwall), client=("127.0.0.1", 123))
    token = rsa_key("never-published").token()
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
            # Waits for a fetch that began after it came; the keys then hold none of its.
            answer = await http.get("/", headers={"authorization": f"Bearer {token}"})
    finally:
        await floodwall.stop()
    assert answer.status_code == 200
    assert answer.headers["ratelimit-policy"].startswith('"anonymous"')
    text = floodwall.metrics.render()[0].decode()
    assert 'floodwall_token_rejections_total{reason="unknown_key"} 1.0' in text
