"""``FloodwallSettings``: every setting, read from ``FLOODWALL_<NAME>`` or passed in, and
the check of each; a configuration that cannot work is refused whole, without its inputs."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from floodwall.core import rules
from floodwall.core.plans import Limit, parse_plans
from floodwall.core.route_limits import RouteLimit, RouteTable, parse_route_limits
from floodwall.settings import checks, signing, values
from floodwall.settings.errors import hidden, problem
from floodwall.settings.values import ruled, whole_number
from floodwall.settings.variables import PREFIX, unknown_variables

__all__ = ["FloodwallSettings"]

_BOUNDS: Final = {
    "redis_timeout": rules.REDIS_TIMEOUT,
    "redis_wait_timeout": rules.REDIS_WAIT_TIMEOUT,
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
    "websocket_message_cost": rules.WEBSOCKET_MESSAGE_COST,
}
"""Each numeric setting checked by a bound of the rule book, with its variable's name."""
_OPTIONAL: Final = frozenset({"auto_block_refusals"})
_LISTS: Final = (
    "redis_sentinels",
    "jwt_algorithms",
    "trusted_proxies",
    "exempt_paths",
    "password_reset_paths",
    "critical_paths",
)
"""The settings that are lists, written ``a,b,c`` in their variable."""


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
    redis_sentinels: Annotated[list[str], NoDecode] = Field(default_factory=list)
    """``host:port`` of each Sentinel: the primary of ``redis_sentinel_service`` is found
    through them, and followed across a failover."""
    redis_sentinel_service: str | None = None
    """The name the Sentinels know the primary by (``sentinel monitor <name> ...``)."""
    redis_sentinel_password: SecretStr | None = None
    """The Sentinels' own password, when they ask for one; the primary's is in
    ``redis_url`` (``redis://:password@/0``, with no host)."""
    redis_wait_timeout: float = 0.5
    """Seconds an operator's write waits for a replica to acknowledge it (``WAIT``), where
    the primary has replicas; 0: it does not wait."""
    key_prefix: str = "floodwall"

    rate: float = 10.0
    burst: int = 10
    anonymous_rate: float | None = None
    anonymous_burst: int | None = None
    plans: str = ""
    """``free=10/second;pro=100/second,200``: each plan's limit (``NAME=RATE[,BURST]``),
    for users whose identity names the plan; an operator's limit for a user still wins."""
    jwt_plan_claim: str | None = None
    """The JWT claim that names the user's plan."""
    plan_header: str | None = None
    """A header a trusted gateway sets to the user's plan (never let clients set it)."""
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
    websocket_message_cost: int = 1
    """Tokens each message a client sends on a websocket takes from its user's bucket (the
    bucket of its HTTP requests); 0: messages are not counted."""
    websocket_over_limit: Literal["throttle", "close"] = "throttle"
    """A websocket message over the limit: ``throttle`` hands it to the app when a token is
    due (the server reads nothing meanwhile); ``close`` closes the socket (1008,
    ``rate-limited``)."""

    @model_validator(mode="wrap")
    @classmethod
    def _refuse_without_inputs(
        cls, data: Any, handler: ValidatorFunctionWrapHandler
    ) -> FloodwallSettings:
        problems = [problem(name, message) for name, message in unknown_variables(cls.model_fields)]
        try:
            settings: FloodwallSettings = handler(data)
        except ValidationError as exc:
            problems.extend(hidden(exc))
        else:
            problems.extend(problem(field, message) for field, message in settings._conflicts())
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
        return ruled(str(info.field_name), rules.rate, value)

    @field_validator("burst", "anonymous_burst", mode="before")
    @classmethod
    def _burst(cls, value: object, info: ValidationInfo) -> int | None:
        if value is None and info.field_name == "anonymous_burst":
            return None
        return ruled(str(info.field_name), rules.BURST.whole_number, whole_number(value))

    @field_validator("capacity", mode="before")
    @classmethod
    def _capacity(cls, value: object) -> int | str | None:
        if value is None:
            return None
        if isinstance(value, str) and value.strip().lower() == "auto":
            return "auto"
        check = rules.CAPACITY.whole_number
        return ruled("capacity", check, whole_number(value), alternative=", or auto")

    @field_validator(*_LISTS, mode="before")
    @classmethod
    def _csv(cls, value: object) -> object:
        return values.split_csv(value)

    @field_validator("exempt_paths")
    @classmethod
    def _exempt_paths(cls, paths: list[str]) -> list[str]:
        return ruled("exempt_paths", lambda each: [rules.exempt_path(path) for path in each], paths)

    @field_validator("concurrency", mode="before")
    @classmethod
    def _concurrency(cls, value: object) -> int | None:
        if value is None or value == "":
            return None
        return ruled("concurrency", rules.CONCURRENCY.whole_number, whole_number(value))

    @field_validator(*_BOUNDS, mode="before")
    @classmethod
    def _bounded(cls, value: object, info: ValidationInfo) -> float | None:
        field = str(info.field_name)
        if value is None and field in _OPTIONAL:
            return None
        return ruled(field, _BOUNDS[field].check, whole_number(value))

    @field_validator("key_prefix", mode="before")
    @classmethod
    def _key_prefix(cls, value: object) -> str:
        return ruled("key_prefix", rules.key_prefix, value)

    @field_validator("route_limits")
    @classmethod
    def _route_limits(cls, value: str) -> str:
        ruled("route_limits", lambda text: RouteTable(parse_route_limits(text)), value)
        return value

    @field_validator("jwt_algorithms")
    @classmethod
    def _jwt_algorithms(cls, names: list[str], info: ValidationInfo) -> list[str]:
        return signing.algorithm_names(names, info.data)

    @field_validator("redis_url")
    @classmethod
    def _redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        reason = values.redis_url_problem(value.get_secret_value())
        if reason is not None:
            raise ValueError(reason)
        return value

    @field_validator("redis_sentinels")
    @classmethod
    def _sentinels(cls, entries: list[str]) -> list[str]:
        return values.sentinel_addresses(entries)

    @field_validator("jwt_jwks_url")
    @classmethod
    def _jwks_url(cls, value: str | None) -> str | None:
        return None if value is None else values.jwks_url(value)

    @field_validator("trusted_proxies")
    @classmethod
    def _proxies(cls, entries: list[str]) -> list[str]:
        return values.trusted_proxies(entries)

    @field_validator("admin_tokens", mode="before")
    @classmethod
    def _tokens(cls, value: object) -> object:
        return values.admin_tokens(value)

    @field_validator("plans")
    @classmethod
    def _plans(cls, value: str) -> str:
        ruled("plans", parse_plans, value)
        return value

    @field_validator("user_header", "request_id_header", "plan_header")
    @classmethod
    def _header(cls, value: str | None, info: ValidationInfo) -> str | None:
        # Checked here, not when the middleware encodes it: a name that is no token would
        # otherwise fail inside the server's first lifespan call and every request after.
        if not value:
            return None
        return ruled(str(info.field_name), rules.header_name, value)

    def _conflicts(self) -> list[tuple[str, str]]:
        """(field, message) for each setting that cannot work with the others."""
        return [
            *checks.limit_conflicts(
                self.rate, self.burst, self.anonymous_rate, self.anonymous_burst
            ),
            *checks.admin_token_conflicts(self.admin_token, self.admin_tokens),
            *signing.jwt_conflicts(
                self.jwt_algorithms, self.jwks_algorithms, self.jwt_jwks_url, self.jwt_secret
            ),
            *checks.proxy_conflicts(self.trusted_proxies, self.trust_all_proxies),
            *checks.shedding_conflicts(self.critical_paths, self.capacity),
            *checks.sentinel_conflicts(
                self.redis_sentinels,
                self.redis_sentinel_service,
                self.redis_url,
                self.redis_cluster,
            ),
        ]

    @property
    def hmac_algorithms(self) -> list[str]:
        """The algorithms ``FLOODWALL_JWT_SECRET`` verifies."""
        return signing.hmac_algorithms(self.jwt_algorithms)

    @property
    def jwks_algorithms(self) -> list[str]:
        """The algorithms the keys at ``FLOODWALL_JWT_JWKS_URL`` verify: the public-key ones
        of ``FLOODWALL_JWT_ALGORITHMS``, or RS256, ES256 and EdDSA when it is not set."""
        if "jwt_algorithms" not in self.model_fields_set:
            return list(signing.DEFAULT_JWKS_ALGORITHMS)
        return signing.public_key_algorithms(self.jwt_algorithms)

    @property
    def effective_anonymous_rate(self) -> float:
        """The anonymous rate, falling back to the per-user rate."""
        return self.anonymous_rate if self.anonymous_rate is not None else self.rate

    @property
    def effective_anonymous_burst(self) -> int:
        """The anonymous burst, falling back to the per-user burst."""
        return self.anonymous_burst if self.anonymous_burst is not None else self.burst

    def plan_limits(self) -> dict[str, Limit]:
        """``plans`` as name → (rate, burst) (validated when the settings were made)."""
        return parse_plans(self.plans)

    def parsed_route_limits(self) -> list[RouteLimit]:
        """``route_limits`` as route limits (validated when the settings were made)."""
        return parse_route_limits(self.route_limits)

    def named_admin_tokens(self) -> dict[str, str]:
        """Actor name → token; ``FLOODWALL_ADMIN_TOKEN`` acts as ``admin``."""
        if self.admin_token is not None:
            return {"admin": self.admin_token.get_secret_value()}
        return {name: secret.get_secret_value() for name, secret in self.admin_tokens.items()}
