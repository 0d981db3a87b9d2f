"""``RedisStore``: buckets and kill-switch state in Redis or Redis Cluster, assembled from
its parts by capability (``buckets``, ``states``, ``channel``, ``records``); the scripts
are in ``lua/``, the wire client of the hot path in ``wire``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from floodwall.core.errors import ConfigurationError
from floodwall.stores.keys import Keys
from floodwall.stores.redis.buckets import RedisBuckets
from floodwall.stores.redis.channel import RedisChannel
from floodwall.stores.redis.parts import RedisClient, storage_errors
from floodwall.stores.redis.records import RedisRecords
from floodwall.stores.redis.states import RedisStates
from floodwall.stores.redis.wire import WireClient

__all__ = ["RedisClient", "RedisStore"]


class RedisStore(RedisBuckets, RedisStates, RedisChannel, RedisRecords):
    """A ``Store`` on a redis-py asyncio client (``Redis`` or ``RedisCluster``).

    ``wire``, a ``WireClient`` for the same Redis, carries the checks when given. ``clock``
    (seconds since the epoch) replaces Redis ``TIME`` in checks, for tests of time; apps
    never pass it, so servers with skewed clocks share one exact bucket.
    """

    def __init__(
        self,
        client: RedisClient,
        *,
        prefix: str = "floodwall",
        wire: WireClient | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._client = client
        self._wire = wire
        self._clock = clock
        self._closing = False
        self.keys = Keys(prefix)
        self._init_buckets(client)
        self._init_states(client)

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        prefix: str,
        cluster: bool,
        timeout: float,
        clock: Callable[[], float] | None = None,
    ) -> RedisStore:
        """Connect lazily to ``url``; ``timeout`` bounds connecting and every reply."""
        options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            # One immediate retry on a dropped connection (Redis restarted); never on a
            # timeout, which would double the wait of every request while Redis is slow.
            "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        }
        # redis-py's ValueError may quote the URL, password included: never shown.
        unusable = ConfigurationError("FLOODWALL_REDIS_URL is not a URL redis-py can use")
        if cluster:
            try:
                cluster_client = RedisCluster.from_url(url, **options)
            except ValueError:
                raise unusable from None
            return cls(cluster_client, prefix=prefix, clock=clock)
        try:
            wire = WireClient.from_url(url, timeout=timeout, connect_timeout=timeout)
        except ValueError:
            # TLS, unix sockets, URL options: redis-py does those, a little slower.
            wire = None
        try:
            client = redis.asyncio.Redis.from_url(url, **options)
        except ValueError:
            raise unusable from None
        return cls(client, prefix=prefix, wire=wire, clock=clock)

    @property
    def crosses_subjects(self) -> bool:
        """One Redis runs a script over any keys; a Cluster keeps a script to one slot."""
        return not self.cluster

    @property
    def client(self) -> RedisClient:
        """The redis-py client this store uses."""
        return self._client

    async def start(self) -> None:
        """Check that Redis answers; the check script loads now, the others on first use."""
        with storage_errors():
            await self._client.ping()
            if self._wire is not None:
                await self._load_check(self._wire)

    async def close(self) -> None:
        """Close the connections; a later call opens them again."""
        # A check that close() fails must not retry: that would reopen a connection
        # nobody closes, and run a request already sent a second time.
        self._closing = True
        try:
            with storage_errors():
                if self._wire is not None:
                    await self._wire.close()
                await self._client.aclose()
        finally:
            self._closing = False

    def describe(self) -> str:
        """Where the state lives, without credentials."""
        if isinstance(self._client, RedisCluster):
            node = self._subscriber_node()
            where = f"Redis Cluster via {node.host}:{node.port}"
        else:
            options = self._client.connection_pool.connection_kwargs
            if "path" in options:
                where = f"Redis at {options['path']}"
            else:
                where = f"Redis at {options.get('host')}:{options.get('port')}"
            where += f" db {options.get('db', 0)}"
        return f"{where}, key prefix {self.keys.prefix}"
