"""floodwall's settings, read from ``FLOODWALL_*`` environment variables or passed in."""

from __future__ import annotations

from typing import Annotated, Literal

import limits
from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

__all__ = ["FloodwallSettings", "parse_rate"]


def parse_rate(value: object) -> float:
    """Turn a number (``10``, ``0.5``) or a ``limits`` rate string into tokens/second.

    ``"600/minute"`` and ``"10 per second"`` are parsed by ``limits``, so users can write the
    rate strings they already know from it.
    """
    if isinstance(value, bool):
        raise ValueError("a rate is a number or a string such as '10/second'")
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str):
        text = value.strip()
        try:
            rate = float(text)
        except ValueError:
            item = limits.parse(text)
            rate = item.amount / item.get_expiry()
    else:
        raise ValueError("a rate is a number or a string such as '10/second'")
    if not rate > 0 or rate == float("inf"):
        raise ValueError("a rate must be a positive, finite number of requests per second")
    return rate


def _split_csv(value: object) -> object:
    # Environment variables carry lists as "a,b,c"; keyword arguments pass real lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _parse_tokens(value: object) -> object:
    # "ops:tok1,alice:tok2" names each admin token so the audit log knows who acted.
    if isinstance(value, str):
        pairs: dict[str, str] = {}
        for part in value.split(","):
            if not part.strip():
                continue
            name, sep, token = part.strip().partition(":")
            if not sep or not name or not token:
                raise ValueError("FLOODWALL_ADMIN_TOKENS is 'name:token,name:token'")
            pairs[name] = token
        return pairs
    return value


class FloodwallSettings(BaseSettings):
    """Every setting of floodwall; each field reads ``FLOODWALL_<NAME>`` from the environment."""

    model_config = SettingsConfigDict(env_prefix="FLOODWALL_", extra="ignore", frozen=True)

    redis_url: SecretStr | None = None
    redis_cluster: bool = False
    redis_timeout: float = Field(default=0.05, gt=0, le=30)
    key_prefix: str = Field(default="floodwall", min_length=1, max_length=64, pattern=r"^[\w.-]+$")

    rate: float = 10.0
    burst: int = Field(default=10, ge=1)
    anonymous_rate: float | None = None
    anonymous_burst: int | None = Field(default=None, ge=1)
    rate_limit_headers: bool = True

    fail_mode: Literal["open", "closed"] = "open"
    expected_instances: int = Field(default=1, ge=1, le=10_000)
    breaker_failures: int = Field(default=3, ge=1)
    breaker_cooldown: float = Field(default=1.0, gt=0, le=300)
    resync_seconds: float = Field(default=30.0, gt=0)

    admin_token: SecretStr | None = None
    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)

    jwt_secret: SecretStr | None = None
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    user_header: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)

    shadow: bool = False
    auto_block_refusals: int | None = Field(default=None, ge=1)
    auto_block_window: float = Field(default=10.0, gt=0)
    auto_block_seconds: float = Field(default=300.0, gt=0)
    auto_block_max_seconds: float = Field(default=86_400.0, gt=0)
    request_id_header: str | None = "x-request-id"

    exempt_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    password_reset_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)

    @field_validator("rate", "anonymous_rate", mode="before")
    @classmethod
    def _rate(cls, value: object) -> float | None:
        return None if value is None else parse_rate(value)

    @field_validator(
        "jwt_algorithms", "trusted_proxies", "exempt_paths", "password_reset_paths", mode="before"
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        return _parse_tokens(value)

    @field_validator("user_header", "request_id_header")
    @classmethod
    def _header(cls, value: str | None) -> str | None:
        return value.lower() if value else None

    @model_validator(mode="after")
    def _tokens_not_empty(self) -> FloodwallSettings:
        secrets = list(self.admin_tokens.values())
        if self.admin_token is not None:
            secrets.append(self.admin_token)
        if any(len(secret.get_secret_value()) < 16 for secret in secrets):
            raise ValueError("admin tokens must be at least 16 characters long")
        return self

    @property
    def effective_anonymous_rate(self) -> float:
        """The anonymous rate, falling back to the per-user rate."""
        return self.anonymous_rate if self.anonymous_rate is not None else self.rate

    @property
    def effective_anonymous_burst(self) -> int:
        """The anonymous burst, falling back to the per-user burst."""
        return self.anonymous_burst if self.anonymous_burst is not None else self.burst

    def named_admin_tokens(self) -> dict[str, str]:
        """Actor name → token; ``FLOODWALL_ADMIN_TOKEN`` acts as ``admin``."""
        tokens = {name: secret.get_secret_value() for name, secret in self.admin_tokens.items()}
        if self.admin_token is not None:
            tokens.setdefault("admin", self.admin_token.get_secret_value())
        return tokens
