"""Prometheus metrics of one ``Floodwall``: what it decided, how Redis answered, what
operators did. Never a user id as a label: that would be a cardinality bomb during a flood.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
    make_asgi_app,
)
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from floodwall._types import ASGIApp

__all__ = ["RESULTS", "HotPathCounts", "Metrics"]

RESULTS: Final = (
    "allowed",
    "limited",
    "blocked",
    "revoked",
    "reset_required",
    "fallback",
    "error",
)
CHECK_BUCKETS: Final = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)


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
        decisions = CounterMetricFamily(
            "floodwall_decisions",
            "Requests checked, by result (fallback: decided without the store; error: "
            "refused with 503 in closed fail mode).",
            labels=["result"],
        )
        for result, count in zip(RESULTS, self.results, strict=True):
            decisions.add_metric([result], count)
        yield decisions
        yield CounterMetricFamily(
            "floodwall_shadow_refusals",
            "Requests shadow mode let through that would have been refused.",
            value=self.shadow,
        )
        yield CounterMetricFamily(
            "floodwall_local_refusals",
            "Refusals answered in-process, without a store round trip.",
            value=self.local_refusals,
        )
        cumulative = 0
        buckets: list[tuple[str, float]] = []
        for bound, count in zip((*CHECK_BUCKETS, float("inf")), self.check_counts, strict=True):
            cumulative += count
            buckets.append((_bound_label(bound), cumulative))
        yield HistogramMetricFamily(
            "floodwall_store_check_seconds",
            "Time of one store check (one Redis round trip).",
            buckets=buckets,
            sum_value=self.check_sum,
        )


def _bound_label(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


class Metrics:
    """The metrics, in a registry of their own unless one is given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.hot = HotPathCounts()
        self.registry.register(self.hot)
        self.store_errors = Counter(
            "floodwall_store_errors", "Failed store calls.", registry=self.registry
        )
        self.breaker_open = Gauge(
            "floodwall_breaker_open",
            "1 while the circuit breaker skips the store, else 0.",
            registry=self.registry,
        )
        self.actions = Counter(
            "floodwall_operator_actions",
            "Operator actions, by kind.",
            ["action"],
            registry=self.registry,
        )
        self.blocked_users = Gauge(
            "floodwall_blocked_users",
            "Users blocked now, as this worker's mirror of the kill switch knows them.",
            registry=self.registry,
        )
        self.auto_blocks = Counter(
            "floodwall_auto_blocks", "Users blocked by auto-block.", registry=self.registry
        )

    def watch_blocked(self, count: Callable[[], float]) -> None:
        """Read the blocked-users gauge from ``count`` at every scrape."""
        self.blocked_users.set_function(count)

    def asgi_app(self) -> ASGIApp:
        """An ASGI app serving these metrics, to mount at ``/metrics``."""
        app: ASGIApp = make_asgi_app(self.registry)
        return app

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus's text format, and its content type."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
