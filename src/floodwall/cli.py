"""The ``floodwall`` command: serve the demo, and act on users from a terminal.

Operator commands act on the store named by ``FLOODWALL_REDIS_URL`` (or ``--redis-url``)
through the same service as the admin API, and are audited the same way. Output is
readable by default and JSON with ``--json``; bad input exits non-zero with one line.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import importlib.util
import json
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import SecretStr, ValidationError

from floodwall import rules
from floodwall.audit import audit_logger
from floodwall.errors import ConfigurationError, FloodwallError, StorageError
from floodwall.request_log import JsonFormatter
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings, settings_error
from floodwall.status import UserStatus
from floodwall.top import Offender

__all__ = ["main"]

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """Bad input on the command line."""


def parse_duration(text: str) -> float:
    """``90``, ``90s``, ``15m``, ``1h``, ``2d`` → seconds; bounds are the caller's rule."""
    match = _DURATION.match(text)
    if match is None:
        raise argparse.ArgumentTypeError("not a duration (try 90s, 15m, 1h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _interval(text: str) -> float:
    seconds = parse_duration(text)
    if seconds <= 0:
        raise argparse.ArgumentTypeError("the interval is a duration above 0 (try 2s)")
    return seconds


def _rate(text: str) -> float:
    try:
        return rules.rate(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _whole(bound: rules.Bound) -> Callable[[str], int]:
    def parse(text: str) -> int:
        if not (text.isascii() and text.isdigit()):
            raise argparse.ArgumentTypeError(bound.message)
        try:
            return bound.whole_number(int(text))
        except rules.RuleError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return parse


def _workers(text: str) -> int:
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= 64:
        raise argparse.ArgumentTypeError("--workers is a whole number from 1 to 64")
    return int(text)


def _ttl(text: str) -> float:
    try:
        return rules.TTL_SECONDS.number(parse_duration(text))
    except rules.RuleError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # One line, not a usage dump: operators read this mid-incident.
        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--redis-url", help="the store (default: FLOODWALL_REDIS_URL)")
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    # Only commands that change something take --actor: on a read it would pass for a filter.
    acting = _Parser(add_help=False)
    acting.add_argument(
        "--actor", default=None, help="who acts, for the audit log (default: cli:$USER)"
    )

    parser = _Parser(
        prog="floodwall", description="Per-user rate limits and an account kill switch."
    )
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    demo = commands.add_parser("demo", help="serve the demo app")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--workers", type=_workers, default=1, help="worker processes (default 1)")

    def user_command(name: str, text: str, *, acts: bool = True) -> argparse.ArgumentParser:
        parents = [common, acting] if acts else [common]
        sub = commands.add_parser(name, help=text, parents=parents)
        sub.add_argument("user", help="the user id")
        return sub

    block = user_command("block", "refuse every request of a user (403)")
    block.add_argument("--reason", required=True)
    block.add_argument("--ttl", type=_ttl, help="block for this long (90s, 15m, 1h, 2d)")
    unblock = user_command("unblock", "lift a block")
    unblock.add_argument("--reason")
    revoke = user_command("revoke", "refuse every credential issued up to now (401)")
    revoke.add_argument("--credential-id", help="revoke only this credential (a JWT's jti)")
    revoke.add_argument("--reason")
    reset = user_command("reset-password", "require a password reset (revokes too)")
    reset.add_argument("--reason")
    user_command("clear-reset", "clear a required password reset")
    limit = user_command("limit", "give a user a limit of their own")
    limit.add_argument("--rate", type=_rate, help="requests per second, or e.g. 600/minute")
    limit.add_argument("--burst", type=_whole(rules.BURST))
    limit.add_argument("--clear", action="store_true", help="back to the default limit")
    user_command("status", "show a user's status", acts=False)
    shadow = user_command("shadow", "observe a user's limit without enforcing it")
    shadow.add_argument("--off", action="store_true", help="enforce the limit again")

    top = commands.add_parser(
        "top", help="the most refused users and clients, refreshed live", parents=[common]
    )
    top.add_argument(
        "--window", type=_whole(rules.WINDOW_SECONDS), default=60, help="seconds to look back"
    )
    top.add_argument("--limit", type=_whole(rules.PAGE_SIZE), default=20)
    top.add_argument("--interval", type=_interval, default=2.0, help="refresh period")
    top.add_argument("--once", action="store_true", help="print once and exit")

    default = commands.add_parser(
        "default-limit",
        help="show or change the default limit on every worker",
        parents=[common, acting],
    )
    default.add_argument("--rate", type=_rate)
    default.add_argument("--burst", type=_whole(rules.BURST))
    default.add_argument(
        "--clear", action="store_true", help="back to each app's configured default"
    )

    blocked = commands.add_parser("blocked", help="list blocked users", parents=[common])
    blocked.add_argument("--limit", type=_whole(rules.PAGE_SIZE), default=100)
    blocked.add_argument("--cursor")
    audit = commands.add_parser(
        "audit", help="show operator actions, newest first", parents=[common]
    )
    audit.add_argument("--limit", type=_whole(rules.PAGE_SIZE), default=20)
    audit.add_argument("--cursor")
    return parser


def _settings(args: argparse.Namespace) -> FloodwallSettings:
    settings = FloodwallSettings()
    if args.redis_url:
        settings = settings.model_copy(update={"redis_url": SecretStr(args.redis_url)})
    if settings.redis_url is None:
        raise UsageError(
            "no store: set FLOODWALL_REDIS_URL or pass --redis-url (an in-memory store lives "
            "inside the app process; use the admin API for it)"
        )
    # A terminal can wait longer for Redis than a request can.
    return settings.model_copy(update={"redis_timeout": max(settings.redis_timeout, 2.0)})


def _describe(status: UserStatus) -> str:
    data = status.to_json()
    if status.blocked:
        until = data["blocked_until"] or "no end"
        blocked = f"yes, until {until}, by {status.blocked_by}: {status.reason}"
    else:
        blocked = "no"
    limit = f"{status.rate:g}/s, burst {status.burst}"
    limit += " (custom)" if status.limit_overridden else " (default)"
    limit += ", shadow: observed, not enforced" if status.shadow else ""
    lines = [
        ("user", status.user_id),
        ("blocked", blocked),
        ("credentials not before", data["credentials_not_before"] or "-"),
        ("password reset required", "yes" if status.password_reset_required else "no"),
        ("limit", limit),
    ]
    return "\n".join(f"{name:<26}{value}" for name, value in lines)


async def _run(args: argparse.Namespace) -> Any:
    floodwall = Floodwall(_settings(args))
    command: str = args.command
    try:
        await floodwall.store.start()
        # Users without a limit of their own are on the live default kept in the store, not
        # on this shell's FLOODWALL_RATE; every status printed shows it. Not start(): a
        # one-shot command needs neither every user's state nor the change feed, and start()
        # swallows a store error, so this shell's default would pass for the live one.
        await floodwall.feed.refresh_limits()
        if command == "status":
            return await floodwall.status(args.user)
        if command == "top":
            return await _top(floodwall, args)
        if command == "blocked":
            return await floodwall.blocked(after=args.cursor, limit=args.limit)
        if command == "audit":
            return await floodwall.audit_log(before=args.cursor, limit=args.limit)
        if command == "default-limit" and args.rate is args.burst is None and not args.clear:
            return floodwall.default_limit
        actor = args.actor or f"cli:{getpass.getuser()}"
        if command == "default-limit" and args.clear:
            if args.rate is not None or args.burst is not None:
                raise UsageError("default-limit takes --clear, or --rate and --burst")
            return await floodwall.clear_default_limit(actor=actor)
        if command == "block":
            return await floodwall.block(
                args.user, reason=args.reason, ttl_seconds=args.ttl, actor=actor
            )
        if command == "unblock":
            return await floodwall.unblock(args.user, actor=actor, reason=args.reason)
        if command == "revoke" and args.credential_id:
            return await floodwall.revoke_credential(
                args.user, args.credential_id, actor=actor, reason=args.reason
            )
        if command == "revoke":
            return await floodwall.revoke(args.user, actor=actor, reason=args.reason)
        if command == "reset-password":
            return await floodwall.require_password_reset(
                args.user, actor=actor, reason=args.reason
            )
        if command == "clear-reset":
            return await floodwall.clear_password_reset(args.user, actor=actor)
        if command == "limit":
            if args.clear:
                return await floodwall.clear_limit(args.user, actor=actor)
            if args.rate is None or args.burst is None:
                raise UsageError("limit needs --rate and --burst, or --clear")
            return await floodwall.set_limit(
                args.user, rate=args.rate, burst=args.burst, actor=actor
            )
        if command == "shadow":
            return await floodwall.set_shadow(args.user, not args.off, actor=actor)
        if args.rate is None or args.burst is None:
            raise UsageError("default-limit needs both --rate and --burst to change it")
        return await floodwall.set_default_limit(args.rate, args.burst, actor=actor)
    finally:
        await floodwall.stop()


def _top_table(offenders: list[Offender], window: int) -> str:
    lines = [f"most refused over the last {window}s ({datetime.now(UTC):%H:%M:%S} UTC)"]
    lines.append(f"{'refusals':>10}  {'kind':<9}  subject")
    for entry in offenders:
        kind = "address" if entry.anonymous else "user"
        lines.append(f"{entry.refusals:>10}  {kind:<9}  {entry.subject}")
    if not offenders:
        lines.append("  (no refusals)")
    return "\n".join(lines)


async def _top(floodwall: Floodwall, args: argparse.Namespace) -> list[Offender]:
    """Print the table every ``--interval`` until Ctrl-C; ``--once`` returns it instead."""
    while True:
        offenders = await floodwall.top(window_seconds=args.window, limit=args.limit)
        if args.once or args.json:
            return offenders
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        print(clear + _top_table(offenders, args.window), flush=True)
        await asyncio.sleep(args.interval)


def _print(args: argparse.Namespace, result: Any) -> None:
    if isinstance(result, UserStatus):
        print(json.dumps(result.to_json()) if args.json else _describe(result))
    elif args.command == "top":
        if args.json:
            rows = [
                {"subject": o.subject, "anonymous": o.anonymous, "refusals": o.refusals}
                for o in result
            ]
            print(json.dumps({"window_seconds": args.window, "items": rows}))
        else:
            print(_top_table(result, args.window))
    elif args.command == "default-limit":
        rate, burst = result
        print(
            json.dumps({"rate": rate, "burst": burst})
            if args.json
            else f"{rate:g}/s, burst {burst}"
        )
    elif args.command == "blocked":
        statuses, cursor = result
        if args.json:
            print(json.dumps({"items": [s.to_json() for s in statuses], "next_cursor": cursor}))
            return
        for status in statuses:
            until = status.to_json()["blocked_until"] or "no end"
            print(f"{status.user_id}\tuntil {until}\tby {status.blocked_by}\t{status.reason}")
        if cursor:
            print(f"more: --cursor {cursor}")
    else:
        records, cursor = result
        if args.json:
            print(json.dumps({"items": [r.to_json() for r in records], "next_cursor": cursor}))
            return
        for record in records:
            data = record.to_json()
            parts = [data["time"], record.actor, record.action, record.user_id or "-"]
            parts += [f"reason: {record.reason}"] if record.reason else []
            parts += [f"expires {data['expires']}"] if record.expires_ms else []
            parts += [record.detail] if record.detail else []
            print("\t".join(str(part) for part in parts))
        if cursor:
            print(f"more: --cursor {cursor}")


@contextmanager
def _audit_lines_to_stderr() -> Iterator[None]:
    """Each action's ``floodwall.audit`` line on stderr, as JSON, the way the app logs it:
    log pipelines that never read the store learn of terminal actions too."""
    # Without a handler the line goes nowhere (INFO is below logging's last resort). A
    # program that calls main() with logging set up already receives it through its own
    # handlers: a second one here would print it twice, and its levels are its choice.
    if audit_logger.hasHandlers():
        yield
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    level = audit_logger.level
    audit_logger.addHandler(handler)
    audit_logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        # main() may run again in the same process, with another sys.stderr.
        audit_logger.removeHandler(handler)
        audit_logger.setLevel(level)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    try:
        args = _parser().parse_args(argv)
        if args.command == "demo":
            # uvicorn is the demo extra's: floodwall itself needs no ASGI server.
            if importlib.util.find_spec("uvicorn") is None:
                print(
                    "floodwall: error: the demo needs uvicorn: pip install 'floodwall[demo]'",
                    file=sys.stderr,
                )
                return 1
            from floodwall.demo import serve

            serve(args.host, args.port, args.workers)
            return 0
        with _audit_lines_to_stderr():
            result = asyncio.run(_run(args))
    except UsageError as exc:
        print(f"floodwall: error: {exc}", file=sys.stderr)
        return 2
    except (ValidationError, ConfigurationError) as exc:
        print(f"floodwall: error: {settings_error(exc)}", file=sys.stderr)
        return 2
    except StorageError as exc:
        print(f"floodwall: error: the store did not answer: {exc}", file=sys.stderr)
        return 1
    except rules.RuleError as exc:
        print(f"floodwall: error: {exc}", file=sys.stderr)
        return 2
    except (FloodwallError, ValueError) as exc:
        print(f"floodwall: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    _print(args, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
