"""The route-limit grammar: ``"POST /login": "5/minute"`` beside the global per-user limit.

A route limit is keyed ``METHOD PATH-TEMPLATE`` (the method is optional) in Starlette's path
syntax, so ``/items/{item_id}/export`` and ``/files/{path:path}`` match what the app's router
matches, not a prefix. ``N/period`` admits at most N requests of one subject in any period
of that length (a moving window, as ``limits`` calls it), for the user, or for the client
address with ``by="address"``. Bounds come from the rule book; how an app's limits are
found among its routes is ``floodwall.limiting.routes``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Iterable
from typing import Final, Literal

import limits
from starlette.routing import compile_path

from floodwall.core import rules

__all__ = ["By", "RouteLimit", "RouteTable", "parse_route_limits", "route_limit", "window_of"]

By = Literal["user", "address"]
_METHOD: Final = re.compile(r"[A-Z]+")
_RUNS: Final = {"HEAD": "GET"}
"""A HEAD request runs the GET endpoint: it counts against the GET route's limits."""


# Compared by identity (each is made once, by its table): the hot path keys caches by a
# request's route limits, and hashing every field, the regex too, cost 0.5 µs a request.
@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class RouteLimit:
    """``limit`` requests per ``period`` seconds on the routes ``key`` names."""

    key: str
    """``METHOD PATH-TEMPLATE`` or ``PATH-TEMPLATE``, as written."""
    method: str | None
    template: str
    limit: int
    period: float
    by: By
    pattern: re.Pattern[str]
    id: str
    """A short stable name for keys and live overrides: a digest of ``key``."""

    @property
    def policy(self) -> str:
        """The name clients see in ``RateLimit-Policy`` and refusals."""
        return self.key

    def matches(self, method: str, path: str) -> bool:
        """Whether a request is on this route."""
        return self.method in (None, method, _RUNS.get(method)) and bool(
            self.pattern.fullmatch(path)
        )


def route_limit(key: str, limit: str, *, by: By = "user") -> RouteLimit:
    """A route limit from its key and a ``limits`` rate string such as ``5/minute``; bounds
    come from the rule book."""
    rules.ROUTE.check(key)
    rules.ROUTE_RATE.check(limit)
    written, _, template = key.strip().rpartition(" ")
    method = written.strip().upper() or None
    if method is not None and _METHOD.fullmatch(method) is None:
        raise rules.RuleError("a route is 'METHOD /path/{param}' or '/path/{param}'")
    if not template.startswith("/"):
        raise rules.RuleError("a route is 'METHOD /path/{param}' or '/path/{param}'")
    try:
        pattern, _, _ = compile_path(template)
        item = limits.parse(limit)
    except (ValueError, AssertionError):
        raise rules.RuleError(
            f"a route limit is 'N/period', such as 5/minute (route {template})"
        ) from None
    count = rules.ROUTE_LIMIT.whole_number(item.amount)
    period = rules.ROUTE_PERIOD.number(float(item.get_expiry()))
    if by not in ("user", "address"):
        raise rules.RuleError("a route limit is by 'user' or by 'address'")
    name = f"{method} {template}" if method else template
    digest = hashlib.sha256(name.encode()).hexdigest()[:16]
    return RouteLimit(name, method, template, count, period, by, pattern, digest)


def window_of(key: str, limit: str) -> tuple[str, tuple[int, int]]:
    """An operator's route limit: the route's key as the app writes it (``POST /login``) and
    (requests, period in µs), within the rule book."""
    parsed = route_limit(key, limit)
    return parsed.key, (parsed.limit, round(parsed.period * 1_000_000))


def parse_route_limits(text: str) -> list[RouteLimit]:
    """``FLOODWALL_ROUTE_LIMITS``: ``POST /login=5/minute;GET /items/{id}/export=1/second``,
    each optionally followed by ``@address``."""
    found = []
    for part in text.split(";"):
        if not part.strip():
            continue
        key, sep, limit = part.rpartition("=")
        if not sep or not key.strip():
            raise rules.RuleError("FLOODWALL_ROUTE_LIMITS is 'METHOD /path=N/period;...'")
        if "=" in key or "," in limit:
            # ``limits`` would read "5/minute,1/second" as its first rate alone.
            raise rules.RuleError(
                f"the entry '{_entry(part)}' holds two limits: separate entries with ';', not ','"
            )
        limit, _, by = limit.partition("@")
        by_what: By = "address" if by.strip() == "address" else "user"
        if by.strip() not in ("", "address", "user"):
            raise rules.RuleError("a route limit is by 'user' or by 'address'")
        found.append(route_limit(key, limit.strip(), by=by_what))
    return found


def _entry(text: str) -> str:
    # One line, whatever was pasted: an entry is shown up to 80 characters.
    shown = " ".join(text.split())
    return shown if len(shown) <= 80 else shown[:77] + "..."


_MATCHES_HELD: Final = 4096
_PATH_HELD: Final = 256
"""Longer paths are matched every time: the cache holds at most 4096 x 256 characters."""


class RouteTable:
    """The route limits of an app; finds those of a request."""

    __slots__ = ("_by_method", "_matched", "limits")

    def __init__(self, route_limits: Iterable[RouteLimit]) -> None:
        self.limits: tuple[RouteLimit, ...] = tuple(route_limits)
        seen: set[str] = set()
        for item in self.limits:
            if item.key in seen:
                raise rules.RuleError(f"the route {item.key} has two limits")
            seen.add(item.key)
        self._by_method: dict[str | None, tuple[RouteLimit, ...]] = {}
        for item in self.limits:
            self._by_method[item.method] = (*self._by_method.get(item.method, ()), item)
        # Requests repeat their paths: matching 3 patterns took 1 µs, a lookup 0.05.
        self._matched: dict[tuple[str, str], tuple[RouteLimit, ...]] = {}

    def __bool__(self) -> bool:
        return bool(self.limits)

    def match(self, method: str, path: str) -> tuple[RouteLimit, ...]:
        """The limits on this request, in the table's order."""
        found = self._matched.get((method, path))
        if found is None:
            groups = [self._by_method.get(None, ()), self._by_method.get(method, ())]
            if method in _RUNS:
                groups.append(self._by_method.get(_RUNS[method], ()))
            found = tuple(
                item for group in groups for item in group if item.pattern.fullmatch(path)
            )
            if len(path) <= _PATH_HELD:
                if len(self._matched) >= _MATCHES_HELD:
                    # Paths with ids in them are many: held for the paths that repeat.
                    self._matched.clear()
                self._matched[method, path] = found
        return found
