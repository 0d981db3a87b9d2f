"""docs/runbook.md, run for real: every command of its ```sh blocks, in document order.

A real redis-server (with AOF, as the runbook asks) and the demo as a real process stand in
for production. Each command runs with ``bash -c`` in an operator's shell: ``APP``,
``FLOODWALL_REDIS_URL`` and ``FLOODWALL_ADMIN_TOKEN`` are set, and variables a command
assigns (``MALLORY_TOKEN=$(...)``, ``export ...``) carry over to the next command, as they
would in one terminal. What the runbook leaves to prose (restarting Redis or the workers)
and the world around it (the flood, an attacker with the leaked token) are the steps'
``before`` hooks.

``STEPS`` lists every command of the runbook, verbatim and in order, with what it must
print; a command added to the runbook without a step fails
``test_every_runbook_command_has_a_step``.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import pytest
from demo_process import wait_until_serving

from floodwall.cli import main as cli_main
from floodwall.settings import FloodwallSettings
from harness import RedisServer, find_free_port, wait_until

RUNBOOK = Path(__file__).resolve().parent.parent / "docs" / "runbook.md"
ADMIN_TOKEN = "runbook-admin-token-0123456789"
JWT_SECRET = "runbook-jwt-signing-key-0123456789abcdef"
COMMAND_TIMEOUT = 30.0
# The hooks wait on the demo over HTTP: up to 10 s, asking every 50 ms.
WAIT = 10.0
POLL = 0.05
# Languages a fenced block may have; only ``sh`` blocks hold commands to run.
FENCES = {"sh", "json", "text", "python"}


# -- reading the runbook ---------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    """One command of a ```sh block: ``\\`` continuations joined into one line."""

    text: str
    line: int
    section: str


def runbook_commands(markdown: str) -> list[Command]:
    """Every command of the ```sh blocks, in order; blank and comment lines skipped."""
    commands: list[Command] = []
    section = ""
    fence: str | None = None
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(markdown.splitlines(), start=1):
        stripped = raw.strip()
        if fence is None:
            if stripped.startswith("```"):
                fence = stripped[3:].strip()
            elif raw.startswith("## "):
                section = raw[3:].strip()
            continue
        if stripped.startswith("```"):
            assert not pending, f"line {number}: a block ends inside a continued command"
            fence = None
            continue
        if fence != "sh":
            continue
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if not pending:
            start = number
        continued = stripped.endswith("\\")
        pending.append(stripped[:-1].strip() if continued else stripped)
        if not continued:
            commands.append(Command(" ".join(pending), start, section))
            pending = []
    assert fence is None, "the runbook ends inside a fenced block"
    return commands


def fence_languages(markdown: str) -> list[str]:
    languages: list[str] = []
    inside = False
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            if not inside:
                languages.append(line.strip()[3:].strip())
            inside = not inside
    return languages


# -- the world the commands run in -------------------------------------------------------


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


class World:
    """Redis, the demo app on a fixed port, and the operator's shell environment."""

    def __init__(self, tmp_path: Path, redis: RedisServer) -> None:
        self.tmp = tmp_path
        self.redis = redis
        self.port = find_free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app_env: dict[str, str] = {
            "FLOODWALL_REDIS_URL": redis.url,
            "FLOODWALL_REDIS_TIMEOUT": "0.5",
            "FLOODWALL_JWT_SECRET": JWT_SECRET,
            "FLOODWALL_ADMIN_TOKEN": ADMIN_TOKEN,
            "FLOODWALL_RATE": "1",
            "FLOODWALL_BURST": "5",
            # Logins and the anonymous probes must not run out of tokens.
            "FLOODWALL_ANONYMOUS_RATE": "100",
            "FLOODWALL_ANONYMOUS_BURST": "100",
            "FLOODWALL_AUTO_BLOCK_REFUSALS": "100",
            "FLOODWALL_BREAKER_COOLDOWN": "0.5",
            # The hooks speak from other networks through X-Forwarded-For.
            "FLOODWALL_TRUSTED_PROXIES": "127.0.0.1",
        }
        self._process: subprocess.Popen[bytes] | None = None
        self.log_path = tmp_path / "demo.log"
        self.state_path = tmp_path / "shell.env"
        base = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
        self.env: dict[str, str] = base | {
            "APP": self.url,
            "FLOODWALL_REDIS_URL": redis.url,
            "FLOODWALL_ADMIN_TOKEN": ADMIN_TOKEN,
            "PATH": os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""),
        }

    # The demo, restartable on the same port (the runbook's $APP does not change).

    def start_demo(self) -> None:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
        environment.update(self.app_env)
        with self.log_path.open("ab") as log:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "floodwall.cli", "demo", "--port", str(self.port)],
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_serving(self._process, self.url, self.log_path)

    def stop_demo(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def restart_demo(self, **changes: str | None) -> None:
        for name, value in changes.items():
            if value is None:
                self.app_env.pop(name, None)
            else:
                self.app_env[name] = value
        self.stop_demo()
        self.start_demo()

    def demo_log(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    # The operator's shell: one `bash -c` per command, variables carried over.

    def run(self, command: str) -> Result:
        script = "set -a\ntrap 'env -0 > \"$RUNBOOK_STATE\"' EXIT\n" + command + "\n"
        done = subprocess.run(
            ["bash", "-c", script],
            env=self.env | {"RUNBOOK_STATE": str(self.state_path)},
            cwd=self.tmp,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
        after: dict[str, str] = {}
        for entry in self.state_path.read_text().split("\0"):
            name, sep, value = entry.partition("=")
            if sep and name not in {"_", "SHLVL", "PWD", "OLDPWD", "RUNBOOK_STATE"}:
                after[name] = value
        self.env = after
        return Result(done.returncode, done.stdout, done.stderr)

    # What the hooks use to act on the world and to look at it.

    def token(self, user: str) -> str:
        now = round(time.time(), 3)
        claims = {"sub": user, "iat": now, "exp": int(now) + 600, "jti": uuid.uuid4().hex}
        return jwt.encode(claims, JWT_SECRET, algorithm="HS256")

    def hammer(self, user: str | None, count: int, address: str | None = None) -> list[int]:
        """``count`` requests to /api/hello as ``user`` (anonymous for ``None``), from
        ``address`` when given (X-Forwarded-For: the demo trusts 127.0.0.1)."""
        headers = {} if user is None else {"authorization": f"Bearer {self.token(user)}"}
        if address is not None:
            headers["x-forwarded-for"] = address
        with httpx.Client(base_url=self.url, timeout=5) as client:
            return [client.get("/api/hello", headers=headers).status_code for _ in range(count)]

    def admin(
        self, method: str, path: str, *, token: str | None = None, body: Any = None
    ) -> httpx.Response:
        token = token if token is not None else self.env["FLOODWALL_ADMIN_TOKEN"]
        response = httpx.request(
            method,
            self.url + path,
            headers={"authorization": f"Bearer {token}"},
            json=body,
            timeout=5,
        )
        assert response.status_code == 200, response.text
        return response

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=5).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.M)
        assert match is not None, f"{name} not in /metrics"
        return float(match.group(1))

    def top(self) -> list[str]:
        items = self.admin("GET", "/admin/top?window=60").json()["items"]
        return [str(item["subject"]) for item in items]

    def status(self, user: str) -> dict[str, Any]:
        data: dict[str, Any] = self.admin("GET", f"/admin/users/{user}").json()
        return data


# -- what happens around the runbook (the hooks) ------------------------------------------


def mallory_floods(world: World) -> None:
    codes = world.hammer("mallory", 30)
    assert codes.count(429) >= 20, codes
    # Refusals reach the store (and `top`) in a flush every second.
    wait_until(lambda: "mallory" in world.top(), "mallory shows in top", within=WAIT, interval=POLL)


def mallory_streams(world: World) -> None:
    """An open stream of mallory's, for the block to cut (once the flood's refusals let a
    request through: the bucket refills a token a second)."""
    headers = {"authorization": f"Bearer {world.token('mallory')}"}
    opened = threading.Event()
    seen: list[int] = []

    def stream() -> None:
        with httpx.Client(base_url=world.url, timeout=30) as client:
            for _ in range(int(WAIT / 0.5)):
                with client.stream("GET", "/api/stream?n=600&ms=100", headers=headers) as answer:
                    seen.append(answer.status_code)
                    if answer.status_code == 200:
                        opened.set()
                        for _line in answer.iter_lines():
                            pass
                        return
                time.sleep(0.5)

    threading.Thread(target=stream, daemon=True).start()
    assert opened.wait(WAIT), f"mallory's stream did not open: {seen}"


def redis_dies(world: World) -> None:
    # Someone is blocked before Redis goes: the block must keep holding from the mirror.
    world.admin("PUT", "/admin/users/eve/block", body={"reason": "card fraud, INC-1200"})
    eve = world.token("eve")
    world.redis.kill()

    def breaker_opened() -> bool:
        world.hammer(None, 1)
        return world.metric("floodwall_breaker_open") == 1

    wait_until(breaker_opened, "the breaker opens", within=WAIT, interval=POLL)
    with httpx.Client(base_url=world.url, timeout=5) as client:
        refused = client.get("/api/hello", headers={"authorization": f"Bearer {eve}"})
    assert refused.status_code == 403, refused.text


def redis_comes_back(world: World) -> None:
    world.redis.restart()

    def breaker_closed() -> bool:
        world.hammer(None, 1)
        return world.metric("floodwall_breaker_open") == 0

    wait_until(breaker_closed, "the breaker closes again", within=WAIT, interval=POLL)


def token_leaks_then_is_rotated(world: World) -> None:
    leaked = world.env["FLOODWALL_ADMIN_TOKEN"]
    # What an attacker did with it before anyone noticed.
    world.admin("PUT", "/admin/users/alice/block", token=leaked, body={"reason": "lol"})
    world.admin("PUT", "/admin/users/mallory/shadow", token=leaked)
    # The prose step: new token in the configuration, every worker restarted.
    new = world.env["NEW_TOKEN"]
    world.restart_demo(FLOODWALL_ADMIN_TOKEN=None, FLOODWALL_ADMIN_TOKENS=f"oncall:{new}")


def alice_gets_auto_blocked(world: World) -> None:
    # Over 100 refusals in 10 s: on a loaded machine the tarpit holds refusals back (the
    # worker lags), so alice keeps going, as a flood does, until auto-block takes her.
    def auto_blocked() -> bool:
        codes = world.hammer("alice", 40)
        assert set(codes) <= {200, 403, 429}, codes
        return bool(world.status("alice")["blocked_by"] == "auto")

    wait_until(auto_blocked, "auto-block blocks alice", within=6 * WAIT, interval=POLL)


def bigcorp_goes_over_the_new_limit(world: World) -> None:
    wait_until(
        lambda: world.admin("GET", "/admin/limits/default").json() == {"rate": 5.0, "burst": 10},
        "the app applies the new default",
        within=WAIT,
        interval=POLL,
    )
    assert world.hammer("bigcorp", 30) == [200] * 30
    wait_until(lambda: "bigcorp" in world.top(), "bigcorp shows in top", within=WAIT, interval=POLL)


def a_second_passes(world: World) -> None:
    time.sleep(1.0)


STUFFED = [f"stuffed-{index:02d}" for index in range(1, 13)]


def stuffing_happens(world: World) -> None:
    # Twelve taken-over accounts, each a little over its limit (10/s, burst 10 by now), and
    # two /24s of anonymous clients hammering the login.
    for user in STUFFED:
        assert 429 in world.hammer(user, 15, address="192.0.2.77")
    for address in ("203.0.113.5", "203.0.113.6", "198.51.100.9"):
        assert 429 in world.hammer(None, 250, address=address)

    def networks_show() -> bool:
        top = world.admin("GET", "/admin/top?window=300&limit=50").json()
        return {"203.0.113.0/24", "198.51.100.0/24"} <= {n["network"] for n in top["networks"]}

    wait_until(networks_show, "the networks show in top", within=WAIT, interval=POLL)


def network_refused(world: World, result: Result) -> None:
    for address in ("198.51.100.1", "198.51.100.254"):
        assert world.hammer(None, 1, address=address) == [403]
    assert world.hammer("alice", 1, address="198.51.100.9") == [403]
    assert world.hammer(None, 1, address="198.51.101.1") == [200]


def accounts_listed(world: World, result: Result) -> None:
    listed = (world.tmp / "accounts.txt").read_text().splitlines()
    assert set(STUFFED) <= set(listed)
    assert not any(line[0].isdigit() for line in listed)  # no addresses


def accounts_refused(world: World, result: Result) -> None:
    for user in STUFFED:
        assert world.hammer(user, 1) == [403]


def token_exported(world: World, result: Result) -> None:
    assert world.env["FLOODWALL_ADMIN_TOKEN"] == world.env["NEW_TOKEN"] != ADMIN_TOKEN


# -- the steps: every runbook command, what happens first, what it must print ---------------


@dataclass(frozen=True)
class Step:
    command: str
    status: int = 0
    shows: tuple[str, ...] = ()
    """Regular expressions (multiline) that stdout + stderr must match."""
    hides: tuple[str, ...] = ()
    sets: tuple[str, ...] = ()
    """Shell variables the command must leave set, non-empty."""
    before: Callable[[World], None] | None = None
    after: Callable[[World, Result], None] | None = None


HELLO = '"$APP/api/hello"'
AS_MALLORY = '-H "Authorization: Bearer $MALLORY_TOKEN"'
AS_ADMIN = '-H "Authorization: Bearer $FLOODWALL_ADMIN_TOKEN"'
MINT = (
    """MALLORY_TOKEN=$(curl -s -XPOST "$APP/login" -d '{"user": "mallory"}' | python3 -c """
    """'import json,sys; print(json.load(sys.stdin)["access_token"])')"""
)
MALLORY_HELLO = f"curl -s -w ' %{{http_code}}\\n' {AS_MALLORY} {HELLO}"
ADMIN_CODE = f"curl -s -o /dev/null -w '%{{http_code}}\\n' {AS_ADMIN} \"$APP/admin/blocked\""
METRICS = 'curl -s "$APP/metrics" | '
LIMITED = r'^floodwall_decisions_total\{result="limited"\} [1-9]'
MALLORY_ON_TOP = (r"^\s+\d+\s+user\s+mallory$",)
BLOCKED = r"^blocked\s+yes, until "
NOT_BLOCKED = r"^blocked\s+no$"
SHADOWED = r"^limit\s+.*, shadow: observed, not enforced$"


def default_limit_is(live: str) -> str:
    """What ``floodwall default-limit`` prints: the live default, this shell's configured
    one (the runbook's shell sets no FLOODWALL_RATE), and the store."""
    return (
        rf"live default limit {{8}}{live} \(set by an operator: every app applies it\)\n"
        r"configured default limit  10/s, burst 10 \(this shell's settings\)\n"
        r"store {21}Redis at 127\.0\.0\.1:\d+ db 0, key prefix floodwall\n"
    )


def then_audit_line(stdout: str, action: str) -> str:
    """``stdout`` exactly, then the action's audit line on stderr: one JSON object."""
    line = rf'\{{[^\n]*"logger": "floodwall\.audit"[^\n]*"action": "{action}"[^\n]*\}}'
    return rf"\A{stdout}{line}\n\Z"


STEPS = [
    # The first 60 seconds
    Step(
        METRICS + "grep -E '^floodwall_(decisions_total|breaker_open)'",
        shows=(LIMITED, r"^floodwall_breaker_open 0\.0$"),
        before=mallory_floods,
    ),
    Step("floodwall top --once", shows=MALLORY_ON_TOP),
    Step(
        'floodwall block mallory --reason "flooding the API, INC-1234" --ttl 1h',
        shows=(BLOCKED + r".*, by cli:\S+: flooding the API, INC-1234$",),
        before=mallory_streams,
    ),
    Step("floodwall status mallory", shows=(BLOCKED,)),
    # One account is flooding the API: see it
    Step(METRICS + "grep floodwall_decisions_total", shows=(LIMITED,)),
    Step("floodwall top --once", shows=MALLORY_ON_TOP),
    Step(
        f'curl -s {AS_ADMIN} "$APP/admin/top?window=60"',
        shows=(r'"subject": "mallory", "anonymous": false, "refusals": [1-9]',),
    ),
    Step(MINT, sets=("MALLORY_TOKEN",)),
    # stop it
    Step(
        'floodwall block mallory --reason "flooding /api, INC-1234" --ttl 1h',
        shows=(BLOCKED + r".*: flooding /api, INC-1234$",),
    ),
    Step(
        'floodwall revoke mallory --reason "INC-1234: suspected compromise"',
        shows=(r"^credentials not before\s+20\d\d-",),
    ),
    Step(
        'floodwall reset-password mallory --reason "INC-1234: suspected compromise"',
        shows=(r"^password reset required\s+yes$",),
    ),
    Step(
        f'curl -s -XPUT "$APP/admin/users/mallory/block" {AS_ADMIN} '
        """-H 'content-type: application/json' """
        """-d '{"reason": "flooding /api, INC-1234", "ttl_seconds": 3600}'""",
        shows=(r'"blocked": true, "reason": "flooding /api, INC-1234", "blocked_by": "admin"',),
    ),
    Step(
        f'curl -s -XPOST "$APP/admin/users/mallory/revoke" {AS_ADMIN} '
        """-H 'content-type: application/json' """
        """-d '{"reason": "INC-1234: suspected compromise"}'""",
        shows=(r'"credentials_not_before": "20\d\d-',),
    ),
    Step(
        f'curl -s -XPOST "$APP/admin/users/mallory/password-reset" {AS_ADMIN}',
        shows=(r'"password_reset_required": true',),
    ),
    # verify it
    Step(
        "floodwall status mallory",
        shows=(
            BLOCKED + r".*, by admin: flooding /api, INC-1234$",
            r"^credentials not before\s+20\d\d-",
            r"^password reset required\s+yes$",
        ),
    ),
    Step(MALLORY_HELLO, shows=(r'^\{"type": "urn:floodwall:problem:account-blocked".* 403$',)),
    Step(
        METRICS + """grep 'floodwall_decisions_total{result="blocked"}'""",
        shows=(r'^floodwall_decisions_total\{result="blocked"\} [1-9]',),
    ),
    Step(
        METRICS + "grep floodwall_connections_closed_total",
        shows=(r'^floodwall_connections_closed_total\{reason="account-blocked"\} [1-9]',),
    ),
    Step("floodwall top --once", shows=MALLORY_ON_TOP),
    Step(
        "floodwall audit --limit 5",
        shows=(
            r"\tadmin\trequire-password-reset\tmallory$",
            r"\tadmin\trevoke\tmallory\treason: INC-1234: suspected compromise$",
            r"\tadmin\tblock\tmallory\treason: flooding /api, INC-1234\texpires 20\d\d-",
        ),
    ),
    Step("floodwall blocked", shows=(r"^mallory\tuntil 20\d\d-.*\tby admin\tflooding /api",)),
    # communicate
    Step(
        f'curl -s {AS_ADMIN} "$APP/admin/audit?limit=20"',
        shows=(r'"actor": "admin", "action": "require-password-reset", "user_id": "mallory"',),
    ),
    # lift it
    Step(
        'floodwall unblock mallory --reason "INC-1234: owner verified"',
        shows=(NOT_BLOCKED,),
    ),
    Step(
        "floodwall status mallory",
        shows=(NOT_BLOCKED, r"^password reset required\s+yes$"),
    ),
    Step(MALLORY_HELLO, shows=(r'^\{"type": "urn:floodwall:problem:credentials-revoked".* 401$',)),
    Step(MINT, sets=("MALLORY_TOKEN",)),
    Step(
        MALLORY_HELLO,
        shows=(r'^\{"type": "urn:floodwall:problem:password-reset-required".* 403$',),
    ),
    Step("floodwall clear-reset mallory", shows=(r"^password reset required\s+no$",)),
    Step(MALLORY_HELLO, shows=(r'^\{"hello": ?"mallory"\} 200$',)),
    # Redis is down
    Step(
        'redis-cli -u "$FLOODWALL_REDIS_URL" ping',
        status=1,
        shows=("Could not connect to Redis",),
        before=redis_dies,
    ),
    Step(
        METRICS
        + "grep -E '^floodwall_(breaker_open|store_errors_total|"
        + """decisions_total\\{result="(fallback|error)"\\}|blocked_users)'""",
        shows=(
            r"^floodwall_breaker_open 1\.0$",
            r"^floodwall_store_errors_total [1-9]",
            r'^floodwall_decisions_total\{result="fallback"\} [1-9]',
            r"^floodwall_blocked_users 1\.0$",
        ),
    ),
    Step(f"curl -s -o /dev/null -w '%{{http_code}}\\n' {HELLO}", shows=(r"\A200\n\Z",)),
    Step(
        "floodwall status mallory",
        status=1,
        shows=(r"\Afloodwall: error: the store did not answer: .*\n\Z",),
    ),
    # ... and back
    Step('redis-cli -u "$FLOODWALL_REDIS_URL" ping', shows=(r"^PONG$",), before=redis_comes_back),
    Step(
        'redis-cli -u "$FLOODWALL_REDIS_URL" config get appendonly',
        shows=(r"\Aappendonly\nyes\n\Z",),
    ),
    Step("floodwall blocked", shows=(r"\Aeve\tuntil no end\tby admin\tcard fraud, INC-1200\n\Z",)),
    Step(METRICS + "grep '^floodwall_breaker_open'", shows=(r"\Afloodwall_breaker_open 0\.0\n\Z",)),
    # The admin token leaked
    Step(
        "NEW_TOKEN=$(python3 -c 'import secrets; print(secrets.token_urlsafe(32))')",
        sets=("NEW_TOKEN",),
    ),
    Step(ADMIN_CODE, shows=(r"\A401\n\Z",), before=token_leaks_then_is_rotated),
    Step("export FLOODWALL_ADMIN_TOKEN=$NEW_TOKEN", after=token_exported),
    Step(ADMIN_CODE, shows=(r"\A200\n\Z",)),
    Step(
        "floodwall audit --limit 1000 | awk -F'\\t' '$2 == \"admin\"'",
        shows=(r"\tadmin\tblock\talice\treason: lol$", r"\tadmin\tshadow-on\tmallory$"),
        hides=(r"\tcli:",),
    ),
    Step(
        'floodwall unblock alice --reason "undo: blocked with the leaked admin token, INC-1236"',
        shows=(NOT_BLOCKED,),
    ),
    Step("floodwall shadow mallory --off", shows=(r"^limit\s+",), hides=(SHADOWED,)),
    # A user was blocked by mistake
    Step(
        "floodwall status alice",
        shows=(
            BLOCKED + r".*, by auto: auto-block: more than 100 refusals in 10 s \(offence 1\)$",
        ),
        before=alice_gets_auto_blocked,
    ),
    Step(
        "floodwall audit --limit 1000 | awk -F'\\t' '$4 == \"alice\"'",
        shows=(
            r"\tauto\tblock\talice\treason: auto-block: ",
            r"\tcli:\S+\tunblock\talice\treason: undo: ",
            r"\tadmin\tblock\talice\treason: lol$",
        ),
        hides=(r"\tmallory\t",),
    ),
    Step(
        'floodwall unblock alice --reason "blocked by mistake, INC-1237"',
        shows=(NOT_BLOCKED,),
    ),
    Step(
        "floodwall limit alice --rate 50 --burst 100",
        shows=(r"^limit\s+50/s, burst 100 \(custom\)$",),
    ),
    # Rolling out a new limit (shadow mode)
    Step(
        f'curl -s {AS_ADMIN} "$APP/admin/limits/default"',
        shows=(r'\A\{"rate": 1\.0, "burst": 5\}\Z',),
    ),
    Step("floodwall shadow bigcorp", shows=(SHADOWED,)),
    Step(
        "floodwall default-limit --rate 5 --burst 10",
        shows=(then_audit_line(default_limit_is("5/s, burst 10"), "set-default-limit"),),
    ),
    Step(
        METRICS + "grep floodwall_shadow_refusals_total",
        shows=(r"^floodwall_shadow_refusals_total [1-9]",),
        before=bigcorp_goes_over_the_new_limit,
    ),
    Step("floodwall top --once", shows=(r"^\s+\d+\s+user\s+bigcorp$",)),
    Step("floodwall status bigcorp", shows=(NOT_BLOCKED, SHADOWED)),
    Step(
        "floodwall limit bigcorp --rate 20 --burst 40",
        shows=(r"^limit\s+20/s, burst 40 \(custom\), shadow: observed, not enforced$",),
    ),
    Step(
        "floodwall shadow bigcorp --off",
        shows=(r"^limit\s+20/s, burst 40 \(custom\)$",),
        hides=(SHADOWED,),
    ),
    Step(
        "floodwall default-limit --rate 10 --burst 10",
        shows=(then_audit_line(default_limit_is("10/s, burst 10"), "set-default-limit"),),
    ),
    Step(
        f'curl -s {AS_ADMIN} "$APP/admin/limits/default"',
        shows=(r'\A\{"rate": 10\.0, "burst": 10\}\Z',),
        # "every worker applies it within a second"
        before=a_second_passes,
    ),
    # Many accounts at once
    Step(
        "floodwall top --once --window 300 --limit 50",
        shows=(r"^\s+\d+\s+user\s+stuffed-01$", r"^\s+\d+\s+203\.0\.113\.0/24$"),
        before=stuffing_happens,
    ),
    Step(
        "floodwall top --once --window 300 --json | jq -c '.networks[]'",
        shows=(r'^\{"network":"203\.0\.113\.0/24","refusals":[1-9]\d*\}$',),
    ),
    Step(
        'floodwall block-network 203.0.113.0/24 --reason "credential stuffing, INC-1300" --ttl 2h',
        shows=(r"^203\.0\.113\.0/24\tuntil 20\S+\tby cli:\S+\tcredential stuffing, INC-1300$",),
    ),
    Step(
        f'curl -s -XPUT "$APP/admin/networks/198.51.100.0%2F24/block" {AS_ADMIN} '
        """-H 'content-type: application/json' """
        """-d '{"reason": "credential stuffing, INC-1300", "ttl_seconds": 7200}'""",
        shows=(r'"network": "198\.51\.100\.0/24", "blocked": true, "reason": "credential stuff',),
        after=network_refused,
    ),
    Step(
        "floodwall blocked --networks",
        shows=(r"\A198\.51\.100\.0/24\tuntil 20\S+\tby oncall\t.*\n203\.0\.113\.0/24\t",),
    ),
    Step(
        "floodwall top --once --window 300 --limit 1000 --json | "
        "jq -r '.items[] | select(.anonymous | not) | .subject' > accounts.txt",
        after=accounts_listed,
    ),
    Step("cat accounts.txt", shows=(r"^stuffed-01$", r"^stuffed-12$")),
    Step(
        'floodwall block --from-file accounts.txt --reason "credential stuffing, INC-1300" '
        "--ttl 1d",
        shows=(r"^stuffed-07\tblocked until 20", r"^blocked (\d+) of \1 users$"),
        after=accounts_refused,
    ),
    Step(
        f'curl -s -XPOST "$APP/admin/blocks" {AS_ADMIN} '
        """-H 'content-type: application/json' """
        """-d '{"user_ids": ["stuffed-01", "stuffed-02"], "reason": "credential stuffing, """
        """INC-1300", "ttl_seconds": 86400}'""",
        shows=(r'"blocked": 2, "failed": 0, "received_by": 1, "replicas": 0\}$',),
    ),
    Step(
        METRICS + """grep 'floodwall_decisions_total{result="network_blocked"}'""",
        shows=(r'^floodwall_decisions_total\{result="network_blocked"\} [1-9]',),
    ),
    Step(
        "floodwall audit --limit 3",
        shows=(r"\toncall\tblock\tstuffed-02\treason: credential stuffing, INC-1300\texpires 20",),
    ),
    Step(
        'floodwall unblock-network 203.0.113.0/24 --reason "INC-1300: over"',
        shows=(r"\A203\.0\.113\.0/24\tnot blocked\n",),
    ),
    # Requests are shed for overload (the demo here sheds nothing: no capacity is set)
    Step(
        METRICS + 'grep -E \'^floodwall_(decisions_total\\{result="(allowed|overloaded)"\\}'
        "|capacity_limit)'",
        shows=(
            r'^floodwall_decisions_total\{result="allowed"\} [1-9]',
            r'^floodwall_decisions_total\{result="overloaded"\} 0\.0$',
        ),
    ),
]


# -- the tests ---------------------------------------------------------------------------------


def test_every_runbook_command_has_a_step() -> None:
    documented = [command.text for command in runbook_commands(RUNBOOK.read_text())]
    scripted = [step.command for step in STEPS]
    for index, (doc, step) in enumerate(zip(documented, scripted, strict=False)):
        assert doc == step, f"command {index + 1} of the runbook has no step:\n{doc}\n{step}"
    assert len(documented) == len(scripted), (
        f"the runbook has {len(documented)} commands, STEPS {len(scripted)}"
    )


def test_commands_live_in_sh_blocks_only() -> None:
    # Commands in a ```bash or ```console block would escape the test; so would a block
    # with no language.
    assert set(fence_languages(RUNBOOK.read_text())) <= FENCES


def test_the_parser_joins_continuations_and_skips_comments() -> None:
    markdown = (
        "## A\n```sh\n# a comment\n\nfoo \\\n   --bar  # trailing\nbaz\n```\n```json\n{}\n```\n"
    )
    assert runbook_commands(markdown) == [
        Command("foo --bar  # trailing", 5, "A"),
        Command("baz", 7, "A"),
    ]


def test_commands_and_settings_named_in_the_prose_exist(capsys: pytest.CaptureFixture[str]) -> None:
    """`floodwall ...` spans in the prose (templates with USER, R, B) name real commands and
    options; every FLOODWALL_* variable is a setting."""
    markdown = RUNBOOK.read_text()
    spans = [span for span in re.findall(r"`([^`\n]+)`", markdown) if span.startswith("floodwall ")]
    assert spans
    for span in spans:
        words = shlex.split(span)
        with pytest.raises(SystemExit) as exited:
            cli_main([words[1], "--help"])
        assert exited.value.code == 0, span
        usage = capsys.readouterr().out
        for option in (word for word in words if word.startswith("--")):
            assert f" {option}" in usage, f"{span}: floodwall {words[1]} has no {option}"
    fields = set(FloodwallSettings.model_fields)
    for name in set(re.findall(r"\bFLOODWALL_([A-Z_]+)\b", markdown)):
        assert name.lower() in fields, f"FLOODWALL_{name} is not a setting"


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    redis = RedisServer.start(tmp_path / "redis", appendonly=True)
    world = World(tmp_path, redis)
    try:
        world.start_demo()
        yield world
    finally:
        world.stop_demo()
        redis.stop()


def _check(step: Step, command: Command, result: Result, world: World) -> None:
    output = result.stdout + result.stderr
    where = (
        f"runbook line {command.line} ({command.section}): {step.command}\n"
        f"exit {result.status}\n--- stdout\n{result.stdout}--- stderr\n{result.stderr}"
    )
    assert result.status == step.status, where + f"--- demo log\n{world.demo_log()}"
    for pattern in step.shows:
        assert re.search(pattern, output, re.M), f"{where}--- expected: {pattern}"
    for pattern in step.hides:
        assert not re.search(pattern, output, re.M), f"{where}--- unexpected: {pattern}"
    for name in step.sets:
        assert world.env.get(name), f"{where}--- {name} was not set"
    if step.after is not None:
        step.after(world, result)


def test_the_runbook_works(world: World) -> None:
    markdown = RUNBOOK.read_text()
    commands = runbook_commands(markdown)
    assert [c.text for c in commands] == [s.command for s in STEPS]
    for command, step in zip(commands, STEPS, strict=True):
        if step.before is not None:
            step.before(world)
        _check(step, command, world.run(command.text), world)
    # Every metric the runbook names is one the app serves.
    served = httpx.get(world.url + "/metrics", timeout=5).text
    for name in set(re.findall(r"\bfloodwall_[a-z_]+\b", markdown)):
        assert re.search(rf"^{name}[ {{]", served, re.M), f"{name} is not served"
