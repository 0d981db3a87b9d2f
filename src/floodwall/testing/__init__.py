"""floodwall in an app's own tests: the real middleware on the in-memory store, a clock
the test moves instead of sleeping, a reset between tests, and assertions that a response
was refused by floodwall, not by the app.

    from floodwall.testing import ManualClock, assert_limited, floodwall_for_tests

    clock = ManualClock()
    floodwall = floodwall_for_tests(FloodwallSettings(rate=1, burst=2), clock=clock)
    app = create_app(floodwall)          # your app, built around the floodwall it is given
    ...
    assert_limited(client.get("/api/items"))
    clock.advance(1)                     # a token is due: no sleep

With pytest, ``pytest_plugins = ["floodwall.testing.plugin"]`` in the root ``conftest.py``
gives the fixtures ``floodwall_clock`` and ``floodwall_for_tests`` (see its module).
"""

from __future__ import annotations

from floodwall.testing.assertions import (
    assert_blocked,
    assert_limited,
    assert_not_refused,
    assert_reset_required,
    assert_revoked,
    refusal_kind,
)
from floodwall.testing.clock import ManualClock
from floodwall.testing.service import floodwall_for_tests, reset

__all__ = [
    "ManualClock",
    "assert_blocked",
    "assert_limited",
    "assert_not_refused",
    "assert_reset_required",
    "assert_revoked",
    "floodwall_for_tests",
    "refusal_kind",
    "reset",
]
