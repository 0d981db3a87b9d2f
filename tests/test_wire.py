"""``WireClient``, the hot path's own Redis client, against real redis-server processes."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio

from floodwall.core.decision import decision_from_reply
from floodwall.stores.redis.wire import (
    NoScript,
    WireClient,
    WireConnectionError,
    WireError,
    WireReplyError,
    WireTimeout,
)
from harness import RedisServer

CHECK_LUA = (
    resources.files("floodwall.stores.redis").joinpath("lua", "check.lua").read_text("utf-8")
)
ECHO_LUA = "return {KEYS[1], ARGV[1], ARGV[2]}"
# Busy for ARGV[1] ms on Redis's clock, then answers: a slow reply, not a stopped server.
SLOW_LUA = """
local function now_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local stop = now_ms() + tonumber(ARGV[1])
while now_ms() < stop do end
return "done"
"""
PASSWORD = "s3cret pass"
# Bounds for "fast" and "on time" are loose: the machine is shared and noisy.
FAIL_FAST = 2.0
MARGIN = 2.0


def client_for(server: RedisServer, **options: Any) -> WireClient:
    options.setdefault("timeout", 5.0)
    options.setdefault("connect_timeout", 5.0)
    return WireClient("127.0.0.1", server.port, **options)


@pytest.fixture
async def wire(redis_server: RedisServer) -> AsyncIterator[WireClient]:
    async with client_for(redis_server) as client:
        yield client


@pytest.fixture
def own_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server this test may kill, pause or restart."""
    with RedisServer.start(tmp_path) as server:
        yield server


@contextlib.contextmanager
def password_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A server that requires ``PASSWORD``.

    Set after start: ``--requirepass`` on the command line would make the harness's
    readiness PING fail with NOAUTH until it gives up.
    """
    with RedisServer.start(tmp_path) as server:
        admin = redis.Redis(port=server.port)
        try:
            admin.config_set("requirepass", PASSWORD)
        finally:
            admin.close()
        yield server


async def connections_received(server: RedisServer) -> int:
    admin = redis.asyncio.Redis(port=server.port)
    try:
        stats = await admin.info("stats")
        return int(stats["total_connections_received"])
    finally:
        await admin.aclose()


# -- replies --------------------------------------------------------------------------------


async def test_check_lua_replies_exactly_as_through_redis_py(
    wire: WireClient, redis_client: redis.asyncio.Redis
) -> None:
    now = 1_800_000_000_000_000  # µs; ARGV[7] pins the script's clock
    subject = ("fw:{u:1}:bucket", "fw:{u:1}:state", "fw:{u:1}:revoked")
    # (ARGV without now, µs to move the clock first, state to set up first)
    steps: list[tuple[tuple[str | bytes | int, ...], int]] = [
        (("2.5", 3, 1, "", "", "0"), 0),
        (("2.5", 3, 1, "", "", "0"), 0),
        (("2.5", 3, 2, "", "", "0"), 0),  # over the burst: limited
        (("2.5", 3, 1, "", "", "0"), 400_000),  # one token back
        (("2.5", 3, 1, 1_799_999_999_000, b"cred-\xff", "0"), 0),
        (("0.001", 1, 1, "", "", "0"), 0),  # limit change: debt capped
    ]
    blocked = ("fw:{u:2}:bucket", "fw:{u:2}:state", "fw:{u:2}:revoked")
    revoked = ("fw:{u:3}:bucket", "fw:{u:3}:state", "fw:{u:3}:revoked")
    reset = ("fw:{u:4}:bucket", "fw:{u:4}:state", "fw:{u:4}:revoked")

    async def setup() -> None:
        await redis_client.flushall()
        await redis_client.hset(blocked[1], mapping={"blocked_until": 0, "rate": "7.5"})
        await redis_client.zadd(revoked[2], {b"cred-\xff": 1_900_000_000_000})
        await redis_client.hset(reset[1], mapping={"reset_required": "1"})

    def calls() -> Iterator[tuple[tuple[str, ...], tuple[str | bytes | int, ...]]]:
        clock = now
        for args, advance in steps:
            clock += advance
            yield subject, (*args, clock)
        yield blocked, ("1", 5, 1, "", "", "0", clock)
        yield revoked, ("1", 5, 1, "", b"cred-\xff", "0", clock)
        yield reset, ("1", 5, 1, "", "", "0", clock)
        yield reset, ("1", 5, 1, "", "", "1", clock)
        yield subject, ("1", 5, 1, "", "", "0", "")  # Redis TIME: only the type is compared

    await setup()
    script = redis_client.register_script(CHECK_LUA)
    expected = [await script(keys=keys, args=args) for keys, args in calls()]
    await setup()
    sha = await wire.script_load(CHECK_LUA)
    assert sha == script.sha
    got = [await wire.evalsha(sha, keys, args) for keys, args in calls()]

    assert got[:-1] == expected[:-1]
    assert [type(value) for value in got[-1]] == [type(value) for value in expected[-1]]
    # The steps cover every reply code.
    codes = [decision_from_reply(reply).outcome for reply in got[:-1]]
    assert codes == [0, 0, 1, 0, 0, 1, 2, 3, 4, 0]


@pytest.mark.parametrize("connections", [1, 2])
async def test_500_concurrent_calls_each_get_their_own_reply(
    redis_server: RedisServer, connections: int
) -> None:
    async with client_for(redis_server, connections=connections) as wire:
        sha = await wire.script_load(ECHO_LUA)
        # Some requests and replies far larger than a socket read, so replies arrive split
        # across reads and several replies share one read.
        big = {i: "x" * 200_000 + str(i) for i in range(0, 500, 50)}
        replies = await asyncio.gather(
            *(wire.evalsha(sha, [f"k{i}"], [big.get(i, str(i)), i]) for i in range(500))
        )
    for i, reply in enumerate(replies):
        assert reply == [f"k{i}".encode(), big.get(i, str(i)).encode(), str(i).encode()]


async def test_error_replies_raise_and_leave_the_connection_usable(wire: WireClient) -> None:
    await wire.execute("SET", "wire:text", "not a number")
    with pytest.raises(WireReplyError, match="not an integer") as caught:
        await wire.execute("INCR", "wire:text")
    assert not isinstance(caught.value, NoScript)
    assert await wire.execute("PING") == b"PONG"


async def test_noscript_after_script_flush_then_load_and_retry(wire: WireClient) -> None:
    sha = await wire.script_load(ECHO_LUA)
    assert await wire.evalsha(sha, ["k"], ["a", 1]) == [b"k", b"a", b"1"]
    assert await wire.execute("SCRIPT", "FLUSH") == b"OK"

    with pytest.raises(NoScript, match=r"^NOSCRIPT") as caught:
        await wire.evalsha(sha, ["k"], ["a", 1])
    assert isinstance(caught.value, WireReplyError)

    assert await wire.script_load(ECHO_LUA) == sha
    assert await wire.evalsha(sha, ["k"], ["a", 1]) == [b"k", b"a", b"1"]


async def test_an_unsendable_argument_fails_before_anything_is_sent(wire: WireClient) -> None:
    with pytest.raises(TypeError):
        await wire.execute("SET", "wire:flag", True)  # bool is an int to mypy, not to Redis
    assert await wire.execute("PING") == b"PONG"


async def test_cancelled_callers_do_not_shift_replies_to_others(wire: WireClient) -> None:
    sha = await wire.script_load(ECHO_LUA)
    tasks = [asyncio.ensure_future(wire.evalsha(sha, ["k"], [i, i])) for i in range(200)]
    await asyncio.sleep(0)  # every request is queued
    for task in tasks[::2]:
        task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    for i, result in enumerate(results):
        if i % 2:
            assert result == [b"k", str(i).encode(), str(i).encode()]
        else:
            assert isinstance(result, asyncio.CancelledError)
    assert await wire.evalsha(sha, ["k"], ["after", 0]) == [b"k", b"after", b"0"]


async def test_concurrent_first_calls_share_one_connection(own_server: RedisServer) -> None:
    before = await connections_received(own_server)
    async with client_for(own_server) as wire:
        replies = await asyncio.gather(*(wire.execute("PING") for _ in range(50)))
        assert replies == [b"PONG"] * 50
        assert await connections_received(own_server) - before == 2  # ours + the count's
    async with client_for(own_server, connections=2) as wire:
        await asyncio.gather(*(wire.execute("PING") for _ in range(50)))
        assert await connections_received(own_server) - before == 2 + 2 + 1


async def test_close_fails_requests_in_flight_and_a_later_call_reconnects(
    own_server: RedisServer,
) -> None:
    wire = client_for(own_server)
    await wire.execute("PING")
    own_server.pause()
    try:
        in_flight = asyncio.ensure_future(wire.execute("PING"))
        await asyncio.sleep(0.05)
        await wire.close()
        with pytest.raises(WireConnectionError, match="closed"):
            await in_flight
    finally:
        own_server.resume()
    try:
        assert await wire.execute("PING") == b"PONG"
    finally:
        await wire.close()


async def test_close_while_connecting_fails_the_waiters_not_as_cancelled(
    own_server: RedisServer,
) -> None:
    # db=1: the SELECT of the handshake hangs on a paused server, so the connect stays
    # under way until close() stops it.
    wire = client_for(own_server, db=1)
    own_server.pause()
    try:
        waiters = [asyncio.ensure_future(wire.execute("PING")) for _ in range(3)]
        await asyncio.sleep(0.05)
        await wire.close()
        for waiter in waiters:
            with pytest.raises(WireConnectionError, match="closed"):
                await waiter
    finally:
        own_server.resume()
    try:
        assert await wire.execute("PING") == b"PONG"
    finally:
        await wire.close()


async def test_no_spurious_timeouts_for_replies_within_the_timeout(
    own_server: RedisServer,
) -> None:
    async with client_for(own_server, timeout=1.0) as wire:
        slow = await wire.script_load(SLOW_LUA)
        # Requests spread over several timeouts, so the deadline timer re-arms many times.
        started = time.monotonic()
        while time.monotonic() - started < 2.5:
            await asyncio.gather(wire.execute("PING"), wire.evalsha(slow, [], [300]))
            await asyncio.sleep(0.1)
        # A reply that takes most of the timeout is still delivered.
        assert await wire.evalsha(slow, [], [600]) == b"done"


# -- failures -------------------------------------------------------------------------------


async def test_a_killed_server_fails_fast_and_the_client_recovers(
    own_server: RedisServer,
) -> None:
    async with client_for(own_server, timeout=10.0, connect_timeout=10.0) as wire:
        assert await wire.execute("PING") == b"PONG"
        # Requests in flight when the server dies.
        own_server.pause()
        in_flight = [asyncio.ensure_future(wire.execute("PING")) for _ in range(5)]
        await asyncio.sleep(0.05)
        started = time.monotonic()
        own_server.kill()
        for future in in_flight:
            with pytest.raises(WireConnectionError):
                await future
        assert time.monotonic() - started < FAIL_FAST

        # Nothing listening: refused, not a wait for the timeout.
        for _ in range(3):
            started = time.monotonic()
            with pytest.raises(WireConnectionError, match="cannot connect"):
                await wire.execute("PING")
            assert time.monotonic() - started < FAIL_FAST

        own_server.restart(keep_data=False)
        assert await wire.execute("PING") == b"PONG"


async def test_a_paused_server_times_out_and_the_client_recovers(
    own_server: RedisServer,
) -> None:
    timeout = 0.5
    async with client_for(own_server, timeout=timeout, connect_timeout=timeout) as wire:
        sha = await wire.script_load(ECHO_LUA)
        own_server.pause()
        try:
            started = time.monotonic()
            results = await asyncio.gather(
                *(wire.evalsha(sha, ["k"], [i, i]) for i in range(20)), return_exceptions=True
            )
            elapsed = time.monotonic() - started
            assert all(isinstance(result, WireTimeout) for result in results), results
            assert timeout * 0.9 <= elapsed < timeout + MARGIN

            # Still paused: a new connection is accepted by the kernel, and times out too.
            started = time.monotonic()
            with pytest.raises(WireTimeout):
                await wire.execute("PING")
            assert time.monotonic() - started < timeout + MARGIN
        finally:
            own_server.resume()
        assert await wire.evalsha(sha, ["k"], ["back", 1]) == [b"k", b"back", b"1"]


async def test_connecting_is_bounded_by_the_connect_timeout(own_server: RedisServer) -> None:
    # The kernel accepts the connection of a paused server; the handshake's SELECT hangs.
    async with client_for(own_server, db=1, timeout=30.0, connect_timeout=0.3) as wire:
        own_server.pause()
        try:
            started = time.monotonic()
            with pytest.raises(WireTimeout, match=r"^connecting to .* took over 0\.3s"):
                await wire.execute("PING")
            assert 0.3 * 0.9 <= time.monotonic() - started < 0.3 + MARGIN
        finally:
            own_server.resume()
        assert await wire.execute("PING") == b"PONG"


async def test_a_reply_slower_than_the_timeout_fails_its_connection(
    own_server: RedisServer,
) -> None:
    async with client_for(own_server, timeout=0.3) as wire:
        slow = await wire.script_load(SLOW_LUA)
        started = time.monotonic()
        with pytest.raises(WireTimeout, match=r"within 0\.3s"):
            await wire.evalsha(slow, [], [1000])
        assert time.monotonic() - started < 0.3 + MARGIN
        # Redis runs one script at a time: let it finish and send its late reply, which
        # must not reach the next request.
        await asyncio.sleep(max(0.0, started + 1.2 - time.monotonic()))
        sha = await wire.script_load(ECHO_LUA)
        assert await wire.evalsha(sha, ["k"], ["fresh", 2]) == [b"k", b"fresh", b"2"]


# -- connection setup -----------------------------------------------------------------------


async def test_auth_with_a_password(tmp_path: Path) -> None:
    with password_server(tmp_path) as server:
        async with client_for(server, password=PASSWORD) as wire:
            assert await wire.execute("PING") == b"PONG"
        async with client_for(server, username="default", password=PASSWORD) as wire:
            assert await wire.execute("PING") == b"PONG"

        async with client_for(server, password="wrong") as wire:
            with pytest.raises(WireConnectionError, match=r"AUTH on .* failed: WRONGPASS"):
                await wire.execute("PING")
            # Still refused on the next call, with the same clear message.
            with pytest.raises(WireConnectionError, match="WRONGPASS"):
                await wire.execute("PING")

        async with client_for(server) as wire:
            with pytest.raises(WireReplyError, match=r"^NOAUTH"):
                await wire.execute("PING")


async def test_from_url_authenticates_and_selects_the_database(tmp_path: Path) -> None:
    with password_server(tmp_path) as server:
        url = f"redis://:s3cret%20pass@127.0.0.1:{server.port}/3"
        async with WireClient.from_url(url, timeout=5, connect_timeout=5) as wire:
            assert await wire.execute("SET", "wire:where", "db3") == b"OK"
        check = redis.asyncio.Redis(port=server.port, password=PASSWORD, db=3)
        try:
            assert await check.get("wire:where") == b"db3"
        finally:
            await check.aclose()


@pytest.mark.parametrize(
    "url",
    [
        "rediss://127.0.0.1:6379?ssl_ciphers=ALL",
        "rediss://127.0.0.1:6379?ssl_cert_reqs=sometimes",
        "rediss://127.0.0.1:6379?ssl_ca_certs=/nonexistent/ca.crt",
        "unix:///tmp/redis.sock",
        "redis://127.0.0.1:6379?protocol=3",
        "redis://127.0.0.1:6379/zero",
    ],
)
def test_from_url_refuses_what_it_does_not_do(url: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        WireClient.from_url(url)


def test_errors_are_catchable_as_builtin_kinds() -> None:
    # Code that maps OSError to a storage failure covers connection failures and timeouts.
    assert issubclass(WireConnectionError, ConnectionError)
    assert issubclass(WireTimeout, TimeoutError)
    for kind in (NoScript, WireReplyError, WireConnectionError, WireTimeout):
        assert issubclass(kind, WireError)


def test_a_client_can_move_to_a_new_event_loop(redis_server: RedisServer) -> None:
    wire = client_for(redis_server)
    first, second = asyncio.new_event_loop(), asyncio.new_event_loop()
    try:
        assert first.run_until_complete(wire.execute("PING")) == b"PONG"
        # The first loop's connection cannot serve the second loop: a new one is opened.
        assert second.run_until_complete(wire.execute("PING")) == b"PONG"
        second.run_until_complete(wire.close())
        first.run_until_complete(asyncio.sleep(0.01))  # lets the old socket close
    finally:
        first.close()
        second.close()
