"""An operator action as the audit trail keeps it; how a store writes it down is the
store's business (``floodwall.stores.audit_fields``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from floodwall.core.stored import iso_time

__all__ = ["AuditAction", "AuditRecord"]


@dataclass(frozen=True, slots=True)
class AuditAction:
    """One operator action, at ``time_ms`` on the store's clock; ``expires_ms`` is when
    what it did ends (a block's end), ``detail`` what it set (``rate=5.0 burst=10``)."""

    time_ms: int | None
    actor: str
    action: str
    user_id: str | None
    reason: str | None = None
    expires_ms: int | None = None
    detail: str | None = None


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator action as audited; ``id`` is its cursor in the audit trail."""

    id: str
    time_ms: int | None
    actor: str
    action: str
    user_id: str | None
    reason: str | None
    expires_ms: int | None
    detail: str | None

    @classmethod
    def of(cls, record_id: str, action: AuditAction) -> AuditRecord:
        """``action`` as audited under ``record_id``."""
        return cls(
            record_id,
            action.time_ms,
            action.actor,
            action.action,
            action.user_id,
            action.reason,
            action.expires_ms,
            action.detail,
        )

    def to_json(self) -> dict[str, Any]:
        """The admin API's and ``--json``'s shape of a record."""
        return {
            "id": self.id,
            "time": iso_time(self.time_ms),
            "actor": self.actor,
            "action": self.action,
            "user_id": self.user_id,
            "reason": self.reason,
            "expires": iso_time(self.expires_ms),
            "detail": self.detail,
        }
