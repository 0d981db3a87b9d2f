"""The ``floodwall`` command against a real redis-server: what it shows, what it logs, what
it takes. Commands run as real processes, as an operator runs them, unless a test is about
calling ``main`` from a program."""

from __future__ import annotations

import json
import logging
import os
import re
from typing import Any

import pytest
import redis.asyncio
from cli_process import Done
from cli_process import floodwall_command as run_floodwall

from floodwall import Floodwall, FloodwallSettings
from floodwall.cli import main
from floodwall.core.errors import ConfigurationError
from floodwall.observe.request_log import JsonFormatter
from floodwall.stores.redis import RedisStore
from harness import RedisServer

# What the operator's shell says; the app's live default (in Redis) differs.
SHELL_DEFAULT = {"FLOODWALL_RATE": "10", "FLOODWALL_BURST": "10"}
ACTIONS = [
    "block",
    "unblock",
    "revoke",
    "reset-password",
    "clear-reset",
    "limit",
    "shadow",
    "default-limit",
]
READS = [["status", "alice"], ["top", "--once"], ["blocked"], ["audit"]]


async def floodwall_command(redis_url: str, *args: str) -> Done:
    return await run_floodwall(redis_url, *args, **SHELL_DEFAULT)


def limit_line(stdout: str) -> str:
    match = re.search(r"^limit\s+(.*)$", stdout, re.M)
    assert match is not None, stdout
    return match.group(1)


async def test_statuses_and_default_limit_show_the_live_default(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    # The app's operators changed the default through the admin API (or another shell).
    app = Floodwall(FloodwallSettings(redis_url=redis_server.url, redis_timeout=2))
    try:
        await app.set_default_limit(3.0, 4, actor="admin")
    finally:
        await app.stop()

    status = await floodwall_command(redis_server.url, "status", "bob")
    assert status.status == 0, status.stderr
    assert limit_line(status.stdout) == "3/s, burst 4 (default)"
    as_json = await floodwall_command(redis_server.url, "status", "bob", "--json")
    assert json.loads(as_json.stdout)["limit"]["rate"] == 3.0
    # An action prints the user's status too.
    blocked = await floodwall_command(redis_server.url, "block", "bob", "--reason", "r")
    assert limit_line(blocked.stdout) == "3/s, burst 4 (default)"
    listed = await floodwall_command(redis_server.url, "blocked", "--json")
    assert json.loads(listed.stdout)["items"][0]["limit"]["burst"] == 4
    shown = await floodwall_command(redis_server.url, "default-limit")
    assert shown.stdout == (
        "live default limit        3/s, burst 4 (set by an operator: every app applies it)\n"
        "configured default limit  10/s, burst 10 (this shell's settings)\n"
        f"store                     Redis at 127.0.0.1:{redis_server.port} db 0, "
        "key prefix floodwall\n"
    )


async def test_an_action_logs_one_json_audit_line_on_stderr(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> None:
    done = await floodwall_command(
        redis_server.url, "block", "alice", "--reason", "INC-1", "--ttl", "1h", "--actor", "cli:ci"
    )
    assert done.status == 0, done.stderr
    # Then the warning that no app follows this store (none runs in this test).
    [raw, warning] = done.stderr.splitlines()
    assert warning.startswith("floodwall: warning: no running app follows")
    line: dict[str, Any] = json.loads(raw)
    # The record's fields at the top level; the message carries them too, for formatters
    # that print only the message.
    assert line["logger"] == "floodwall.audit"
    assert line["level"] == "info"
    prefix, _, record = line["message"].partition(" {")
    assert prefix == "floodwall: block"
    in_message = json.loads("{" + record)
    for field in ("event", "actor", "action", "user_id", "reason", "expires"):
        assert in_message[field] == line[field]
    assert line["event"] == "floodwall.audit"
    assert (line["actor"], line["action"], line["user_id"]) == ("cli:ci", "block", "alice")
    assert line["reason"] == "INC-1"
    assert line["expires"].startswith("20")
    # The same record as in the audit stream; a read logs nothing.
    audit = await floodwall_command(redis_server.url, "audit", "--json")
    assert audit.stderr == ""
    [stored] = json.loads(audit.stdout)["items"]
    assert {k: line[k] for k in stored} == stored


def test_a_program_that_set_up_logging_gets_each_audit_line_once(
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # pytest's handlers on the root logger stand for the program's own logging setup.
    caplog.set_level(logging.INFO, logger="floodwall.audit")
    argv = ["shadow", "in-process", "--redis-url", redis_server.url, "--actor", "py"]
    assert main(argv) == 0
    [record] = [r for r in caplog.records if r.name == "floodwall.audit"]
    assert "floodwall.audit" not in capsys.readouterr().err
    line = json.loads(JsonFormatter().format(record))
    assert (line["action"], line["user_id"], line["actor"]) == ("shadow-on", "in-process", "py")
    assert logging.getLogger("floodwall.audit").handlers == []


@pytest.mark.parametrize("command", READS, ids=[words[0] for words in READS])
def test_reads_take_no_actor(
    command: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FLOODWALL_REDIS_URL", raising=False)
    assert main([*command, "--actor", "bob"]) == 2
    assert capsys.readouterr().err == "floodwall: error: unrecognized arguments: --actor bob\n"


@pytest.mark.parametrize("command", ACTIONS)
def test_actions_take_an_actor(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([command, "--help"])
    assert exited.value.code == 0
    assert " --actor ACTOR" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["option", "variable"])
def test_a_redis_url_without_its_host_never_shows_the_password(
    how: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # No @host: the password reads as the port, and Python's error would quote it.
    url = "redis://default:SuperSecretPw"
    for name in [name for name in os.environ if name.upper().startswith("FLOODWALL_")]:
        monkeypatch.delenv(name)
    if how == "variable":
        monkeypatch.setenv("FLOODWALL_REDIS_URL", url)
        code = main(["status", "alice"])
    else:
        code = main(["status", "alice", "--redis-url", url])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("floodwall: error: bad settings: FLOODWALL_REDIS_URL has a port ")
    assert len(err.strip().splitlines()) == 1
    assert "SuperSecretPw" not in err


def test_a_store_given_an_unusable_url_never_shows_it() -> None:
    url = "redis://default:SuperSecretPw"
    for cluster in (False, True):
        with pytest.raises(ConfigurationError) as caught:
            RedisStore.from_url(url, prefix="p", cluster=cluster, timeout=1)
        assert str(caught.value) == "FLOODWALL_REDIS_URL is not a URL redis-py can use"
        assert caught.value.__cause__ is None
        assert caught.value.__suppress_context__


def test_help_lists_every_command_in_order_with_what_it_does(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COLUMNS", "100")
    with pytest.raises(SystemExit) as exited:
        main(["--help"])
    assert exited.value.code == 0
    listing = capsys.readouterr().out.split("  COMMAND\n")[1].split("\n\n")[0]
    assert listing.split("\n") == [
        "    demo           serve the demo app",
        "    block          refuse every request of a user, or of many (403)",
        "    block-network  refuse every request from inside a network (403), on every worker",
        "    unblock-network",
        "                   lift a network block",
        "    unblock        lift a block",
        "    revoke         refuse every credential issued up to now (401)",
        "    reset-password",
        "                   require a password reset (revokes too)",
        "    clear-reset    clear a required password reset",
        "    limit          give a user a limit of their own",
        "    concurrency    give a user a limit of requests in flight",
        "    status         show a user's status",
        "    shadow         observe a user's limit without enforcing it",
        "    top            the most refused users and clients, refreshed live",
        "    default-limit  show or change the default limit on every worker",
        "    route-limit    show or change a route's limit, for everyone or for one user",
        "    plan           show the plans' limits, or change one on every worker",
        "    blocked        list blocked users (or networks)",
        "    audit          show operator actions, newest first",
    ]


# Every command that works on the store, each answer of a different shape, in an order
# where each finds what the one before left.
EVERY_COMMAND = [
    ["block", "alice", "--reason", "r"],
    ["block", "bob", "carol", "--reason", "r"],
    ["block-network", "10.0.0.0/8", "--reason", "r"],
    ["blocked"],
    ["blocked", "--networks"],
    ["unblock-network", "10.0.0.0/8"],
    ["unblock", "alice"],
    ["revoke", "alice"],
    ["revoke", "alice", "--credential-id", "jti-1"],
    ["reset-password", "alice"],
    ["clear-reset", "alice"],
    ["limit", "alice", "--rate", "5", "--burst", "5"],
    ["concurrency", "alice", "3"],
    ["shadow", "alice"],
    ["status", "alice"],
    ["default-limit", "--rate", "3", "--burst", "4"],
    ["default-limit"],
    ["route-limit", "POST /login", "5/minute"],
    ["route-limit", "POST /login", "1/second", "--user", "alice"],
    ["route-limit"],
    ["top", "--once"],
    ["audit"],
]


@pytest.mark.parametrize("form", ["readable", "json"])
def test_every_command_answers_in_both_forms(
    form: str, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    for command in EVERY_COMMAND:
        extra = ["--json"] if form == "json" else []
        assert main([*command, "--redis-url", redis_server.url, *extra]) == 0, command
        out = capsys.readouterr().out
        assert out.endswith("\n"), command
        if form == "json":
            assert isinstance(json.loads(out), dict), command
        else:
            assert "{" not in out.split("\n")[0], command
