"""What every part of ``RedisStore`` shares: the clients it holds, the package's Lua
scripts, and the one place backend errors become floodwall's."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, Final

import redis
import redis.asyncio
from redis.asyncio.cluster import RedisCluster

from floodwall.core.errors import StorageError, StoreCommandError, StoreUnavailable
from floodwall.stores.keys import Keys
from floodwall.stores.redis.wire import NoScript, WireClient, WireError

__all__ = [
    "STORAGE_ERRORS",
    "RedisClient",
    "RedisParts",
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


class RedisParts:
    """The state every part of ``RedisStore`` reads (set by ``RedisStore.__init__``)."""

    keys: Keys
    _client: RedisClient
    _wire: WireClient | None
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
