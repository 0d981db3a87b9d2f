"""pytest fixtures for an app's tests: ``pytest_plugins = ["floodwall.testing.plugin"]`` in
the root ``conftest.py``.

- ``floodwall_clock``: a ``ManualClock``; ``floodwall_clock.advance(1)`` instead of sleeping.
- ``floodwall_for_tests``: a Floodwall on the in-memory store reading ``floodwall_clock``,
  new for each test (so nothing one test does is seen by the next), stopped after it. Its
  settings are ``FloodwallSettings()`` (the test's environment), or what the test's own
  ``floodwall_settings`` fixture returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from floodwall.service import Floodwall
from floodwall.settings import FloodwallSettings
from floodwall.testing.clock import ManualClock
from floodwall.testing.service import floodwall_for_tests as _floodwall_for_tests

__all__ = ["floodwall_clock", "floodwall_for_tests", "floodwall_settings"]


@pytest.fixture
def floodwall_clock() -> ManualClock:
    """A clock the test moves."""
    return ManualClock()


@pytest.fixture
def floodwall_settings() -> FloodwallSettings:
    """The settings of ``floodwall_for_tests``; override this fixture to change them."""
    return FloodwallSettings()


@pytest.fixture
async def floodwall_for_tests(
    floodwall_settings: FloodwallSettings, floodwall_clock: ManualClock
) -> AsyncIterator[Floodwall]:
    """A Floodwall on the in-memory store, reading ``floodwall_clock``; stopped after."""
    floodwall = _floodwall_for_tests(floodwall_settings, clock=floodwall_clock)
    try:
        yield floodwall
    finally:
        await floodwall.stop()
