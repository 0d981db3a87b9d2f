"""The harness's polling and MONITOR helpers (its servers: test_servers.py)."""

from __future__ import annotations

import itertools

import pytest
import redis
import redis.asyncio

from harness import (
    RedisMonitor,
    RedisServer,
    client_commands,
    parse_monitor_line,
    wait_until,
    wait_until_async,
)


def test_wait_until_returns_the_first_true_answer() -> None:
    answers = iter([0, None, "", 42])
    assert wait_until(lambda: next(answers), "an answer", within=1, interval=0) == 42


def test_wait_until_says_what_it_waited_for_and_the_details() -> None:
    with pytest.raises(TimeoutError, match=r"(?s)after 0.05 s waiting until the moon.*last: 3"):
        wait_until(lambda: False, "the moon", within=0.05, details=lambda: "last: 3")


def test_a_condition_that_raises_ends_the_wait() -> None:
    def hopeless() -> bool:
        raise RuntimeError("the process exited")

    with pytest.raises(RuntimeError, match="exited"):
        wait_until(hopeless, "it starts", within=5)


async def test_wait_until_async_takes_plain_and_async_conditions() -> None:
    counter = itertools.count()
    assert await wait_until_async(lambda: next(counter) >= 3, "three", within=1) is True

    async def ready() -> str | None:
        return "ready" if next(counter) >= 6 else None

    assert await wait_until_async(ready, "six", within=1) == "ready"
    with pytest.raises(TimeoutError, match="never"):
        await wait_until_async(lambda: False, "never", within=0.03)


def test_parse_monitor_line() -> None:
    assert parse_monitor_line('1700000000.123456 [0 127.0.0.1:5000] "SET" "k" "v"') == (
        "127.0.0.1:5000",
        "set",
    )
    assert parse_monitor_line('1700000000.123456 [0 lua] "time"') == ("lua", "time")
    assert parse_monitor_line("OK") is None


def test_client_commands_counts_what_clients_send_not_what_scripts_run(
    redis_server: RedisServer,
) -> None:
    with redis.Redis.from_url(redis_server.url) as client:
        client.ping()
        with client_commands(redis_server.port) as seen:
            client.set("k", "v")
            client.eval("return redis.call('GET', KEYS[1])", 1, "k")
        assert seen == ["SET", "EVAL"]


async def test_redis_monitor_async_keeps_the_lines_of_the_block(
    redis_server: RedisServer, redis_client: redis.asyncio.Redis
) -> None:
    await redis_client.ping()
    async with RedisMonitor(redis_server.port) as monitor:
        await redis_client.echo("inside")
    await redis_client.echo("after")
    parsed = [parse_monitor_line(line) for line in monitor.lines]
    assert [command for _, command in filter(None, parsed)] == ["echo"]
    assert '"inside"' in monitor.lines[0]
