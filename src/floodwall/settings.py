"""floodwall's settings, read from ``FLOODWALL_*`` environment variables or passed in.

Bounds come from the rule book (``floodwall.core.rules``); this module adds what only settings
can get wrong: unknown variables, admin tokens, JWT algorithms and keys, trusted proxies.
A configuration that cannot work is refused when the settings are built, and no error
ever carries an input value: the ``ValidationError`` has every input removed (its
``str``, ``repr``, ``errors()`` and ``json()`` alike), each message names the variable it
is about, and ``settings_error`` turns any failure into the one line a surface shows.

Longer than most modules for one reason: every refusal's message is written
out in full beside the rule it enforces, which is where a reader checks both.
"""

from __future__ import annotations

import difflib
import ipaddress
import os
from typing import Annotated, Any, Final, Literal
from urllib.parse import urlsplit

from jwt.algorithms import get_default_algorithms, has_crypto
from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from floodwall.core import rules
from floodwall.core.errors import FloodwallError
from floodwall.core.route_limits import RouteLimit, RouteTable, parse_route_limits

__all__ = ["FloodwallSettings", "redis_url_problem", "settings_error"]

PREFIX: Final = "FLOODWALL_"


OTHER_VARIABLES: Final = frozenset({"FLOODWALL_DEMO_POOL"})
"""``FLOODWALL_*`` variables that are read elsewhere (the demo), so they are not unknown."""

MIN_ADMIN_TOKEN_LENGTH: Final = rules.ADMIN_TOKEN_MIN_LENGTH
_TOKEN_NAME_CHARACTERS: Final = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@+-"
)
_MAX_TOKEN_NAME_LENGTH: Final = rules.ADMIN_TOKEN_NAME.high

# RFC 7518 section 3.2: an HMAC key at least as long as the hash output.
HMAC_KEY_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
# Public-key algorithms need the signer's public keys: FLOODWALL_JWT_JWKS_URL.
_PUBLIC_KEY_ALGORITHMS: Final = frozenset(
    {
        "RS256", "RS384", "RS512", "PS256", "PS384", "PS512",
        "ES256", "ES256K", "ES384", "ES512", "EdDSA", "Ed25519", "Ed448",
    }
)  # fmt: skip
_HMAC_NAMES: Final = ", ".join(HMAC_KEY_BYTES)
DEFAULT_JWKS_ALGORITHMS: Final = ("RS256", "ES256", "EdDSA")
"""What an identity provider's keys verify when ``FLOODWALL_JWT_ALGORITHMS`` is not set."""
_BOUNDS: Final = {
    "redis_timeout": rules.REDIS_TIMEOUT,
    "expected_instances": rules.EXPECTED_INSTANCES,
    "breaker_failures": rules.BREAKER_FAILURES,
    "breaker_cooldown": rules.BREAKER_COOLDOWN,
    "resync_seconds": rules.RESYNC_SECONDS,
    "jwt_leeway": rules.JWT_LEEWAY,
    "auto_block_refusals": rules.AUTO_BLOCK_REFUSALS,
    "auto_block_window": rules.AUTO_BLOCK_WINDOW,
    # A block's times: the bound of ttl_seconds, or every auto-block would be refused.
    "auto_block_seconds": rules.AUTO_BLOCK_SECONDS,
    "auto_block_max_seconds": rules.AUTO_BLOCK_SECONDS,
    "tarpit_seconds": rules.TARPIT_SECONDS,
}
"""Each numeric setting checked by a bound of the rule book, with its variable's name."""
_OPTIONAL: Final = frozenset({"auto_block_refusals"})


def _algorithms_to_use(keys: dict[str, Any]) -> str:
    """What FLOODWALL_JWT_ALGORITHMS may name, for the keys that are set."""
    public = ", ".join(DEFAULT_JWKS_ALGORITHMS)
    if keys.get("jwt_jwks_url") is None:
        return f"use {_HMAC_NAMES}"
    if keys.get("jwt_secret") is None:
        return f"use {public}"
    return f"use {public} for FLOODWALL_JWT_JWKS_URL and {_HMAC_NAMES} for FLOODWALL_JWT_SECRET"


def _variable(field: str) -> str:
    return PREFIX + field.upper()


def _split_csv(value: object) -> object:
    # Environment variables carry lists as "a,b,c"; keyword arguments pass real lists.
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _whole_number(value: object) -> object:
    # Environment variables are text; the rule book takes numbers.
    if isinstance(value, str):
        try:
            return float(value.strip())
        except ValueError:
            return value
    return value


def _parse_tokens(value: object) -> object:
    # "ops:tok1,alice:tok2" names each admin token so the audit log knows who acted. Entries
    # are named by position in messages: a malformed entry may be a bare token.
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


_REDIS_URL_FORM: Final = "redis://[user:password@]host:6379/0, rediss://... or unix:///path"


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


def _unknown_variables() -> list[tuple[str, str]]:
    """(variable, message) for each ``FLOODWALL_*`` variable that is no setting: a typo
    would otherwise leave its setting at the default (a misspelt Redis URL: the
    in-memory store)."""
    known = {_variable(field) for field in FloodwallSettings.model_fields} | OTHER_VARIABLES
    problems = []
    for name in sorted(os.environ):
        upper = name.upper()
        if not upper.startswith(PREFIX) or upper in known:
            continue
        shown = _printable(name)
        close = difflib.get_close_matches(
            upper.removeprefix(PREFIX).lower(), list(FloodwallSettings.model_fields), n=1
        )
        hint = f" (did you mean {_variable(close[0])}?)" if close else ""
        problems.append((shown, f"unknown setting {shown}{hint}"))
    return problems


def _printable(text: str) -> str:
    # One line, whatever a variable's name holds.
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def _hidden(exc: ValidationError) -> list[InitErrorDetails]:
    """``exc``'s errors without their inputs; a value error keeps only its message (the
    exception object it came with may hold the input in its ``__context__``)."""
    details: list[InitErrorDetails] = []
    for error in exc.errors():
        ctx = error.get("ctx")
        if error["type"] == "value_error" and ctx is not None:
            ctx = {"error": ValueError(str(ctx["error"]))}
        detail: InitErrorDetails = {"type": error["type"], "loc": error["loc"], "input": None}
        if ctx is not None:
            detail["ctx"] = ctx
        details.append(detail)
    return details


def _problem(field: str, message: str) -> InitErrorDetails:
    return {
        "type": "value_error",
        "loc": (field,),
        "input": None,
        "ctx": {"error": ValueError(message)},
    }


def settings_error(exc: Exception) -> str:
    """The one line a surface shows for settings that were refused; never an input value.

    Each problem names the ``FLOODWALL_*`` variable it is about; several are joined by ``;``.
    """
    if isinstance(exc, ValidationError):
        problems = []
        for error in exc.errors():
            ctx = error.get("ctx")
            if error["type"] == "value_error" and ctx is not None:
                # floodwall's own messages name their variable.
                problems.append(str(ctx["error"]))
            elif error["loc"]:
                problems.append(f"{_variable(str(error['loc'][0]))}: {error['msg']}")
            else:
                problems.append(error["msg"])
        text = "; ".join(problems)
    elif isinstance(exc, FloodwallError):
        text = str(exc)
    else:
        # Not one of ours: its message may quote anything it was given.
        text = type(exc).__name__
    return _printable(f"bad settings: {text}")


class FloodwallSettings(BaseSettings):
    """Every setting of floodwall; each field reads ``FLOODWALL_<NAME>`` from the environment.

    Building one refuses unknown ``FLOODWALL_*`` variables and any configuration that
    cannot work, with a ``ValidationError`` that holds no input value.
    """

    model_config = SettingsConfigDict(
        env_prefix=PREFIX, extra="ignore", frozen=True, hide_input_in_errors=True
    )

    redis_url: SecretStr | None = None
    redis_cluster: bool = False
    redis_timeout: float = 0.05
    key_prefix: str = "floodwall"

    rate: float = 10.0
    burst: int = 10
    anonymous_rate: float | None = None
    anonymous_burst: int | None = None
    rate_limit_headers: bool = True

    fail_mode: Literal["open", "closed"] = "open"
    expected_instances: int = 1
    breaker_failures: int = 3
    breaker_cooldown: float = 1.0
    resync_seconds: float = 30.0

    admin_token: SecretStr | None = None
    """The admin API's token, acting as ``admin``; or name each token in ``admin_tokens``
    (``FLOODWALL_ADMIN_TOKENS=ops:...,alice:...``). Setting both is refused."""
    admin_tokens: Annotated[dict[str, SecretStr], NoDecode] = Field(default_factory=dict)

    jwt_secret: SecretStr | None = None
    # Before the algorithms: their validator names the algorithms that fit the keys set.
    jwt_jwks_url: str | None = None
    """The identity provider's published keys (a JWKS URL): RS256, ES256 and EdDSA tokens."""
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(default_factory=lambda: ["HS256"])
    jwt_audience: str | None = None
    jwt_issuer: str | None = None
    jwt_leeway: float = 5.0
    """Seconds of clock skew allowed on a token's exp and nbf."""
    user_header: str | None = None
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    trust_all_proxies: bool = False
    """The opt-in that ``trusted_proxies=*`` needs: every peer may set the client address."""

    shadow: bool = False
    auto_block_refusals: int | None = None
    auto_block_window: float = 10.0
    auto_block_seconds: float = 300.0
    auto_block_max_seconds: float = 86_400.0
    request_id_header: str | None = "x-request-id"

    exempt_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    password_reset_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    concurrency: int | None = None
    """Requests of one user (an anonymous client: of its address) in flight at once,
    across every worker; unset: no limit."""
    route_limits: str = ""
    """``POST /login=5/minute@address;GET /items/{item_id}/export=1/second``."""

    capacity: int | Literal["auto"] | None = None
    """Load shedding (``floodwall.protection.shedding``): requests one worker may have in flight, or
    ``auto`` to learn it from latency; unset, nothing is shed."""
    critical_paths: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """Paths that keep a reserved part of ``capacity`` when everything else is shed."""
    tarpit_seconds: float = 0.5
    """How long, on average, a flooding subject's refusals are held back while the flood
    slows a worker (``floodwall.protection.tarpit``); 0: never."""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_without_inputs(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> FloodwallSettings:
        problems = [_problem(name, message) for name, message in _unknown_variables()]
        try:
            settings: FloodwallSettings = handler(data)
        except ValidationError as exc:
            problems.extend(_hidden(exc))
        else:
            problems.extend(_problem(field, message) for field, message in settings._conflicts())
        if not problems:
            return settings
        # Raised here, not in the except clause, so the original error (which holds the
        # inputs) is not kept as this one's __context__.
        raise ValidationError.from_exception_data(cls.__name__, problems, hide_input=True)

    @field_validator("rate", "anonymous_rate", mode="before")
    @classmethod
    def _rate(cls, value: object, info: ValidationInfo) -> float | None:
        if value is None and info.field_name == "anonymous_rate":
            return None
        try:
            return rules.rate(value)
        except rules.RuleError as exc:
            raise ValueError(f"{_variable(str(info.field_name))}: {exc}") from None

    @field_validator("burst", "anonymous_burst", mode="before")
    @classmethod
    def _burst(cls, value: object, info: ValidationInfo) -> int | None:
        if value is None and info.field_name == "anonymous_burst":
            return None
        try:
            return rules.BURST.whole_number(_whole_number(value))
        except rules.RuleError as exc:
            raise ValueError(f"{_variable(str(info.field_name))}: {exc}") from None

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, value: object) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        try:
            return rules.CAPACITY.whole_number(_whole_number(value))
        except rules.RuleError as exc:
            raise ValueError(f"FLOODWALL_CAPACITY: {exc}, or auto") from None

    @field_validator(
        "jwt_algorithms",
        "trusted_proxies",
        "exempt_paths",
        "password_reset_paths",
        "critical_paths",
        mode="before",
    )
    @classmethod
    def _csv(cls, value: object) -> object:
        return _split_csv(value)

    @field_validator("exempt_paths")
    @classmethod
    def _exempt_paths(cls, paths: list[str]) -> list[str]:
        try:
            return [rules.exempt_path(path) for path in paths]
        except rules.RuleError as exc:
            raise ValueError(f"FLOODWALL_EXEMPT_PATHS: {exc}") from None

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: object) -> int | None:
        if value is None or value == "":
            return None
        try:
            return rules.CONCURRENCY.whole_number(_whole_number(value))
        except rules.RuleError as exc:
            raise ValueError(f"FLOODWALL_CONCURRENCY: {exc}") from None

    @field_validator(*_BOUNDS, mode="before")
    @classmethod
    def _bounded(cls, value: object, info: ValidationInfo) -> float | None:
        field = str(info.field_name)
        if value is None and field in _OPTIONAL:
            return None
        try:
            return _BOUNDS[field].check(_whole_number(value))
        except rules.RuleError as exc:
            raise ValueError(f"{_variable(field)}: {exc}") from None

    @field_validator("key_prefix", mode="before")
    @classmethod
    def _key_prefix(cls, value: object) -> str:
        try:
            return rules.key_prefix(value)
        except rules.RuleError as exc:
            raise ValueError(f"FLOODWALL_KEY_PREFIX: {exc}") from None

    @field_validator("route_limits")
    @classmethod
    def _route_limits(cls, value: str) -> str:
        try:
            RouteTable(parse_route_limits(value))
        except rules.RuleError as exc:
            raise ValueError(f"FLOODWALL_ROUTE_LIMITS: {exc}") from None
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _jwt_algorithms(cls, names: list[str], info: ValidationInfo) -> list[str]:
        # Names are matched whatever their case (PyJWT's are case-sensitive, so "hs256" would
        # silently match no token); an unknown entry is named by position, as it may be a
        # secret pasted in the wrong place.
        canonical = {name.upper(): name for name in HMAC_KEY_BYTES.keys() | _PUBLIC_KEY_ALGORITHMS}
        algorithms: list[str] = []
        for position, name in enumerate(names, start=1):
            if name.lower() == "none":
                raise ValueError(
                    "FLOODWALL_JWT_ALGORITHMS: none is refused (it admits unsigned tokens)"
                )
            known = canonical.get(name.upper())
            if known is None:
                raise ValueError(
                    f"FLOODWALL_JWT_ALGORITHMS: entry {position} is not a JWT algorithm "
                    f"({_algorithms_to_use(info.data)})"
                )
            if known not in algorithms:
                algorithms.append(known)
        return algorithms

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        problem = redis_url_problem(value.get_secret_value())
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value.strip())
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("FLOODWALL_JWT_JWKS_URL is not an http:// or https:// URL")
        return value.strip()

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, entries: list[str]) -> list[str]:
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
                    f"FLOODWALL_TRUSTED_PROXIES: {_printable(entry)} is not an IP address or a "
                    "network such as 10.0.0.0/8"
                ) from None
        return entries

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        return _parse_tokens(value)

    @field_validator("user_header", "request_id_header")
    @classmethod
    def _header(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked here, not when the middleware encodes it: a name that is no token would
        # otherwise fail inside the server's first lifespan call and every request after.
        if not value:
            return None
        try:
            return rules.header_name(value)
        except rules.RuleError as exc:
            raise ValueError(f"{_variable(str(info.field_name))}: {exc}") from None

    def _conflicts(self) -> list[tuple[str, str]]:
        """(field, message) for each setting that cannot work with the others."""
        return [
            *self._limit_conflicts(),
            *self._admin_token_conflicts(),
            *self._jwt_conflicts(),
            *self._proxy_conflicts(),
            *self._shedding_conflicts(),
        ]

    def _shedding_conflicts(self) -> list[tuple[str, str]]:
        if self.critical_paths and self.capacity is None:
            return [
                (
                    "critical_paths",
                    "FLOODWALL_CRITICAL_PATHS reserves part of FLOODWALL_CAPACITY, which is not "
                    "set (a number of requests in flight per worker, or auto)",
                )
            ]
        return []

    def _limit_conflicts(self) -> list[tuple[str, str]]:
        pairs = [("rate", "burst", self.rate, self.burst)]
        if self.anonymous_rate is not None or self.anonymous_burst is not None:
            pairs.append(
                (
                    "rate" if self.anonymous_rate is None else "anonymous_rate",
                    "burst" if self.anonymous_burst is None else "anonymous_burst",
                    self.effective_anonymous_rate,
                    self.effective_anonymous_burst,
                )
            )
        conflicts = []
        for rate_field, burst_field, rate, burst in pairs:
            try:
                rules.limit(rate, burst)
            except rules.RuleError as exc:
                names = f"{_variable(rate_field)} and {_variable(burst_field)}"
                conflicts.append((burst_field, f"{names}: {exc}"))
        return conflicts

    def _admin_token_conflicts(self) -> list[tuple[str, str]]:
        if self.admin_token is not None and self.admin_tokens:
            return [
                (
                    "admin_token",
                    "FLOODWALL_ADMIN_TOKEN and FLOODWALL_ADMIN_TOKENS are both set: set one "
                    "(FLOODWALL_ADMIN_TOKENS=admin:<token>,... names the single token too)",
                )
            ]
        if self.admin_token is not None:
            if len(self.admin_token.get_secret_value()) < MIN_ADMIN_TOKEN_LENGTH:
                return [
                    (
                        "admin_token",
                        f"FLOODWALL_ADMIN_TOKEN is shorter than {MIN_ADMIN_TOKEN_LENGTH} "
                        "characters",
                    )
                ]
            return []
        conflicts = []
        seen: dict[str, int] = {}
        for position, (name, secret) in enumerate(self.admin_tokens.items(), start=1):
            token = secret.get_secret_value()
            if not 1 <= len(name) <= _MAX_TOKEN_NAME_LENGTH or not set(name).issubset(
                _TOKEN_NAME_CHARACTERS
            ):
                conflicts.append(
                    (
                        "admin_tokens",
                        f"FLOODWALL_ADMIN_TOKENS: the name of entry {position} is not 1 to "
                        f"{_MAX_TOKEN_NAME_LENGTH} letters, digits or _.@+-",
                    )
                )
            if len(token) < MIN_ADMIN_TOKEN_LENGTH:
                conflicts.append(
                    (
                        "admin_tokens",
                        f"FLOODWALL_ADMIN_TOKENS: the token of entry {position} is shorter than "
                        f"{MIN_ADMIN_TOKEN_LENGTH} characters",
                    )
                )
            elif token in seen:
                conflicts.append(
                    (
                        "admin_tokens",
                        f"FLOODWALL_ADMIN_TOKENS: entries {seen[token]} and {position} have the "
                        "same token (each name needs its own, or the audit log cannot tell who "
                        "acted)",
                    )
                )
            else:
                seen[token] = position
        return conflicts

    def _jwt_conflicts(self) -> list[tuple[str, str]]:
        public = [name for name in self.jwt_algorithms if name in _PUBLIC_KEY_ALGORITHMS]
        if public and self.jwt_jwks_url is None:
            return [
                (
                    "jwt_algorithms",
                    f"FLOODWALL_JWT_ALGORITHMS: {public[0]} needs the signer's public keys: set "
                    f"FLOODWALL_JWT_JWKS_URL, or use {_HMAC_NAMES}",
                )
            ]
        if self.jwt_jwks_url is not None:
            problem = self._jwks_conflict()
            if problem is not None:
                return [problem]
        return self._secret_conflicts()

    def _jwks_conflict(self) -> tuple[str, str] | None:
        if not has_crypto:
            return (
                "jwt_jwks_url",
                "FLOODWALL_JWT_JWKS_URL needs the cryptography package: "
                "pip install 'floodwall[crypto]'",
            )
        if not self.jwks_algorithms:
            return (
                "jwt_algorithms",
                "FLOODWALL_JWT_ALGORITHMS names no public-key algorithm, so "
                "FLOODWALL_JWT_JWKS_URL could verify no token (use RS256, ES256, EdDSA)",
            )
        supported = get_default_algorithms()
        for name in self.jwks_algorithms:
            if name not in supported:
                return (
                    "jwt_algorithms",
                    f"FLOODWALL_JWT_ALGORITHMS: {name} is not supported by the installed PyJWT",
                )
        return None

    def _secret_conflicts(self) -> list[tuple[str, str]]:
        if self.jwt_secret is None:
            return []
        if not self.jwt_algorithms:
            return [
                (
                    "jwt_algorithms",
                    "FLOODWALL_JWT_ALGORITHMS names no algorithm, so FLOODWALL_JWT_SECRET "
                    f"could verify no token (use {_HMAC_NAMES})",
                )
            ]
        try:
            key = self.jwt_secret.get_secret_value().encode("utf-8")
        except UnicodeEncodeError:
            # PyJWT encodes the key as UTF-8 on every request; it would fail there instead.
            return [("jwt_secret", "FLOODWALL_JWT_SECRET is not UTF-8 text")]
        hmac = self.hmac_algorithms
        if not hmac:
            return [
                (
                    "jwt_algorithms",
                    "FLOODWALL_JWT_ALGORITHMS names no HMAC algorithm, so FLOODWALL_JWT_SECRET "
                    f"could verify no token (add one of {_HMAC_NAMES})",
                )
            ]
        needed = max(HMAC_KEY_BYTES[name] for name in hmac)
        if len(key) < needed:
            strictest = max(hmac, key=HMAC_KEY_BYTES.__getitem__)
            return [
                (
                    "jwt_secret",
                    f"FLOODWALL_JWT_SECRET is shorter than {needed} bytes, the least "
                    f"{strictest} allows (RFC 7518 section 3.2)",
                )
            ]
        return []

    def _proxy_conflicts(self) -> list[tuple[str, str]]:
        if "*" in self.trusted_proxies:
            if not self.trust_all_proxies:
                return [
                    (
                        "trusted_proxies",
                        "FLOODWALL_TRUSTED_PROXIES: * lets every client set its own address; "
                        "set FLOODWALL_TRUST_ALL_PROXIES=true to mean it",
                    )
                ]
            if self.trusted_proxies != ["*"]:
                return [
                    (
                        "trusted_proxies",
                        "FLOODWALL_TRUSTED_PROXIES: * already trusts every proxy; list no others",
                    )
                ]
        elif self.trust_all_proxies:
            return [
                (
                    "trust_all_proxies",
                    "FLOODWALL_TRUST_ALL_PROXIES is set but FLOODWALL_TRUSTED_PROXIES is not *",
                )
            ]
        return []

    @property
    def hmac_algorithms(self) -> list[str]:
        """The algorithms ``FLOODWALL_JWT_SECRET`` verifies."""
        return [name for name in self.jwt_algorithms if name in HMAC_KEY_BYTES]

    @property
    def jwks_algorithms(self) -> list[str]:
        """The algorithms the keys at ``FLOODWALL_JWT_JWKS_URL`` verify: the public-key ones
        of ``FLOODWALL_JWT_ALGORITHMS``, or RS256, ES256 and EdDSA when it is not set."""
        if "jwt_algorithms" not in self.model_fields_set:
            return list(DEFAULT_JWKS_ALGORITHMS)
        return [name for name in self.jwt_algorithms if name in _PUBLIC_KEY_ALGORITHMS]

    @property
    def effective_anonymous_rate(self) -> float:
        """The anonymous rate, falling back to the per-user rate."""
        return self.anonymous_rate if self.anonymous_rate is not None else self.rate

    @property
    def effective_anonymous_burst(self) -> int:
        """The anonymous burst, falling back to the per-user burst."""
        return self.anonymous_burst if self.anonymous_burst is not None else self.burst

    def parsed_route_limits(self) -> list[RouteLimit]:
        """``route_limits`` as route limits (validated when the settings were made)."""
        return parse_route_limits(self.route_limits)

    def named_admin_tokens(self) -> dict[str, str]:
        """Actor name → token; ``FLOODWALL_ADMIN_TOKEN`` acts as ``admin``."""
        if self.admin_token is not None:
            return {"admin": self.admin_token.get_secret_value()}
        return {name: secret.get_secret_value() for name, secret in self.admin_tokens.items()}
