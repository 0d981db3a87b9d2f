"""The values stores and their callers exchange: route-limit windows, time blocks of the top
boards, audit entries, subscriptions (the protocols themselves are in ``protocols``)."""

from __future__ import annotations

import heapq
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, NamedTuple, Protocol, TypeVar

__all__ = [
    "LEASE_MS",
    "TOP_READ_BUDGET",
    "AuditEntry",
    "Replicas",
    "Subscription",
    "TopBlock",
    "Window",
    "most_refused",
    "per_block",
]

TOP_READ_BUDGET = 10_000
"""Members one ``top_refusals`` reads at most, over all its blocks."""

_Name = TypeVar("_Name", str, bytes)
_Count = TypeVar("_Count", int, float)


class TopBlock(NamedTuple):
    """A time block of a top board: ``seconds`` long, the ``number``-th since the epoch."""

    seconds: int
    number: int


def per_block(blocks: int) -> int:
    """How many of each block's largest members ``top_refusals`` adds up: all a block keeps
    (500) for a window of up to 20 blocks, at least the 312 largest of each of the 32
    blocks of the longest cover (``floodwall.top.cover``)."""
    return max(1, TOP_READ_BUDGET // max(1, blocks))


def most_refused(totals: Mapping[_Name, _Count], count: int) -> list[tuple[_Name, _Count]]:
    """The ``count`` largest totals, largest first; ties: the greater name first, as Redis
    ranks members (bytes, or their UTF-8 order for text). A partial selection: O(n log
    count), no sort of everything read."""
    return heapq.nlargest(count, totals.items(), key=lambda item: (item[1], item[0]))


class Window(NamedTuple):
    """One route limit of a request: at most ``limit`` requests in any ``period_us``, counted
    at ``key`` (``SubjectKeys.window``); ``own_route`` names the route whose limit of the
    subject's own (``UserLimits.set_route_limit``) replaces both, or is empty: none may."""

    key: str
    limit: int
    period_us: int
    own_route: str = ""


LEASE_MS: Final = 15_000
"""How long a concurrency slot is leased: a crashed worker's slots are free after this (a
live worker renews the leases of its requests). Shorter frees a crashed worker's users
sooner, and costs Redis more renewals (two commands per subject holding slots on a worker,
each renewal, renewals being a fixed fraction of the lease apart). It also lets a live
worker's slots lapse sooner while its renewals fail (Redis restarting, the worker stalled):
their subjects may then go beyond their limit until those requests end, as anyone may
while Redis is down (the fallback does not count requests in flight); never a lockout.
Long enough for a Redis restart, well within the minute the design promises."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record; ``id`` orders entries and serves as a pagination cursor."""

    id: str
    fields: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Replicas:
    """How many replicas hold an operator's writes: ``acknowledged`` of the ``connected``
    ones the primary had (both 0 where it has none, or for a store with no replicas)."""

    acknowledged: int
    connected: int


class Subscription(Protocol):
    """Messages published by ``Store.publish``, in order."""

    async def next_message(self, wait: float) -> str | None:
        """The next message, or ``None`` after ``wait`` seconds; ``StorageError`` when
        the subscription broke (messages may have been lost)."""
        ...
