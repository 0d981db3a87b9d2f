"""A user's kill-switch status, read from the state the store keeps."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from floodwall.stores.base import StateSnapshot

__all__ = ["UserStatus", "iso_time"]


def iso_time(millis: int | None) -> str | None:
    """ms since the epoch as ISO 8601 UTC, or ``None``."""
    if millis is None:
        return None
    return datetime.fromtimestamp(millis / 1000, UTC).isoformat(timespec="milliseconds")


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

    @classmethod
    def from_snapshot(
        cls, user_id: str, snapshot: StateSnapshot, default_rate: float, default_burst: int
    ) -> UserStatus:
        """Interpret the stored hash; a block whose time has passed is no block."""
        fields = snapshot.fields
        until = _int(fields.get("blocked_until"))
        blocked = until is not None and (until == 0 or until > snapshot.now_ms)
        overridden = "rate" in fields or "burst" in fields
        return cls(
            user_id=user_id,
            blocked=blocked,
            reason=fields.get("reason") if blocked else None,
            blocked_by=fields.get("blocked_by") if blocked else None,
            blocked_at_ms=_int(fields.get("blocked_at")) if blocked else None,
            blocked_until_ms=until if blocked and until else None,
            credentials_not_before_ms=_int(fields.get("not_before")),
            password_reset_required=fields.get("reset_required") == "1",
            rate=float(fields.get("rate", default_rate)),
            burst=int(fields.get("burst", default_burst)),
            limit_overridden=overridden,
            shadow=fields.get("shadow") == "1",
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
        }


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)
