"""The example app's own tests, as its authors would write them with floodwall.testing:
the real middleware, a clock the test moves, and assertions that tell floodwall's
refusals from the app's. docs/testing.md shows this file."""

import pytest
from fastapi.testclient import TestClient

from floodwall import Floodwall, FloodwallSettings
from floodwall.testing import (
    ManualClock,
    assert_blocked,
    assert_limited,
    assert_not_refused,
    refusal_kind,
)

from .app import create_app

ALICE = {"x-user": "alice"}


@pytest.fixture
def floodwall_settings() -> FloodwallSettings:
    # Overrides the plugin's fixture: two requests at once, one more each second.
    return FloodwallSettings(rate=1, burst=2)


@pytest.fixture
def client(floodwall_for_tests: Floodwall) -> TestClient:
    return TestClient(create_app(floodwall_for_tests))


def test_the_third_request_at_once_is_limited_and_a_second_later_passes(
    client: TestClient, floodwall_clock: ManualClock
) -> None:
    with client:
        assert_not_refused(client.get("/api/items", headers=ALICE))
        assert_not_refused(client.get("/api/items", headers=ALICE))
        assert_limited(client.get("/api/items", headers=ALICE))
        floodwall_clock.advance(1)  # a token is due: no sleep
        assert_not_refused(client.get("/api/items", headers=ALICE))


async def test_a_blocked_user_is_refused_and_nobody_else(
    client: TestClient, floodwall_for_tests: Floodwall
) -> None:
    await floodwall_for_tests.block("alice", reason="a test")
    with client:
        assert_blocked(client.get("/api/items", headers=ALICE))
        assert_not_refused(client.get("/api/items", headers={"x-user": "bob"}))


def test_the_apps_own_refusals_are_not_taken_for_floodwalls(client: TestClient) -> None:
    with client:
        response = client.get("/api/teapot", headers=ALICE)
    assert response.status_code == 418
    assert refusal_kind(response) is None
    with pytest.raises(AssertionError, match="expected floodwall to refuse"):
        assert_limited(response)


def test_each_test_starts_afresh(client: TestClient) -> None:
    # The first test spent alice's burst; this test's floodwall is a new one.
    with client:
        assert_not_refused(client.get("/api/items", headers=ALICE))
        assert_not_refused(client.get("/api/items", headers=ALICE))
