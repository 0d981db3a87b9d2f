"""Settings that are each valid but cannot work together, checked once every field is:
limits, admin tokens, trusted proxies and load shedding (the JWT keys: ``signing``)."""

from __future__ import annotations

from typing import Final, Literal
from urllib.parse import urlsplit

from pydantic import SecretStr

from floodwall.core import rules
from floodwall.settings.variables import variable

__all__ = [
    "MIN_ADMIN_TOKEN_LENGTH",
    "admin_token_conflicts",
    "limit_conflicts",
    "proxy_conflicts",
    "sentinel_conflicts",
    "shedding_conflicts",
]

MIN_ADMIN_TOKEN_LENGTH: Final = rules.ADMIN_TOKEN_MIN_LENGTH
_TOKEN_NAME_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@+-"
)
_MAX_TOKEN_NAME_LENGTH: Final = rules.ADMIN_TOKEN_NAME.high

_Conflict = tuple[str, str]
# A rate and a burst that make one limit: their fields, then their values.
_LimitPair = tuple[str, str, float, int]


def limit_conflicts(
    rate: float, burst: int, anonymous_rate: float | None, anonymous_burst: int | None
) -> list[_Conflict]:
    """(field, message) for the per-user limit and the anonymous one (each falls back to
    the per-user setting), when the rule book refuses one as a whole."""
    pairs: list[_LimitPair] = [("rate", "burst", rate, burst)]
    if anonymous_rate is not None or anonymous_burst is not None:
        pairs.append(
            (
                "rate" if anonymous_rate is None else "anonymous_rate",
                "burst" if anonymous_burst is None else "anonymous_burst",
                rate if anonymous_rate is None else anonymous_rate,
                burst if anonymous_burst is None else anonymous_burst,
            )
        )
    conflicts = []
    for rate_field, burst_field, pair_rate, pair_burst in pairs:
        try:
            rules.limit(pair_rate, pair_burst)
        except rules.RuleError as exc:
            names = f"{variable(rate_field)} and {variable(burst_field)}"
            conflicts.append((burst_field, f"{names}: {exc}"))
    return conflicts


def admin_token_conflicts(
    admin_token: SecretStr | None, admin_tokens: dict[str, SecretStr]
) -> list[_Conflict]:
    """(field, message) for the admin token, or each named one, that cannot be used."""
    if admin_token is not None and admin_tokens:
        return [
            (
                "admin_token",
                "FLOODWALL_ADMIN_TOKEN and FLOODWALL_ADMIN_TOKENS are both set: set one "
                "(FLOODWALL_ADMIN_TOKENS=admin:<token>,... names the single token too)",
            )
        ]
    if admin_token is None:
        return _named_token_conflicts(admin_tokens)
    if len(admin_token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
        return [
            (
                "admin_token",
                f"FLOODWALL_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LENGTH} characters",
            )
        ]
    return []


def _named_token_conflicts(admin_tokens: dict[str, SecretStr]) -> list[_Conflict]:
    conflicts = []
    seen: dict[str, int] = {}
    for position, (name, secret) in enumerate(admin_tokens.items(), start=1):
        token = secret.get_secret_value()
        if not _is_token_name(name):
            conflicts.append(
                f"the name of entry {position} is not 1 to {_MAX_TOKEN_NAME_LENGTH} letters, "
                "digits or _.@+-"
            )
        if len(token) < MIN_ADMIN_TOKEN_LENGTH:
            conflicts.append(
                f"the token of entry {position} is shorter than {MIN_ADMIN_TOKEN_LENGTH} characters"
            )
        elif token in seen:
            conflicts.append(
                f"entries {seen[token]} and {position} have the same token (each name needs "
                "its own, or the audit log cannot tell who acted)"
            )
        else:
            seen[token] = position
    return [("admin_tokens", f"FLOODWALL_ADMIN_TOKENS: {message}") for message in conflicts]


def _is_token_name(name: str) -> bool:
    return 1 <= len(name) <= _MAX_TOKEN_NAME_LENGTH and set(name).issubset(_TOKEN_NAME_CHARACTERS)


def proxy_conflicts(trusted_proxies: list[str], trust_all_proxies: bool) -> list[_Conflict]:
    """(field, message) when ``*`` among the trusted proxies and the opt-in that it needs
    do not go together."""
    if "*" not in trusted_proxies:
        if trust_all_proxies:
            return [
                (
                    "trust_all_proxies",
                    "FLOODWALL_TRUST_ALL_PROXIES is set but FLOODWALL_TRUSTED_PROXIES is not *",
                )
            ]
        return []
    if not trust_all_proxies:
        return [
            (
                "trusted_proxies",
                "FLOODWALL_TRUSTED_PROXIES: * lets every client set its own address; "
                "set FLOODWALL_TRUST_ALL_PROXIES=true to mean it",
            )
        ]
    if trusted_proxies != ["*"]:
        return [
            (
                "trusted_proxies",
                "FLOODWALL_TRUSTED_PROXIES: * already trusts every proxy; list no others",
            )
        ]
    return []


def shedding_conflicts(
    critical_paths: list[str], capacity: int | Literal["auto"] | None
) -> list[_Conflict]:
    """(field, message) when critical paths reserve part of a capacity that is not set."""
    if critical_paths and capacity is None:
        return [
            (
                "critical_paths",
                "FLOODWALL_CRITICAL_PATHS reserves part of FLOODWALL_CAPACITY, which is not "
                "set (a number of requests in flight per worker, or auto)",
            )
        ]
    return []


def sentinel_conflicts(
    sentinels: list[str],
    service: str | None,
    redis_url: SecretStr | None,
    cluster: bool,
) -> list[_Conflict]:
    """(field, message) when the Sentinels cannot name a primary: one of the pair missing,
    a Cluster (which has no Sentinels), or a URL that names a host of its own."""
    if not sentinels and service is None:
        return []
    if not sentinels:
        return [("redis_sentinels", f"{_SERVICE} needs {_SENTINELS}")]
    if service is None or not service.strip():
        return [("redis_sentinel_service", f"{_SENTINELS} needs {_SERVICE}, the primary's name")]
    if cluster:
        return [("redis_cluster", f"{_CLUSTER} cannot go with {_SENTINELS}: a Cluster has none")]
    if redis_url is not None:
        parts = urlsplit(redis_url.get_secret_value().strip())
        if parts.scheme == "unix" or parts.hostname:
            return [("redis_url", _URL_WITH_SENTINELS)]
    return []


_SENTINELS: Final = "FLOODWALL_REDIS_SENTINELS"
_SERVICE: Final = "FLOODWALL_REDIS_SENTINEL_SERVICE"
_CLUSTER: Final = "FLOODWALL_REDIS_CLUSTER"
_URL_WITH_SENTINELS: Final = (
    "with FLOODWALL_REDIS_SENTINELS, FLOODWALL_REDIS_URL names no host, only what the "
    "primary needs (redis://:password@/0, or rediss://...?ssl_ca_certs=...)"
)
