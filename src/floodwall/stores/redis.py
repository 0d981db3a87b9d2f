"""``RedisStore``: buckets and kill-switch state in Redis or Redis Cluster.

The check is one ``EVALSHA`` of ``lua/check.lua``, reloaded when Redis answers NOSCRIPT
(after a restart or a ``SCRIPT FLUSH``). On a single Redis at a ``redis://`` URL the check
goes through ``WireClient``, which pipelines concurrent checks on one connection at a
fraction of redis-py's cost per command; everything else, and every check on a cluster or
over TLS, uses redis-py.

Its length is the Store protocol's, method for method, plus the wire fast path of the
check; the scripts themselves are in ``lua/``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from importlib import resources
from typing import Any, Final

import redis
import redis.asyncio
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from floodwall.core import rules
from floodwall.core.decision import Decision, decision_from_reply
from floodwall.core.errors import (
    ConfigurationError,
    StorageError,
    StoreCommandError,
    StoreUnavailable,
)
from floodwall.core.user_state import Listing
from floodwall.stores._resp import array_header, pack_parts
from floodwall.stores._wire import NoScript, WireClient, WireConnectionError, WireError
from floodwall.stores.base import (
    LEASE_MS,
    AuditEntry,
    TopBlock,
    Window,
    most_refused,
    per_block,
)
from floodwall.stores.keys import Keys, SubjectKeys
from floodwall.stores.state_fields import StateSnapshot
from floodwall.stores.user_states import UserStateStore

__all__ = ["RedisStore"]

RedisClient = redis.asyncio.Redis | RedisCluster
_NO_RETRY = Retry(NoBackoff(), 0)
_RESP_CACHE_SIZE = 65_536
_CHECK_KEYS = 4
# Subjects per pipeline of a bulk update: 200 scripts and their replies are about 100 KB.
_BULK_BATCH = 200
# Members one round trip of a top read asks for at most (see ``top_refusals``).
_TOP_ROUND_TRIP = 1_000


def _script(name: str) -> str:
    return resources.files("floodwall.stores").joinpath("lua", name).read_text("utf-8")


def _check_script() -> str:
    """``check.lua`` with the rule book's bounds on a limit written in (``repr`` keeps
    every digit), so the script judges a stored limit exactly as ``rules.limit`` does."""
    source = _script("check.lua")
    for name, value in (
        ("__MIN_RATE__", rules.RATE.low),
        ("__MAX_RATE__", rules.RATE.high),
        ("__MIN_BURST__", rules.BURST.low),
        ("__MAX_BURST__", rules.BURST.high),
        ("__MAX_REFILL_SECONDS__", rules.MAX_SECONDS),
    ):
        source = source.replace(name, repr(float(value)))
    return source


def _encode(text: str) -> bytes:
    # Ids may carry lone surrogates (decoded from non-UTF-8 bytes); keep them distinct.
    return text.encode("utf-8", "surrogatepass")


def _decode(data: bytes | str) -> str:
    return data if isinstance(data, str) else data.decode("utf-8", "surrogatepass")


_STORAGE_ERRORS: Final = (redis.RedisError, WireError, OSError)
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


def _translate(exc: BaseException) -> StorageError:
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
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except _STORAGE_ERRORS as exc:
        raise _translate(exc) from exc


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
        with _storage_errors():
            message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait)
        if message is None or message.get("type") != "message":
            return None
        return _decode(message["data"])


def _check_args(
    rate: float,
    burst: int,
    cost: int,
    issued_at_ms: int | None,
    credential_id: str | None,
    reset_exempt: bool,
    now_us: int | None,
    concurrency: int | None,
    lease_ms: int,
) -> tuple[str | bytes | int, ...]:
    # The ARGV of check.lua before the windows', in its order. repr keeps every digit of a
    # fractional rate.
    return (
        repr(float(rate)),
        burst,
        cost,
        "" if issued_at_ms is None else issued_at_ms,
        _encode(credential_id) if credential_id else "",
        "1" if reset_exempt else "0",
        "" if now_us is None else now_us,
        "" if concurrency is None else concurrency,
        lease_ms,
    )


_CHECK_ARGC: Final = len(_check_args(1.0, 1, 1, None, None, False, None, None, 1))
_UsualArgs = tuple[float, int, int, bool, int | None, int]
"""The arguments of most checks: rate, burst, cost, reset_exempt, concurrency, lease_ms."""


def _window_args(windows: Sequence[Window]) -> list[str | int]:
    # ARGV[10 ...] of check.lua: three per window.
    return [part for w in windows for part in (w.limit, w.period_us, w.override)]


def _update_args(
    assign: Mapping[str, str], assign_now_plus_ms: Mapping[str, int], delete: Sequence[str]
) -> list[bytes | str | int]:
    # ARGV[2 ...] of update_state.lua (ARGV[1] is the user id).
    args: list[bytes | str | int] = [len(assign), len(assign_now_plus_ms)]
    for field, value in assign.items():
        args += [field, _encode(value)]
    for field, offset in assign_now_plus_ms.items():
        args += [field, offset]
    return args + list(delete)


def _snapshot_of(reply: Any) -> StateSnapshot:
    # update_state.lua's reply: now (ms), then the hash's fields and values.
    now_ms, *flat = reply
    fields = {_decode(flat[i]): _decode(flat[i + 1]) for i in range(0, len(flat), 2)}
    return StateSnapshot(fields, int(now_ms))


class RedisStore(UserStateStore):
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
        self._loading: asyncio.Task[str] | None = None
        self._closing = False
        self.keys = Keys(prefix)
        self._check_source = _check_script()
        self._check = client.register_script(self._check_source)
        self._evalsha_head = array_header(3 + _CHECK_KEYS + _CHECK_ARGC) + pack_parts(
            ("EVALSHA", self._check.sha, _CHECK_KEYS)
        )
        self._limit_resp: dict[_UsualArgs, bytes] = {}
        # A subject's windows repeat as its limits do (packing three took 2.5 µs).
        self._window_resp: dict[tuple[Window, ...], tuple[bytes, bytes, bytes]] = {}
        self._update = client.register_script(_script("update_state.lua"))
        self._revoke = client.register_script(_script("revoke.lua"))
        self._claim_reset_script = client.register_script(_script("claim_reset.lua"))
        self._lapse_block_script = client.register_script(_script("lapse_block.lua"))

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
    def cluster(self) -> bool:
        """Whether the store is a Redis Cluster: one command touches one slot."""
        return isinstance(self._client, RedisCluster)

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
        with _storage_errors():
            await self._client.ping()
            if self._wire is not None:
                await self._load_check(self._wire)

    async def close(self) -> None:
        """Close the connections; a later call opens them again."""
        # A check that close() fails must not retry: that would reopen a connection
        # nobody closes, and run a request already sent a second time.
        self._closing = True
        try:
            with _storage_errors():
                if self._wire is not None:
                    await self._wire.close()
                await self._client.aclose()
        finally:
            self._closing = False

    async def now_ms(self) -> int:
        """Redis ``TIME`` in ms."""
        with _storage_errors():
            reply: Any = await self._client.time()
        if isinstance(reply, dict):
            # A cluster answers per node; any primary's clock will do.
            reply = next(iter(reply.values()))
        seconds, micros = reply
        return int(seconds) * 1000 + int(micros) // 1000

    async def check(
        self,
        keys: SubjectKeys,
        *,
        rate: float,
        burst: int,
        cost: int = 1,
        issued_at_ms: int | None = None,
        credential_id: str | None = None,
        reset_exempt: bool = False,
        windows: tuple[Window, ...] = (),
        concurrency: int | None = None,
        lease_ms: int = LEASE_MS,
    ) -> Decision:
        """One ``EVALSHA`` of ``check.lua``."""
        wire = self._wire
        now_us = None if self._clock is None else round(self._clock() * 1_000_000)
        # Errors are translated here rather than by _storage_errors: this runs on every
        # request, and a try/except costs nothing until something is raised.
        try:
            usual = (
                wire is not None
                and issued_at_ms is None
                and credential_id is None
                and now_us is None
            )
            args = (
                ()
                if usual
                else _check_args(
                    rate,
                    burst,
                    cost,
                    issued_at_ms,
                    credential_id,
                    reset_exempt,
                    now_us,
                    concurrency,
                    lease_ms,
                )
            )
            if wire is not None:
                # Packing every check's arguments anew was the largest cost left on the
                # client; the usual ones repeat, so their RESP is kept.
                if windows:
                    head, window_keys, window_args = self._window_resp.get(
                        windows
                    ) or self._packed_windows(windows)
                    command = head + keys.packed + window_keys
                else:
                    command = self._evalsha_head + keys.packed
                if usual:
                    limit = (rate, burst, cost, reset_exempt, concurrency, lease_ms)
                    command += self._limit_resp.get(limit) or self._packed_limit(limit)
                else:
                    command += pack_parts(args)
                if windows:
                    command += window_args
                try:
                    reply = await wire.request(command)
                except (NoScript, WireConnectionError) as exc:
                    reply = await self._wire_recheck(wire, command, exc)
            else:
                reply = await self._check(
                    keys=(
                        keys.bucket,
                        keys.state,
                        keys.revoked,
                        keys.inflight,
                        *(w.key for w in windows),
                    ),
                    args=(*args, *_window_args(windows)),
                )
            return decision_from_reply(reply)
        except (*_STORAGE_ERRORS, ValueError, TypeError, IndexError) as exc:
            raise _translate(exc) from exc

    async def release(self, keys: SubjectKeys, token: str) -> None:
        """ZREM of the slot's token."""
        wire = self._wire
        with _storage_errors():
            if wire is not None:
                # Every request that took a slot gives it back, shed ones included (in the
                # drill's attack b, 500 a second): redis-py took about 65 µs of the
                # worker's CPU for one, this client 7.5.
                try:
                    await wire.execute("ZREM", keys.inflight, token)
                except WireConnectionError:
                    # A restart or a proxy dropped the connection: once more on a new one,
                    # as redis-py does, or the slot stays counted until its lease ends.
                    await wire.execute("ZREM", keys.inflight, token)
            else:
                await self._client.zrem(keys.inflight, token)

    async def renew(self, leases: Sequence[tuple[SubjectKeys, str]], lease_ms: int) -> None:
        """Per subject, one ZADD XX of its leases' new end and one PEXPIRE, pipelined: the
        cost follows the subjects holding slots here, not their requests."""
        if not leases:
            return
        # The clock the check leased them on: Redis's, or a test's.
        now = round(self._clock() * 1000) if self._clock is not None else await self.now_ms()
        end = now + lease_ms
        tokens: dict[str, dict[str, int]] = {}
        for keys, token in leases:
            tokens.setdefault(keys.inflight, {})[token] = end
        with _storage_errors():
            async with self._client.pipeline(transaction=False) as pipe:
                for key, ends in tokens.items():
                    pipe.zadd(key, ends, xx=True)
                    pipe.pexpire(key, lease_ms)
                await pipe.execute()

    def _packed_limit(self, limit: _UsualArgs) -> bytes:
        cache = self._limit_resp
        if len(cache) >= _RESP_CACHE_SIZE:
            cache.clear()
        rate, burst, cost, reset_exempt, concurrency, lease_ms = limit
        args = _check_args(rate, burst, cost, None, None, reset_exempt, None, concurrency, lease_ms)
        packed = cache[limit] = pack_parts(args)
        return packed

    def _packed_windows(self, windows: tuple[Window, ...]) -> tuple[bytes, bytes, bytes]:
        # The command's head (its length and the number of keys depend on the windows'),
        # the windows' keys, their arguments.
        cache = self._window_resp
        if len(cache) >= _RESP_CACHE_SIZE:
            cache.clear()
        count = len(windows)
        head = array_header(3 + _CHECK_KEYS + count + _CHECK_ARGC + 3 * count) + pack_parts(
            ("EVALSHA", self._check.sha, _CHECK_KEYS + count)
        )
        packed = cache[windows] = (
            head,
            pack_parts([w.key for w in windows]),
            pack_parts(_window_args(windows)),
        )
        return packed

    async def _wire_recheck(
        self, wire: WireClient, command: bytes, first: NoScript | WireConnectionError
    ) -> Any:
        # At most one reload of the script and one retry on a new connection, in any order
        # (a restarted Redis drops the connection, then has lost its scripts).
        reloaded = retried = False
        failure: NoScript | WireConnectionError = first
        while True:
            if isinstance(failure, NoScript):
                if reloaded:
                    raise failure
                reloaded = True
                await self._load_check(wire)
            else:
                # Redis restarted or a proxy dropped an idle connection. Never retried after
                # a timeout, which would double the wait of every request while Redis is slow.
                if retried or self._closing:
                    raise failure
                retried = True
            try:
                return await wire.request(command)
            except (NoScript, WireConnectionError) as exc:
                failure = exc

    async def _load_check(self, wire: WireClient) -> None:
        # After a restart every check in flight hears NOSCRIPT at once; one SCRIPT LOAD
        # serves them all.
        task = self._loading
        if task is None or task.done() or task.get_loop() is not asyncio.get_running_loop():
            task = asyncio.ensure_future(wire.script_load(self._check_source))
            self._loading = task
        await asyncio.shield(task)

    async def _read_states(self, keys: Sequence[SubjectKeys]) -> list[StateSnapshot]:
        """HGETALL of each hash, its revoked ids and TIME, pipelined: one round trip on a
        single Redis."""
        if not keys:
            return []
        with _storage_errors():
            now = await self.now_ms()
            async with self._client.pipeline(transaction=False) as pipe:
                for subject in keys:
                    pipe.hgetall(subject.state)
                    pipe.zrangebyscore(subject.revoked, f"({now}", "+inf", withscores=True)
                replies = await pipe.execute()
        return [
            StateSnapshot(
                {_decode(k): _decode(v) for k, v in fields.items()},
                now,
                {_decode(cid): int(expiry) for cid, expiry in revoked},
            )
            for fields, revoked in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def _claim_reset(self, keys: SubjectKeys, *, reset_id: str, claim: bool) -> bool:
        """One ``EVALSHA`` of ``claim_reset.lua``."""
        with _storage_errors():
            reply = await self._claim_reset_script(keys=(keys.state,), args=(reset_id, int(claim)))
        return bool(reply)

    async def _lapse_block(
        self, keys: SubjectKeys, *, blocked_until: str, fields: Sequence[str]
    ) -> bool | None:
        """One ``EVALSHA`` of ``lapse_block.lua``."""
        with _storage_errors():
            left = await self._lapse_block_script(keys=(keys.state,), args=(blocked_until, *fields))
        return None if left < 0 else left == 0

    async def _update_state(
        self,
        keys: SubjectKeys,
        *,
        user_id: str,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        delete: Sequence[str] = (),
        reset_bucket: bool = False,
    ) -> StateSnapshot:
        """One ``EVALSHA`` of ``update_state.lua``."""
        args = [_encode(user_id), *_update_args(assign or {}, assign_now_plus_ms or {}, delete)]
        with _storage_errors():
            touched = (keys.state, keys.bucket) if reset_bucket else (keys.state,)
            reply = await self._update(keys=touched, args=args)
        return _snapshot_of(reply)

    async def _revoke_credential(
        self, keys: SubjectKeys, *, credential_id: str, expires_at_ms: int
    ) -> None:
        """One ``EVALSHA`` of ``revoke.lua``."""
        with _storage_errors():
            await self._revoke(keys=(keys.revoked,), args=(_encode(credential_id), expires_at_ms))

    async def _set_index(self, index: Listing, user_id: str, *, present: bool) -> None:
        """Members all score 0, so an index pages in id order with ZRANGEBYLEX."""
        key = self.keys.index(index)
        with _storage_errors():
            if present:
                await self._client.zadd(key, {_encode(user_id): 0})
            else:
                await self._client.zrem(key, _encode(user_id))

    async def _list_index(self, index: Listing, *, after: str | None, count: int) -> list[str]:
        """A page of an index after ``after``."""
        low = b"-" if after is None else b"(" + _encode(after)
        with _storage_errors():
            members = await self._client.zrangebylex(
                self.keys.index(index), low, b"+", start=0, num=count
            )
        return [_decode(member) for member in members]

    async def publish(self, message: str) -> None:
        """PUBLISH; Redis Cluster forwards it to every node."""
        with _storage_errors():
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
        with _storage_errors():
            if isinstance(self._client, RedisCluster):
                reply: Any = await self._client.execute_command(
                    "PUBSUB NUMSUB", self.keys.events, target_nodes=self._subscriber_node()
                )
            else:
                reply = await self._client.pubsub_numsub(self.keys.events)
        return _numsub_count(reply)

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

    def _subscriber_node(self) -> Any:
        assert isinstance(self._client, RedisCluster)
        return self._client.get_default_node() or self._client.get_nodes()[0]

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[_PubSubSubscription]:
        """SUBSCRIBE on a connection of its own, with no reply timeout (it waits for news)."""
        client = self._subscriber_client()
        pubsub = client.pubsub(ignore_subscribe_messages=True)
        try:
            with _storage_errors():
                await pubsub.subscribe(self.keys.events)
            yield _PubSubSubscription(pubsub)
        finally:
            with contextlib.suppress(redis.RedisError, OSError):
                await _close_pubsub(pubsub)
            with contextlib.suppress(redis.RedisError, OSError):
                await client.aclose()

    def _subscriber_client(self) -> redis.asyncio.Redis:
        # It waits for news: no reply timeout, but connecting stays bounded. No retries:
        # redis-py would resubscribe silently, and the resync after a gap would never run.
        if isinstance(self._client, RedisCluster):
            # A plain client even on a cluster: classic pub/sub reaches every node, so one
            # node's connection hears every worker's PUBLISH.
            node = self._subscriber_node()
            options = self._client.get_connection_kwargs()
            return redis.asyncio.Redis(
                host=node.host,
                port=int(node.port),
                username=options.get("username"),
                password=options.get("password"),
                socket_connect_timeout=options.get("socket_connect_timeout"),
                retry=_NO_RETRY,
            )
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

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """ZINCRBY each count into a block, trim it to its ``keep`` largest
        (ZREMRANGEBYRANK) and EXPIRE it: one pipelined round trip per block, so that checks
        run between them (100 counts are about 0.2 ms of Redis)."""
        with _storage_errors():
            for block in blocks:
                key = self.keys.top_block(block.seconds, block.number, board)
                async with self._client.pipeline(transaction=False) as pipe:
                    for name, count in counts.items():
                        pipe.zincrby(key, count, _encode(name))
                    pipe.zremrangebyrank(key, 0, -(keep + 1))
                    pipe.expire(key, ttl_seconds)
                    await pipe.execute()

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """A ZREVRANGE of each block's largest members, a few blocks a round trip, added up
        and ranked here.

        Plain commands, not a script: Redis 7.0 spends about 0.18 us a member on a
        ZREVRANGE WITHSCORES, a Lua script ten times that (the reply turned into a table,
        then sorted), and checks of other clients run between round trips. One round trip
        reads at most ``_TOP_ROUND_TRIP`` members (under 0.2 ms of Redis)."""
        read = per_block(len(blocks))
        step = max(1, _TOP_ROUND_TRIP // read)
        totals: dict[bytes, float] = {}
        with _storage_errors():
            for start in range(0, len(blocks), step):
                async with self._client.pipeline(transaction=False) as pipe:
                    for block in blocks[start : start + step]:
                        key = self.keys.top_block(block.seconds, block.number, board)
                        pipe.zrevrange(key, 0, read - 1, withscores=True)
                    replies: list[list[tuple[bytes, float]]] = await pipe.execute()
                for rows in replies:
                    for name, refusals in rows:
                        totals[name] = totals.get(name, 0.0) + refusals
        return [(_decode(name), int(total)) for name, total in most_refused(totals, count)]

    async def read_networks(self) -> dict[str, str]:
        """HGETALL of the network blocks."""
        with _storage_errors():
            raw = await self._client.hgetall(self.keys.networks)
        return {_decode(k): _decode(v) for k, v in raw.items()}

    async def read_network(self, cidr: str) -> str | None:
        """HGET of one network block."""
        with _storage_errors():
            raw = await self._client.hget(self.keys.networks, cidr)
        return None if raw is None else _decode(raw)

    async def count_networks(self) -> int:
        """HLEN of the network blocks."""
        with _storage_errors():
            return int(await self._client.hlen(self.keys.networks))

    async def scan_networks(self, cursor: str | None, count: int) -> tuple[dict[str, str], str]:
        """HSCAN of the network blocks: Redis's cursor, ``0`` once the scan is over."""
        with _storage_errors():
            reply: Any = await self._client.hscan(self.keys.networks, int(cursor or 0), count=count)
        after, raw = reply
        return {_decode(k): _decode(v) for k, v in raw.items()}, str(after or "")

    async def write_network(self, cidr: str, block: str | None) -> None:
        """HSET or HDEL one network block."""
        with _storage_errors():
            if block is None:
                await self._client.hdel(self.keys.networks, cidr)
            else:
                await self._client.hset(self.keys.networks, cidr, _encode(block))

    async def _update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        indexes: Sequence[Listing] = (),
    ) -> list[StateSnapshot | StoreCommandError]:
        """``update_state.lua`` of each subject, pipelined in batches of ``_BULK_BATCH``
        subjects, then one ZADD per index of the subjects whose update succeeded: 1,000
        users in a few round trips. A subject whose script fails is in no index, so a
        listing never names a user whose state it cannot read."""
        args = _update_args(assign or {}, assign_now_plus_ms or {}, ())
        results: list[StateSnapshot | StoreCommandError] = []
        with _storage_errors():
            # The script is loaded first: a pipeline cannot reload it halfway.
            await self._client.script_load(self._update.script)
            for start in range(0, len(subjects), _BULK_BATCH):
                batch = subjects[start : start + _BULK_BATCH]
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, user_id in batch:
                        pipe.evalsha(self._update.sha, 1, keys.state, _encode(user_id), *args)
                    replies = await pipe.execute(raise_on_error=False)
                updated: dict[Any, Any] = {}
                for (_, user_id), reply in zip(batch, replies, strict=True):
                    if not isinstance(reply, Exception):
                        results.append(_snapshot_of(reply))
                        updated[_encode(user_id)] = 0
                        continue
                    error = _translate(reply)
                    if not isinstance(error, StoreCommandError):
                        raise error from reply
                    results.append(error)
                if updated and indexes:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for index in indexes:
                            pipe.zadd(self.keys.index(index), updated)
                        await pipe.execute()
        return results

    async def append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """XADD each record to the capped stream, pipelined."""
        ids: list[str] = []
        with _storage_errors():
            for start in range(0, len(records), _BULK_BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for fields in records[start : start + _BULK_BATCH]:
                        encoded: dict[Any, Any] = {k: _encode(v) for k, v in fields.items()}
                        pipe.xadd(self.keys.audit, encoded, maxlen=max_entries, approximate=True)
                    ids += [_decode(entry_id) for entry_id in await pipe.execute()]
        return ids

    async def read_config(self) -> dict[str, str]:
        """HGETALL of the config hash."""
        with _storage_errors():
            raw = await self._client.hgetall(self.keys.config)
        return {_decode(k): _decode(v) for k, v in raw.items()}

    async def write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """HSET into the config hash, and HDEL."""
        with _storage_errors():
            if fields:
                mapping: dict[Any, Any] = dict(fields)
                await self._client.hset(self.keys.config, mapping=mapping)
            if delete:
                await self._client.hdel(self.keys.config, *delete)

    async def append_audit(self, fields: Mapping[str, str], *, max_entries: int) -> str:
        """XADD to a capped stream."""
        encoded: dict[Any, Any] = {key: _encode(value) for key, value in fields.items()}
        with _storage_errors():
            entry_id = await self._client.xadd(
                self.keys.audit, encoded, maxlen=max_entries, approximate=True
            )
        return _decode(entry_id)

    async def read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """XREVRANGE from ``before`` (exclusive) down."""
        high = "+" if before is None else f"({before}"
        with _storage_errors():
            rows = await self._client.xrevrange(self.keys.audit, high, "-", count=count)
        return [
            AuditEntry(_decode(entry_id), {_decode(k): _decode(v) for k, v in data.items()})
            for entry_id, data in rows or ()
            if entry_id is not None and data is not None
        ]
