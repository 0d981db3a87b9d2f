"""Operator writes made to survive a failover: ``WAIT`` for a replica's acknowledgement.

``WAIT`` covers the writes of its own connection: it returns once replicas have
acknowledged the replication offset of that connection's last write. So a small write, a
marker in the slot of the key the operator's writes touched, goes first on the same
connection, pipelined with the ``WAIT``. A primary has one replication stream (one per
node on a Cluster), so every write made before the marker, on any connection, is covered
by its acknowledgement too: the block, its listing, its audit record.
"""

from __future__ import annotations

import inspect
import re
import time
from typing import Any, Final

from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import AbstractConnection, ConnectionPool

from floodwall.stores.base import Replicas
from floodwall.stores.redis.parts import RedisParts, storage_errors

__all__ = ["RedisReplication"]

# How long a primary's count of connected replicas is trusted: replicas come and go
# rarely, and asking on every operator write would cost it a round trip.
_REPLICAS_SECONDS: Final = 5.0
# The marker outlives any WAIT on it, then goes.
_MARKER_MS: Final = 60_000
_CONNECTED: Final = re.compile(rb"^connected_slaves:(\d+)", re.MULTILINE)


class RedisReplication(RedisParts):
    """``Replication`` on Redis: ``WAIT 1`` on the connection of a marker write."""

    def _init_replication(self) -> None:
        # (when asked, replicas connected) per primary's address: after a failover the
        # new primary is asked afresh.
        self._replicas_seen: dict[str, tuple[float, int]] = {}

    async def replicate(self, key: str, *, timeout_ms: int) -> Replicas:
        """``WAIT 1 timeout_ms`` after a marker write beside ``key``, on one connection to
        its primary; nothing where the primary has no replica connected."""
        if timeout_ms <= 0:
            return Replicas(0, 0)
        with storage_errors():
            if isinstance(self._client, RedisCluster):
                node = self._client.get_node_from_key(key)
                if node is None:
                    return Replicas(0, 0)
                conn = node.acquire_connection()
                try:
                    return await self._wait(conn, key, timeout_ms)
                finally:
                    _give_back(node, conn)
            pool = self._client.connection_pool
            # Typed Any: redis-py leaves get_connection and connect unannotated.
            get_connection: Any = pool.get_connection
            conn = await (get_connection("WAIT") if _NAMES_ITS_COMMAND else get_connection())
            try:
                return await self._wait(conn, key, timeout_ms)
            finally:
                await pool.release(conn)

    async def _wait(self, conn: AbstractConnection, key: str, timeout_ms: int) -> Replicas:
        try:
            # Connected first: through Sentinel, the connection finds the primary now.
            connect: Any = conn.connect
            await connect()
            connected = await self._connected_replicas(conn)
            if not connected:
                return Replicas(0, 0)
            marker = self.keys.replicated(key, cluster=self.cluster)
            commands: list[tuple[Any, ...]] = [
                ("SET", marker, "1", "PX", _MARKER_MS),
                ("WAIT", 1, timeout_ms),
            ]
            await conn.send_packed_command(conn.pack_commands(commands))
            await conn.read_response()
            # The WAIT's own time on top of the usual bound of a reply.
            bound = (conn.socket_timeout or 0.0) + timeout_ms / 1000
            acknowledged = int(await conn.read_response(timeout=bound))
            return Replicas(acknowledged, connected)
        except BaseException:
            # A reply may still be on its way: the connection cannot serve anyone else.
            await conn.disconnect()
            raise

    async def _connected_replicas(self, conn: AbstractConnection) -> int:
        address = f"{getattr(conn, 'host', '')}:{getattr(conn, 'port', '')}"
        now = time.monotonic()
        seen = self._replicas_seen.get(address)
        if seen is not None and now - seen[0] < _REPLICAS_SECONDS:
            return seen[1]
        await conn.send_command("INFO", "replication")
        info: bytes | str = await conn.read_response()
        found = _CONNECTED.search(info if isinstance(info, bytes) else info.encode())
        connected = int(found.group(1)) if found else 0
        self._replicas_seen[address] = (now, connected)
        return connected


# redis-py before 5.3 needs the command's name to lend a connection; 5.3 and newer warn
# when it is given.
_NAMES_ITS_COMMAND: Final = (
    inspect.signature(ConnectionPool.get_connection).parameters["command_name"].default
    is inspect.Parameter.empty
)


def _give_back(node: Any, conn: AbstractConnection) -> None:
    # Newer redis-py gives a cluster node's connection back with ClusterNode.release; the
    # oldest the range allows (5.0.1) has none, and takes it back onto the node's free list,
    # as release does.
    release = getattr(node, "release", None)
    if release is not None:
        release(conn)
    else:
        node._free.append(conn)
