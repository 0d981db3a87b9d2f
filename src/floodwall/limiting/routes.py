"""Per-endpoint limits found among an app's routes (the grammar is
``floodwall.core.route_limits``): declared in code with ``limit`` or ``RateLimit``, or set by
an operator. All limits of a request are checked in the store's one round trip with the
global limit.

An app's limits are resolved once, at its start (``resolve_route_limits``), against the routes
its router has (``app_routes``): an operator's ``FLOODWALL_ROUTE_LIMITS`` wins over a limit
in code for the same route, and a key that names no route is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Final, TypeVar

from starlette.routing import Mount

from floodwall.core import rules
from floodwall.core.route_limits import By, RouteLimit, RouteTable, route_limit

__all__ = [
    "AppRoutes",
    "RateLimit",
    "app_routes",
    "declared_limits",
    "limit",
    "resolve_route_limits",
    "with_live_routes",
]

logger = logging.getLogger("floodwall")

Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


_MARK: Final = "__floodwall_limits__"


def limit(rate: str, *, by: By = "user") -> Callable[[Endpoint], Endpoint]:
    """Declare a route's limit beside it, on a Starlette endpoint::

        @limit("5/minute", by="address")
        async def login(request): ...

    The middleware finds it among the app's routes and checks it in its one round trip.
    """
    route_limit("/", rate, by=by)  # refuse a bad limit where it is written

    def mark(endpoint: Endpoint) -> Endpoint:
        declared = getattr(endpoint, _MARK, ())
        setattr(endpoint, _MARK, (*declared, (rate, by)))
        return endpoint

    return mark


class RateLimit:
    """Declare a route's limit as a FastAPI dependency::

        @app.post("/login", dependencies=[Depends(RateLimit("5/minute", by="address"))])

    It does nothing when FastAPI calls it: the middleware found it among the app's routes
    and checked it, with the global limit, in its one round trip.
    """

    __slots__ = ("by", "rate")

    def __init__(self, rate: str, *, by: By = "user") -> None:
        route_limit("/", rate, by=by)
        self.rate = rate
        self.by: By = by

    async def __call__(self) -> None:
        """Nothing to do: the request was checked before it reached the route."""


def declared_limits(app: object) -> list[RouteLimit]:
    """The limits declared on the routes of ``app`` (the app below a middleware): by
    ``limit`` on endpoints and ``RateLimit`` dependencies, under mounts too."""
    return app_routes(app).declared


_PARAM: Final = re.compile(r"{([a-zA-Z_][a-zA-Z0-9_]*)(?::([a-zA-Z_][a-zA-Z0-9_]*))?}")


def _shape(template: str) -> str:
    # What a router matches does not depend on a parameter's name: /items/{id} and
    # /items/{item_id} are one route.
    return _PARAM.sub(lambda found: "{:" + (found[2] or "str") + "}", template)


class AppRoutes:
    """The routes an app's router has, under mounts and included routers: what a route
    limit's key may name, and the limits declared on them in code."""

    __slots__ = ("_opaque", "_routes", "declared", "known")

    def __init__(self) -> None:
        self.known = False
        """Whether the app has routes to look at (a bare ASGI app has none)."""
        self.declared: list[RouteLimit] = []
        self._routes: list[tuple[frozenset[str] | None, str]] = []
        self._opaque: list[str] = []

    def add(self, methods: Iterable[str] | None, template: str) -> None:
        """A route; ``methods`` ``None`` for one that answers any method."""
        self._routes.append((None if methods is None else frozenset(methods), _shape(template)))

    def add_opaque(self, prefix: str) -> None:
        """A mounted app whose routes cannot be seen: any path below ``prefix`` may be one."""
        self._opaque.append(prefix.rstrip("/") + "/")

    def names(self, item: RouteLimit) -> bool:
        """Whether ``item``'s key names a route of the app (the one its router matches)."""
        shape = _shape(item.template)
        for methods, template in self._routes:
            if template == shape and (methods is None or item.method in (None, *methods)):
                return True
        return any(item.template.startswith(prefix) for prefix in self._opaque)

    def published(self, limited: Iterable[RouteLimit]) -> str:
        """These routes, and the keys of the ``limited`` ones, as lines for the operator's
        surfaces to check a live route limit against (``from_published`` reads them)."""
        lines = [f"{','.join(sorted(m)) if m else '*'} {t}" for m, t in self._routes]
        # An app whose routes cannot be seen may have any: as if mounted at the root.
        opaque = self._opaque if self.known else ["/"]
        lines += [f"MOUNT {prefix}" for prefix in opaque]
        lines += [f"LIMIT {item.key}" for item in limited]
        return "\n".join(sorted(set(lines)))

    @classmethod
    def from_published(cls, texts: Iterable[str]) -> tuple[AppRoutes, set[str]]:
        """The routes of the apps that published ``texts``, and their limited keys."""
        found = cls()
        limited: set[str] = set()
        for text in texts:
            found.known = True
            for line in text.splitlines():
                kind, _, rest = line.partition(" ")
                if kind == "MOUNT":
                    found._opaque.append(rest)
                elif kind == "LIMIT":
                    limited.add(rest)
                else:
                    found._routes.append(
                        (None if kind == "*" else frozenset(kind.split(",")), rest)
                    )
        return found, limited


def app_routes(app: object) -> AppRoutes:
    """The routes of ``app`` (the app below a middleware)."""
    found = AppRoutes()
    routes = _routes_of(app)
    if routes is not None:
        found.known = True
        _collect(routes, "", found)
    return found


def _routes_of(app: object) -> Iterable[object] | None:
    # Middleware wrap the router: the routes are on the innermost app that has them.
    while not hasattr(app, "routes") and hasattr(app, "app"):
        app = app.app
    routes = getattr(app, "routes", None)
    return None if routes is None else list(routes)


def _collect(routes: Iterable[object], prefix: str, found: AppRoutes) -> None:
    for route in routes:
        contexts = getattr(route, "effective_route_contexts", None)
        if callable(contexts):
            # FastAPI's included router: its routes, as it matches them (the inclusion's
            # prefix and dependencies applied), are its effective routes.
            effective = [getattr(c, "starlette_route", None) or c for c in contexts()]
            _collect(effective, prefix, found)
            continue
        path = prefix + str(getattr(route, "path", ""))
        if isinstance(route, Mount) or (
            not hasattr(route, "endpoint") and hasattr(route, "routes")
        ):
            inner = _routes_of(getattr(route, "app", None)) if isinstance(route, Mount) else None
            if inner is None:
                inner = list(getattr(route, "routes", ()))
            if inner or not isinstance(route, Mount):
                _collect(inner, path, found)
            else:
                found.add_opaque(path)
            continue
        if not hasattr(route, "endpoint"):
            continue
        methods = getattr(route, "methods", None)
        found.add(None if not methods else set(methods), path)
        declared = list(getattr(getattr(route, "endpoint", None), _MARK, ()))
        declared += [(d.rate, d.by) for d in _dependencies(route)]
        if not declared:
            continue
        methods = set(methods or ()) - {"HEAD"}
        method = f"{next(iter(methods))} " if len(methods) == 1 else ""
        found.declared += [route_limit(method + path, rate, by=by) for rate, by in declared]


def resolve_route_limits(
    found: AppRoutes, configured: Iterable[RouteLimit], in_code: Iterable[RouteLimit]
) -> RouteTable:
    """The route limits of an app whose routes are ``found``: those ``configured``
    (``FLOODWALL_ROUTE_LIMITS``), those given ``in_code`` (the middleware's
    ``route_limits``) and those declared on its routes. An operator's setting wins over code
    for the same route, with a log line; a key that names no route of the app is a
    ``RuleError`` naming it."""
    configured = list(configured)
    in_code = [*in_code, *found.declared]
    kept = _not_overridden(configured, in_code)
    overridden = dict.fromkeys(item.key for item in in_code if item not in kept)
    for key in overridden:
        logger.warning(
            "floodwall: FLOODWALL_ROUTE_LIMITS sets the limit of %s, over the one declared in code",
            key,
        )
    table = RouteTable([*configured, *kept])
    if found.known:
        for item in table.limits:
            if not found.names(item):
                setting = "FLOODWALL_ROUTE_LIMITS" if item in configured else "route_limits"
                raise rules.RuleError(
                    f"{setting}: '{item.key}' names no route of the app (write the route as "
                    "its router declares it: 'METHOD /path/{param}')"
                )
    return table


def with_live_routes(
    table: RouteTable, found: AppRoutes, live: Mapping[str, tuple[int, int]]
) -> tuple[RouteTable, list[str]]:
    """``table`` and a limit on each route an operator limited live (route → (requests,
    period in µs)) that ``table`` gives none; and the live keys that name no route of the
    app, which apply nothing."""
    have = {item.key for item in table.limits}
    added: list[RouteLimit] = []
    unknown: list[str] = []
    for key, (count, period_us) in sorted(live.items()):
        if key in have:
            continue
        try:
            made = dataclasses.replace(
                route_limit(key, "1/second"), limit=count, period=period_us / 1_000_000
            )
        except rules.RuleError:
            unknown.append(key)
            continue
        if found.known and not found.names(made):
            unknown.append(key)
        else:
            added.append(made)
    return (RouteTable([*table.limits, *added]) if added else table), unknown


def _not_overridden(
    configured: list[RouteLimit], in_code: Iterable[RouteLimit]
) -> list[RouteLimit]:
    return [item for item in in_code if not any(_same_route(c, item) for c in configured)]


def _same_route(configured: RouteLimit, declared: RouteLimit) -> bool:
    # One route when the templates match the same paths and the configured key covers the
    # declared one's method.
    return _shape(configured.template) == _shape(declared.template) and (
        configured.method is None or configured.method == declared.method
    )


def _dependencies(route: object) -> Iterator[RateLimit]:
    # FastAPI keeps a route's dependencies, its own and its parameters', in a tree.
    pending = [getattr(route, "dependant", None)]
    while pending:
        dependant = pending.pop()
        if dependant is None:
            continue
        if isinstance(getattr(dependant, "call", None), RateLimit):
            yield dependant.call
        pending += list(getattr(dependant, "dependencies", ()))
