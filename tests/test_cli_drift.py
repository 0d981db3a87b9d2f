"""The ``floodwall`` command and an app configured differently, against a real redis-server:
which store and prefix it acts on, the defaults it shows, and the warning when no running
app received an action."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import pytest
import redis.asyncio
from cli_process import Done
from cli_process import floodwall_command as run_floodwall

from floodwall import Floodwall, FloodwallSettings, Identity, Outcome, __version__
from floodwall.cli import main
from harness import RedisServer

# The operator's shell: a default of its own, different from the app's.
SHELL = {"FLOODWALL_RATE": "10", "FLOODWALL_BURST": "10"}


async def floodwall_command(redis_url: str, *args: str, **env: str) -> Done:
    return await run_floodwall(redis_url, *args, **(SHELL | env))


@pytest.fixture
async def app(
    redis_client: redis.asyncio.Redis, redis_server: RedisServer
) -> AsyncIterator[Floodwall]:
    """An app on key prefix "myapp", started and following operator changes."""
    floodwall = Floodwall(
        FloodwallSettings(redis_url=redis_server.url, key_prefix="myapp", rate=2, burst=3)
    )
    await floodwall.start()
    await asyncio.wait_for(floodwall.following.wait(), 5)
    try:
        yield floodwall
    finally:
        await floodwall.stop()


def warning_for(prefix: str, server: RedisServer) -> str:
    return (
        f'floodwall: warning: no running app follows key prefix "{prefix}" on Redis at '
        f"127.0.0.1:{server.port} db 0: the change is stored, but no worker has received it"
    )


async def test_an_action_under_another_prefix_warns_and_the_right_prefix_blocks(
    app: Floodwall, redis_server: RedisServer
) -> None:
    url = redis_server.url
    wrong = await floodwall_command(url, "block", "dave", "--reason", "INC-1")
    # Stored (exit 0), under floodwall:, where no app looks: one warning line says so.
    assert wrong.status == 0, wrong.stderr
    assert wrong.warnings == [warning_for("floodwall", redis_server)]
    assert wrong.stderr.splitlines()[-1] == warning_for("floodwall", redis_server)
    assert (await app.status("dave")).blocked is False
    assert (await app.check(Identity("dave"))).outcome is Outcome.ALLOWED
    as_json = await floodwall_command(url, "unblock", "dave", "--json")
    assert json.loads(as_json.stdout)["received_by"] == 0
    assert as_json.warnings == [warning_for("floodwall", redis_server)]

    right = await floodwall_command(
        url, "block", "dave", "--reason", "INC-1", "--key-prefix", "myapp"
    )
    assert right.status == 0, right.stderr
    assert right.warnings == []
    assert "key prefix myapp" in right.stdout
    assert (await app.status("dave")).blocked is True
    assert (await app.check(Identity("dave"))).outcome is Outcome.BLOCKED
    # FLOODWALL_KEY_PREFIX is the default of --key-prefix; --json counts the app's worker.
    by_env = await floodwall_command(url, "revoke", "dave", "--json", FLOODWALL_KEY_PREFIX="myapp")
    assert by_env.warnings == []
    assert json.loads(by_env.stdout)["received_by"] == 1
    assert (await app.status("dave")).credentials_not_before_ms is not None


@pytest.mark.parametrize(
    "command",
    [
        ["unblock", "erin"],
        ["revoke", "erin"],
        ["reset-password", "erin"],
        ["clear-reset", "erin"],
        ["limit", "erin", "--rate", "1", "--burst", "1"],
        ["shadow", "erin"],
        ["default-limit", "--rate", "1", "--burst", "1"],
        ["default-limit", "--clear"],
    ],
    ids=lambda words: " ".join(words[:1] + [w for w in words if w == "--clear"]),
)
def test_every_action_warns_when_no_app_follows(
    command: list[str],
    redis_server: RedisServer,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main([*command, "--redis-url", redis_server.url, "--key-prefix", "nobody"]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[-1] == warning_for("nobody", redis_server)
    assert err.count("warning") == 1


@pytest.mark.parametrize("command", [["status", "erin"], ["blocked"], ["audit"], ["default-limit"]])
def test_reads_never_warn(
    command: list[str], redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main([*command, "--redis-url", redis_server.url, "--key-prefix", "nobody"]) == 0
    assert capsys.readouterr().err == ""


async def test_status_and_default_limit_show_the_store_and_both_defaults(
    app: Floodwall, redis_server: RedisServer
) -> None:
    url = redis_server.url
    store = f"Redis at 127.0.0.1:{redis_server.port} db 0, key prefix myapp"
    status = await floodwall_command(url, "status", "frank", "--key-prefix", "myapp")
    assert status.status == 0, status.stderr
    assert status.stdout.splitlines()[-3:] == [
        "live default limit        none (each app applies its configured default)",
        "configured default limit  10/s, burst 10 (this shell's settings)",
        f"store                     {store}",
    ]
    data = json.loads(
        (await floodwall_command(url, "status", "frank", "--json", "--key-prefix", "myapp")).stdout
    )
    assert data["store"] == store
    assert data["default_limit"] == {"live": None, "configured": {"rate": 10.0, "burst": 10}}
    assert "received_by" not in data
    assert "replicas" not in data

    # An operator's live default, then cleared: each shown beside this shell's setting.
    await app.set_default_limit(4, 5, actor="admin")
    shown = await floodwall_command(url, "default-limit", "--key-prefix", "myapp")
    assert shown.stdout.splitlines() == [
        "live default limit        4/s, burst 5 (set by an operator: every app applies it)",
        "configured default limit  10/s, burst 10 (this shell's settings)",
        f"store                     {store}",
    ]
    cleared = await floodwall_command(
        url, "default-limit", "--clear", "--json", "--key-prefix", "myapp"
    )
    assert cleared.status == 0, cleared.stderr
    assert json.loads(cleared.stdout) == {
        "rate": 10.0,
        "burst": 10,
        "store": store,
        "default_limit": {"live": None, "configured": {"rate": 10.0, "burst": 10}},
        "received_by": 1,
        "replicas": 0,
    }
    for _ in range(100):
        if app.default_limit == (2.0, 3):
            break
        await asyncio.sleep(0.01)
    assert app.default_limit == (2.0, 3)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0
    assert capsys.readouterr().out == f"floodwall {__version__}\n"


@pytest.mark.parametrize("prefix", ["", "a b", "x" * 65, "a:b"])
def test_a_key_prefix_the_app_could_not_have_is_refused_in_one_line(
    prefix: str, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["status", "alice", "--redis-url", redis_server.url, "--key-prefix", prefix]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("floodwall: error: ")
    assert "FLOODWALL_KEY_PREFIX" in line
