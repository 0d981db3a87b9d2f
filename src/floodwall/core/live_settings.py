"""Settings an operator changes at run time, shared by every worker through the store: the
default limit and route limits for everyone, and the routes each app publishes (what a live
route limit is checked against)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from floodwall.core.stored import Limit, WindowLimit

__all__ = ["LiveSettings"]


@dataclass(frozen=True, slots=True)
class LiveSettings:
    """What the store holds of the run-time settings.

    ``default_limit`` is the live default (rate, burst), ``None`` when none is set or the
    stored one is outside the rule book (``default_limit_unreadable``: an operator wrote it
    by hand). ``route_limits`` maps a route to its live limit, where readable;
    ``limited_routes`` names every route with a live limit stored, readable or not.
    ``published_routes`` is each app's published routes (``AppRoutes.published``).
    """

    default_limit: Limit | None = None
    default_limit_unreadable: bool = False
    route_limits: Mapping[str, WindowLimit] = field(default_factory=dict)
    limited_routes: frozenset[str] = frozenset()
    published_routes: Sequence[str] = ()
    plan_limits: Mapping[str, Limit] = field(default_factory=dict)
    """Each plan's live limit (rate, burst), where an operator set one and it is readable."""
