"""The kill-switch rule: whether a user's state refuses a request, and why.

One rule, read in one order: a block (no end, or not yet ended), then a revocation of
every credential issued before a time, then a revocation of this credential by its id
(until its expiry), then a password reset required outside the reset flow. The memory
store, every worker's mirror and a user's status apply it through ``KillSwitch``;
``stores/redis/lua/check.lua`` is its only other copy, and ``tests/test_kill_switch_rule.py``
runs one table of cases through both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final

from floodwall.core.decision import Outcome
from floodwall.core.stored import stored_ms

__all__ = ["NO_KILL_SWITCH", "KillSwitch"]


@dataclass(frozen=True, slots=True)
class KillSwitch:
    """What of a user's state can refuse a request; times in ms on the store's clock.

    ``blocked_until_ms`` is 0 for a block without end and ``None`` for no block;
    ``revoked`` maps credential ids revoked one by one to their expiry.
    """

    blocked_until_ms: int | None = None
    not_before_ms: int | None = None
    reset_required: bool = False
    revoked: Mapping[str, int] = field(default_factory=dict)

    @classmethod
    def from_fields(
        cls, fields: Mapping[str, str], revoked: Mapping[str, int] | None = None
    ) -> KillSwitch:
        """Read the stored state as ``check.lua`` does: a value it cannot read is absent."""
        return cls(
            blocked_until_ms=stored_ms(fields.get("blocked_until")),
            not_before_ms=stored_ms(fields.get("not_before")),
            reset_required=fields.get("reset_required") == "1",
            revoked={} if revoked is None else revoked,
        )

    def blocked(self, now_ms: int) -> bool:
        """Whether a block holds at ``now_ms``."""
        until = self.blocked_until_ms
        return until is not None and (until == 0 or until > now_ms)

    def refusal(
        self,
        *,
        issued_at_ms: int | None,
        credential_id: str | None,
        reset_exempt: bool,
        now_ms: int | None,
    ) -> Outcome | None:
        """The outcome refusing a request of this user, or ``None``: the limits decide.

        ``issued_at_ms`` and ``credential_id`` describe the request's credential;
        ``reset_exempt`` marks the password-reset flow. With ``now_ms`` ``None`` (no clock
        to trust: the store is out of reach and time may have moved), only what holds at
        any time answers; a timed block or a revocation by id, which may have ended, makes
        the answer ``None`` rather than a later rule's refusal.
        """
        until = self.blocked_until_ms
        if until is not None:
            if until == 0:
                return Outcome.BLOCKED
            if now_ms is None:
                return None
            if until > now_ms:
                return Outcome.BLOCKED
        not_before = self.not_before_ms
        if issued_at_ms is not None and not_before is not None and issued_at_ms < not_before:
            return Outcome.REVOKED
        if credential_id:
            expiry = self.revoked.get(credential_id)
            if expiry is not None:
                if now_ms is None:
                    return None
                if expiry > now_ms:
                    return Outcome.REVOKED
        if self.reset_required and not reset_exempt:
            return Outcome.RESET_REQUIRED
        return None


NO_KILL_SWITCH: Final = KillSwitch()
"""The state of a user nobody acted on: it refuses nothing."""
