"""Each worker's copy of the kill-switch state, so blocks, revocations and password resets
keep holding while the store is unreachable.

Kept current by pub/sub, and fully reloaded on (re)subscription and periodically, since
pub/sub drops messages across disconnects: a reload is built aside a page at a time and
swapped in, and a change applied while it runs wins over what it read. Times are the
store's (ms); while the store is down they are compared with this server's clock, the
only one left.
"""

from __future__ import annotations

from dataclasses import dataclass

from floodwall.core.decision import Outcome
from floodwall.core.identity import Identity
from floodwall.core.killswitch import NO_KILL_SWITCH, KillSwitch
from floodwall.core.user_state import UserState

__all__ = ["KillSwitchMirror", "MirrorRebuild", "MirroredUser"]


@dataclass(frozen=True, slots=True)
class MirroredUser:
    """What the fallback needs of one user's state: what refuses (``kill_switch``), and
    the user's own limit."""

    kill_switch: KillSwitch
    limit: tuple[float, int] | None

    @classmethod
    def of(cls, state: UserState) -> MirroredUser | None:
        """``None`` when the user has no state worth keeping."""
        user = cls(state.kill_switch, state.limit)
        return None if user == _EMPTY else user


_EMPTY = MirroredUser(NO_KILL_SWITCH, None)


class MirrorRebuild:
    """A full reload of the mirror, fed a page at a time and swapped in whole by
    ``finish``. A user changed meanwhile (``KillSwitchMirror.update``) was read after the
    reload began, maybe after the reload read that user: the change wins."""

    __slots__ = ("_fresh", "_owner", "_touched")

    def __init__(self, owner: KillSwitchMirror) -> None:
        self._owner = owner
        self._fresh: dict[str, MirroredUser] = {}
        self._touched: dict[str, MirroredUser | None] = {}

    def add(self, user_id: str, state: UserState) -> None:
        """Mirror one user's state as the reload read it."""
        user = MirroredUser.of(state)
        if user is None:
            return
        known = self._owner.get(user_id)
        # Unchanged users keep their object: a reload of many users then leaves no new
        # long-lived objects behind for the garbage collector to walk.
        self._fresh[user_id] = known if known == user else user

    def touched(self, user_id: str, user: MirroredUser | None) -> None:
        self._touched[user_id] = user

    def finish(self) -> None:
        """Swap the reloaded users in, with the changes applied since the reload began."""
        fresh = self._fresh
        for user_id, user in self._touched.items():
            if user is None:
                fresh.pop(user_id, None)
            else:
                fresh[user_id] = user
        self._owner.swap(fresh)
        self._owner.rebuilds.discard(self)

    def __enter__(self) -> MirrorRebuild:
        return self

    def __exit__(self, *exc: object) -> None:
        # Abandoned (the store failed): the last copy keeps holding.
        self._owner.rebuilds.discard(self)


class KillSwitchMirror:
    """User id → mirrored state."""

    __slots__ = ("_users", "rebuilds")

    def __init__(self) -> None:
        self._users: dict[str, MirroredUser] = {}
        self.rebuilds: set[MirrorRebuild] = set()
        """Reloads under way, each told of every change applied until it finishes."""

    def __len__(self) -> int:
        return len(self._users)

    def update(self, user_id: str, state: UserState, *, revoked_read: bool = True) -> None:
        """Mirror one user's state as read (no state forgets the user); without
        ``revoked_read`` the state did not read revoked credential ids: keep the known."""
        if not revoked_read and (known := self._users.get(user_id)) is not None:
            state = state.with_revoked(known.kill_switch.revoked)
        user = MirroredUser.of(state)
        for rebuild in self.rebuilds:
            rebuild.touched(user_id, user)
        if user is None:
            self._users.pop(user_id, None)
        else:
            self._users[user_id] = user

    def rebuild(self) -> MirrorRebuild:
        """Begin a full reload (a context manager; ``finish`` swaps it in)."""
        rebuild = MirrorRebuild(self)
        self.rebuilds.add(rebuild)
        return rebuild

    def swap(self, users: dict[str, MirroredUser]) -> None:
        self._users = users

    def blocked_count(self, now_ms: int) -> int:
        """How many mirrored users are blocked at ``now_ms``."""
        return sum(1 for user in self._users.values() if user.kill_switch.blocked(now_ms))

    def get(self, user_id: str) -> MirroredUser | None:
        """The mirrored state of a user, if any."""
        return self._users.get(user_id)

    def refusal(self, identity: Identity, reset_exempt: bool, now_ms: int | None) -> Outcome | None:
        """What the kill switch says of this request, as ``check.lua`` would; ``None``: go on.

        With ``now_ms`` ``None`` (no clock to trust), only what holds at any time: a block
        with no end, a credential issued before the revocation, a reset required. Those
        change only by an operator's change, which reaches the mirror by the change feed.
        """
        if identity.anonymous:
            return None
        user = self._users.get(identity.user_id)
        if user is None:
            return None
        issued = identity.issued_at
        return user.kill_switch.refusal(
            issued_at_ms=None if issued is None else int(issued * 1000),
            credential_id=identity.credential_id,
            reset_exempt=reset_exempt,
            now_ms=now_ms,
        )
