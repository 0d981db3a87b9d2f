"""What every part of ``RedisStore`` shares: the clients it holds, the package's Lua
scripts, and the one place backend errors become floodwall's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.sentinel import Sentinel

from floodwall.core.errors import StorageError, StoreCommandError, StoreUnavailable
from floodwall.stores.keys import Keys
from floodwall.stores.redis.wire import NoScript, WireClient, WireError

__all__ = [
    "STORAGE_ERRORS",
    "RedisClient",
    "RedisParts",
    "SentinelPrimary",
    "decode",
    "encode",
    "script",
    "storage_errors",
    "translate",
]

RedisClient = redis.asyncio.Redis | RedisCluster


def script(name: str) -> str:
    """The source of one of the package's Lua scripts (``lua/``)."""
    return resources.files("floodwall.stores.redis").joinpath("lua", name).read_text("utf-8")


def encode(text: str) -> bytes:
    """Text as Redis keeps it."""
    # Ids may carry lone surrogates (decoded from non-UTF-8 bytes); keep them distinct.
    return text.encode("utf-8", "surrogatepass")


def decode(data: bytes | str) -> str:
    """A Redis reply as text, as ``encode`` wrote it."""
    return data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")


STORAGE_ERRORS: Final = (redis.RedisError, WireError, OSError)
# Replies that are errors of the whole server, not of one command: they feed the breaker.
_SERVER_ERRORS: Final = (
    "BUSY",
    "LOADING",
    "READONLY",
    "OOM",
    "MASTERDOWN",
    "CLUSTERDOWN",
    "TRYAGAIN",
    "NOAUTH",
    "NOPERM",
    "MISCONF",
    "MOVED",
    "ASK",
)


def translate(exc: BaseException) -> StorageError:
    """The one place where backend errors become floodwall's (see ``floodwall.core.errors``)."""
    text = f"{type(exc).__name__}: {exc}"
    # redis-py gives server-wide replies subclasses of their own, and strips "ERR ".
    plain_reply = type(exc) is redis.ResponseError or (
        isinstance(exc, WireError) and not isinstance(exc, OSError | NoScript)
    )
    if (plain_reply and not str(exc).startswith(_SERVER_ERRORS)) or isinstance(
        exc, redis.DataError | ValueError | TypeError | IndexError
    ):
        return StoreCommandError(text)
    return StoreUnavailable(text)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Raise a backend error as floodwall's (``translate``)."""
    try:
        yield
    except STORAGE_ERRORS as exc:
        raise translate(exc) from exc


@dataclass(frozen=True)
class SentinelPrimary:
    """A primary found through Sentinels: ``service`` is its name there, ``options`` what
    a connection to it needs (password, db, TLS, timeouts)."""

    sentinel: Sentinel
    service: str
    options: dict[str, Any]

    def client(self, **overrides: Any) -> redis.asyncio.Redis:
        """A client of the current primary, which finds the new one after a failover."""
        client: redis.asyncio.Redis = self.sentinel.master_for(
            self.service, **(self.options | overrides)
        )
        return client

    async def close(self) -> None:
        """Close the connections to the Sentinels."""
        for sentinel in self.sentinel.sentinels:
            await sentinel.aclose()

    def describe(self) -> str:
        """Which primary, through which Sentinels (never a credential)."""
        pool = self.sentinel.sentinels
        where = ", ".join(
            f"{s.connection_pool.connection_kwargs.get('host')}:"
            f"{s.connection_pool.connection_kwargs.get('port')}"
            for s in pool
        )
        return (
            f"Redis primary {self.service!r} via Sentinels {where} db {self.options.get('db', 0)}"
        )


class RedisParts:
    """The state every part of ``RedisStore`` reads (set by ``RedisStore.__init__``)."""

    keys: Keys
    _client: RedisClient
    _wire: WireClient | None
    _sentinel: SentinelPrimary | None
    _clock: Callable[[], float] | None
    _closing: bool

    @property
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster: one command touches one slot."""
        return isinstance(self._client, RedisCluster)

    async def now_ms(self) -> int:
        """Redis ``TIME`` in ms."""
        with storage_errors():
            reply: Any = await self._client.time()
        if isinstance(reply, dict):
            # A cluster answers per node; any primary's clock will do.
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000
