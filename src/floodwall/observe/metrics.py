"""Prometheus metrics of one ``Floodwall``: what it decided, how Redis answered, what
operators did. Never a user id as a label: that would be a cardinality bomb during a flood.

One scrape shows every worker of a server in prometheus-client's multi-process mode: the
server starts with ``PROMETHEUS_MULTIPROC_DIR`` naming an empty directory, each worker
writes its values to its own files there, and a scrape of any worker adds them up. The
hot-path counts stay plain integers in a single process; in multi-process mode
(``SharedHotPathCounts``) each change also goes to the worker's file.
"""

from __future__ import annotations

import functools
import os
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple, SupportsIndex, overload

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
    values,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from floodwall.core.decision import CLOSE_REASONS
from floodwall.core.identity import REJECTION_REASONS
from floodwall.core.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "RESULTS",
    "HotPathCounts",
    "Metrics",
    "MetricsApp",
    "SharedHotPathCounts",
    "multiprocess_mode",
]

RESULTS: Final = (
    "allowed",
    "limited",
    "blocked",
    "revoked",
    "reset_required",
    "overloaded",
    "network_blocked",
    "fallback",
    "error",
    "concurrency_exceeded",
)
CHECK_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
_DECISIONS_HELP: Final = (
    "Requests checked, by result (fallback: decided without the store; error: refused with "
    "503 in closed fail mode; overloaded: shed at capacity after the limits allowed it, so "
    "also counted as allowed or fallback)."
)
_SHADOW_HELP: Final = "Requests shadow mode let through that would have been refused."
_LOCAL_HELP: Final = "Refusals answered in-process, without a store round trip."
_CHECK_HELP: Final = "Time of one store check (one Redis round trip)."


class HotPathCounts(Collector):
    """What every request bumps, as plain integers, turned into metrics at scrape time.

    prometheus-client's own counters take a lock per increment; on a path that costs a
    few microseconds in all, that was a measurable share. One event loop per worker
    updates these, so plain adds are safe.
    """

    def __init__(self) -> None:
        self.results = [0] * len(RESULTS)
        """Requests checked, indexed like ``RESULTS``."""
        self.local_refusals = 0
        self.shadow = 0
        # Per bucket of CHECK_BUCKETS (and one past the last), not cumulative.
        self.check_counts = [0] * (len(CHECK_BUCKETS) + 1)
        self.check_sum = 0.0

    def observe_check(self, seconds: float) -> None:
        """Record the duration of one store check."""
        self.check_counts[bisect_left(CHECK_BUCKETS, seconds)] += 1
        self.check_sum += seconds

    def collect(self) -> Iterator[Metric]:
        """The metrics, for the registry."""
        decisions = CounterMetricFamily("floodwall_decisions", _DECISIONS_HELP, labels=["result"])
        for result, count in zip(RESULTS, self.results, strict=True):
            decisions.add_metric([result], count)
        yield decisions
        yield CounterMetricFamily("floodwall_shadow_refusals", _SHADOW_HELP, value=self.shadow)
        yield CounterMetricFamily(
            "floodwall_local_refusals", _LOCAL_HELP, value=self.local_refusals
        )
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*CHECK_BUCKETS, float("inf")), self.check_counts, strict=True):
            cumulative += count
            buckets.append((_bound_label(bound), cumulative))
        yield HistogramMetricFamily(
            "floodwall_store_check_seconds",
            _CHECK_HELP,
            buckets=buckets,
            sum_value=self.check_sum,
        )


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


_SERVERS: Final = ("uvicorn", "gunicorn", "hypercorn", "granian")
_WORKER_OPTIONS: Final = ("--workers", "-w")


def sibling_workers(environ: Mapping[str, str], parent_command: Sequence[str]) -> int:
    """How many workers the server that started this process runs, as far as its
    ``WEB_CONCURRENCY`` or its command line (``--workers N``, ``-w N``) tell; 1 when they
    tell nothing. A hint, for a warning: a server may be told its workers other ways."""
    counts = [environ.get("WEB_CONCURRENCY", "")]
    if any(server in part for part in parent_command[:3] for server in _SERVERS):
        for index, part in enumerate(parent_command):
            option, equals, value = part.partition("=")
            if option in _WORKER_OPTIONS:
                counts.append(value if equals else "".join(parent_command[index + 1 : index + 2]))
    return max([1, *(int(count) for count in counts if count.isdigit())])


def parent_command() -> list[str]:
    """The parent process's command line (Linux); empty where it cannot be read."""
    try:
        with open(f"/proc/{os.getppid()}/cmdline", "rb") as file:
            raw = file.read()
    except OSError:
        return []
    return [part.decode("utf-8", "replace") for part in raw.split(b"\0") if part]


def multiprocess_mode() -> bool:
    """Whether prometheus-client runs in multi-process mode. It decides once, when first
    imported, from ``PROMETHEUS_MULTIPROC_DIR``; floodwall follows its decision."""
    return bool(getattr(values.ValueClass, "_multiprocess", False))


class _Shared(NamedTuple):
    decisions: list[Counter]
    local_refusals: Counter
    shadow: Counter
    check_seconds: Histogram


@functools.cache
def _shared() -> _Shared:
    # One set per process, in no registry: MultiProcessCollector reads them from the files.
    # Several Floodwalls of one process add to the same values.
    decisions = Counter("floodwall_decisions", _DECISIONS_HELP, ["result"], registry=None)
    return _Shared(
        [decisions.labels(result) for result in RESULTS],
        Counter("floodwall_local_refusals", _LOCAL_HELP, registry=None),
        Counter("floodwall_shadow_refusals", _SHADOW_HELP, registry=None),
        Histogram(
            "floodwall_store_check_seconds", _CHECK_HELP, buckets=CHECK_BUCKETS, registry=None
        ),
    )


class _SharedResults(list[int]):
    """``results`` whose every change is also added to the worker's file."""

    def __init__(self, counters: list[Counter]) -> None:
        super().__init__([0] * len(counters))
        self._counters = counters

    @overload
    def __setitem__(self, index: SupportsIndex, value: int, /) -> None: ...
    @overload
    def __setitem__(self, index: slice, value: Iterable[int], /) -> None: ...
    def __setitem__(self, index: SupportsIndex | slice, value: Any, /) -> None:
        if isinstance(index, slice):
            raise TypeError("results are counted one at a time")
        self._counters[index].inc(value - self[index])
        super().__setitem__(index, value)


class SharedHotPathCounts(HotPathCounts):
    """``HotPathCounts`` in multi-process mode: the same attributes the checker bumps, and
    each change also added to the worker's file (a lock and a write to shared memory,
    about a microsecond), so a scrape of any worker sees every worker's totals at once."""

    def __init__(self) -> None:
        self._shared = _shared()
        self._local_refusals = self._shadow = 0
        super().__init__()
        self.results = _SharedResults(self._shared.decisions)

    @property
    def local_refusals(self) -> int:
        return self._local_refusals

    @local_refusals.setter
    def local_refusals(self, value: int) -> None:
        self._shared.local_refusals.inc(value - self._local_refusals)
        self._local_refusals = value

    @property
    def shadow(self) -> int:
        return self._shadow

    @shadow.setter
    def shadow(self, value: int) -> None:
        self._shared.shadow.inc(value - self._shadow)
        self._shadow = value

    def observe_check(self, seconds: float) -> None:
        """Record the duration of one store check."""
        super().observe_check(seconds)
        self._shared.check_seconds.observe(seconds)


class _BlockedUsers(Collector):
    """The blocked-users gauge, read from this worker's mirror of the kill switch at each
    scrape (every worker's mirror holds the same users)."""

    def __init__(self) -> None:
        self.count: Callable[[], float] = lambda: 0.0

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "floodwall_blocked_users",
            "Users blocked now, as this worker's mirror of the kill switch knows them.",
            value=self.count(),
        )


class Metrics:
    """The metrics, in a registry of their own unless one is given.

    ``registry`` holds this process's metrics; ``scrape_registry`` is what ``/metrics``
    serves: the same registry, or in multi-process mode every worker's files added up.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.multiprocess = multiprocess_mode()
        self.hot = SharedHotPathCounts() if self.multiprocess else HotPathCounts()
        self.registry.register(self.hot)
        self.store_errors = Counter(
            "floodwall_store_errors", "Failed store calls.", registry=self.registry
        )
        self.breaker_open = Gauge(
            "floodwall_breaker_open",
            "1 while the circuit breaker skips the store, else 0 (in multi-process mode: "
            "the highest of the live workers).",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self.actions = Counter(
            "floodwall_operator_actions",
            "Operator actions, by kind.",
            ["action"],
            registry=self.registry,
        )
        self._capacity: Gauge | None = None
        self._blocked = _BlockedUsers()
        self.registry.register(self._blocked)
        self.tarpitted = Counter(
            "floodwall_tarpitted_refusals",
            "Refusals the tarpit held back: a subject flooding a lagging worker.",
            registry=self.registry,
        )
        self.auto_blocks = Counter(
            "floodwall_auto_blocks", "Users blocked by auto-block.", registry=self.registry
        )
        self.token_rejections = Counter(
            "floodwall_token_rejections",
            "Bearer tokens that failed verification, by reason (such a request is limited "
            "as its client address).",
            ["reason"],
            registry=self.registry,
        )
        # Every reason from the first scrape: a rate of a series that appears is no rate.
        self._rejections = {
            reason: self.token_rejections.labels(reason) for reason in REJECTION_REASONS
        }
        self.connections_closed = Counter(
            "floodwall_connections_closed",
            "Open connections (websockets, streaming responses) floodwall closed, by reason.",
            ["reason"],
            registry=self.registry,
        )
        self._closes = {
            reason: self.connections_closed.labels(reason) for reason in CLOSE_REASONS.values()
        }
        if self.multiprocess:
            self.scrape_registry = CollectorRegistry()
            MultiProcessCollector(self.scrape_registry)  # type: ignore[no-untyped-call]
            self.scrape_registry.register(self._blocked)
        else:
            self.scrape_registry = self.registry

    def watch_blocked(self, count: Callable[[], float]) -> None:
        """Read the blocked-users gauge from ``count`` at every scrape."""
        self._blocked.count = count

    def token_rejected(self, reason: str) -> None:
        """Count a bearer token that failed verification, for ``reason`` (one of
        ``floodwall.identity.REJECTION_REASONS``)."""
        self._rejections[reason].inc()

    def connection_closed(self, reason: str) -> None:
        """Count an open connection closed for ``reason`` (a value of ``CLOSE_REASONS``)."""
        self._closes[reason].inc()

    def capacity_limit(self, limit: int) -> None:
        """Report the current in-flight limit of load shedding (``FLOODWALL_CAPACITY``);
        the gauge exists once shedding is on."""
        if self._capacity is None:
            self._capacity = Gauge(
                "floodwall_capacity_limit",
                "Requests a worker may have in flight now under load shedding "
                "(FLOODWALL_CAPACITY, or what auto learnt; in multi-process mode: the sum of "
                "the live workers).",
                registry=self.registry,
                multiprocess_mode="livesum",
            )
        self._capacity.set(limit)

    def asgi_app(self) -> MetricsApp:
        """An ASGI app serving these metrics: ``Route("/metrics", metrics.asgi_app())``
        serves ``/metrics`` itself (a ``Mount`` would redirect it to ``/metrics/``)."""
        return MetricsApp(self.scrape_registry)

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.scrape_registry), CONTENT_TYPE_LATEST


class MetricsApp:
    """prometheus-client's ASGI app for ``registry``, as an object rather than a function,
    so Starlette's ``Route`` serves it as an ASGI app at its exact path."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self._app: ASGIApp = make_asgi_app(registry)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self._app(scope, receive, send)
