"""The audit trail: every operator action, kept in the store and logged as JSON."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from floodwall.status import iso_time
from floodwall.stores.base import AuditEntry

__all__ = ["AuditRecord", "log_action"]

audit_logger = logging.getLogger("floodwall.audit")

FIELDS = ("time", "actor", "action", "user_id", "reason", "expires")


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """One operator action; ``id`` is its cursor in the audit stream."""

    id: str
    time_ms: int
    actor: str
    action: str
    user_id: str | None
    reason: str | None
    expires_ms: int | None
    detail: str | None

    @classmethod
    def from_entry(cls, entry: AuditEntry) -> AuditRecord:
        """Read a stored entry."""
        fields = entry.fields
        expires = fields.get("expires")
        return cls(
            id=entry.id,
            time_ms=int(fields.get("time", "0")),
            actor=fields.get("actor", ""),
            action=fields.get("action", ""),
            user_id=fields.get("user_id") or None,
            reason=fields.get("reason") or None,
            expires_ms=int(expires) if expires else None,
            detail=fields.get("detail") or None,
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


def log_action(record: AuditRecord) -> None:
    """One JSON line per action, for log pipelines that never read Redis."""
    fields = {"event": "floodwall.audit", **record.to_json()}
    # JsonFormatter puts ``extra`` fields at the top level of its line; any other formatter
    # prints only the message, so it carries the whole record too, as escaped JSON (a user
    # id or reason is anyone's text).
    audit_logger.info(
        "floodwall: %s %s",
        record.action,
        json.dumps(fields, ensure_ascii=True, separators=(",", ":")),
        extra={"fields": fields},
    )
