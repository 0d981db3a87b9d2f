"""The route limits of one app: found among its routes at its start, an operator's live
route limits added as they change, and matched to each request.

Resolved at the lifespan startup, or at the first request when there is no lifespan:
routes may be added after the middleware is, and a mistake must fail the startup (raised
while the app builds its middleware stack, it would answer 500 to every request).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from floodwall.core.errors import ConfigurationError
from floodwall.core.route_limits import RouteLimit, RouteTable, route_limit
from floodwall.limiting.live_limits import LiveLimits
from floodwall.limiting.routes import AppRoutes, app_routes, resolve_route_limits, with_live_routes

__all__ = ["AppRouteLimits"]

logger = logging.getLogger("floodwall")


class AppRouteLimits:
    """The route limits of the app below a middleware."""

    def __init__(
        self,
        configured: list[RouteLimit],
        given: Mapping[str, str],
        live: LiveLimits,
        *,
        crosses_subjects: bool,
    ) -> None:
        self._configured = configured
        self._given = dict(given)
        self._live = live
        self._crosses_subjects = crosses_subjects
        self._table = RouteTable(())
        self._resolved = self._table
        self.app_routes = AppRoutes()
        """The app's routes, found at its start (published for operators' live limits)."""
        self._live_version = live.routes_version
        self._unknown_live: set[str] = set()
        self._found = False
        # Until the app's routes are found, every request looks: it may have limits.
        self._any = True

    @property
    def limits(self) -> tuple[RouteLimit, ...]:
        """The app's own route limits (in code and in ``FLOODWALL_ROUTE_LIMITS``)."""
        return self._resolved.limits

    @property
    def active(self) -> bool:
        """Whether a request may have a route limit: one of the app's, or a live one."""
        return self._any or bool(self._live.routes)

    def find(self, app: object) -> None:
        """Find the app's routes and resolve its limits against them."""
        self.app_routes = app_routes(app)
        given = [route_limit(key, rate) for key, rate in self._given.items()]
        table = resolve_route_limits(self.app_routes, self._configured, given)
        if not self._crosses_subjects and any(route.by == "address" for route in table.limits):
            # A user's keys and an address's live in different slots: one script cannot
            # count both.
            raise ConfigurationError("route limits by address need one Redis, not a Redis Cluster")
        self._resolved = table
        self._found = True
        self._add_live()

    def match(self, method: str, path: str, app: object) -> tuple[RouteLimit, ...]:
        """The route limits of a request, in the table's order."""
        if not self._found:
            self.find(app)
        if self._live.routes_version != self._live_version:
            self._add_live()
        return self._table.match(method, path)

    def _add_live(self) -> None:
        self._live_version = self._live.routes_version
        self._table, unknown = with_live_routes(self._resolved, self.app_routes, self._live.routes)
        self._any = bool(self._table)
        for key in set(unknown) - self._unknown_live:
            logger.warning(
                "floodwall: the live route limit %s names no route of this app: it applies "
                "nothing here",
                key,
            )
        self._unknown_live = set(unknown)
