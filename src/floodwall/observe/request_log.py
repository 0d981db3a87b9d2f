"""Structured request logs: JSON lines through ``logging``, with floods summarised.

A flooding client can be refused thousands of times a second; one log line each would
turn the attack on the log pipeline. Each subject's first refusal is logged at once, then
at most one summary line per ``interval`` with the count in between, and all refusal lines
together stay under ``max_lines_per_second``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from floodwall.core.decision import Decision, whole_seconds
from floodwall.core.identity import Identity
from floodwall.core.ids import held
from floodwall.core.types import Scope
from floodwall.observe.top import member

__all__ = ["DecisionLog", "JsonFormatter", "RefusalLog", "request_logger"]

request_logger = logging.getLogger("floodwall.requests")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and the record's ``fields``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            data.update(fields)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class RefusalLog:
    """Decides which refusals get a log line; bounded memory."""

    __slots__ = (
        "_budget",
        "_clock",
        "_interval",
        "_max_lines",
        "_max_subjects",
        "_second",
        "_seen",
        "_suppressed",
    )

    def __init__(
        self,
        *,
        interval: float = 10.0,
        max_lines_per_second: int = 50,
        max_subjects: int = 10_000,
        clock: Callable[[], float],
    ) -> None:
        self._interval = interval
        self._max_lines = max_lines_per_second
        self._clock = clock
        self._seen: dict[str, list[float]] = {}
        self._second = -1
        self._budget = max_lines_per_second
        self._suppressed = 0
        self._max_subjects = max_subjects

    def admit(self, subject: str) -> int | None:
        """``None``: stay quiet; else log now, reporting this many refusals (this one
        included) since the subject's last line."""
        now = self._clock()
        entry = self._seen.get(subject)
        if entry is not None and now - entry[0] < self._interval:
            entry[1] += 1
            return None
        if not self._spend(now):
            if entry is not None:
                entry[1] += 1
            return None
        count = 1 if entry is None else int(entry[1]) + 1
        if entry is None and len(self._seen) >= self._max_subjects:
            del self._seen[next(iter(self._seen))]
        self._seen[subject] = [now, 0]
        return count

    def _spend(self, now: float) -> bool:
        second = int(now)
        if second != self._second:
            self._second = second
            self._budget = self._max_lines
            if self._suppressed:
                # At the level of the lines it stands for: with INFO off they would not
                # have shown, so neither does this.
                request_logger.info(
                    "floodwall: refusal log lines suppressed",
                    extra={"fields": {"event": "floodwall.suppressed", "lines": self._suppressed}},
                )
                self._suppressed = 0
        if self._budget <= 0:
            self._suppressed += 1
            return False
        self._budget -= 1
        return True


class DecisionLog:
    """The lines a middleware writes of its decisions on ``floodwall.requests``: each
    refusal, summarised per subject (``RefusalLog``), and allowed requests at DEBUG."""

    __slots__ = ("_refusals",)

    def __init__(self, *, clock: Callable[[], float]) -> None:
        self._refusals = RefusalLog(clock=clock)

    def refused(
        self,
        scope: Scope,
        identity: Identity,
        decision: Decision,
        policy: str,
        request_id: str | None,
        *,
        enforced: bool,
    ) -> None:
        """A refusal (``enforced=False``: one shadow mode let through)."""
        count = self._refusals.admit(member(identity.user_id, identity.anonymous))
        if count is not None:
            _log(
                logging.INFO,
                scope,
                identity,
                decision,
                policy,
                request_id,
                enforced=enforced,
                refusals_since_last_line=count,
            )

    def allowed(
        self, scope: Scope, identity: Identity, decision: Decision, policy: str, request_id: str
    ) -> None:
        """An allowed request, at DEBUG."""
        _log(logging.DEBUG, scope, identity, decision, policy, request_id)


def _log(
    level: int,
    scope: Scope,
    identity: Identity,
    decision: Decision,
    policy: str,
    request_id: str | None,
    **extra: object,
) -> None:
    client = scope.get("client")
    retry_after = decision.retry_after
    fields = {
        "event": "floodwall.request",
        "request_id": request_id,
        "user_id": None if identity.anonymous else held(identity.user_id),
        "client": client[0] if client else None,
        "method": scope.get("method"),
        "path": scope.get("path"),
        "decision": decision.outcome.name.lower(),
        "policy": policy,
        "remaining": decision.remaining,
        "retry_after": whole_seconds(retry_after) if retry_after else None,
        **extra,
    }
    request_logger.log(level, "floodwall: %s", fields["decision"], extra={"fields": fields})
