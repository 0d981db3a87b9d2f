"""The parser of every ``floodwall`` command.

Commands are added in the order ``floodwall --help`` lists them; the options every store
command shares, and ``--actor`` (for the commands that change something), are parent
parsers.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import TypeAlias

from floodwall import __version__
from floodwall.cli.arguments import Parser, interval, rate, ttl, whole, workers
from floodwall.core import rules
from floodwall.core.naming import id_from_argument

__all__ = ["parser"]

_Commands: TypeAlias = "argparse._SubParsersAction[Parser]"

_TTL_HELP = "block for this long (90s, 15m, 1h, 2d)"


@dataclass(frozen=True, slots=True)
class _Parents:
    """The options shared by every command on a store, and by every one that acts."""

    common: Parser
    acting: Parser

    def of(self, *, acts: bool) -> list[Parser]:
        return [self.common, self.acting] if acts else [self.common]


def parser() -> argparse.ArgumentParser:
    """The ``floodwall`` command line."""
    command_line = Parser(
        prog="floodwall", description="Per-user rate limits and an account kill switch."
    )
    command_line.add_argument("--version", action="version", version=f"floodwall {__version__}")
    commands = command_line.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=Parser
    )
    parents = _parents()
    _add_demo(commands)
    _add_blocks(commands, parents)
    _add_user_commands(commands, parents)
    _add_top(commands, parents)
    _add_default_and_route_limits(commands, parents)
    _add_lists(commands, parents)
    return command_line


def _parents() -> _Parents:
    common = Parser(add_help=False)
    common.add_argument("--redis-url", help="the store (default: FLOODWALL_REDIS_URL)")
    common.add_argument(
        "--key-prefix",
        help="the app's key prefix in the store (default: FLOODWALL_KEY_PREFIX, or floodwall)",
    )
    common.add_argument("--json", action="store_true", help="print JSON for scripts")
    # Only commands that change something take --actor: on a read it would pass for a filter.
    acting = Parser(add_help=False)
    acting.add_argument(
        "--actor", default=None, help="who acts, for the audit log (default: cli:$USER)"
    )
    return _Parents(common, acting)


def _add_demo(commands: _Commands) -> None:
    demo = commands.add_parser("demo", help="serve the demo app")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8000)
    demo.add_argument("--workers", type=workers, default=1, help="worker processes (default 1)")


def _add_blocks(commands: _Commands, parents: _Parents) -> None:
    block = commands.add_parser(
        "block",
        help="refuse every request of a user, or of many (403)",
        parents=parents.of(acts=True),
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
    block.add_argument("--ttl", type=ttl, help=_TTL_HELP)
    _add_network_blocks(commands, parents)


def _add_network_blocks(commands: _Commands, parents: _Parents) -> None:
    block = commands.add_parser(
        "block-network",
        help="refuse every request from inside a network (403), on every worker",
        parents=parents.of(acts=True),
    )
    block.add_argument("cidr", help="an IPv4 or IPv6 network: 10.0.0.0/8, 2001:db8::/32")
    block.add_argument("--reason", required=True)
    block.add_argument("--ttl", type=ttl, help=_TTL_HELP)
    block.add_argument(
        "--force",
        action="store_true",
        help=f"allow networks broader than a /{rules.MIN_PREFIX_IPV4} (IPv4) or "
        f"/{rules.MIN_PREFIX_IPV6} (IPv6)",
    )
    unblock = commands.add_parser(
        "unblock-network", help="lift a network block", parents=parents.of(acts=True)
    )
    unblock.add_argument("cidr")
    unblock.add_argument("--reason")


def _user_command(
    commands: _Commands, parents: _Parents, name: str, text: str, *, acts: bool = True
) -> argparse.ArgumentParser:
    """A command on one user, named by the first argument."""
    sub: argparse.ArgumentParser = commands.add_parser(
        name, help=text, parents=parents.of(acts=acts)
    )
    sub.add_argument(
        "user",
        type=id_from_argument,
        help="the user id: '' for the empty one, $'a\\nb' for one with a newline "
        "(bash); after -- when it starts with -",
    )
    return sub


def _add_user_commands(commands: _Commands, parents: _Parents) -> None:
    _user_command(commands, parents, "unblock", "lift a block").add_argument("--reason")
    revoke = _user_command(
        commands, parents, "revoke", "refuse every credential issued up to now (401)"
    )
    revoke.add_argument("--credential-id", help="revoke only this credential (a JWT's jti)")
    revoke.add_argument("--reason")
    reset = _user_command(
        commands, parents, "reset-password", "require a password reset (revokes too)"
    )
    reset.add_argument("--reason")
    _user_command(commands, parents, "clear-reset", "clear a required password reset")
    _add_user_limits(commands, parents)
    _user_command(commands, parents, "status", "show a user's status", acts=False)
    shadow = _user_command(
        commands, parents, "shadow", "observe a user's limit without enforcing it"
    )
    shadow.add_argument("--off", action="store_true", help="enforce the limit again")


def _add_user_limits(commands: _Commands, parents: _Parents) -> None:
    limit = _user_command(commands, parents, "limit", "give a user a limit of their own")
    limit.add_argument("--rate", type=rate, help="requests per second, or e.g. 600/minute")
    limit.add_argument("--burst", type=whole(rules.BURST))
    limit.add_argument("--clear", action="store_true", help="back to the default limit")
    concurrency = _user_command(
        commands, parents, "concurrency", "give a user a limit of requests in flight"
    )
    concurrency.add_argument("limit", nargs="?", type=whole(rules.CONCURRENCY))
    concurrency.add_argument("--clear", action="store_true", help="back to the configured one")


def _add_top(commands: _Commands, parents: _Parents) -> None:
    top = commands.add_parser(
        "top",
        help="the most refused users and clients, refreshed live",
        parents=parents.of(acts=False),
    )
    top.add_argument(
        "--window", type=whole(rules.WINDOW_SECONDS), default=60, help="seconds to look back"
    )
    top.add_argument("--limit", type=whole(rules.PAGE_SIZE), default=20)
    top.add_argument("--interval", type=interval, default=2.0, help="refresh period")
    top.add_argument("--once", action="store_true", help="print once and exit")


def _add_default_and_route_limits(commands: _Commands, parents: _Parents) -> None:
    default = commands.add_parser(
        "default-limit",
        help="show or change the default limit on every worker",
        parents=parents.of(acts=True),
    )
    default.add_argument("--rate", type=rate)
    default.add_argument("--burst", type=whole(rules.BURST))
    default.add_argument(
        "--clear", action="store_true", help="back to each app's configured default"
    )
    route = commands.add_parser(
        "route-limit",
        help="show or change a route's limit, for everyone or for one user",
        parents=parents.of(acts=True),
    )
    route.add_argument("route", nargs="?", help="the route as the app names it: 'POST /login'")
    route.add_argument("limit", nargs="?", help="e.g. 10/minute")
    route.add_argument("--user", help="only this user's limit of the route")
    route.add_argument("--clear", action="store_true", help="back to the app's limit")
    plan = commands.add_parser(
        "plan",
        help="show the plans' limits, or change one on every worker",
        parents=parents.of(acts=True),
    )
    plan.add_argument("name", nargs="?", help="the plan's name, as FLOODWALL_PLANS names it")
    plan.add_argument("limit", nargs="?", help="RATE[,BURST]: 100/second,200 or 2.5")
    plan.add_argument("--clear", action="store_true", help="back to FLOODWALL_PLANS")


def _add_lists(commands: _Commands, parents: _Parents) -> None:
    blocked = commands.add_parser(
        "blocked", help="list blocked users (or networks)", parents=parents.of(acts=False)
    )
    blocked.add_argument("--limit", type=whole(rules.PAGE_SIZE), default=100)
    blocked.add_argument("--cursor")
    blocked.add_argument("--networks", action="store_true", help="list blocked networks")
    audit = commands.add_parser(
        "audit", help="show operator actions, newest first", parents=parents.of(acts=False)
    )
    audit.add_argument("--limit", type=whole(rules.PAGE_SIZE), default=20)
    audit.add_argument("--cursor")
