"""Settings: rates in every form users write them, environment variables, secrets."""

from __future__ import annotations

import os

import pytest
from pydantic import SecretStr, ValidationError
from pydantic_settings import NoDecode

from floodwall import Floodwall
from floodwall.core import rules
from floodwall.core.errors import ConfigurationError
from floodwall.settings import FloodwallSettings, settings_error

ADMIN = "0123456789abcdef"
JWT_KEY = "jwt-signing-key-of-32-bytes-0123"


@pytest.fixture(autouse=True)
def _no_floodwall_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Variables of the shell running the tests must not decide what these tests see."""
    for name in list(os.environ):
        if name.upper().startswith("FLOODWALL_"):
            monkeypatch.delenv(name)


def _refusal(**values: object) -> str:
    """The one line settings_error gives for settings that must be refused."""
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings(**values)  # type: ignore[arg-type]
    line = settings_error(caught.value)
    assert line.startswith("bad settings: ")
    assert "\n" not in line
    return line


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (10, 10.0),
        (0.5, 0.5),
        ("0.5", 0.5),
        ("10/second", 10.0),
        ("600/minute", 10.0),
        ("10 per second", 10.0),
        ("3600/hour", 1.0),
    ],
)
def test_rates_accept_numbers_fractions_and_rate_strings(value: object, expected: float) -> None:
    assert rules.rate(value) == pytest.approx(expected)
    assert FloodwallSettings(rate=value).rate == pytest.approx(expected)


@pytest.mark.parametrize(
    "value", [0, -1, "0/second", "soon", "nan", "inf", True, None, [1], 2e6, 1e-9]
)
def test_bad_rates_are_refused_with_the_rule_books_message(value: object) -> None:
    line = _refusal(rate=value)
    assert line.startswith("bad settings: FLOODWALL_RATE: ")
    assert rules.RATE.message in line


@pytest.mark.parametrize("value", [0, -1, 2.5, "2.5", "many", True, None, 1_000_001, "1e7"])
def test_bad_bursts_are_refused_with_the_rule_books_message(value: object) -> None:
    assert _refusal(burst=value) == f"bad settings: FLOODWALL_BURST: {rules.BURST.message}"


@pytest.mark.parametrize("field", ["anonymous_rate", "anonymous_burst"])
def test_anonymous_limits_follow_the_same_rules(field: str) -> None:
    line = _refusal(**{field: 0})
    assert line.startswith(f"bad settings: FLOODWALL_{field.upper()}: ")


def test_bursts_from_the_environment_are_whole_numbers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_BURST", " 20 ")
    monkeypatch.setenv("FLOODWALL_ANONYMOUS_BURST", "5.0")
    settings = FloodwallSettings()
    assert (settings.burst, settings.anonymous_burst) == (20, 5)


def test_a_bucket_must_refill_within_the_rule_books_bound() -> None:
    refill = "burst / rate (the seconds an empty bucket takes to refill) is at most 315360000"
    assert _refusal(rate="1/year", burst=11) == (
        f"bad settings: FLOODWALL_RATE and FLOODWALL_BURST: {refill}"
    )
    # Without its own burst, the anonymous rate pairs with the per-user burst.
    assert _refusal(anonymous_rate="1/year", burst=11) == (
        f"bad settings: FLOODWALL_ANONYMOUS_RATE and FLOODWALL_BURST: {refill}"
    )
    assert _refusal(rate="1/year", burst=11, anonymous_rate=1) == (
        f"bad settings: FLOODWALL_RATE and FLOODWALL_BURST: {refill}"
    )
    assert _refusal(anonymous_rate="1/year", anonymous_burst=11) == (
        f"bad settings: FLOODWALL_ANONYMOUS_RATE and FLOODWALL_ANONYMOUS_BURST: {refill}"
    )
    # The bound itself is accepted: ten years to refill.
    assert FloodwallSettings(rate="1/year", burst=10).burst == 10
    settings = FloodwallSettings(anonymous_rate="1/year", anonymous_burst=10)
    assert settings.effective_anonymous_burst == 10


def test_defaults_follow_the_design() -> None:
    settings = FloodwallSettings()
    assert settings.redis_url is None
    assert settings.rate == 10.0
    assert settings.burst == 10
    assert settings.effective_anonymous_rate == 10.0
    assert settings.effective_anonymous_burst == 10
    assert settings.fail_mode == "open"
    assert settings.admin_token is None
    assert settings.named_admin_tokens() == {}
    assert settings.jwt_algorithms == ["HS256"]
    assert settings.trusted_proxies == []
    assert settings.trust_all_proxies is False


def test_the_settings_are_frozen_and_keep_their_names() -> None:
    settings = FloodwallSettings()
    with pytest.raises(ValidationError):
        settings.rate = 5  # type: ignore[misc]
    assert {
        "redis_url", "redis_cluster", "redis_timeout", "key_prefix", "rate", "burst",
        "anonymous_rate", "anonymous_burst", "rate_limit_headers", "fail_mode",
        "expected_instances", "breaker_failures", "breaker_cooldown", "resync_seconds",
        "admin_token", "admin_tokens", "jwt_secret", "jwt_algorithms", "jwt_audience",
        "user_header", "trusted_proxies", "trust_all_proxies", "shadow",
        "auto_block_refusals", "auto_block_window", "auto_block_seconds",
        "auto_block_max_seconds", "request_id_header", "exempt_paths", "password_reset_paths",
    } <= set(FloodwallSettings.model_fields)  # fmt: skip


def test_environment_variables_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_REDIS_URL", "redis://:hunter2hunter2@127.0.0.1:6379/0")
    monkeypatch.setenv("FLOODWALL_RATE", "600/minute")
    monkeypatch.setenv("FLOODWALL_BURST", "20")
    monkeypatch.setenv("FLOODWALL_ANONYMOUS_RATE", "0.5")
    monkeypatch.setenv("FLOODWALL_FAIL_MODE", "closed")
    monkeypatch.setenv("FLOODWALL_USER_HEADER", "X-User-Id")
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", "10.0.0.1, 10.0.0.2")
    monkeypatch.setenv("FLOODWALL_EXEMPT_PATHS", "/health,/metrics")
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKENS", "ops:0123456789abcdef,bob:fedcba9876543210")
    settings = FloodwallSettings()
    assert settings.rate == 10.0
    assert settings.burst == 20
    assert settings.effective_anonymous_rate == 0.5
    assert settings.fail_mode == "closed"
    assert settings.user_header == "x-user-id"
    assert settings.trusted_proxies == ["10.0.0.1", "10.0.0.2"]
    assert settings.exempt_paths == ["/health", "/metrics"]
    assert settings.named_admin_tokens() == {"ops": "0123456789abcdef", "bob": "fedcba9876543210"}


def test_secrets_never_show_in_reprs() -> None:
    settings = FloodwallSettings(
        redis_url="redis://:hunter2hunter2@localhost/0",
        admin_token="s3cret-admin-token-value",
        jwt_secret="jwt-signing-key-of-32-bytes-0123",
    )
    text = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("hunter2hunter2", "s3cret-admin-token-value", "jwt-signing-key-of-32"):
        assert secret not in text


# --- unknown variables ---------------------------------------------------------------


def test_a_misspelt_variable_is_refused_naming_the_real_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOODWALL_REDIS_URI", "redis://:hunter2hunter2@10.0.0.5:6379/0")
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings()
    assert settings_error(caught.value) == (
        "bad settings: unknown setting FLOODWALL_REDIS_URI (did you mean FLOODWALL_REDIS_URL?)"
    )
    assert "hunter2" not in str(caught.value) + repr(caught.value)


def test_unknown_variables_are_refused_even_when_settings_are_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOODWALL_BRUST", "20")
    monkeypatch.setenv("FLOODWALL_XYZZY", "1")
    assert _refusal(rate=5) == (
        "bad settings: unknown setting FLOODWALL_BRUST (did you mean FLOODWALL_BURST?); "
        "unknown setting FLOODWALL_XYZZY"
    )


def test_unknown_variables_are_reported_with_other_problems(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHM", "HS256")
    monkeypatch.setenv("FLOODWALL_BURST", "0")
    assert _refusal() == (
        "bad settings: unknown setting FLOODWALL_JWT_ALGORITHM (did you mean "
        f"FLOODWALL_JWT_ALGORITHMS?); FLOODWALL_BURST: {rules.BURST.message}"
    )


def test_an_unknown_name_stays_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_A\nB\x1b[2J", "1")
    assert _refusal() == "bad settings: unknown setting FLOODWALL_A\\x0aB\\x1b[2J"


def test_known_variables_in_any_case_and_the_demos_are_accepted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("floodwall_rate", "5")
    monkeypatch.setenv("FLOODWALL_DEMO_POOL", "8")
    monkeypatch.setenv("NOT_FLOODWALL_RATEE", "x")
    assert FloodwallSettings().rate == 5.0


# --- admin tokens --------------------------------------------------------------------


def test_one_admin_token_acts_as_admin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKEN", ADMIN)
    assert FloodwallSettings().named_admin_tokens() == {"admin": ADMIN}


def test_admin_tokens_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKENS", f" ops : {ADMIN} ,, alice.b@x:{ADMIN[::-1]},")
    assert FloodwallSettings().named_admin_tokens() == {"ops": ADMIN, "alice.b@x": ADMIN[::-1]}


def test_both_admin_token_settings_at_once_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKEN", ADMIN)
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKENS", f"ops:{ADMIN[::-1]}")
    expected = (
        "bad settings: FLOODWALL_ADMIN_TOKEN and FLOODWALL_ADMIN_TOKENS are both set: set one "
        "(FLOODWALL_ADMIN_TOKENS=admin:<token>,... names the single token too)"
    )
    assert _refusal() == expected
    monkeypatch.delenv("FLOODWALL_ADMIN_TOKENS")
    assert _refusal(admin_tokens={"ops": ADMIN[::-1]}) == expected


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        ("nocolon0123456789abc", "entry 1 is not name:token (the form is name:token,name:token)"),
        (":0123456789abcdef", "entry 1 is not name:token (the form is name:token,name:token)"),
        (f"ops:{ADMIN},bob:", "entry 2 is not name:token (the form is name:token,name:token)"),
        (f"ops:{ADMIN},bob:{ADMIN[::-1]},ops:{ADMIN}x", "entries 1 and 3 have the same name"),
        ("ops:short", "the token of entry 1 is shorter than 16 characters"),
        (
            f"ops:{ADMIN},bob:{ADMIN}",
            "entries 1 and 2 have the same token (each name needs its own, or the audit log "
            "cannot tell who acted)",
        ),
        (f"o ps:{ADMIN}", "the name of entry 1 is not 1 to 64 letters, digits or _.@+-"),
    ],
)
def test_bad_admin_tokens_are_refused(
    monkeypatch: pytest.MonkeyPatch, tokens: str, problem: str
) -> None:
    monkeypatch.setenv("FLOODWALL_ADMIN_TOKENS", tokens)
    assert _refusal() == f"bad settings: FLOODWALL_ADMIN_TOKENS: {problem}"


def test_admin_tokens_passed_as_a_mapping_follow_the_same_rules() -> None:
    assert _refusal(admin_tokens={"ops": "short"}) == (
        "bad settings: FLOODWALL_ADMIN_TOKENS: the token of entry 1 is shorter than 16 characters"
    )
    settings = FloodwallSettings(admin_tokens={"ops": SecretStr(ADMIN)})
    assert settings.named_admin_tokens() == {"ops": ADMIN}


def test_a_short_admin_token_is_refused() -> None:
    assert _refusal(admin_token="short") == (
        "bad settings: FLOODWALL_ADMIN_TOKEN is shorter than 16 characters"
    )


# --- JWT -----------------------------------------------------------------------------


@pytest.mark.parametrize("algorithms", ["none", "NONE", "HS256,None", " HS256 , nOnE "])
def test_the_none_algorithm_is_refused(monkeypatch: pytest.MonkeyPatch, algorithms: str) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_SECRET", JWT_KEY)
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", algorithms)
    assert _refusal() == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: none is refused (it admits unsigned tokens)"
    )


@pytest.mark.parametrize(
    ("algorithm", "named"),
    [("RS256", "RS256"), ("es256", "ES256"), ("EdDSA", "EdDSA"), ("ps512", "PS512")],
)
def test_public_key_algorithms_are_refused_without_public_keys(
    monkeypatch: pytest.MonkeyPatch, algorithm: str, named: str
) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_SECRET", JWT_KEY)
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", f"HS256,{algorithm}")
    assert _refusal() == (
        f"bad settings: FLOODWALL_JWT_ALGORITHMS: {named} needs the signer's public keys: set "
        "FLOODWALL_JWT_JWKS_URL, or use HS256, HS384, HS512"
    )


def test_an_unknown_algorithm_is_refused_by_position(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_SECRET", JWT_KEY)
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", "HS256,HS257")
    assert _refusal() == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS: entry 2 is not a JWT algorithm "
        "(use HS256, HS384, HS512)"
    )


def test_algorithms_are_named_as_pyjwt_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_SECRET", "k" * 64)
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", "hs256, HS512,Hs256")
    assert FloodwallSettings().jwt_algorithms == ["HS256", "HS512"]


@pytest.mark.parametrize(
    ("algorithms", "needed"), [("HS256", 32), ("HS384", 48), ("HS256,HS512", 64)]
)
def test_an_hmac_secret_is_at_least_as_long_as_the_hash(
    monkeypatch: pytest.MonkeyPatch, algorithms: str, needed: int
) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", algorithms)
    strictest = algorithms.split(",")[-1]
    assert _refusal(jwt_secret="k" * (needed - 1)) == (
        f"bad settings: FLOODWALL_JWT_SECRET is shorter than {needed} bytes, the least "
        f"{strictest} allows (RFC 7518 section 3.2)"
    )
    assert FloodwallSettings(jwt_secret="k" * needed).jwt_secret is not None


def test_a_secret_is_measured_in_bytes() -> None:
    settings = FloodwallSettings(jwt_secret="é" * 16)
    assert settings.jwt_secret is not None
    assert _refusal(jwt_secret="é" * 15 + "k").startswith(
        "bad settings: FLOODWALL_JWT_SECRET is shorter than 32 bytes"
    )


def test_a_secret_pyjwt_cannot_encode_is_refused() -> None:
    assert _refusal(jwt_secret="\udcff" * 40) == (
        "bad settings: FLOODWALL_JWT_SECRET is not UTF-8 text"
    )


def test_a_secret_with_no_algorithm_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_JWT_SECRET", JWT_KEY)
    monkeypatch.setenv("FLOODWALL_JWT_ALGORITHMS", " , ")
    assert _refusal() == (
        "bad settings: FLOODWALL_JWT_ALGORITHMS names no algorithm, so FLOODWALL_JWT_SECRET "
        "could verify no token (use HS256, HS384, HS512)"
    )
    monkeypatch.delenv("FLOODWALL_JWT_SECRET")
    assert FloodwallSettings().jwt_algorithms == []


# --- trusted proxies -----------------------------------------------------------------


def test_trusting_every_proxy_needs_an_explicit_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", "*")
    assert _refusal() == (
        "bad settings: FLOODWALL_TRUSTED_PROXIES: * lets every client set its own address; "
        "set FLOODWALL_TRUST_ALL_PROXIES=true to mean it"
    )
    monkeypatch.setenv("FLOODWALL_TRUST_ALL_PROXIES", "true")
    assert FloodwallSettings().trusted_proxies == ["*"]


def test_star_stands_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    # uvicorn trusts everyone only for exactly ["*"]; beside others it would be a literal.
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", "10.0.0.1,*")
    assert _refusal() == (
        "bad settings: FLOODWALL_TRUSTED_PROXIES: * lets every client set its own address; "
        "set FLOODWALL_TRUST_ALL_PROXIES=true to mean it"
    )
    assert _refusal(trust_all_proxies=True) == (
        "bad settings: FLOODWALL_TRUSTED_PROXIES: * already trusts every proxy; list no others"
    )


def test_the_opt_in_without_star_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_TRUST_ALL_PROXIES", "true")
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", "10.0.0.1")
    assert _refusal() == (
        "bad settings: FLOODWALL_TRUST_ALL_PROXIES is set but FLOODWALL_TRUSTED_PROXIES is not *"
    )


@pytest.mark.parametrize("entry", ["localhost", "10.0.0.1/8", "300.1.1.1", "10.0.0.0/33", "**"])
def test_proxies_are_addresses_or_networks(monkeypatch: pytest.MonkeyPatch, entry: str) -> None:
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", f"10.0.0.1,{entry}")
    assert _refusal() == (
        f"bad settings: FLOODWALL_TRUSTED_PROXIES: {entry} is not an IP address or a network "
        "such as 10.0.0.0/8"
    )


def test_proxy_addresses_and_networks_are_accepted(monkeypatch: pytest.MonkeyPatch) -> None:
    entries = ["10.0.0.1", "10.0.0.0/8", "2001:db8::/32", "::1", "192.0.2.7/32"]
    monkeypatch.setenv("FLOODWALL_TRUSTED_PROXIES", ",".join(entries))
    assert FloodwallSettings().trusted_proxies == entries


# --- no secret in any error ----------------------------------------------------------

REDIS_PASSWORD = "redis-pw-7Hq2mZ"
TOKEN_SECRET = "admin-tok-Vb81xQpL0aZ3"
JWT_SECRET_TEXT = "jwt-tail-Kx9sW2"


@pytest.mark.parametrize(
    ("environment", "secret", "variable"),
    [
        # A malformed entry beside a valid token: neither may show.
        ({"FLOODWALL_ADMIN_TOKENS": f"ops:{TOKEN_SECRET},bad"}, TOKEN_SECRET, "ADMIN_TOKENS"),
        ({"FLOODWALL_ADMIN_TOKENS": f"ops:{TOKEN_SECRET},{TOKEN_SECRET}x"}, TOKEN_SECRET,
         "ADMIN_TOKENS"),
        ({"FLOODWALL_ADMIN_TOKENS": f"{TOKEN_SECRET}:x"}, TOKEN_SECRET, "ADMIN_TOKENS"),
        ({"FLOODWALL_ADMIN_TOKENS": "ops:Vb81xQpL"}, "Vb81xQpL", "ADMIN_TOKENS"),
        ({"FLOODWALL_ADMIN_TOKEN": "Vb81xQpL"}, "Vb81xQpL", "ADMIN_TOKEN"),
        ({"FLOODWALL_ADMIN_TOKEN": TOKEN_SECRET, "FLOODWALL_ADMIN_TOKENS": f"o:{TOKEN_SECRET}"},
         TOKEN_SECRET, "ADMIN_TOKEN"),
        ({"FLOODWALL_JWT_SECRET": JWT_SECRET_TEXT}, JWT_SECRET_TEXT, "JWT_SECRET"),
        ({"FLOODWALL_JWT_SECRET": JWT_KEY + JWT_SECRET_TEXT, "FLOODWALL_JWT_ALGORITHMS": "none"},
         JWT_SECRET_TEXT, "JWT_ALGORITHMS"),
        ({"FLOODWALL_REDIS_URL": f"redis://:{REDIS_PASSWORD}@10.0.0.5/0",
          "FLOODWALL_BURST": "0"}, REDIS_PASSWORD, "BURST"),
        ({"FLOODWALL_REDIS_URL": f"redis://:{REDIS_PASSWORD}@10.0.0.5/0",
          "FLOODWALL_REDIS_CLUSTERS": "1"}, REDIS_PASSWORD, "REDIS_CLUSTERS"),
        ({"FLOODWALL_REDIS_URL": f"redis://:{REDIS_PASSWORD}@10.0.0.5/0",
          "FLOODWALL_FAIL_MODE": "sideways"}, REDIS_PASSWORD, "FAIL_MODE"),
        # A secret pasted into the wrong variable is not shown either.
        ({"FLOODWALL_JWT_ALGORITHMS": TOKEN_SECRET}, TOKEN_SECRET, "JWT_ALGORITHMS"),
        ({"FLOODWALL_RATE": TOKEN_SECRET}, TOKEN_SECRET, "RATE"),
        ({"FLOODWALL_BURST": TOKEN_SECRET}, TOKEN_SECRET, "BURST"),
        ({"FLOODWALL_REDIS_TIMEOUT": TOKEN_SECRET}, TOKEN_SECRET, "REDIS_TIMEOUT"),
        ({"FLOODWALL_FAIL_MODE": TOKEN_SECRET}, TOKEN_SECRET, "FAIL_MODE"),
        ({"FLOODWALL_KEY_PREFIX": TOKEN_SECRET + "{"}, TOKEN_SECRET, "KEY_PREFIX"),
        ({"FLOODWALL_REDIS_URI": f"redis://:{REDIS_PASSWORD}@h"}, REDIS_PASSWORD, "REDIS_URI"),
        # No @host: the password reads as the port, which Python's own error quotes.
        ({"FLOODWALL_REDIS_URL": f"redis://default:{REDIS_PASSWORD}"}, REDIS_PASSWORD,
         "REDIS_URL"),
        ({"FLOODWALL_REDIS_URL": f"htps://default:{REDIS_PASSWORD}@h"}, REDIS_PASSWORD,
         "REDIS_URL"),
    ],
)  # fmt: skip
def test_no_error_ever_shows_a_secret(
    monkeypatch: pytest.MonkeyPatch, environment: dict[str, str], secret: str, variable: str
) -> None:
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings()
    exc = caught.value
    line = settings_error(exc)
    assert f"FLOODWALL_{variable}" in line
    assert "\n" not in line
    shown = [str(exc), repr(exc), line, exc.json(), repr(exc.errors())]
    for text in shown:
        assert secret not in text
    # The original error (which held the inputs) is not chained to the one raised.
    assert exc.__context__ is None
    assert exc.__cause__ is None


def test_secrets_passed_as_arguments_are_not_shown_either() -> None:
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings(
            redis_url=f"redis://:{REDIS_PASSWORD}@h/0",
            admin_token="Vb81xQpL",
            jwt_secret=JWT_SECRET_TEXT,
        )
    exc = caught.value
    text = str(exc) + repr(exc) + settings_error(exc) + exc.json() + repr(exc.errors())
    for secret in (REDIS_PASSWORD, "Vb81xQpL", JWT_SECRET_TEXT):
        assert secret not in text
    assert settings_error(exc) == (
        "bad settings: FLOODWALL_ADMIN_TOKEN is shorter than 16 characters; "
        "FLOODWALL_JWT_SECRET is shorter than 32 bytes, the least HS256 allows "
        "(RFC 7518 section 3.2)"
    )


def test_pydantics_own_messages_name_the_variable() -> None:
    assert _refusal(fail_mode="sideways") == (
        "bad settings: FLOODWALL_FAIL_MODE: Input should be 'open' or 'closed'"
    )


def test_settings_error_shows_only_what_it_knows_to_be_safe() -> None:
    assert settings_error(ConfigurationError("FLOODWALL_X: no")) == "bad settings: FLOODWALL_X: no"
    assert settings_error(RuntimeError(TOKEN_SECRET)) == "bad settings: RuntimeError"


def test_a_key_prefix_cannot_break_hash_tags() -> None:
    assert _refusal(key_prefix="a{b}").startswith("bad settings: FLOODWALL_KEY_PREFIX: ")


@pytest.mark.parametrize("variable", ["FLOODWALL_REQUEST_ID_HEADER", "FLOODWALL_USER_HEADER"])
@pytest.mark.parametrize("name", ["x-req€-id", "x user", "x-user:", "a" * 257])
def test_header_names_are_http_tokens(
    monkeypatch: pytest.MonkeyPatch, variable: str, name: str
) -> None:
    # Refused here: the middleware would otherwise fail on its first lifespan call.
    monkeypatch.setenv(variable, name)
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings()
    line = settings_error(caught.value)
    assert line.startswith(f"bad settings: {variable}: a header name is text of 1 to 256 ")
    assert "\n" not in line
    assert name not in line


def test_header_names_are_read_in_lower_case(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOODWALL_USER_HEADER", "X-Auth_User.ID")
    monkeypatch.setenv("FLOODWALL_REQUEST_ID_HEADER", "")
    settings = FloodwallSettings()
    assert settings.user_header == "x-auth_user.id"
    assert settings.request_id_header is None


@pytest.mark.parametrize(
    "url",
    [
        "redis://localhost",
        "redis://default:pw@10.0.0.5:6380/2",
        "rediss://:pw@[::1]:6379",
        "unix:///run/redis.sock?db=1",
    ],
)
def test_redis_urls_of_every_form_are_accepted(url: str) -> None:
    settings = FloodwallSettings(redis_url=url)
    assert settings.redis_url is not None
    assert settings.redis_url.get_secret_value() == url


def test_an_app_given_a_redis_url_without_its_host_never_shows_the_password(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FLOODWALL_REDIS_URL", "redis://default:SuperSecretPw")
    with pytest.raises(ValidationError) as caught:
        Floodwall()
    assert "SuperSecretPw" not in str(caught.value) + repr(caught.value.errors())
    assert settings_error(caught.value).startswith("bad settings: FLOODWALL_REDIS_URL has a port ")


BOUNDED_SETTINGS = [
    ("redis_timeout", rules.REDIS_TIMEOUT, [0, 30.5]),
    ("expected_instances", rules.EXPECTED_INSTANCES, [0, 10_001, 1.5]),
    ("breaker_failures", rules.BREAKER_FAILURES, [0, 10_001]),
    ("breaker_cooldown", rules.BREAKER_COOLDOWN, [0, 301]),
    ("resync_seconds", rules.RESYNC_SECONDS, [0, -1, 86_401]),
    ("jwt_leeway", rules.JWT_LEEWAY, [-1, 301]),
    ("auto_block_refusals", rules.AUTO_BLOCK_REFUSALS, [0, 2.5]),
    ("auto_block_window", rules.AUTO_BLOCK_WINDOW, [0, 86_401]),
    ("auto_block_seconds", rules.AUTO_BLOCK_SECONDS, [0.5, rules.MAX_SECONDS + 1]),
    ("auto_block_max_seconds", rules.AUTO_BLOCK_SECONDS, [0, rules.MAX_SECONDS + 1]),
    ("tarpit_seconds", rules.TARPIT_SECONDS, [-0.1, 10.5]),
]


@pytest.mark.parametrize(
    ("field", "bound", "values"), BOUNDED_SETTINGS, ids=[row[0] for row in BOUNDED_SETTINGS]
)
def test_numeric_settings_are_bounded_by_the_rule_book(
    monkeypatch: pytest.MonkeyPatch, field: str, bound: rules.Bound, values: list[float]
) -> None:
    variable = f"FLOODWALL_{field.upper()}"
    for value in [*values, "nan", "soon"]:
        monkeypatch.setenv(variable, str(value))
        with pytest.raises(ValidationError) as caught:
            FloodwallSettings()
        assert settings_error(caught.value) == f"bad settings: {variable}: {bound.message}"
    for value in (bound.high, bound.low if not bound.low_open else bound.high / 2):
        monkeypatch.setenv(variable, str(value))
        assert getattr(FloodwallSettings(), field) == value


def test_no_setting_carries_a_bound_of_its_own() -> None:
    # Every bound is the rule book's (floodwall.rules): none is written on a field.
    for name, field in FloodwallSettings.model_fields.items():
        assert all(item is NoDecode for item in field.metadata), name


def test_a_key_prefix_follows_the_rule_book() -> None:
    for value in ("", "x" * 65, "a b", "a{b}"):
        line = _refusal(key_prefix=value)
        assert line.startswith(f"bad settings: FLOODWALL_KEY_PREFIX: {rules.KEY_PREFIX.message}")
    assert FloodwallSettings(key_prefix="my-app.v2_x").key_prefix == "my-app.v2_x"


@pytest.mark.parametrize("value", ["/", "/health,/", " // ", "/,/metrics"])
def test_an_exempt_path_of_root_is_refused(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    # It would exempt every request, silently: refused at start instead.
    monkeypatch.setenv("FLOODWALL_EXEMPT_PATHS", value)
    with pytest.raises(ValidationError) as caught:
        FloodwallSettings()
    assert settings_error(caught.value) == (
        "bad settings: FLOODWALL_EXEMPT_PATHS: an exempt path of / covers every path, so "
        "nothing would be limited or blocked: list the paths to exempt (or set "
        "FLOODWALL_SHADOW=true to observe without enforcing)"
    )
    monkeypatch.setenv("FLOODWALL_EXEMPT_PATHS", "/health,/metrics/")
    assert FloodwallSettings().exempt_paths == ["/health", "/metrics/"]
