"""The audit trail: every operator action, kept in the store and logged as JSON."""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Sequence
from typing import Final

from floodwall.core import rules
from floodwall.core.audit import AuditAction, AuditRecord
from floodwall.stores.protocols import AuditTrail

__all__ = ["AuditLog", "AuditRecord", "log_action"]

audit_logger = logging.getLogger("floodwall.audit")

MAX_ENTRIES: Final = 100_000
_CURSOR: Final = re.compile(r"([0-9]{1,20})-([0-9]{1,20})")


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


class AuditLog:
    """Appends operator actions to the store's capped stream and the log, and pages them."""

    __slots__ = ("_on_action", "_store")

    def __init__(self, store: AuditTrail, *, on_action: Callable[[str], None]) -> None:
        self._store = store
        self._on_action = on_action

    async def record(
        self,
        actor: str,
        action: str,
        user_id: str | None,
        *,
        reason: str | None = None,
        expires_ms: int | None = None,
        detail: str | None = None,
        now_ms: int | None = None,
    ) -> AuditRecord:
        """Audit one action, at ``now_ms`` on the store's clock (read when not given)."""
        self._on_action(action)
        if now_ms is None:
            now_ms = await self._store.now_ms()
        done = AuditAction(now_ms, actor, action, user_id, reason, expires_ms, detail)
        entry_id = await self._store.append_audit(done, max_entries=MAX_ENTRIES)
        record = AuditRecord.of(entry_id, done)
        log_action(record)
        return record

    async def record_many(
        self,
        actor: str,
        action: str,
        entries: Sequence[tuple[str, int | None, int]],
        *,
        reason: str | None = None,
    ) -> list[AuditRecord]:
        """Audit one action on many users at once (a bulk block): one record per
        (user id, expiry ms, store time ms), appended in a few round trips."""
        done = [
            AuditAction(now_ms, actor, action, user_id, reason, expires_ms)
            for user_id, expires_ms, now_ms in entries
        ]
        ids = await self._store.append_audits(done, max_entries=MAX_ENTRIES)
        records = []
        for entry_id, one in zip(ids, done, strict=True):
            self._on_action(action)
            record = AuditRecord.of(entry_id, one)
            log_action(record)
            records.append(record)
        return records

    async def page(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of records, newest first, and the cursor of the next page."""
        limit = rules.PAGE_SIZE.whole_number(limit)
        if before is not None:
            match = _CURSOR.fullmatch(before)
            if match is None or max(int(part) for part in match.groups()) >= 2**64:
                raise rules.RuleError("cursor is the next_cursor of an earlier page")
            if before == "0-0":
                # Nothing is older than the first possible id (Redis refuses the range).
                return [], None
        records = await self._store.read_audit(before=before, count=limit)
        return records, (records[-1].id if len(records) == limit else None)
