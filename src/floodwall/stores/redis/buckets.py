"""The hot path on Redis: one ``EVALSHA`` of ``lua/check.lua`` per request, and the
concurrency slots' release and renewal.

The script is reloaded when Redis answers NOSCRIPT (after a restart or a ``SCRIPT
FLUSH``). On a single Redis at a ``redis://`` or ``rediss://`` URL the check goes through
``WireClient``, which pipelines concurrent checks on one connection at a fraction of
redis-py's cost per command; every check on a Cluster or through Sentinels uses redis-py.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Final

from floodwall.core import rules
from floodwall.core.decision import Decision, decision_from_reply
from floodwall.stores._resp import array_header, pack_parts
from floodwall.stores.base import LEASE_MS, Window
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.redis.parts import (
    STORAGE_ERRORS,
    RedisClient,
    RedisParts,
    encode,
    script,
    storage_errors,
    translate,
)
from floodwall.stores.redis.wire import NoScript, WireClient, WireConnectionError
from floodwall.stores.state_fields import ROUTE_FIELD

__all__ = ["RedisBuckets"]

_RESP_CACHE_SIZE: Final = 65_536
_CHECK_KEYS: Final = 4


def _check_script() -> str:
    """``check.lua`` with the rule book's bounds on a limit written in (``repr`` keeps
    every digit), so the script judges a stored limit exactly as ``rules.limit`` does."""
    source = script("check.lua")
    for name, value in (
        ("__MIN_RATE__", rules.RATE.low),
        ("__MAX_RATE__", rules.RATE.high),
        ("__MIN_BURST__", rules.BURST.low),
        ("__MAX_BURST__", rules.BURST.high),
        ("__MAX_REFILL_SECONDS__", rules.MAX_SECONDS),
    ):
        source = source.replace(name, repr(float(value)))
    return source


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
        encode(credential_id) if credential_id else "",
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
    # The state field of a route limit of the subject's own: see state_fields.
    return [
        part
        for w in windows
        for part in (w.limit, w.period_us, ROUTE_FIELD + w.own_route if w.own_route else "")
    ]


class RedisBuckets(RedisParts):
    """``Buckets`` on Redis: ``check``, ``release``, ``renew`` and the store's clock."""

    def _init_buckets(self, client: RedisClient) -> None:
        self._loading: asyncio.Task[str] | None = None
        self._check_source = _check_script()
        self._check = client.register_script(self._check_source)
        self._evalsha_head = array_header(3 + _CHECK_KEYS + _CHECK_ARGC) + pack_parts(
            ("EVALSHA", self._check.sha, _CHECK_KEYS)
        )
        self._limit_resp: dict[_UsualArgs, bytes] = {}
        # A subject's windows repeat as its limits do (packing three took 2.5 µs).
        self._window_resp: dict[tuple[Window, ...], tuple[bytes, bytes, bytes]] = {}

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
        except (*STORAGE_ERRORS, ValueError, TypeError, IndexError) as exc:
            raise translate(exc) from exc

    async def release(self, keys: SubjectKeys, token: str) -> None:
        """ZREM of the slot's token."""
        wire = self._wire
        with storage_errors():
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
        with storage_errors():
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
