"""Where floodwall keeps buckets and kill-switch state: Redis, or memory when there is none."""

from floodwall.stores.base import AuditEntry
from floodwall.stores.memory import MemoryStore
from floodwall.stores.protocols import Store
from floodwall.stores.redis import RedisStore

__all__ = ["AuditEntry", "MemoryStore", "RedisStore", "Store"]
