"""Matching request paths against configured paths, at segment boundaries."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Generic, TypeVar

__all__ = ["PathTable"]

T = TypeVar("T")


class PathTable(Generic[T]):
    """Maps paths to values; ``/health`` matches ``/health`` and ``/health/live``, not
    ``/healthz``. The longest configured path wins."""

    __slots__ = ("_entries",)

    def __init__(self, entries: Mapping[str, T]) -> None:
        normalised = {path.rstrip("/") or "/": value for path, value in entries.items()}
        self._entries = sorted(normalised.items(), key=lambda item: len(item[0]), reverse=True)

    @classmethod
    def of(cls, paths: Iterable[str], value: T) -> PathTable[T]:
        """A table giving every path the same value."""
        return cls(dict.fromkeys(paths, value))

    def __bool__(self) -> bool:
        return bool(self._entries)

    def get(self, path: str, default: T) -> T:
        """The value of the longest configured path that ``path`` is, or lies under."""
        for prefix, value in self._entries:
            if prefix == "/" or path == prefix or path.startswith(prefix + "/"):
                return value
        return default
