"""The commands that look and change nothing."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from floodwall.cli.text import top_tables
from floodwall.observe.top import Offender, RefusingNetwork
from floodwall.service import Floodwall

__all__ = ["Top", "read"]

Top = tuple[list[Offender], list[RefusingNetwork]]


async def read(floodwall: Floodwall, args: argparse.Namespace) -> Any:
    """Run the command that reads; what it returns is the service's answer."""
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
    if command == "plan":
        return floodwall.plan_limits
    return floodwall.default_limit


async def _top(floodwall: Floodwall, args: argparse.Namespace) -> Top:
    """Print the tables every ``--interval`` until Ctrl-C; ``--once`` returns them instead."""
    while True:
        offenders = await floodwall.top(window_seconds=args.window, limit=args.limit)
        networks = await floodwall.top_networks(window_seconds=args.window, limit=args.limit)
        if args.once or args.json:
            return offenders, networks
        clear = "\x1b[H\x1b[2J" if sys.stdout.isatty() else ""
        print(clear + top_tables(offenders, networks, args.window), flush=True)
        await asyncio.sleep(args.interval)
