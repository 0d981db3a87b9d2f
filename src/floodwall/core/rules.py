"""The rule book: every bound on operator input and settings, defined once.

The service enforces these for every caller; the admin API's models, the CLI's parser and
the settings refer to them, so each surface accepts and refuses exactly the same values with
the same one-line message (422 problem+json, exit 2, ``ValueError``).

The bounds are generous for real use and keep every accepted value safe for the check
script: times are µs in Lua doubles and Redis integers (at most 2**63), expiries are ms
since the epoch, and ``datetime`` stops at the year 9999. The largest numbers the script
can meet are a bucket's refill time (``burst / rate``, at most ``MAX_SECONDS``) plus one
request's cost (``MAX_COST / MIN_RATE``): about 3.2e16 µs, far below 2**63 ≈ 9.2e18.
"""

from __future__ import annotations

import ipaddress
import math
import re
from dataclasses import dataclass
from typing import Final

import limits

__all__ = [
    "ADMIN_TOKEN_MIN_LENGTH",
    "ADMIN_TOKEN_NAME",
    "AUTO_BLOCK_REFUSALS",
    "AUTO_BLOCK_SECONDS",
    "AUTO_BLOCK_WINDOW",
    "BREAKER_COOLDOWN",
    "BREAKER_FAILURES",
    "BULK_USER_IDS",
    "BURST",
    "CAPACITY",
    "CIDR",
    "CONCURRENCY",
    "COST",
    "CREDENTIAL_ID",
    "DEFAULT_JWKS_MAX_BYTES",
    "DEFAULT_JWKS_TIMEOUT_SECONDS",
    "EXPECTED_INSTANCES",
    "HEADER_NAME",
    "JWKS_MAX_BYTES",
    "JWKS_TIMEOUT",
    "JWT_LEEWAY",
    "KEY_PREFIX",
    "MAX_NETWORK_BLOCKS",
    "MAX_SECONDS",
    "MIN_PREFIX_FORCED",
    "MIN_PREFIX_IPV4",
    "MIN_PREFIX_IPV6",
    "MIN_RATE",
    "PAGE_SIZE",
    "PLANS",
    "PLAN_NAME",
    "RATE",
    "REASON",
    "REDIS_TIMEOUT",
    "REDIS_WAIT_TIMEOUT",
    "RESYNC_SECONDS",
    "ROUTE",
    "ROUTE_LIMIT",
    "ROUTE_PERIOD",
    "ROUTE_RATE",
    "TARPIT_SECONDS",
    "TTL_SECONDS",
    "USER_ID",
    "WEBSOCKET_MESSAGE_COST",
    "WINDOW_SECONDS",
    "Bound",
    "RuleError",
    "Text",
    "exempt_path",
    "header_name",
    "is_number_text",
    "key_prefix",
    "limit",
    "network",
    "rate",
]

_NUMBER_TEXT: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")

YEAR_SECONDS: Final = 365 * 24 * 3600
MAX_SECONDS: Final = 10 * YEAR_SECONDS
"""The longest time anything lasts: a block, a refill, a revoked credential's memory."""
MIN_RATE: Final = 1 / YEAR_SECONDS
"""One request a year."""


class RuleError(ValueError):
    """A value outside the rule book; the message is one line, fit for any surface, and
    never contains the value itself (it may be a secret pasted in the wrong place)."""


@dataclass(frozen=True, slots=True)
class Bound:
    """A number from ``low`` to ``high``; ``whole`` for a count; ``low_open``: above
    ``low`` (a time that must not be zero)."""

    name: str
    low: float
    high: float
    whole: bool
    unit: str = ""
    low_note: str = ""
    low_open: bool = False

    @property
    def message(self) -> str:
        """The one line every surface shows for a value out of bounds."""
        kind = "a whole number" if self.whole else "a number"
        unit = f" {self.unit}" if self.unit else ""
        note = f" ({self.low_note})" if self.low_note else ""
        low, high = _show(self.low), _show(self.high)
        if self.low_open:
            return f"{self.name} is {kind}{unit} above {low}{note}, at most {high}"
        return f"{self.name} is {kind}{unit} from {low}{note} to {high}"

    def check(self, value: object) -> int | float:
        """``value`` when within bounds (integral floats count as whole numbers), else
        ``RuleError``."""
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise RuleError(self.message)
        if self.whole:
            if isinstance(value, float):
                if not value.is_integer():
                    raise RuleError(self.message)
                value = int(value)
        elif not math.isfinite(value):
            raise RuleError(self.message)
        above_low = self.low < value if self.low_open else self.low <= value
        if not above_low or value > self.high:
            raise RuleError(self.message)
        return value

    def from_text(self, text: str) -> int | float:
        """``check`` of a number written as text (a CLI argument, a query parameter), so
        text surfaces accept exactly the values the Python API does (``3.0`` is 3)."""
        stripped = text.strip()
        if _NUMBER_TEXT.fullmatch(stripped) is None:
            raise RuleError(self.message)
        return self.check(float(stripped))

    def whole_number(self, value: object) -> int:
        """``check`` for a count, typed as ``int``."""
        return int(self.check(value))

    def number(self, value: object) -> float:
        """``check`` for a quantity, typed as ``float``."""
        return float(self.check(value))


@dataclass(frozen=True, slots=True)
class Text:
    """A string of ``low`` to ``high`` characters."""

    name: str
    low: int
    high: int

    @property
    def message(self) -> str:
        """The one line every surface shows for text out of bounds."""
        return f"{self.name} is text of {self.low} to {self.high} characters"

    def check(self, value: object) -> str:
        """``value`` when a string of allowed length, else ``RuleError``."""
        if not isinstance(value, str) or not self.low <= len(value) <= self.high:
            raise RuleError(self.message)
        return value

    def optional(self, value: object) -> str | None:
        """``check``, with ``None`` allowed."""
        return None if value is None else self.check(value)


def _show(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else f"{number:.3g}"


RATE: Final = Bound(
    "rate", MIN_RATE, 1_000_000, whole=False, unit="of requests per second", low_note="one a year"
)
BURST: Final = Bound("burst", 1, 1_000_000, whole=True, unit="of requests")
COST: Final = Bound("cost", 1, 1000, whole=True, unit="of tokens")
WEBSOCKET_MESSAGE_COST: Final = Bound(
    "a websocket message's cost", 0, COST.high, whole=True, unit="of tokens"
)
"""Tokens each message a client sends on a websocket takes from its user's bucket; 0 counts
none (``FLOODWALL_WEBSOCKET_MESSAGE_COST``)."""
CAPACITY: Final = Bound("capacity", 1, 100_000, whole=True, unit="of requests in flight")
"""One worker's in-flight requests under load shedding (``FLOODWALL_CAPACITY``)."""
TTL_SECONDS: Final = Bound("ttl_seconds", 1, MAX_SECONDS, whole=False, unit="of seconds")
AUTO_BLOCK_SECONDS: Final = Bound(
    "an auto-block", TTL_SECONDS.low, TTL_SECONDS.high, whole=False, unit="of seconds"
)
"""An auto-block's first and longest time: a block, so ``TTL_SECONDS``'s bounds."""
PAGE_SIZE: Final = Bound("limit", 1, 1000, whole=True, unit="of items")
WINDOW_SECONDS: Final = Bound("window", 1, 3600, whole=True, unit="of seconds")
ROUTE: Final = Text("route", 1, 1000)
ROUTE_RATE: Final = Text("a route limit's text", 1, 100)
ROUTE_LIMIT: Final = Bound("a route limit", 1, 10_000, whole=True, unit="of requests")
ROUTE_PERIOD: Final = Bound("a route limit's period", 1, 86_400, whole=False, unit="of seconds")
CONCURRENCY: Final = Bound("concurrency", 1, 100_000, whole=True, unit="of requests in flight")
TARPIT_SECONDS: Final = Bound("tarpit_seconds", 0, 10, whole=False, unit="of seconds")
REASON: Final = Text("reason", 1, 500)
USER_ID: Final = Text("user_id", 0, 16_384)
CREDENTIAL_ID: Final = Text("credential_id", 1, 256)
HEADER_NAME: Final = Text("a header name", 1, 256)
# RFC 9110 section 5.6.2: a header's name is a token of these characters.
_TOKEN_CHARACTERS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_HEADER_NAME_MESSAGE: Final = (
    f"{HEADER_NAME.message}, each a letter, a digit or one of !#$%&'*+-.^_`|~ (RFC 9110)"
)

# Settings (FLOODWALL_*): each refused at start with its variable's name in front.
REDIS_TIMEOUT: Final = Bound("redis_timeout", 0, 30, whole=False, unit="of seconds", low_open=True)
REDIS_WAIT_TIMEOUT: Final = Bound("redis_wait_timeout", 0, 10, whole=False, unit="of seconds")
"""How long an operator write waits for a replica's acknowledgement (``WAIT``); 0: none."""
"""How long a request waits for Redis before the fail mode applies."""
EXPECTED_INSTANCES: Final = Bound("expected_instances", 1, 10_000, whole=True, unit="of workers")
"""Workers sharing the limits; the fallback divides each limit among them."""
BREAKER_FAILURES: Final = Bound("breaker_failures", 1, 10_000, whole=True, unit="of failures")
BREAKER_COOLDOWN: Final = Bound(
    "breaker_cooldown", 0, 300, whole=False, unit="of seconds", low_open=True
)
RESYNC_SECONDS: Final = Bound(
    "resync_seconds", 0, 86_400, whole=False, unit="of seconds", low_open=True
)
"""How often a worker reloads its kill-switch mirror from the store."""
JWT_LEEWAY: Final = Bound("jwt_leeway", 0, 300, whole=False, unit="of seconds")
"""Clock skew allowed on a token's exp and nbf."""
AUTO_BLOCK_REFUSALS: Final = Bound(
    "auto_block_refusals", 1, 1_000_000, whole=True, unit="of refusals"
)
AUTO_BLOCK_WINDOW: Final = Bound(
    "auto_block_window", 0, 86_400, whole=False, unit="of seconds", low_open=True
)
KEY_PREFIX: Final = Text("key_prefix", 1, 64)
PLAN_NAME: Final = Text("a plan's name", 1, 64)
"""Letters, digits, ``_``, ``.`` and ``-``: a plan is named in a token, a header, a URL."""
PLANS: Final = Bound("plans", 0, 100, whole=True, unit="of plans")
_KEY_PREFIX_PATTERN: Final = re.compile(r"[\w.-]+")
ADMIN_TOKEN_MIN_LENGTH: Final = 16
"""The shortest admin token accepted, in characters."""
ADMIN_TOKEN_NAME: Final = Text("an admin token's name", 1, 64)

BULK_USER_IDS: Final = Bound("user_ids", 1, 1000, whole=True, unit="of ids a call")
CIDR: Final = Text("cidr", 1, 64)
JWKS_TIMEOUT: Final = Bound("a key set fetch's timeout", 0.01, 60, whole=False, unit="of seconds")
"""How long one fetch of an identity provider's keys may take in all: connect, answer and
every byte of the key set."""
DEFAULT_JWKS_TIMEOUT_SECONDS: Final = 5.0
JWKS_MAX_BYTES: Final = Bound(
    "a key set's size", 1024, 64 * 1024 * 1024, whole=True, unit="of bytes"
)
"""The largest key set an identity provider may publish; real ones are a few kilobytes."""
DEFAULT_JWKS_MAX_BYTES: Final = 1024 * 1024
MIN_PREFIX_IPV4: Final = 8
"""IPv4 networks broader than a /8 (16.7 million addresses) are refused unless forced."""
MIN_PREFIX_IPV6: Final = 32
"""IPv6 networks broader than a /32 (a whole provider's allocation) are refused unless forced."""
MIN_PREFIX_FORCED: Final = 1
"""Even forced, /0 (every address) is refused: that is an outage, not a block."""
MAX_NETWORK_BLOCKS: Final = 10_000
"""Network blocks at once: every worker mirrors them all and reloads them on each change."""

_REFILL_MESSAGE: Final = (
    f"burst / rate (the seconds an empty bucket takes to refill) is at most {MAX_SECONDS:.0f}"
)


def rate(value: object) -> float:
    """A rate in requests per second, from a number (``10``, ``0.5``) or a ``limits`` rate
    string (``"600/minute"``, ``"10 per second"``), so users can write what they know."""
    if isinstance(value, str):
        text = value.strip()
        try:
            value = float(text)
        except ValueError:
            try:
                item = limits.parse(text)
            except ValueError:
                raise RuleError(RATE.message + ", or a rate such as 600/minute") from None
            value = item.amount / item.get_expiry()
    return RATE.number(value)


def header_name(value: object) -> str:
    """An HTTP header's name (a token: ``x-user-id``), lower-cased as ASGI carries it."""
    if not isinstance(value, str) or not HEADER_NAME.low <= len(value) <= HEADER_NAME.high:
        raise RuleError(_HEADER_NAME_MESSAGE)
    if not _TOKEN_CHARACTERS.issuperset(value):
        raise RuleError(_HEADER_NAME_MESSAGE)
    return value.lower()


def is_number_text(text: str) -> bool:
    """Whether ``text`` is a plain decimal number (``5``, ``0.5``, ``3.2e-08``): no
    spaces, underscores, hex, ``inf`` or ``nan``, which Python and Lua read differently."""
    return _NUMBER_TEXT.fullmatch(text) is not None


def exempt_path(value: str) -> str:
    """A path never checked; ``/`` (or any spelling of it) is refused: it covers every
    path, so nothing would be limited or blocked, and nothing would say so."""
    if not value.strip().rstrip("/"):
        raise RuleError(
            "an exempt path of / covers every path, so nothing would be limited or blocked: "
            "list the paths to exempt (or set FLOODWALL_SHADOW=true to observe without "
            "enforcing)"
        )
    return value


def key_prefix(value: object) -> str:
    """A key prefix: letters, digits, ``_``, ``.`` and ``-`` (a brace would break the hash
    tags that keep a subject's keys in one cluster slot)."""
    text = KEY_PREFIX.check(value)
    if _KEY_PREFIX_PATTERN.fullmatch(text) is None:
        raise RuleError(f"{KEY_PREFIX.message}: letters, digits, _ . and -")
    return text


def limit(rate_value: object, burst_value: object) -> tuple[float, int]:
    """A (rate, burst) pair: each within bounds, and a bucket that refills within
    ``MAX_SECONDS``, so no time the script computes can overflow."""
    checked_rate = rate(rate_value)
    checked_burst = BURST.whole_number(burst_value)
    if checked_burst / checked_rate > MAX_SECONDS:
        raise RuleError(_REFILL_MESSAGE)
    return checked_rate, checked_burst


Network = ipaddress.IPv4Network | ipaddress.IPv6Network


def network(value: object, *, force: bool = False) -> Network:
    """A network to block, from CIDR text (``10.0.0.0/8``, ``2001:db8::/32``; a bare
    address is its /32 or /128): no host bits set, and no broader than a /8 (IPv4) or a /32
    (IPv6) unless ``force``; never /0."""
    text = CIDR.check(value).strip()
    try:
        parsed = ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise RuleError(
            "cidr is an IPv4 or IPv6 network such as 10.0.0.0/8 or 2001:db8::/32"
        ) from None
    if parsed.network_address != ipaddress.ip_interface(text).ip:
        raise RuleError("cidr has host bits set: name the network (10.0.0.0/8, not 10.1.2.3/8)")
    if isinstance(parsed, ipaddress.IPv6Network) and parsed.network_address.ipv4_mapped:
        raise RuleError("cidr: name an IPv4-mapped network in IPv4 form (such as 10.0.0.0/8)")
    floor = MIN_PREFIX_IPV4 if parsed.version == 4 else MIN_PREFIX_IPV6
    if parsed.prefixlen < MIN_PREFIX_FORCED:
        raise RuleError("cidr /0 would refuse every client: that is an outage, not a block")
    if parsed.prefixlen < floor and not force:
        raise RuleError(
            f"cidr is broader than a /{floor} (IPv{parsed.version}): refused unless forced "
            '(--force, or "force": true)'
        )
    return parsed
