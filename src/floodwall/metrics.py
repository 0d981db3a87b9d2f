"""Prometheus metrics of one ``Floodwall``: what it decided, how Redis answered, what
operators did. Never a user id as a label: that would be a cardinality bomb during a flood.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    make_asgi_app,
)

from floodwall._types import ASGIApp

__all__ = ["RESULTS", "Metrics"]

RESULTS = ("allowed", "limited", "blocked", "revoked", "reset_required", "fallback", "error")


class Metrics:
    """The metrics, in a registry of their own unless one is given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.decisions = Counter(
            "floodwall_decisions",
            "Requests checked, by result (fallback: decided without the store; error: "
            "refused with 503 in closed fail mode).",
            ["result"],
            registry=self.registry,
        )
        self.by_result = {result: self.decisions.labels(result) for result in RESULTS}
        self.shadow = Counter(
            "floodwall_shadow_refusals",
            "Requests shadow mode let through that would have been refused.",
            registry=self.registry,
        )
        self.local_refusals = Counter(
            "floodwall_local_refusals",
            "Refusals answered in-process, without a store round trip.",
            registry=self.registry,
        )
        self.check_seconds = Histogram(
            "floodwall_store_check_seconds",
            "Time of one store check (one Redis round trip).",
            buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
            registry=self.registry,
        )
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
