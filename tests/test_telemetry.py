"""OpenTelemetry through the API, read with the SDK's in-memory reader and exporter."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, NumberDataPoint, Sum
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from floodwall import Floodwall, FloodwallMiddleware, FloodwallSettings
from floodwall.core.decision import Decision, Outcome
from floodwall.observe.metrics import RESULTS
from floodwall.observe.telemetry import OUTCOMES, DecisionTelemetry, observe_decisions

SECRET = "s" * 64
USER = "alice@example.com"


@pytest.fixture(scope="module")
def reader() -> InMemoryMetricReader:
    reader = InMemoryMetricReader()
    observe_decisions(MeterProvider(metric_readers=[reader]))
    return reader


@pytest.fixture
def spans() -> Iterator[tuple[TracerProvider, InMemorySpanExporter]]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield provider, exporter
    provider.shutdown()


def _decisions(reader: InMemoryMetricReader) -> dict[str, int]:
    data = reader.get_metrics_data()
    assert data is not None
    found: dict[str, int] = {}
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            assert scope.scope.name == "floodwall"
            for metric in scope.metrics:
                assert metric.name == "floodwall.decisions"
                assert metric.unit == "{request}"
                assert isinstance(metric.data, Sum)
                assert metric.data.is_monotonic
                for point in metric.data.data_points:
                    assert isinstance(point, NumberDataPoint)
                    attributes = dict(point.attributes or {})
                    assert list(attributes) == ["floodwall.outcome"]
                    found[str(attributes["floodwall.outcome"])] = int(point.value)
    return found


async def _hello(request: Request) -> PlainTextResponse:
    return PlainTextResponse("hello")


def _app(floodwall: Floodwall) -> Starlette:
    return Starlette(
        routes=[Route("/", _hello)],
        middleware=[Middleware(FloodwallMiddleware, floodwall=floodwall)],
    )


def _token(user: str) -> str:
    import jwt

    return jwt.encode({"sub": user, "iat": 1}, SECRET, algorithm="HS256")


async def test_the_counter_and_the_span_tell_each_outcome_and_never_the_user(
    reader: InMemoryMetricReader, spans: tuple[TracerProvider, InMemorySpanExporter]
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    floodwall = Floodwall(FloodwallSettings(rate=1, burst=2, jwt_secret=SECRET))
    await floodwall.block("mallory", reason="flooding")
    before = _decisions(reader)
    transport = httpx.ASGITransport(app=_app(floodwall), client=("192.0.2.7", 123))
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        for user in (USER, USER, USER, "mallory", None):
            headers = {"authorization": f"Bearer {_token(user)}"} if user else {}
            with tracer.start_as_current_span("GET /"):
                await http.get("/", headers=headers)
    after = _decisions(reader)
    assert set(after) == set(RESULTS)
    delta = {outcome: after[outcome] - before.get(outcome, 0) for outcome in after}
    assert delta == {
        "allowed": 3,
        "limited": 1,
        "blocked": 1,
        "revoked": 0,
        "reset_required": 0,
        "overloaded": 0,
        "network_blocked": 0,
        "fallback": 0,
        "error": 0,
        "concurrency_exceeded": 0,
    }
    finished = exporter.get_finished_spans()
    assert [dict(span.attributes or {}) for span in finished] == [
        {"floodwall.outcome": "allowed", "floodwall.policy": "user"},
        {"floodwall.outcome": "allowed", "floodwall.policy": "user"},
        {"floodwall.outcome": "limited", "floodwall.policy": "user"},
        {"floodwall.outcome": "blocked", "floodwall.policy": "user"},
        {"floodwall.outcome": "allowed", "floodwall.policy": "anonymous"},
    ]
    everything = repr([span.to_json() for span in finished]) + repr(reader.get_metrics_data())
    for secret in (USER, "mallory", "192.0.2.7"):
        assert secret not in everything


async def test_a_route_limits_refusal_names_its_route_on_the_span(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    tracer = provider.get_tracer("test")
    floodwall = Floodwall(FloodwallSettings(user_header="x-user"))
    app = Starlette(
        routes=[Route("/", _hello)],
        middleware=[
            Middleware(FloodwallMiddleware, floodwall=floodwall, route_limits={"GET /": "1/minute"})
        ],
    )
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
        statuses = []
        for _ in range(2):
            with tracer.start_as_current_span("GET /"):
                statuses.append((await http.get("/", headers={"x-user": USER})).status_code)
    assert statuses == [200, 429]
    assert [dict(span.attributes or {}) for span in exporter.get_finished_spans()] == [
        {"floodwall.outcome": "allowed", "floodwall.policy": "user"},
        {"floodwall.outcome": "limited", "floodwall.policy": "GET /"},
    ]


async def test_fallback_and_error_are_counted_as_the_checker_tallies_them(
    reader: InMemoryMetricReader,
) -> None:
    floodwall = Floodwall()
    FloodwallMiddleware(_hello, floodwall=floodwall)  # type: ignore[arg-type]
    before = _decisions(reader)
    hot = floodwall.metrics.hot
    hot.results[RESULTS.index("fallback")] += 4
    hot.results[RESULTS.index("error")] += 2
    after = _decisions(reader)
    assert after["fallback"] - before["fallback"] == 4
    assert after["error"] - before["error"] == 2


async def test_a_floodwall_that_is_gone_leaves_its_counts_behind(
    reader: InMemoryMetricReader,
) -> None:
    import gc

    floodwall = Floodwall()
    FloodwallMiddleware(_hello, floodwall=floodwall)  # type: ignore[arg-type]
    floodwall.metrics.hot.results[0] += 5
    before = _decisions(reader)["allowed"]
    del floodwall
    gc.collect()
    assert _decisions(reader)["allowed"] == before


def test_outcomes_cover_what_the_checker_tallies() -> None:
    assert set(RESULTS) <= set(OUTCOMES)
    assert len(OUTCOMES) == 10


def test_without_a_recording_span_nothing_happens() -> None:
    # The API with no SDK: the current span is the invalid one, which records nothing.
    DecisionTelemetry()(Decision(Outcome.UNAVAILABLE, 10.0, 10, 0, 1.0, 1.0), "user")


def test_the_span_says_error_for_a_503_in_closed_mode(
    spans: tuple[TracerProvider, InMemorySpanExporter],
) -> None:
    provider, exporter = spans
    with provider.get_tracer("test").start_as_current_span("GET /"):
        DecisionTelemetry()(Decision(Outcome.UNAVAILABLE, 10.0, 10, 0, 1.0, 1.0), "anonymous")
    (span,) = exporter.get_finished_spans()
    assert dict(span.attributes or {}) == {
        "floodwall.outcome": "error",
        "floodwall.policy": "anonymous",
    }


def test_without_opentelemetry_the_middleware_has_no_hook() -> None:
    script = textwrap.dedent(
        """
        import sys
        sys.modules["opentelemetry"] = None  # as if the package were not installed
        import asyncio, httpx
        from floodwall import Floodwall, FloodwallMiddleware
        from starlette.responses import PlainTextResponse

        middleware = FloodwallMiddleware(PlainTextResponse("ok"), floodwall=Floodwall())
        assert middleware._telemetry is None

        async def main():
            transport = httpx.ASGITransport(app=middleware)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as http:
                assert (await http.get("/")).status_code == 200

        asyncio.run(main())
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.stdout == "ok\n", result.stderr
