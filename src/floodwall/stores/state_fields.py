"""How a user's state is written down: the fields of its hash (see ``lua/check.lua``), and
how they read back as a ``UserState``. Nothing outside ``floodwall.stores`` names a field."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from floodwall.core.killswitch import KillSwitch
from floodwall.core.stored import stored_int, stored_limit, window_limit
from floodwall.core.user_state import UserState

__all__ = ["BLOCK_FIELDS", "RESET_FIELDS", "ROUTE_FIELD", "StateSnapshot", "user_state"]

BLOCK_FIELDS: Final = ("blocked_until", "reason", "blocked_by", "blocked_at", "auto_offences")
"""The fields that make a block (auto-block counts its offences there)."""
RESET_FIELDS: Final = ("reset_required", "reset_id", "reset_notified")
"""The fields of a required password reset and its delivery."""
ROUTE_FIELD: Final = "route:"
"""Prefix of the field, in the config hash or a user's state, of a route's limit
(``"limit:period_us"``)."""


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A subject's hash as stored, and the store's clock when it was read; ``revoked`` maps
    credential ids revoked one by one to their expiry (ms), where read."""

    fields: Mapping[str, str]
    now_ms: int
    revoked: Mapping[str, int] = field(default_factory=dict)

    def user_state(self) -> UserState:
        """The snapshot in domain terms."""
        return user_state(self.fields, self.now_ms, self.revoked)


def user_state(
    fields: Mapping[str, str], now_ms: int, revoked: Mapping[str, int] | None = None
) -> UserState:
    """Read a user's hash as the check script does: a value it cannot read is absent."""
    if not fields:
        return UserState(now_ms, KillSwitch(revoked={} if revoked is None else revoked))
    return UserState(
        now_ms,
        KillSwitch.from_fields(fields, revoked),
        reason=fields.get("reason"),
        blocked_by=fields.get("blocked_by"),
        blocked_at_ms=stored_int(fields.get("blocked_at")),
        auto_offences=stored_int(fields.get("auto_offences")),
        block_mark=fields.get("blocked_until"),
        reset_id=fields.get("reset_id"),
        reset_notified=fields.get("reset_notified"),
        limit=stored_limit(fields.get("rate"), fields.get("burst")),
        shadow=fields.get("shadow") == "1",
        concurrency=stored_int(fields.get("concurrency")),
        route_limits={
            name.removeprefix(ROUTE_FIELD): window
            for name, value in fields.items()
            if name.startswith(ROUTE_FIELD) and (window := window_limit(value)) is not None
        },
        plan=fields.get("plan"),
        stored=True,
    )
