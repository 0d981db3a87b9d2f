"""One command on the store: its settings from the options, the store opened, the command
run through the service, and the store closed."""

from __future__ import annotations

import argparse
from typing import Any

from floodwall.cli.acting import act
from floodwall.cli.answer import Answer
from floodwall.cli.arguments import UsageError
from floodwall.cli.reading import read
from floodwall.control.actions import BulkBlockResult
from floodwall.killswitch.status import UserStatus
from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings
from floodwall.stores.base import Replicas

__all__ = ["run"]

_READS = frozenset({"status", "top", "blocked", "audit"})


def _settings(args: argparse.Namespace) -> FloodwallSettings:
    """The settings of the environment, with ``--redis-url`` and ``--key-prefix`` over them."""
    # Given to the constructor, so an option is validated as the variable would be.
    options: dict[str, Any] = {}
    if args.redis_url:
        options["redis_url"] = args.redis_url
    if args.key_prefix is not None:
        options["key_prefix"] = args.key_prefix
    settings = FloodwallSettings(**options)
    if settings.redis_url is None and not settings.redis_sentinels:
        raise UsageError(
            "no store: set FLOODWALL_REDIS_URL or pass --redis-url (an in-memory store lives "
            "inside the app process; use the admin API for it)"
        )
    # A terminal can wait longer for Redis than a request can.
    return settings.model_copy(update={"redis_timeout": max(settings.redis_timeout, 2.0)})


def _acts(args: argparse.Namespace) -> bool:
    """Whether the command changes something (``default-limit`` and ``route-limit`` with
    nothing to change show the limits instead)."""
    if args.command == "default-limit":
        return bool(args.rate is not None or args.burst is not None or args.clear)
    if args.command in ("route-limit", "plan"):
        return (args.route if args.command == "route-limit" else args.name) is not None
    return args.command not in _READS


async def run(args: argparse.Namespace) -> Answer:
    """Run the command on the store the options name."""
    floodwall = Floodwall(_settings(args))
    try:
        await floodwall.store.start()
        # Users without a limit of their own are on the live default kept in the store, not
        # on this shell's FLOODWALL_RATE; every status printed shows it. Not start(): a
        # one-shot command needs neither every user's state nor the change feed, and start()
        # swallows a store error, so this shell's default would pass for the live one.
        await floodwall.feed.refresh_limits()
        return await _answer(floodwall, args)
    finally:
        await floodwall.stop()


async def _replicated(floodwall: Floodwall, args: argparse.Namespace, result: Any) -> Replicas:
    """Wait for a replica to hold the change, on the node of what it changed (a Cluster)."""
    user_id = None
    if isinstance(result, UserStatus):
        user_id = result.user_id
    elif isinstance(result, list) and result and isinstance(result[-1], BulkBlockResult):
        user_id = result[-1].user_id
    networks = args.command in ("block-network", "unblock-network")
    return await floodwall.actions.replicated(user_id=user_id, networks=networks)


async def _answer(floodwall: Floodwall, args: argparse.Namespace) -> Answer:
    received_by = None
    replicas = Replicas(0, 0)
    acted = _acts(args)
    if acted:
        result = await act(floodwall, args)
        replicas = await _replicated(floodwall, args, result)
        # Asked after the change: an app that subscribes later reloads it at start.
        received_by = await floodwall.actions.listeners()
    else:
        result = await read(floodwall, args)
    actions = floodwall.actions
    return Answer(
        result,
        actions.store_description,
        floodwall.settings.key_prefix,
        actions.configured_default_limit,
        actions.live_default_limit,
        acted,
        received_by,
        replicas,
    )
