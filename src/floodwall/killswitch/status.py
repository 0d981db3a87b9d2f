"""A user's kill-switch status, read from the state the store keeps."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from floodwall.core.killswitch import KillSwitch
from floodwall.core.stored import ROUTE_FIELD, iso_time, stored_int, stored_limit, window_limit
from floodwall.stores.base import StateSnapshot

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

    @classmethod
    def from_snapshot(
        cls, user_id: str, snapshot: StateSnapshot, default_rate: float, default_burst: int
    ) -> UserStatus:
        """Interpret the stored hash as the check script does: a block whose time has
        passed is no block, and a value it cannot read counts as absent."""
        fields = snapshot.fields
        kill_switch = KillSwitch.from_fields(fields)
        blocked = kill_switch.blocked(snapshot.now_ms)
        until = kill_switch.blocked_until_ms
        own_limit = stored_limit(fields.get("rate"), fields.get("burst"))
        rate, burst = own_limit if own_limit is not None else (default_rate, default_burst)
        return cls(
            user_id=user_id,
            blocked=blocked,
            reason=fields.get("reason") if blocked else None,
            blocked_by=fields.get("blocked_by") if blocked else None,
            blocked_at_ms=stored_int(fields.get("blocked_at")) if blocked else None,
            blocked_until_ms=until if blocked and until else None,
            credentials_not_before_ms=kill_switch.not_before_ms,
            password_reset_required=kill_switch.reset_required,
            rate=rate,
            burst=burst,
            limit_overridden=own_limit is not None,
            shadow=fields.get("shadow") == "1",
            concurrency=stored_int(fields.get("concurrency")),
            route_limits={
                name.removeprefix(ROUTE_FIELD): window
                for name, value in fields.items()
                if name.startswith(ROUTE_FIELD) and (window := window_limit(value)) is not None
            },
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
        }


def windows_json(windows: Mapping[str, tuple[int, int]]) -> dict[str, dict[str, float]]:
    """Route limits as the admin API and ``--json`` show them."""
    return {
        route: {"limit": limit, "period_seconds": period_us / 1_000_000}
        for route, (limit, period_us) in sorted(windows.items())
    }
