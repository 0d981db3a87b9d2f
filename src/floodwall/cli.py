"""The ``floodwall`` command: serve the demo, and act on users and networks from a terminal.

Operator commands act on the store named by ``FLOODWALL_REDIS_URL`` (or ``--redis-url``)
under ``FLOODWALL_KEY_PREFIX`` (or ``--key-prefix``), through the same service as the admin
API, and are audited the same way. An action that no running app received (none follows
that store and prefix) is stored, and says so in a warning on stderr. Output is readable by
default, with every id, reason and actor escaped (``floodwall.core.display``), and exact JSON
with ``--json``; bad input exits non-zero with one line.

Its length is one command-line surface: the parser of every command and the readable
and JSON forms of each answer; every action is the service's.
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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, NoReturn

from pydantic import ValidationError

from floodwall import __version__
from floodwall.control.actions import BulkBlockResult, bulk_counts
from floodwall.core import rules
from floodwall.core.display import shell_word, shown
from floodwall.core.errors import ConfigurationError, FloodwallError, StorageError
from floodwall.core.naming import id_from_argument, id_from_bytes
from floodwall.core.stored import Limit
from floodwall.killswitch.audit import AuditRecord, audit_logger
from floodwall.killswitch.networks import NetworkBlock
from floodwall.killswitch.status import UserStatus, windows_json
from floodwall.observe.request_log import JsonFormatter
from floodwall.observe.top import Offender, RefusingNetwork
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings, settings_error

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
        try:
            return int(bound.from_text(text))
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
    common.add_argument(
        "--key-prefix",
        help="the app's key prefix in the store (default: FLOODWALL_KEY_PREFIX, or floodwall)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    # Only commands that change something take --actor: on a read it would pass for a filter.
    acting = _Parser(add_help=False)
    acting.add_argument(
        "--actor", default=None, help="who acts, for the audit log (default: cli:$USER)"
    )

    parser = _Parser(
        prog="floodwall", description="Per-user rate limits and an account kill switch."
    )
    parser.add_argument("--version", action="version", version=f"floodwall {__version__}")
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
        sub.add_argument(
            "user",
            type=id_from_argument,
            help="the user id: '' for the empty one, $'a\\nb' for one with a newline "
            "(bash); after -- when it starts with -",
        )
        return sub

    block = commands.add_parser(
        "block", help="refuse every request of a user, or of many (403)", parents=[common, acting]
    )
    block.add_argument(
        "users",
        nargs="*",
        type=id_from_argument,
        metavar="USER",
        help="user ids: '' for the empty one, $'a\\nb' for one with a newline (bash); after "
        "-- when one starts with -",
    )
    block.add_argument(
        "--from-file",
        metavar="F",
        help="also block the ids in F, one per line ('-': standard input), up to "
        f"{int(rules.BULK_USER_IDS.high)} per store call",
    )
    block.add_argument("--reason", required=True)
    block.add_argument("--ttl", type=_ttl, help="block for this long (90s, 15m, 1h, 2d)")
    block_network = commands.add_parser(
        "block-network",
        help="refuse every request from inside a network (403), on every worker",
        parents=[common, acting],
    )
    block_network.add_argument("cidr", help="an IPv4 or IPv6 network: 10.0.0.0/8, 2001:db8::/32")
    block_network.add_argument("--reason", required=True)
    block_network.add_argument("--ttl", type=_ttl, help="block for this long (90s, 15m, 1h, 2d)")
    block_network.add_argument(
        "--force",
        action="store_true",
        help=f"allow networks broader than a /{rules.MIN_PREFIX_IPV4} (IPv4) or "
        f"/{rules.MIN_PREFIX_IPV6} (IPv6)",
    )
    unblock_network = commands.add_parser(
        "unblock-network", help="lift a network block", parents=[common, acting]
    )
    unblock_network.add_argument("cidr")
    unblock_network.add_argument("--reason")
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
    concurrency = user_command("concurrency", "give a user a limit of requests in flight")
    concurrency.add_argument("limit", nargs="?", type=_whole(rules.CONCURRENCY))
    concurrency.add_argument("--clear", action="store_true", help="back to the configured one")
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

    route = commands.add_parser(
        "route-limit",
        help="show or change a route's limit, for everyone or for one user",
        parents=[common, acting],
    )
    route.add_argument("route", nargs="?", help="the route as the app names it: 'POST /login'")
    route.add_argument("limit", nargs="?", help="e.g. 10/minute")
    route.add_argument("--user", help="only this user's limit of the route")
    route.add_argument("--clear", action="store_true", help="back to the app's limit")

    blocked = commands.add_parser(
        "blocked", help="list blocked users (or networks)", parents=[common]
    )
    blocked.add_argument("--limit", type=_whole(rules.PAGE_SIZE), default=100)
    blocked.add_argument("--cursor")
    blocked.add_argument("--networks", action="store_true", help="list blocked networks")
    audit = commands.add_parser(
        "audit", help="show operator actions, newest first", parents=[common]
    )
    audit.add_argument("--limit", type=_whole(rules.PAGE_SIZE), default=20)
    audit.add_argument("--cursor")
    return parser


def _settings(args: argparse.Namespace) -> FloodwallSettings:
    # Given to the constructor, so an option is validated as the variable would be.
    options: dict[str, Any] = {}
    if args.redis_url:
        options["redis_url"] = args.redis_url
    if args.key_prefix is not None:
        options["key_prefix"] = args.key_prefix
    settings = FloodwallSettings(**options)
    if settings.redis_url is None:
        raise UsageError(
            "no store: set FLOODWALL_REDIS_URL or pass --redis-url (an in-memory store lives "
            "inside the app process; use the admin API for it)"
        )
    # A terminal can wait longer for Redis than a request can.
    return settings.model_copy(update={"redis_timeout": max(settings.redis_timeout, 2.0)})


@dataclass(frozen=True, slots=True)
class _Answer:
    """What a command found or did, and what the operator needs to judge it: the store it
    read, the default limits there, and (for an action) how many app workers received it."""

    result: Any
    store: str
    prefix: str
    configured: Limit
    live: Limit | None
    acted: bool = False
    received_by: int | None = None


def _limit(limit: Limit) -> str:
    return f"{limit[0]:g}/s, burst {limit[1]}"


def _limit_json(limit: Limit | None) -> dict[str, Any] | None:
    return None if limit is None else {"rate": limit[0], "burst": limit[1]}


def _defaults(answer: _Answer) -> list[tuple[str, str]]:
    live = (
        f"{_limit(answer.live)} (set by an operator: every app applies it)"
        if answer.live is not None
        else "none (each app applies its configured default)"
    )
    return [
        ("live default limit", live),
        ("configured default limit", f"{_limit(answer.configured)} (this shell's settings)"),
        ("store", answer.store),
    ]


def _lines(rows: list[tuple[str, str]]) -> str:
    return "\n".join(f"{name:<26}{shown(value)}" for name, value in rows)


def _describe(status: UserStatus, answer: _Answer) -> str:
    data = status.to_json()
    if status.blocked:
        until = data["blocked_until"] or "no end"
        blocked = f"yes, until {until}, by {status.blocked_by}: {status.reason}"
    else:
        blocked = "no"
    limit = _limit((status.rate, status.burst))
    limit += " (custom)" if status.limit_overridden else " (default)"
    limit += ", shadow: observed, not enforced" if status.shadow else ""
    rows = [
        ("user", status.user_id),
        ("blocked", blocked),
        ("credentials not before", data["credentials_not_before"] or "-"),
        ("password reset required", "yes" if status.password_reset_required else "no"),
        ("limit", limit),
    ]
    if status.concurrency is not None:
        rows.append(("requests in flight", f"at most {status.concurrency} (custom)"))
    rows += [
        ("route limit", f"{route}: {count} per {period_us / 1_000_000:g}s (custom)")
        for route, (count, period_us) in sorted(status.route_limits.items())
    ]
    return _lines(rows + _defaults(answer))


def _acts(args: argparse.Namespace) -> bool:
    if args.command == "default-limit":
        return bool(args.rate is not None or args.burst is not None or args.clear)
    if args.command == "route-limit":
        return args.route is not None
    return args.command not in {"status", "top", "blocked", "audit"}


async def _run(args: argparse.Namespace) -> _Answer:
    floodwall = Floodwall(_settings(args))
    try:
        await floodwall.store.start()
        # Users without a limit of their own are on the live default kept in the store, not
        # on this shell's FLOODWALL_RATE; every status printed shows it. Not start(): a
        # one-shot command needs neither every user's state nor the change feed, and start()
        # swallows a store error, so this shell's default would pass for the live one.
        await floodwall.feed.refresh_limits()
        received_by = None
        acted = _acts(args)
        if acted:
            result = await _act(floodwall, args)
            # Asked after the change: an app that subscribes later reloads it at start.
            received_by = await floodwall.actions.listeners()
        else:
            result = await _read(floodwall, args)
        actions = floodwall.actions
        return _Answer(
            result,
            actions.store_description,
            floodwall.settings.key_prefix,
            actions.configured_default_limit,
            actions.live_default_limit,
            acted,
            received_by,
        )
    finally:
        await floodwall.stop()


async def _read(floodwall: Floodwall, args: argparse.Namespace) -> Any:
    command: str = args.command
    if command == "status":
        return await floodwall.status(args.user)
    if command == "top":
        return await _top(floodwall, args)
    if command == "blocked" and args.networks:
        return await floodwall.blocked_networks()
    if command == "blocked":
        return await floodwall.blocked(after=args.cursor, limit=args.limit)
    if command == "audit":
        return await floodwall.audit_log(before=args.cursor, limit=args.limit)
    if command == "route-limit":
        return floodwall.actions.live_route_limits
    return floodwall.default_limit


async def _act(floodwall: Floodwall, args: argparse.Namespace) -> Any:
    command: str = args.command
    actor = args.actor or f"cli:{getpass.getuser()}"
    if command == "default-limit" and args.clear:
        if args.rate is not None or args.burst is not None:
            raise UsageError("default-limit takes --clear, or --rate and --burst")
        return await floodwall.clear_default_limit(actor=actor)
    if command == "block":
        users: list[str] = args.users
        if args.from_file is not None:
            users = users + _ids_from_file(args.from_file)
        elif len(users) == 1:
            return await floodwall.block(
                users[0], reason=args.reason, ttl_seconds=args.ttl, actor=actor
            )
        if not users:
            raise UsageError("block needs a USER, several, or --from-file F with ids in it")
        results: list[BulkBlockResult] = []
        step = int(rules.BULK_USER_IDS.high)
        for start in range(0, len(users), step):
            results += await floodwall.block_many(
                users[start : start + step], reason=args.reason, ttl_seconds=args.ttl, actor=actor
            )
        return results
    if command == "block-network":
        return await floodwall.block_network(
            args.cidr, reason=args.reason, ttl_seconds=args.ttl, force=args.force, actor=actor
        )
    if command == "unblock-network":
        return await floodwall.unblock_network(args.cidr, actor=actor, reason=args.reason)
    if command == "unblock":
        return await floodwall.unblock(args.user, actor=actor, reason=args.reason)
    if command == "revoke" and args.credential_id:
        return await floodwall.revoke_credential(
            args.user, args.credential_id, actor=actor, reason=args.reason
        )
    if command == "revoke":
        return await floodwall.revoke(args.user, actor=actor, reason=args.reason)
    if command == "reset-password":
        return await floodwall.require_password_reset(args.user, actor=actor, reason=args.reason)
    if command == "clear-reset":
        return await floodwall.clear_password_reset(args.user, actor=actor)
    if command == "limit":
        if args.clear:
            return await floodwall.clear_limit(args.user, actor=actor)
        if args.rate is None or args.burst is None:
            raise UsageError("limit needs --rate and --burst, or --clear")
        return await floodwall.set_limit(args.user, rate=args.rate, burst=args.burst, actor=actor)
    if command == "shadow":
        return await floodwall.set_shadow(args.user, not args.off, actor=actor)
    if command == "route-limit":
        return await _route_limit(floodwall, args, actor)
    if command == "concurrency":
        if args.clear == (args.limit is not None):
            raise UsageError("concurrency takes USER LIMIT, or USER --clear")
        if args.clear:
            return await floodwall.clear_concurrency(args.user, actor=actor)
        return await floodwall.set_concurrency(args.user, limit=args.limit, actor=actor)
    if args.rate is None or args.burst is None:
        raise UsageError("default-limit needs both --rate and --burst to change it")
    return await floodwall.set_default_limit(args.rate, args.burst, actor=actor)


async def _route_limit(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.clear == (args.limit is not None):
        raise UsageError("route-limit takes ROUTE LIMIT, or ROUTE --clear")
    user = None if args.user is None else id_from_argument(args.user)
    if user is not None and args.clear:
        return await floodwall.clear_route_limit(user, args.route, actor=actor)
    if user is not None:
        return await floodwall.set_route_limit(user, args.route, args.limit, actor=actor)
    if args.clear:
        return await floodwall.clear_route_default(args.route, actor=actor)
    return await floodwall.set_route_default(args.route, args.limit, actor=actor)


def _route_lines(routes: dict[str, tuple[int, int]]) -> str:
    if not routes:
        return "no route limit changed: every app applies its own"
    return "\n".join(
        f"{shown(route)}\t{limit} per {period_us / 1_000_000:g}s"
        for route, (limit, period_us) in sorted(routes.items())
    )


def _ids_from_file(name: str) -> list[str]:
    """One id per line (``\\n`` or ``\\r\\n``); empty lines are skipped (block the empty
    id with ``floodwall block ''``). Bytes name ids as in a URL (``floodwall.core.naming``)."""
    try:
        if name == "-":
            data = sys.stdin.buffer.read()
        else:
            with open(name, "rb") as file:
                data = file.read()
    except OSError as exc:
        raise UsageError(f"--from-file: {exc.strerror}: {name}") from None
    lines = (line.removesuffix(b"\r") for line in data.split(b"\n"))
    return [id_from_bytes(line) for line in lines if line]


def _top_table(offenders: list[Offender], window: int) -> str:
    lines = [f"most refused over the last {window}s ({datetime.now(UTC):%H:%M:%S} UTC)"]
    lines.append(f"{'refusals':>10}  {'kind':<9}  subject")
    for entry in offenders:
        kind = "address" if entry.anonymous else "user"
        lines.append(f"{entry.refusals:>10}  {kind:<9}  {shown(entry.subject)}")
    if not offenders:
        lines.append("  (no refusals)")
    return "\n".join(lines)


def _networks_table(networks: list[RefusingNetwork]) -> str:
    lines = ["", "most refused networks (anonymous clients by /24 or /64)"]
    lines.append(f"{'refusals':>10}  network")
    lines += [f"{entry.refusals:>10}  {shown(entry.network)}" for entry in networks]
    if not networks:
        lines.append("  (no refusals)")
    return "\n".join(lines)


_Top = tuple[list[Offender], list[RefusingNetwork]]


async def _top(floodwall: Floodwall, args: argparse.Namespace) -> _Top:
    """Print the tables every ``--interval`` until Ctrl-C; ``--once`` returns them instead."""
    while True:
        offenders = await floodwall.top(window_seconds=args.window, limit=args.limit)
        networks = await floodwall.top_networks(window_seconds=args.window, limit=args.limit)
        if args.once or args.json:
            return offenders, networks
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        tables = _top_table(offenders, args.window) + "\n" + _networks_table(networks)
        print(clear + tables, flush=True)
        await asyncio.sleep(args.interval)


def _json(data: Any) -> str:
    # ASCII only: ids with lone surrogates are \udXXX escapes, still valid JSON, and the
    # output survives any terminal or pipe encoding.
    return json.dumps(data, ensure_ascii=True)


def _columns(*values: str) -> str:
    """One tab-separated row; tabs and newlines inside a value are escaped."""
    return "\t".join(shown(value) for value in values)


def _audit_row(record: AuditRecord) -> str:
    data = record.to_json()
    parts = [data["time"] or "-", record.actor, record.action, record.user_id or "-"]
    parts += [f"reason: {record.reason}"] if record.reason else []
    parts += [f"expires {data['expires']}"] if record.expires_ms else []
    parts += [record.detail] if record.detail else []
    return _columns(*parts)


def _print(args: argparse.Namespace, answer: _Answer) -> None:
    result = answer.result
    extra: dict[str, Any] = {}
    if answer.acted:
        extra["received_by"] = answer.received_by
    defaults: dict[str, Any] = {
        "store": answer.store,
        "default_limit": {
            "live": _limit_json(answer.live),
            "configured": _limit_json(answer.configured),
        },
    }
    if isinstance(result, UserStatus):
        print(
            _json(result.to_json() | defaults | extra) if args.json else _describe(result, answer)
        )
    elif args.command == "top":
        offenders, networks = result
        if args.json:
            rows = [
                {"subject": o.subject, "anonymous": o.anonymous, "refusals": o.refusals}
                for o in offenders
            ]
            nets = [{"network": n.network, "refusals": n.refusals} for n in networks]
            print(_json({"window_seconds": args.window, "items": rows, "networks": nets}))
        else:
            print(_top_table(offenders, args.window) + "\n" + _networks_table(networks))
    elif args.command == "route-limit":
        if args.json:
            print(_json({"routes": windows_json(result)} | extra))
        else:
            print(_route_lines(result))
    elif args.command == "block":
        _print_bulk(args, result, extra)
    elif args.command == "block-network":
        assert isinstance(result, NetworkBlock)
        data = result.to_json() | {"blocked": True}
        print(_json(data | extra) if args.json else _network_row(result))
    elif args.command == "unblock-network":
        data = {"network": result, "blocked": False}
        print(_json(data | extra) if args.json else _columns(result, "not blocked"))
    elif args.command == "blocked" and args.networks:
        if args.json:
            print(_json({"items": [block.to_json() for block in result]}))
        else:
            for block in result:
                print(_network_row(block))
    elif args.command == "default-limit":
        if args.json:
            print(_json({"rate": result[0], "burst": result[1]} | defaults | extra))
        else:
            print(_lines(_defaults(answer)))
    elif args.command == "blocked":
        statuses, cursor = result
        if args.json:
            print(_json({"items": [s.to_json() for s in statuses], "next_cursor": cursor}))
            return
        for status in statuses:
            until = status.to_json()["blocked_until"] or "no end"
            print(
                _columns(
                    status.user_id, f"until {until}", f"by {status.blocked_by}", status.reason or ""
                )
            )
        if cursor is not None:
            print(f"more: --cursor={shell_word(cursor)}")
    else:
        records, cursor = result
        if args.json:
            print(_json({"items": [r.to_json() for r in records], "next_cursor": cursor}))
            return
        for record in records:
            print(_audit_row(record))
        if cursor is not None:
            print(f"more: --cursor={shell_word(cursor)}")


def _network_row(block: NetworkBlock) -> str:
    until = block.to_json()["blocked_until"] or "no end"
    return _columns(block.network, f"until {until}", f"by {block.blocked_by}", block.reason or "")


def _print_bulk(args: argparse.Namespace, results: list[BulkBlockResult], extra: Any) -> None:
    blocked, failed = bulk_counts(results)
    if args.json:
        items = [result.to_json() for result in results]
        summary = {"blocked": blocked, "failed": failed}
        print(_json({"items": items} | summary | extra))
        return
    for result in results:
        if result.blocked:
            until = result.to_json()["blocked_until"] or "no end"
            print(_columns(result.user_id, f"blocked until {until}"))
        else:
            print(_columns(result.user_id, f"not blocked: {result.error}"))
    print(f"blocked {blocked} of {blocked + failed} users")


def _warn(answer: _Answer) -> None:
    """One line on stderr when no running app received an action, or none can be counted."""
    if not answer.acted:
        return
    where = answer.store.removesuffix(f", key prefix {answer.prefix}")
    if answer.received_by is None:
        print(
            f"floodwall: warning: the change is stored on {shown(where)}, but the store could "
            "not count the workers that received it",
            file=sys.stderr,
        )
        return
    if answer.received_by != 0:
        return
    print(
        f"floodwall: warning: no running app follows key prefix {json.dumps(answer.prefix)} "
        f"on {shown(where)}: the change is stored, but no worker has received it",
        file=sys.stderr,
    )


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
            # The demo serves with uvicorn, an extra: imported only once it is known here.
            from floodwall.demo import serve

            serve(args.host, args.port, args.workers)
            return 0
        with _audit_lines_to_stderr():
            answer = asyncio.run(_run(args))
    except UsageError as exc:
        return _error(exc, 2)
    except (ValidationError, ConfigurationError) as exc:
        return _error(settings_error(exc), 2)
    except StorageError as exc:
        return _error(f"the store did not answer: {exc}", 1)
    except rules.RuleError as exc:
        return _error(exc, 2)
    except (FloodwallError, ValueError) as exc:
        return _error(exc, 1)
    except KeyboardInterrupt:
        return 130
    _print(args, answer)
    _warn(answer)
    if isinstance(answer.result, list) and args.command == "block":
        # A bulk block that left anyone out is not done.
        return 0 if all(result.blocked for result in answer.result) else 1
    return 0


def _error(message: object, status: int) -> int:
    print(f"floodwall: error: {shown(str(message))}", file=sys.stderr)
    return status


if __name__ == "__main__":
    sys.exit(main())
