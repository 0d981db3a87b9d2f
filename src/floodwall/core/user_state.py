"""A user's state as the store keeps it, in domain terms: the kill switch (a block, the
revocations, a password reset) and the user's own limits. How a store writes it down is
the store's business (``floodwall.stores.state_fields``); everyone else reads this."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from floodwall.core.killswitch import NO_KILL_SWITCH, KillSwitch
from floodwall.core.stored import Limit, WindowLimit

__all__ = ["Listing", "UserState"]


class Listing(enum.StrEnum):
    """The listings of users a store keeps, each in user id order."""

    USERS = "users"
    """Every user with some state: what a worker's resync reads."""
    BLOCKED = "blocked"
    """Users blocked, or whose block ended and nobody has yet passed by to drop them."""


@dataclass(frozen=True, slots=True)
class UserState:
    """One user's state, read at ``now_ms`` on the store's clock.

    ``kill_switch`` is what refuses requests (its ``revoked`` holds only when the read
    included the credential ids revoked one by one); the block's details (``reason``,
    ``blocked_by``, ``blocked_at_ms``, auto-block's ``auto_offences``) are set while a block
    is stored, ended or not. ``block_mark`` is the stored block as the store compares it
    (``lapse_block``); ``stored`` whether the store keeps anything but revoked ids.
    """

    now_ms: int
    kill_switch: KillSwitch = NO_KILL_SWITCH
    reason: str | None = None
    blocked_by: str | None = None
    blocked_at_ms: int | None = None
    auto_offences: int | None = None
    block_mark: str | None = None
    reset_id: str | None = None
    reset_notified: str | None = None
    limit: Limit | None = None
    shadow: bool = False
    concurrency: int | None = None
    route_limits: Mapping[str, WindowLimit] = field(default_factory=dict)
    """The user's own route limits: route → (requests, period in µs)."""
    plan: str | None = None
    """The plan the user's requests name, as a worker last wrote it."""
    stored: bool = False

    @property
    def revoked(self) -> Mapping[str, int]:
        """Credential ids revoked one by one, and their expiry (ms)."""
        return self.kill_switch.revoked

    @property
    def pending_reset(self) -> str | None:
        """The id of a required password reset no process has delivered yet."""
        if not (self.kill_switch.reset_required and self.reset_id):
            return None
        return None if self.reset_notified == self.reset_id else self.reset_id

    def with_revoked(self, revoked: Mapping[str, int]) -> UserState:
        """This state with ``revoked`` as its credential ids revoked one by one."""
        return replace(self, kill_switch=replace(self.kill_switch, revoked=revoked))

    def without_block(self, *, stored: bool) -> UserState:
        """This state once its block is forgotten; ``stored``: whether anything is left."""
        kill_switch = replace(self.kill_switch, blocked_until_ms=None)
        if not stored:
            return UserState(self.now_ms, replace(NO_KILL_SWITCH, revoked=self.revoked))
        return replace(
            self,
            kill_switch=kill_switch,
            reason=None,
            blocked_by=None,
            blocked_at_ms=None,
            auto_offences=None,
            block_mark=None,
        )
