"""Redis as floodwall's store: ``RedisStore``, its parts by capability, the wire client of
the hot path and the Lua scripts."""

from floodwall.stores.redis.store import RedisClient, RedisStore

__all__ = ["RedisClient", "RedisStore"]
