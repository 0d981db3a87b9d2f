"""Hostile ids in the ``floodwall`` command, against a real redis-server: readable output
shows them harmlessly (no escape sequence, no forged line or column), ``--json`` exactly,
and every id the middleware can limit can be named from a shell."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from cli_process import Done, environment, floodwall_command

from floodwall import Floodwall, FloodwallSettings, Identity
from harness import RedisServer

# Clears the screen, breaks the line, opens a column, and reverses what follows.
HOSTILE = "eve\x1b[2J\n\tforged\u202eexe.txt"
HOSTILE_SHOWN = "eve\\x1b[2J\\n\\tforged\\u202eexe.txt"
# What a name needs to forge a line of `floodwall audit` that the runbook's awk filters
# (`$2 == "admin"`, `$4 == "mallory"`) would pick up.
FORGER = "x\n2030-01-01T00:00:00.000+00:00\tadmin\tunblock\tmallory"
# The bytes a shell gives for $'\xed\xa0\x80': the lone surrogate U+D800, as keys.py stores it.
SURROGATE = "\ud800"
SURROGATE_ARGUMENT = b"\xed\xa0\x80"


def assert_harmless(text: str) -> None:
    """Lines of printable characters (no escape, no bidi control), tabs between columns."""
    for line in text.split("\n"):
        assert line.replace("\t", "").isprintable(), line


@pytest.fixture
async def app(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> AsyncIterator[Floodwall]:
    """A running app on the store: one request a second, auto-block after 3 refusals."""
    floodwall = Floodwall(
        FloodwallSettings(
            redis_url=redis_server.url, rate=1, burst=1, auto_block_refusals=3, redis_timeout=2
        )
    )
    await floodwall.start()
    await asyncio.wait_for(floodwall.following.wait(), 5)
    try:
        yield floodwall
    finally:
        await floodwall.stop()


async def bash(command: str, env: dict[str, str]) -> Done:
    """``command`` in an operator's bash, ``floodwall`` on its PATH."""
    path = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")
    process = await asyncio.create_subprocess_exec(
        "bash",
        "-c",
        command,
        env=env | {"PATH": path},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    return Done(process.returncode, stdout.decode(), stderr.decode())


async def refuse(app: Floodwall, user_id: str, times: int) -> None:
    for _ in range(times + 1):
        await app.check(Identity(user_id))
    await app.flush_refusals()


async def test_a_hostile_id_is_shown_harmlessly_everywhere_and_exactly_in_json(
    app: Floodwall, redis_server: RedisServer
) -> None:
    await refuse(app, HOSTILE, 2)
    url = redis_server.url
    blocked = await floodwall_command(url, "block", HOSTILE, "--reason", f"why:{HOSTILE}")
    assert blocked.status == 0, blocked.stderr
    # The action's status, with the reason and the id escaped.
    assert f"user                      {HOSTILE_SHOWN}\n" in blocked.stdout
    assert "by cli:" in blocked.stdout
    assert blocked.stdout.rstrip("\n").endswith("key prefix floodwall")
    assert f": why:{HOSTILE_SHOWN}\n" in blocked.stdout
    assert_harmless(blocked.stdout)
    # The audit line on stderr is JSON in ASCII.
    [audit_line] = blocked.stderr.splitlines()
    assert json.loads(audit_line)["user_id"] == HOSTILE

    status = await floodwall_command(url, "status", HOSTILE)
    assert status.stdout == blocked.stdout
    lines = status.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "user",
        "blocked",
        "credentials",
        "password",
        "limit",
        "live",
        "configured",
        "store",
    ]

    top = await floodwall_command(url, "top", "--once")
    assert top.status == 0, top.stderr
    assert_harmless(top.stdout)
    assert re.search(rf"^\s+2\s+user\s+{re.escape(HOSTILE_SHOWN)}$", top.stdout, re.M)
    # One line of its own in the table of subjects (the table of networks follows).
    assert len(top.stdout.split("\n\n")[0].splitlines()) == 3

    listed = await floodwall_command(url, "blocked")
    assert listed.status == 0, listed.stderr
    [row] = listed.stdout.splitlines()
    assert row.split("\t")[0] == HOSTILE_SHOWN
    assert row.split("\t")[3] == f"why:{HOSTILE_SHOWN}"
    assert len(row.split("\t")) == 4

    audit = await floodwall_command(url, "audit")
    assert audit.status == 0, audit.stderr
    [entry] = audit.stdout.splitlines()
    columns = entry.split("\t")
    assert columns[1].startswith("cli:")
    assert columns[2:] == ["block", HOSTILE_SHOWN, f"reason: why:{HOSTILE_SHOWN}"]

    # --json: exact, valid JSON, ASCII only.
    for command in (["status", HOSTILE], ["blocked"], ["audit"], ["top", "--once"]):
        done = await floodwall_command(url, *command, "--json")
        assert done.status == 0, done.stderr
        assert done.stdout.isascii()
        data = json.loads(done.stdout)
        item = data if command[0] == "status" else data["items"][0]
        assert item.get("user_id", item.get("subject")) == HOSTILE
    action = await floodwall_command(url, "unblock", HOSTILE, "--json")
    assert json.loads(action.stdout)["user_id"] == HOSTILE


async def test_an_auto_blocked_id_cannot_forge_an_audit_line_for_the_runbooks_filter(
    app: Floodwall, redis_server: RedisServer
) -> None:
    await refuse(app, FORGER, 5)
    await app.offenders.stop()
    assert (await app.status(FORGER)).blocked_by == "auto"
    env = environment(redis_server.url)

    async def runbook(command: str) -> str:
        done = await bash(command, env)
        assert done.status == 0, done.stderr
        return done.stdout

    # docs/runbook.md, "The admin token leaked" and "A user was blocked by mistake".
    assert await runbook("floodwall audit --limit 1000 | awk -F'\\t' '$2 == \"admin\"'") == ""
    assert await runbook("floodwall audit --limit 1000 | awk -F'\\t' '$4 == \"mallory\"'") == ""
    [line] = (await runbook("floodwall audit --limit 1000")).splitlines()
    columns = line.split("\t")
    forger_shown = "x\\n2030-01-01T00:00:00.000+00:00\\tadmin\\tunblock\\tmallory"
    assert columns[1:4] == ["auto", "block", forger_shown]
    assert columns[4].startswith("reason: auto-block: more than 3 refusals")
    assert json.loads(await runbook("floodwall audit --json"))["items"][0]["user_id"] == FORGER


async def test_a_lone_surrogate_id_is_named_from_a_shell_and_shown(
    app: Floodwall, redis_server: RedisServer
) -> None:
    await refuse(app, SURROGATE, 1)
    url = redis_server.url
    top = await floodwall_command(url, "top", "--once")
    assert top.status == 0, top.stderr
    assert re.search(r"^\s+1\s+user\s+\\ud800$", top.stdout, re.M)
    as_json = await floodwall_command(url, "top", "--once", "--json")
    assert json.loads(as_json.stdout)["items"] == [
        {"subject": SURROGATE, "anonymous": False, "refusals": 1}
    ]
    assert "\\ud800" in as_json.stdout
    # $'\xed\xa0\x80' names the subject the app limits.
    blocked = await floodwall_command(url, "block", SURROGATE_ARGUMENT, "--reason", "r")
    assert blocked.status == 0, blocked.stderr
    assert blocked.stdout.startswith("user                      \\ud800\n")
    assert (await app.status(SURROGATE)).blocked is True
    # Bytes that are not UTF-8 at all name the id Python reads from them.
    other = await floodwall_command(url, "status", b"\xff", "--json")
    assert json.loads(other.stdout)["user_id"] == "\udcff"


async def test_the_empty_id_and_ids_with_newlines_are_named_from_a_shell(
    app: Floodwall, redis_server: RedisServer
) -> None:
    env = environment(redis_server.url)
    for word, user_id in (("''", ""), ("$'a\\nb'", "a\nb"), ("-- -x", "-x")):
        done = await bash(f"floodwall block --reason r --json {word}", env)
        assert done.status == 0, done.stderr
        assert json.loads(done.stdout)["user_id"] == user_id
        assert (await app.status(user_id)).blocked is True


async def test_the_next_page_of_blocked_users_is_a_line_to_paste_into_bash(
    app: Floodwall, redis_server: RedisServer
) -> None:
    for user_id in (HOSTILE, "zed"):
        await app.block(user_id, reason="r")
    env = environment(redis_server.url)
    first = await bash("floodwall blocked --limit 1", env)
    assert first.status == 0, first.stderr
    [row, more] = first.stdout.splitlines()
    assert row.startswith(HOSTILE_SHOWN + "\t")
    assert more == "more: --cursor=$'eve\\x1b[2J\\n\\tforged\\xe2\\x80\\xaeexe.txt'"
    second = await bash(f"floodwall blocked --limit 1 {more.removeprefix('more: ')}", env)
    assert second.status == 0, second.stderr
    assert second.stdout.startswith("zed\t")
