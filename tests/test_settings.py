"""Settings: rates in every form users write them, environment variables, secrets."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from floodwall.settings import FloodwallSettings, parse_rate


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
    assert parse_rate(value) == pytest.approx(expected)
    assert FloodwallSettings(rate=value).rate == pytest.approx(expected)


@pytest.mark.parametrize("value", [0, -1, "0/second", "soon", "nan", "inf", True, None, [1]])
def test_bad_rates_are_refused(value: object) -> None:
    with pytest.raises((ValueError, ValidationError)):
        FloodwallSettings(rate=value)


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
        jwt_secret="jwt-signing-key",
    )
    text = repr(settings) + str(settings) + settings.model_dump_json()
    for secret in ("hunter2hunter2", "s3cret-admin-token-value", "jwt-signing-key"):
        assert secret not in text


@pytest.mark.parametrize("tokens", ["short", "nocolon0123456789", ":0123456789abcdef"])
def test_weak_or_malformed_admin_tokens_are_refused(tokens: str) -> None:
    with pytest.raises(ValidationError):
        FloodwallSettings(admin_tokens=tokens)


def test_a_key_prefix_cannot_break_hash_tags() -> None:
    with pytest.raises(ValidationError):
        FloodwallSettings(key_prefix="a{b}")
