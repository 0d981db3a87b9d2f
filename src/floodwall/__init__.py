"""floodwall: keep one user from taking down a backend.

A per-user rate limit held in Redis token buckets, and an account kill switch, as a plain
ASGI middleware::

    floodwall = Floodwall()
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
"""

from floodwall.core.clock import Clock
from floodwall.core.decision import Decision, Outcome
from floodwall.core.errors import (
    ConfigurationError,
    FloodwallError,
    IdentityUnavailable,
    StorageError,
    StoreCommandError,
    StoreUnavailable,
)
from floodwall.core.identity import Identify, Identity
from floodwall.core.rules import RuleError
from floodwall.identity.jwks import JwksIdentity
from floodwall.identity.scope import HeaderIdentity
from floodwall.identity.shared_secret import JwtIdentity
from floodwall.limiting.routes import RateLimit, limit
from floodwall.middleware import FloodwallMiddleware
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings
from floodwall.stores import MemoryStore, RedisStore, Store

__version__ = "0.1.0"

__all__ = [
    "Clock",
    "ConfigurationError",
    "Decision",
    "Floodwall",
    "FloodwallError",
    "FloodwallMiddleware",
    "FloodwallSettings",
    "HeaderIdentity",
    "Identify",
    "Identity",
    "IdentityUnavailable",
    "JwksIdentity",
    "JwtIdentity",
    "MemoryStore",
    "Outcome",
    "RateLimit",
    "RedisStore",
    "RuleError",
    "StorageError",
    "Store",
    "StoreCommandError",
    "StoreUnavailable",
    "__version__",
    "limit",
]
