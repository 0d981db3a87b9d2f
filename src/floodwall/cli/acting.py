"""The commands that change something, each through the service as the admin API acts."""

from __future__ import annotations

import argparse
import getpass
from collections.abc import Awaitable, Callable
from typing import Any, Final

from floodwall.cli.arguments import UsageError, ids_from_file
from floodwall.control.actions import BulkBlockResult
from floodwall.core import rules
from floodwall.core.naming import id_from_argument
from floodwall.core.plans import plan_limit
from floodwall.service import Floodwall

__all__ = ["act"]

_Action = Callable[[Floodwall, argparse.Namespace, str], Awaitable[Any]]


async def act(floodwall: Floodwall, args: argparse.Namespace) -> Any:
    """Run the command that changes something; what it returns is the service's answer."""
    actor = args.actor or f"cli:{getpass.getuser()}"
    return await _ACTIONS[args.command](floodwall, args, actor)


async def _block(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    users: list[str] = args.users
    if args.from_file is not None:
        users = users + ids_from_file(args.from_file)
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


async def _block_network(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.block_network(
        args.cidr, reason=args.reason, ttl_seconds=args.ttl, force=args.force, actor=actor
    )


async def _unblock_network(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.unblock_network(args.cidr, actor=actor, reason=args.reason)


async def _unblock(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.unblock(args.user, actor=actor, reason=args.reason)


async def _revoke(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.credential_id:
        return await floodwall.revoke_credential(
            args.user, args.credential_id, actor=actor, reason=args.reason
        )
    return await floodwall.revoke(args.user, actor=actor, reason=args.reason)


async def _reset_password(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.require_password_reset(args.user, actor=actor, reason=args.reason)


async def _clear_reset(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.clear_password_reset(args.user, actor=actor)


async def _limit(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.clear:
        return await floodwall.clear_limit(args.user, actor=actor)
    if args.rate is None or args.burst is None:
        raise UsageError("limit needs --rate and --burst, or --clear")
    return await floodwall.set_limit(args.user, rate=args.rate, burst=args.burst, actor=actor)


async def _shadow(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    return await floodwall.set_shadow(args.user, not args.off, actor=actor)


async def _concurrency(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.clear == (args.limit is not None):
        raise UsageError("concurrency takes USER LIMIT, or USER --clear")
    if args.clear:
        return await floodwall.clear_concurrency(args.user, actor=actor)
    return await floodwall.set_concurrency(args.user, limit=args.limit, actor=actor)


async def _default_limit(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.clear:
        if args.rate is not None or args.burst is not None:
            raise UsageError("default-limit takes --clear, or --rate and --burst")
        return await floodwall.clear_default_limit(actor=actor)
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


async def _plan(floodwall: Floodwall, args: argparse.Namespace, actor: str) -> Any:
    if args.clear == (args.limit is not None):
        raise UsageError("plan takes NAME LIMIT, or NAME --clear")
    if args.clear:
        return args.name, await floodwall.clear_plan_limit(args.name, actor=actor)
    rate, _, burst = args.limit.partition(",")
    limit = plan_limit(rate, burst if burst.strip() else None)
    return args.name, await floodwall.set_plan_limit(args.name, *limit, actor=actor)


_ACTIONS: Final[dict[str, _Action]] = {
    "block": _block,
    "block-network": _block_network,
    "unblock-network": _unblock_network,
    "unblock": _unblock,
    "revoke": _revoke,
    "reset-password": _reset_password,
    "clear-reset": _clear_reset,
    "limit": _limit,
    "concurrency": _concurrency,
    "shadow": _shadow,
    "default-limit": _default_limit,
    "route-limit": _route_limit,
    "plan": _plan,
}
