"""floodwall: keep one user from taking down a backend.

A per-user rate limit held in Redis token buckets, and an account kill switch, as a plain
ASGI middleware::

    floodwall = Floodwall()
    app.add_middleware(FloodwallMiddleware, floodwall=floodwall)
"""

from floodwall.clock import Clock
from floodwall.decision import Decision, Outcome
from floodwall.errors import (
    ConfigurationError,
    FloodwallError,
    IdentityUnavailable,
    StorageError,
    StoreCommandError,
    StoreUnavailable,
)
from floodwall.identity import HeaderIdentity, Identify, Identity, JwksIdentity, JwtIdentity
from floodwall.middleware import FloodwallMiddleware
from floodwall.routes import RateLimit, limit
from floodwall.rules import RuleError
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
