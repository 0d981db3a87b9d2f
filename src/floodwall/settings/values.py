"""Settings written as text: lists, numbers, named admin tokens, URLs and trusted proxies,
each turned into its value or refused in one line that names its variable."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Final, TypeVar
from urllib.parse import urlsplit

from floodwall.core import rules
from floodwall.settings.variables import printable, variable

__all__ = [
    "admin_tokens",
    "jwks_url",
    "redis_url_problem",
    "ruled",
    "sentinel_addresses",
    "split_csv",
    "trusted_proxies",
    "whole_number",
]

_Value = TypeVar("_Value")
_Checked = TypeVar("_Checked")

_REDIS_URL_FORM: Final = "redis://[user:password@]host:6379/0, rediss://... or unix:///path"


def ruled(
    field: str,
    check: Callable[[_Value], _Checked],
    value: _Value,
    *,
    alternative: str = "",
) -> _Checked:
    """``check(value)``, a rule of the rule book; its refusal names ``field``'s variable
    (and ``alternative``: what else the variable may be)."""
    try:
        return check(value)
    except rules.RuleError as exc:
        raise ValueError(f"{variable(field)}: {exc}{alternative}") from None


def split_csv(value: object) -> object:
    """``a,b,c`` as a list."""
    # Environment variables carry lists as "a,b,c"; keyword arguments pass real lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def whole_number(value: object) -> object:
    """A number written as text, as a number."""
    # Environment variables are text; the rule book takes numbers.
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def admin_tokens(value: object) -> object:
    """``ops:tok1,alice:tok2`` as a name → token dict."""
    # Each admin token is named so the audit log knows who acted. Entries are named by
    # position in messages: a malformed entry may be a bare token.
    if not isinstance(value, str):
        return value
    pairs: dict[str, str] = {}
    where: dict[str, int] = {}
    for position, part in enumerate(value.split(","), start=1):
        if not part.strip():
            continue
        name, sep, token = (text.strip() for text in part.partition(":"))
        if not sep or not name or not token:
            raise ValueError(
                f"FLOODWALL_ADMIN_TOKENS: entry {position} is not name:token "
                "(the form is name:token,name:token)"
            )
        if name in pairs:
            raise ValueError(
                f"FLOODWALL_ADMIN_TOKENS: entries {where[name]} and {position} have the same name"
            )
        pairs[name] = token
        where[name] = position
    return pairs


def redis_url_problem(url: str) -> str | None:
    """The one line that says why ``url`` is no Redis URL, or ``None``; never any part of
    the URL, which may hold a password (``redis://default:pw`` without ``@host`` reads
    the password as the port)."""
    try:
        parts = urlsplit(url.strip())
        if parts.scheme not in ("redis", "rediss", "unix"):
            return f"FLOODWALL_REDIS_URL is not a Redis URL ({_REDIS_URL_FORM})"
        if parts.scheme == "unix":
            return None if parts.path else "FLOODWALL_REDIS_URL names no socket path"
        parts.port  # noqa: B018 - raises ValueError for a port that is no number
    except ValueError:
        return (
            "FLOODWALL_REDIS_URL has a port that is not a number from 0 to 65535 (a "
            f"password goes before @host: {_REDIS_URL_FORM})"
        )
    return None


def sentinel_addresses(entries: list[str]) -> list[str]:
    """``entries`` when each is ``host:port`` with a port from 1 to 65535."""
    for entry in entries:
        host, sep, port = entry.rpartition(":")
        if not (sep and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ValueError(
                f"FLOODWALL_REDIS_SENTINELS: {printable(entry)} is not host:port "
                "(such as 10.0.0.5:26379)"
            )
    return entries


def jwks_url(value: str) -> str:
    """The identity provider's keys' URL, an http or https one."""
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("FLOODWALL_JWT_JWKS_URL is not an http:// or https:// URL")
    return value.strip()


def trusted_proxies(entries: list[str]) -> list[str]:
    """``entries`` when each is ``*``, an IP address or a network."""
    for entry in entries:
        if entry == "*":
            continue
        try:
            if "/" in entry:
                ipaddress.ip_network(entry)
            else:
                ipaddress.ip_address(entry)
        except ValueError:
            raise ValueError(
                f"FLOODWALL_TRUSTED_PROXIES: {printable(entry)} is not an IP address or a "
                "network such as 10.0.0.0/8"
            ) from None
    return entries
