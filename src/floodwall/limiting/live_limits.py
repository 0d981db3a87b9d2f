"""The default limits every worker applies, changed at run time on every worker at once.

The configured default comes from the settings; an operator's live default is kept in the
store (so it outlasts restarts) and each worker holds a copy, refreshed by the change feed
and by polling. It is never read from a user's slot, so the check script touches one slot.
"""

from __future__ import annotations

import logging
from typing import Final

from floodwall.core import rules
from floodwall.core.display import shown
from floodwall.core.stored import Limit, WindowLimit
from floodwall.settings import FloodwallSettings
from floodwall.stores.protocols import LiveConfig

__all__ = ["LiveLimits"]

logger = logging.getLogger("floodwall")

_LOGGED_PLANS: Final = 100
"""Unknown plan names logged per worker at most: a token's claim is the sender's to choose."""


class LiveLimits:
    """This worker's default limits for users and anonymous clients."""

    __slots__ = (
        "_settings",
        "_unknown_plans",
        "anonymous",
        "configured",
        "configured_plans",
        "live",
        "live_plans",
        "plans",
        "routes",
        "routes_version",
        "user",
    )

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
        self.configured_plans = settings.plan_limits()
        """Each plan's limit in this app's settings (``FLOODWALL_PLANS``)."""
        self.live_plans: dict[str, Limit] = {}
        """The plans' limits an operator changed, shared by every worker through the store."""
        self.plans: dict[str, Limit] = dict(self.configured_plans)
        """The limit each plan has here now: live, else configured."""
        self._unknown_plans: set[str] = set()
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

    def for_plan(self, plan: str) -> Limit:
        """The limit of a user on ``plan``: the plan's, or the default for a plan that is
        not configured (its name logged once, on the first request that names it)."""
        limit = self.plans.get(plan)
        if limit is not None:
            return limit
        if len(self._unknown_plans) < _LOGGED_PLANS and plan not in self._unknown_plans:
            self._unknown_plans.add(plan)
            logger.warning(
                "floodwall: the plan %s is not configured (FLOODWALL_PLANS): the default "
                "limit applies",
                shown(plan[:64]),
            )
        return self.user

    def _apply_plans(self, live: dict[str, Limit]) -> bool:
        changed = live != self.live_plans
        self.live_plans = live
        self.plans = {**self.configured_plans, **live}
        return changed

    async def set_plan(self, store: LiveConfig, plan: str, rate: float, burst: int) -> Limit:
        """Store a plan's live limit (within the rule book) and apply it here."""
        limit = rules.limit(rate, burst)
        await store.set_plan_limit(plan, limit)
        self._apply_plans({**self.live_plans, plan: limit})
        return limit

    async def clear_plan(self, store: LiveConfig, plan: str) -> Limit | None:
        """Forget a plan's live limit: every worker goes back to its settings' (if any)."""
        await store.set_plan_limit(plan, None)
        self._apply_plans({name: limit for name, limit in self.live_plans.items() if name != plan})
        return self.plans.get(plan)

    async def refresh(self, store: LiveConfig) -> bool:
        """Read the live default from the store; whether it changed."""
        settings = await store.read_live_settings()
        plans_changed = self._apply_plans(dict(settings.plan_limits))
        live = settings.default_limit
        if settings.default_limit_unreadable:
            logger.warning("floodwall: the stored default limit is unreadable; using the settings")
        routes = dict(settings.route_limits)
        changed = routes != self.routes
        if changed:
            self.routes = routes
            self.routes_version += 1
        return self._apply(live) or changed or plans_changed

    async def set(self, store: LiveConfig, rate: float, burst: int) -> Limit:
        """Store a live default (within the rule book) and apply it here."""
        limit = rules.limit(rate, burst)
        await store.set_default_limit(limit)
        self._apply(limit)
        return limit

    async def set_route(self, store: LiveConfig, route: str, limit: WindowLimit) -> None:
        """Store a route's live limit and apply it here."""
        await store.set_route_default(route, limit)
        self.routes[route] = limit
        self.routes_version += 1

    async def clear_route(self, store: LiveConfig, route: str) -> None:
        """Forget a route's live limit: every worker goes back to the app's."""
        await store.set_route_default(route, None)
        self.routes.pop(route, None)
        self.routes_version += 1

    async def clear(self, store: LiveConfig) -> Limit:
        """Forget the live default: every worker goes back to its settings."""
        await store.set_default_limit(None)
        self._apply(None)
        return self.user
