"""The run-time settings in domain terms, written once for every store over one hash of
fields (``_read_config``, ``_write_config``): ``rate`` and ``burst`` for the default limit,
``route:<route>`` for a route's live limit (``"limit:period_us"``), ``plan:<name>`` for a
plan's (``"rate burst"``), ``app-routes:<digest>``
for the routes an app published, one field per distinct set of routes."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Final

from floodwall.core.live_settings import LiveSettings
from floodwall.core.stored import Limit, WindowLimit, stored_limit, window_limit
from floodwall.stores.state_fields import ROUTE_FIELD

__all__ = ["APP_ROUTES_FIELD", "PLAN_FIELD", "LiveConfigStore"]

PLAN_FIELD: Final = "plan:"
"""Prefix of the fields of the plans' live limits."""
APP_ROUTES_FIELD: Final = "app-routes:"
"""Prefix of the fields where apps publish their routes (``AppRoutes``)."""


class LiveConfigStore(abc.ABC):
    """``LiveConfig`` of a store (``stores.protocols``)."""

    async def read_live_settings(self) -> LiveSettings:
        """Every setting changed at run time, as the store holds it."""
        config = await self._read_config()
        default = stored_limit(config.get("rate"), config.get("burst"))
        return LiveSettings(
            default_limit=default,
            default_limit_unreadable=default is None and ("rate" in config or "burst" in config),
            route_limits={
                name.removeprefix(ROUTE_FIELD): limit
                for name, value in config.items()
                if name.startswith(ROUTE_FIELD) and (limit := window_limit(value)) is not None
            },
            limited_routes=frozenset(
                name.removeprefix(ROUTE_FIELD) for name in config if name.startswith(ROUTE_FIELD)
            ),
            published_routes=[
                value for name, value in config.items() if name.startswith(APP_ROUTES_FIELD)
            ],
            plan_limits={
                name.removeprefix(PLAN_FIELD): plan
                for name, value in config.items()
                if name.startswith(PLAN_FIELD) and (plan := _plan_limit(value)) is not None
            },
        )

    async def set_default_limit(self, limit: Limit | None) -> None:
        """Store the live default limit (``None``: forget it, the settings apply)."""
        if limit is None:
            await self._write_config({}, delete=("rate", "burst"))
        else:
            await self._write_config({"rate": repr(float(limit[0])), "burst": str(limit[1])})

    async def set_route_default(self, route: str, window: WindowLimit | None) -> None:
        """Store a route's live limit for everyone (``None``: forget it, the app's applies)."""
        if window is None:
            await self._write_config({}, delete=(ROUTE_FIELD + route,))
        else:
            await self._write_config({ROUTE_FIELD + route: f"{window[0]}:{window[1]}"})

    async def set_plan_limit(self, plan: str, limit: Limit | None) -> None:
        """Store a plan's live limit (``None``: forget it, ``FLOODWALL_PLANS`` applies)."""
        if limit is None:
            await self._write_config({}, delete=(PLAN_FIELD + plan,))
        else:
            await self._write_config({PLAN_FIELD + plan: f"{float(limit[0])!r} {limit[1]}"})

    async def publish_app_routes(self, digest: str, routes: str) -> None:
        """Store an app's published routes under ``digest``: the workers of one app, which
        publish the same routes, share one field."""
        await self._write_config({APP_ROUTES_FIELD + digest: routes})

    @abc.abstractmethod
    async def _read_config(self) -> dict[str, str]:
        """The config hash."""

    @abc.abstractmethod
    async def _write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """Set fields of the config hash; ``delete`` removes some."""


def _plan_limit(value: str) -> Limit | None:
    rate, _, burst = value.partition(" ")
    return stored_limit(rate, burst)
