"""Operator actions on limits: a user's own (rate and burst, shadow, per route,
concurrency), and everyone's defaults, changed at run time on every worker."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from floodwall.control.action_parts import PYTHON_ACTOR, ActionParts, check_change
from floodwall.core import rules
from floodwall.core.plans import plan_name
from floodwall.core.route_limits import RouteLimit, route_limit, window_of
from floodwall.core.stored import Limit, WindowLimit
from floodwall.killswitch.status import UserStatus
from floodwall.limiting.routes import AppRoutes

__all__ = ["DefaultLimitActions", "UserLimitActions"]


class UserLimitActions(ActionParts):
    """A user's own limits, in place of the defaults."""

    async def set_limit(
        self, user_id: str, *, rate: float, burst: int, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a limit of their own, starting from a full bucket."""
        rate, burst = rules.limit(rate, burst)
        check_change(user_id, None)
        state = await self._store.set_limit(user_id, (rate, burst))
        return await self._changed(
            user_id, "set-limit", actor, state, detail=f"rate={rate} burst={burst}"
        )

    async def clear_limit(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """Put the user back on the default limit."""
        check_change(user_id, None)
        state = await self._store.set_limit(user_id, None)
        return await self._changed(user_id, "clear-limit", actor, state)

    async def set_shadow(
        self, user_id: str, enabled: bool, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Observe this user's limit without enforcing it (to roll out a limit safely)."""
        check_change(user_id, None)
        state = await self._store.set_shadow(user_id, enabled)
        return await self._changed(user_id, "shadow-on" if enabled else "shadow-off", actor, state)

    async def set_route_limit(
        self, user_id: str, route: str, limit: str, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a limit of their own on one route (``"POST /login"``,
        ``"10/minute"``), in place of the app's."""
        key, window = window_of(route, limit)
        await self._check_route(key, limited=True)
        check_change(user_id, None)
        state = await self._store.set_route_limit(user_id, key, window)
        return await self._changed(
            user_id, "set-route-limit", actor, state, detail=f"route={key} limit={limit}"
        )

    async def clear_route_limit(
        self, user_id: str, route: str, *, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Put the user back on the app's limit of one route."""
        key, _ = window_of(route, "1/second")
        check_change(user_id, None)
        state = await self._store.set_route_limit(user_id, key, None)
        return await self._changed(
            user_id, "clear-route-limit", actor, state, detail=f"route={key}"
        )

    async def set_concurrency(
        self, user_id: str, *, limit: int, actor: str = PYTHON_ACTOR
    ) -> UserStatus:
        """Give the user a concurrency limit of their own (requests in flight at once), in
        place of FLOODWALL_CONCURRENCY, set or not."""
        limit = rules.CONCURRENCY.whole_number(limit)
        check_change(user_id, None)
        state = await self._store.set_concurrency(user_id, limit)
        return await self._changed(
            user_id, "set-concurrency", actor, state, detail=f"concurrency={limit}"
        )

    async def clear_concurrency(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """Put the user back on FLOODWALL_CONCURRENCY."""
        check_change(user_id, None)
        state = await self._store.set_concurrency(user_id, None)
        return await self._changed(user_id, "clear-concurrency", actor, state)

    async def _check_route(self, key: str, *, limited: bool) -> None:
        # A live limit on a route no app has would apply nothing: refused, saying why. With
        # no app published yet (none has started), there is nothing to check against.
        settings = await self._store.read_live_settings()
        published = settings.published_routes
        if not published:
            return
        found, limited_keys = AppRoutes.from_published(published)
        item = route_limit(key, "1/second")
        if not found.names(item):
            raise rules.RuleError(
                f"no app using this store has the route {key}: name it as the app's router "
                "declares it, 'METHOD /path/{param}'"
            )
        limited_keys |= settings.limited_routes
        if limited and key not in limited_keys:
            raise rules.RuleError(
                f"the route {key} has no limit to give a user one of their own: "
                f"set one for everyone first (route-limit '{key}' N/period)"
            )


class DefaultLimitActions(UserLimitActions):
    """Everyone's limits, changed at run time on every worker and kept across restarts."""

    @property
    def configured_default_limit(self) -> Limit:
        """The default limit of this process's settings."""
        return self._limits.configured

    @property
    def live_default_limit(self) -> Limit | None:
        """An operator's default limit, shared through the store, when one is set."""
        return self._limits.live

    @property
    def live_route_limits(self) -> dict[str, WindowLimit]:
        """Route limits an operator changed for everyone: route → (requests, period µs)."""
        return dict(self._limits.routes)

    async def set_route_default(
        self, route: str, limit: str, *, actor: str = PYTHON_ACTOR
    ) -> dict[str, WindowLimit]:
        """Change one route's limit for everyone, on every worker, kept across restarts."""
        key, window = window_of(route, limit)
        await self._check_route(key, limited=False)
        await self._limits.set_route(self._store, key, window)
        await self._feed.config_changed()
        await self.audit.record(
            actor, "set-route-default", None, detail=f"route={key} limit={limit}"
        )
        return self.live_route_limits

    async def publish_routes(self, routes: AppRoutes, limited: Sequence[RouteLimit]) -> None:
        """Publish an app's routes and route limits, which live route limits are checked
        against; the workers of one app share one field."""
        text = routes.published(limited)
        digest = hashlib.sha256(text.encode()).hexdigest()[:16]
        await self._store.publish_app_routes(digest, text)

    async def clear_route_default(
        self, route: str, *, actor: str = PYTHON_ACTOR
    ) -> dict[str, WindowLimit]:
        """Put every worker back on the app's own limit of one route."""
        key, _ = window_of(route, "1/second")
        await self._limits.clear_route(self._store, key)
        await self._feed.config_changed()
        await self.audit.record(actor, "clear-route-default", None, detail=f"route={key}")
        return self.live_route_limits

    async def set_default_limit(
        self, rate: float, burst: int, *, actor: str = PYTHON_ACTOR
    ) -> Limit:
        """Change the default per-user limit on every worker, and keep it across restarts."""
        rate, burst = await self._limits.set(self._store, rate, burst)
        await self._feed.config_changed()
        await self.audit.record(
            actor, "set-default-limit", None, detail=f"rate={rate} burst={burst}"
        )
        return self.default_limit

    async def clear_default_limit(self, *, actor: str = PYTHON_ACTOR) -> Limit:
        """Put every worker back on the default of its own settings."""
        await self._limits.clear(self._store)
        await self._feed.config_changed()
        await self.audit.record(actor, "clear-default-limit", None)
        return self.default_limit

    @property
    def plan_limits(self) -> dict[str, Limit]:
        """Each plan's limit on this worker now: an operator's live one, else the settings'."""
        return dict(self._limits.plans)

    async def set_plan_limit(
        self, plan: str, rate: float, burst: int, *, actor: str = PYTHON_ACTOR
    ) -> Limit:
        """Change a plan's limit on every worker, and keep it across restarts."""
        name = plan_name(plan)
        rate, burst = await self._limits.set_plan(self._store, name, rate, burst)
        await self._feed.config_changed()
        await self.audit.record(
            actor, "set-plan-limit", None, detail=f"plan={name} rate={rate} burst={burst}"
        )
        return rate, burst

    async def clear_plan_limit(self, plan: str, *, actor: str = PYTHON_ACTOR) -> Limit | None:
        """Put every worker back on the plan's limit in its settings (``None``: the plan is
        not configured there, so its users get the default)."""
        name = plan_name(plan)
        limit = await self._limits.clear_plan(self._store, name)
        await self._feed.config_changed()
        await self.audit.record(actor, "clear-plan-limit", None, detail=f"plan={name}")
        return limit
