"""The audit trail in domain terms, written once for every store over a capped log of
entries of text fields (``_append_audits``, ``_read_audit``): ``time``, ``actor``,
``action``, ``user_id`` (absent for an action on no user), ``reason``, ``expires``,
``detail``, an empty text for what is not known."""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from typing import Final

from floodwall.core.audit import AuditAction, AuditRecord
from floodwall.core.stored import stored_int
from floodwall.stores.base import AuditEntry

__all__ = ["AuditTrailStore"]

# Before the empty id could be named, actions on no user stored an empty user_id.
_NO_USER_ACTIONS: Final = frozenset({"set-default-limit", "clear-default-limit"})


def _fields(action: AuditAction) -> dict[str, str]:
    fields = {
        "time": "" if action.time_ms is None else str(action.time_ms),
        "actor": action.actor,
        "action": action.action,
        "reason": action.reason or "",
        "expires": "" if action.expires_ms is None else str(action.expires_ms),
        "detail": action.detail or "",
    }
    if action.user_id is not None:
        # Absent for actions on no user, so the empty id reads back as itself.
        fields["user_id"] = action.user_id
    return fields


def _record(entry: AuditEntry) -> AuditRecord:
    # Whoever wrote it: fields that cannot be read come back as None.
    fields = entry.fields
    user_id = fields.get("user_id")
    if user_id == "" and fields.get("action") in _NO_USER_ACTIONS:
        user_id = None
    return AuditRecord(
        id=entry.id,
        time_ms=stored_int(fields.get("time")),
        actor=fields.get("actor", ""),
        action=fields.get("action", ""),
        user_id=user_id,
        reason=fields.get("reason") or None,
        expires_ms=stored_int(fields.get("expires") or None),
        detail=fields.get("detail") or None,
    )


class AuditTrailStore(abc.ABC):
    """``AuditTrail`` of a store (``stores.protocols``)."""

    async def append_audit(self, action: AuditAction, *, max_entries: int) -> str:
        """Audit one action, keeping about the newest ``max_entries``; returns its id."""
        return (await self._append_audits([_fields(action)], max_entries=max_entries))[0]

    async def append_audits(self, actions: Sequence[AuditAction], *, max_entries: int) -> list[str]:
        """``append_audit`` of many actions, in order, in as few round trips as possible."""
        return await self._append_audits([_fields(a) for a in actions], max_entries=max_entries)

    async def read_audit(self, *, before: str | None, count: int) -> list[AuditRecord]:
        """Up to ``count`` audited actions, newest first, strictly older than ``before``."""
        return [_record(entry) for entry in await self._read_audit(before=before, count=count)]

    @abc.abstractmethod
    async def _append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """Append entries to the capped log, in order; their ids."""

    @abc.abstractmethod
    async def _read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """Up to ``count`` entries, newest first, strictly older than ``before``."""
