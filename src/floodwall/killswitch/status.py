"""A user's kill-switch status, read from the state the store keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from floodwall.core.stored import Limit, iso_time
from floodwall.core.user_state import UserState

__all__ = ["UserStatus", "windows_json"]


@dataclass(frozen=True, slots=True)
class UserStatus:
    """Everything an operator needs to know about one user, on the store's clock.

    ``blocked_until_ms`` is ``None`` for a block without end; ``rate`` and ``burst`` are the
    effective limit (the user's override, else the default).
    """

    user_id: str
    blocked: bool
    reason: str | None
    blocked_by: str | None
    blocked_at_ms: int | None
    blocked_until_ms: int | None
    credentials_not_before_ms: int | None
    password_reset_required: bool
    rate: float
    burst: int
    limit_overridden: bool
    shadow: bool = False
    route_limits: Mapping[str, tuple[int, int]] = field(default_factory=dict)
    """The user's own route limits: route → (requests, period in µs)."""
    concurrency: int | None = None
    """The user's own limit of requests in flight, if any."""
    plan: str | None = None
    """The plan the user's requests name (``FLOODWALL_PLANS``), as last seen."""

    @classmethod
    def of(cls, user_id: str, state: UserState, default: Limit) -> UserStatus:
        """A user's status as the check script sees the state: a block whose time has
        passed is no block."""
        blocked = state.kill_switch.blocked(state.now_ms)
        until = state.kill_switch.blocked_until_ms
        rate, burst = state.limit if state.limit is not None else default
        return cls(
            user_id=user_id,
            blocked=blocked,
            reason=state.reason if blocked else None,
            blocked_by=state.blocked_by if blocked else None,
            blocked_at_ms=state.blocked_at_ms if blocked else None,
            blocked_until_ms=until if blocked and until else None,
            credentials_not_before_ms=state.kill_switch.not_before_ms,
            password_reset_required=state.kill_switch.reset_required,
            rate=rate,
            burst=burst,
            limit_overridden=state.limit is not None,
            shadow=state.shadow,
            concurrency=state.concurrency,
            route_limits=state.route_limits,
            plan=state.plan,
        )

    def to_json(self) -> dict[str, Any]:
        """The admin API's and ``--json``'s shape of a status."""
        return {
            "user_id": self.user_id,
            "blocked": self.blocked,
            "reason": self.reason,
            "blocked_by": self.blocked_by,
            "blocked_at": iso_time(self.blocked_at_ms),
            "blocked_until": iso_time(self.blocked_until_ms),
            "credentials_not_before": iso_time(self.credentials_not_before_ms),
            "password_reset_required": self.password_reset_required,
            "limit": {
                "rate": self.rate,
                "burst": self.burst,
                "custom": self.limit_overridden,
                "shadow": self.shadow,
            },
            "route_limits": windows_json(self.route_limits),
            "concurrency": self.concurrency,
            "plan": self.plan,
        }


def windows_json(windows: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, float]]:
    """Route limits as the admin API and ``--json`` show them."""
    return {
        route: {"limit": limit, "period_seconds": period_us / 1_000_000}
        for route, (limit, period_us) in sorted(windows.items())
    }
