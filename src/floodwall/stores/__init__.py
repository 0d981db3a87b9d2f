"""Where floodwall keeps buckets and kill-switch state: Redis, or memory when there is none."""

from floodwall.stores.memory import MemoryStore
from floodwall.stores.protocols import Store
from floodwall.stores.redis import RedisStore

__all__ = ["MemoryStore", "RedisStore", "Store"]
