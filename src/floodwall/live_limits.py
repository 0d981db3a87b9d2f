"""The default limits every worker applies, changed at run time on every worker at once.

The configured default comes from the settings; an operator's live default is kept in the
store (so it outlasts restarts) and each worker holds a copy, refreshed by the change feed
and by polling. It is never read from a user's slot, so the check script touches one slot.
"""

from __future__ import annotations

import logging

from floodwall import rules
from floodwall.settings import FloodwallSettings
from floodwall.stored import stored_limit
from floodwall.stores.base import Store

__all__ = ["APP_ROUTES_FIELD", "ROUTE_FIELD", "Limit", "LiveLimits", "WindowLimit", "window_limit"]

logger = logging.getLogger("floodwall")

Limit = tuple[float, int]
"""(rate in requests per second, burst in requests)."""

WindowLimit = tuple[int, int]
"""A route limit: (requests, period in µs)."""

ROUTE_FIELD = "route:"
"""Prefix of the field, in the config hash or a user's state, overriding a route limit."""

APP_ROUTES_FIELD = "app-routes:"
"""Prefix of the config hash's fields where apps publish their routes (``AppRoutes``), one
field per distinct set of routes: what an operator's live route limit is checked against."""


def window_limit(text: str | None) -> WindowLimit | None:
    """A stored route limit, ``"limit:period_us"``, within the rule book; else ``None``."""
    if text is None:
        return None
    count, sep, period = text.partition(":")
    if not (sep and count.isdigit() and period.isdigit()):
        return None
    try:
        rules.ROUTE_LIMIT.check(int(count))
        rules.ROUTE_PERIOD.check(int(period) / 1_000_000)
    except rules.RuleError:
        return None
    return int(count), int(period)


class LiveLimits:
    """This worker's default limits for users and anonymous clients."""

    __slots__ = ("_settings", "anonymous", "configured", "live", "routes", "routes_version", "user")

    def __init__(self, settings: FloodwallSettings) -> None:
        self._settings = settings
        self.configured: Limit = (settings.rate, settings.burst)
        """The default of this app's settings."""
        self.live: Limit | None = None
        """An operator's default, shared by every worker through the store, if set."""
        self.user: Limit = self.configured
        self.anonymous: Limit = self.configured
        self.routes: dict[str, WindowLimit] = {}
        """Route limits changed live by an operator, by ``RouteLimit.key``."""
        self.routes_version = 0
        """Counts changes of ``routes``: what was worked out from them is stale."""
        self._apply(None)

    def _apply(self, live: Limit | None) -> bool:
        changed = live != self.live
        self.live = live
        self.user = live if live is not None else self.configured
        settings = self._settings
        # Anonymous traffic follows the default unless it has a limit of its own.
        self.anonymous = (
            settings.anonymous_rate if settings.anonymous_rate is not None else self.user[0],
            settings.anonymous_burst if settings.anonymous_burst is not None else self.user[1],
        )
        return changed

    async def refresh(self, store: Store) -> bool:
        """Read the live default from the store; whether it changed."""
        config = await store.read_config()
        live = stored_limit(config.get("rate"), config.get("burst"))
        if live is None and ("rate" in config or "burst" in config):
            logger.warning("floodwall: the stored default limit is unreadable; using the settings")
        routes = {
            name.removeprefix(ROUTE_FIELD): limit
            for name, value in config.items()
            if name.startswith(ROUTE_FIELD) and (limit := window_limit(value)) is not None
        }
        changed = routes != self.routes
        if changed:
            self.routes = routes
            self.routes_version += 1
        return self._apply(live) or changed

    async def set(self, store: Store, rate: float, burst: int) -> Limit:
        """Store a live default (within the rule book) and apply it here."""
        limit = rules.limit(rate, burst)
        await store.write_config({"rate": repr(limit[0]), "burst": str(limit[1])})
        self._apply(limit)
        return limit

    async def set_route(self, store: Store, route: str, limit: WindowLimit) -> None:
        """Store a route's live limit and apply it here."""
        await store.write_config({ROUTE_FIELD + route: f"{limit[0]}:{limit[1]}"})
        self.routes[route] = limit
        self.routes_version += 1

    async def clear_route(self, store: Store, route: str) -> None:
        """Forget a route's live limit: every worker goes back to the app's."""
        await store.write_config({}, delete=(ROUTE_FIELD + route,))
        self.routes.pop(route, None)
        self.routes_version += 1

    async def clear(self, store: Store) -> Limit:
        """Forget the live default: every worker goes back to its settings."""
        await store.write_config({}, delete=("rate", "burst"))
        self._apply(None)
        return self.user
