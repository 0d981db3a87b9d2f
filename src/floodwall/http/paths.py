"""Matching request paths against configured paths, at segment boundaries, or against route
templates (``/items/{item_id}/export``, ``POST /login``) as the app's router matches them."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

from starlette.routing import compile_path

from floodwall.core.types import Scope

__all__ = ["PathTable", "route_path"]

T = TypeVar("T")


class PathTable(Generic[T]):
    """Maps paths to values; ``/health`` matches ``/health`` and ``/health/live``, not
    ``/healthz``. The longest configured path wins. Keys with a method or a ``{param}`` are
    route templates: they match exactly what the router matches, and win over paths."""

    __slots__ = ("_entries", "_templates")

    def __init__(self, entries: Mapping[str, T]) -> None:
        self._templates: list[tuple[str | None, re.Pattern[str], T]] = []
        plain = {}
        for key, value in entries.items():
            method, _, path = key.strip().rpartition(" ")
            if method or "{" in path:
                self._templates.append((method.upper() or None, compile_path(path)[0], value))
            else:
                plain[path.rstrip("/") or "/"] = value
        self._entries = sorted(plain.items(), key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def of(cls, paths: Iterable[str], value: T) -> PathTable[T]:
        """A table giving every path the same value."""
        return cls(dict.fromkeys(paths, value))

    def __bool__(self) -> bool:
        return bool(self._entries or self._templates)

    def get(self, path: str, default: T, method: str | None = None) -> T:
        """The value of the first template ``method path`` matches, else of the longest
        configured path that ``path`` is, or lies under."""
        # A HEAD request runs the GET endpoint, and costs what a GET costs.
        runs = "GET" if method == "HEAD" else method
        for wanted, pattern, value in self._templates:
            if wanted in (None, method, runs) and pattern.fullmatch(path):
                return value
        for prefix, value in self._entries:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return value
        return default


def route_path(scope: Scope) -> str:
    """The path the app's router matches: ``scope["path"]`` without the ``root_path`` a
    server (``--root-path``) or a ``Mount`` above the app put in front of it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("/", ""):
        return path[len(root) :] or "/"
    return path
