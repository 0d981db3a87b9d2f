"""The change feed's channel on Redis: PUBLISH, a subscription on a connection of its
own, and PUBSUB NUMSUB to count the workers that follow."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import redis
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from floodwall.core.errors import StoreCommandError
from floodwall.stores.redis.parts import RedisParts, decode, storage_errors

__all__ = ["RedisChannel"]

_NO_RETRY = Retry(NoBackoff(), 0)


async def _close_pubsub(pubsub: PubSub) -> None:
    # redis-py types PubSub.aclose() from 8.2 on; through Any, mypy is clean on every
    # version the project's range allows.
    close: Any = pubsub.aclose
    await close()


def _numsub_count(reply: Any) -> int:
    """The subscriber count of the one channel asked for in a ``PUBSUB NUMSUB`` reply.

    redis-py answers ``[(channel, n)]`` (and, on a cluster node before 8.x, the raw flat
    ``[channel, n]``); any other shape is a reply this client cannot read.
    """
    if isinstance(reply, list | tuple):
        if len(reply) == 1 and isinstance(reply[0], list | tuple):
            reply = reply[0]
        if len(reply) == 2 and isinstance(reply[1], int) and not isinstance(reply[1], bool):
            return reply[1]
    raise StoreCommandError(f"PUBSUB NUMSUB answered a reply of unknown shape: {reply!r:.200}")


class _PubSubSubscription:
    __slots__ = ("_pubsub",)

    def __init__(self, pubsub: PubSub) -> None:
        self._pubsub = pubsub

    async def next_message(self, wait: float) -> str | None:
        with storage_errors():
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        if message is None or message.get("type") != "message":
            return None
        return decode(message["data"])


class RedisChannel(RedisParts):
    """``ChangeChannel`` on Redis pub/sub."""

    async def publish(self, message: str) -> None:
        """PUBLISH; Redis Cluster forwards it to every node."""
        with storage_errors():
            if isinstance(self._client, RedisCluster):
                # RedisCluster has publish() only from redis-py 8 on; the command itself
                # works on every version the range allows.
                await self._client.execute_command(
                    "PUBLISH", self.keys.events, message, target_nodes=self._subscriber_node()
                )
            else:
                await self._client.publish(self.keys.events, message)

    async def receivers(self) -> int:
        """PUBSUB NUMSUB of the change feed, on the node every worker subscribes through."""
        with storage_errors():
            if isinstance(self._client, RedisCluster):
                reply: Any = await self._client.execute_command(
                    "PUBSUB NUMSUB", self.keys.events, target_nodes=self._subscriber_node()
                )
            else:
                reply = await self._client.pubsub_numsub(self.keys.events)
        return _numsub_count(reply)

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[_PubSubSubscription]:
        """SUBSCRIBE on a connection of its own, with no reply timeout (it waits for news)."""
        client = self._subscriber_client()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            with storage_errors():
                await pubsub.subscribe(self.keys.events)
            yield _PubSubSubscription(pubsub)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await _close_pubsub(pubsub)
            with contextlib.suppress(redis.RedisError, OSError):
                await client.aclose()

    def _subscriber_node(self) -> Any:
        assert isinstance(self._client, RedisCluster)
        return self._client.get_default_node() or self._client.get_nodes()[0]

    def _subscriber_client(self) -> redis.asyncio.Redis:
        # It waits for news: no reply timeout, but connecting stays bounded. No retries:
        # redis-py would resubscribe silently, and the resync after a gap would never run.
        if isinstance(self._client, RedisCluster):
            # A plain client even on a cluster: classic pub/sub reaches every node, so one
            # node's connection hears every worker's PUBLISH.
            node = self._subscriber_node()
            options = self._client.get_connection_kwargs()
            tls = {name: value for name, value in options.items() if name.startswith("ssl_")}
            return redis.asyncio.Redis(
                connection_pool=redis.asyncio.ConnectionPool(
                    connection_class=options.get("connection_class") or Connection,
                    max_connections=1,
                    host=node.host,
                    port=int(node.port),
                    username=options.get("username"),
                    password=options.get("password"),
                    socket_connect_timeout=options.get("socket_connect_timeout"),
                    retry=_NO_RETRY,
                    **tls,
                )
            )
        if self._sentinel is not None:
            # Asks the Sentinels for the primary on each (re)subscription: after a failover
            # the change feed subscribes on the new one.
            return self._sentinel.client(socket_timeout=None, retry=_NO_RETRY)
        pool = self._client.connection_pool
        kwargs: dict[str, Any] = dict(pool.connection_kwargs)
        kwargs["socket_timeout"] = None
        kwargs["retry"] = _NO_RETRY
        kwargs.pop("max_connections", None)
        return redis.asyncio.Redis(
            connection_pool=redis.asyncio.ConnectionPool(
                connection_class=pool.connection_class, max_connections=1, **kwargs
            )
        )
