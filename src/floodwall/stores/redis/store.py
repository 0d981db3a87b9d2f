"""``RedisStore``: buckets and kill-switch state in Redis or Redis Cluster, assembled from
its parts by capability (``buckets``, ``states``, ``channel``, ``records``); the scripts
are in ``lua/``, the wire client of the hot path in ``wire``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import SSLConnection, parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from floodwall.core.errors import ConfigurationError
from floodwall.stores.keys import Keys
from floodwall.stores.redis.buckets import RedisBuckets
from floodwall.stores.redis.channel import RedisChannel
from floodwall.stores.redis.parts import RedisClient, SentinelPrimary, storage_errors
from floodwall.stores.redis.records import RedisRecords
from floodwall.stores.redis.replication import RedisReplication
from floodwall.stores.redis.states import RedisStates
from floodwall.stores.redis.wire import WireClient

__all__ = ["RedisClient", "RedisStore"]


def _options(timeout: float) -> dict[str, Any]:
    return {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        # One immediate retry on a dropped connection (Redis restarted); never on a
        # timeout, which would double the wait of every request while Redis is slow.
        "retry": Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
    }


# redis-py's ValueError may quote the URL, password included: never shown.
_UNUSABLE = "FLOODWALL_REDIS_URL is not a URL redis-py can use"


class RedisStore(RedisBuckets, RedisStates, RedisChannel, RedisRecords, RedisReplication):
    """A ``Store`` on a redis-py asyncio client (``Redis`` or ``RedisCluster``).

    ``sentinel`` is how ``client`` finds its primary, when it does through Sentinels.
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
        sentinel: SentinelPrimary | None = None,
    ) -> None:
        self._client = client
        self._sentinel = sentinel
        self._wire = wire
        self._clock = clock
        self._closing = False
        self.keys = Keys(prefix)
        self._init_buckets(client)
        self._init_states(client)
        self._init_replication()

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
        options = _options(timeout)
        unusable = ConfigurationError(_UNUSABLE)
        if cluster:
            try:
                cluster_client = RedisCluster.from_url(url, **options)
            except ValueError:
                raise unusable from None
            return cls(cluster_client, prefix=prefix, clock=clock)
        try:
            wire = WireClient.from_url(url, timeout=timeout, connect_timeout=timeout)
        except ValueError:
            # Unix sockets, URL options beside TLS's: redis-py does those, a little slower.
            wire = None
        try:
            client = redis.asyncio.Redis.from_url(url, **options)
        except ValueError:
            raise unusable from None
        return cls(client, prefix=prefix, wire=wire, clock=clock)

    @classmethod
    def via_sentinels(
        cls,
        sentinels: Sequence[tuple[str, int]],
        service: str,
        *,
        url: str | None,
        sentinel_password: str | None,
        prefix: str,
        timeout: float,
    ) -> RedisStore:
        """The primary the Sentinels name ``service``, found again after a failover.

        ``url`` names no host, only what the primary needs: its password, user, db and, for
        ``rediss``, TLS with redis-py's ``ssl_*`` query parameters (the Sentinels are
        reached with the same TLS options). ``timeout`` bounds connecting to and every
        reply of the primary and of each Sentinel.
        """
        try:
            primary: dict[str, Any] = dict(parse_url(url)) if url else {}
        except ValueError:
            raise ConfigurationError(_UNUSABLE) from None
        tls = primary.pop("connection_class", None) is SSLConnection
        tls_options = {name: value for name, value in primary.items() if name.startswith("ssl")}
        if tls:
            primary["ssl"] = tls_options["ssl"] = True
        sentinel_options: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            **tls_options,
        }
        if sentinel_password is not None:
            sentinel_options["password"] = sentinel_password
        found = SentinelPrimary(
            Sentinel(list(sentinels), sentinel_kwargs=sentinel_options),
            service,
            primary | _options(timeout),
        )
        # Checks go through redis-py: the wire client talks to one host it cannot re-find.
        return cls(found.client(), prefix=prefix, sentinel=found)

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
                if self._sentinel is not None:
                    await self._sentinel.close()
        finally:
            self._closing = False

    def describe(self) -> str:
        """Where the state lives, without credentials."""
        if isinstance(self._client, RedisCluster):
            node = self._subscriber_node()
            where = f"Redis Cluster via {node.host}:{node.port}"
        elif self._sentinel is not None:
            where = self._sentinel.describe()
        else:
            options = self._client.connection_pool.connection_kwargs
            if "path" in options:
                where = f"Redis at {options['path']}"
            else:
                where = f"Redis at {options.get('host')}:{options.get('port')}"
            where += f" db {options.get('db', 0)}"
        return f"{where}, key prefix {self.keys.prefix}"
