"""Users' state in memory: the primitives ``UserStateStore`` builds its domain methods on,
each as its Redis script does it (``lua/update_state.lua`` and its kin)."""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence

from floodwall.core.errors import StoreCommandError
from floodwall.core.user_state import Listing
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.memory.parts import MemoryParts
from floodwall.stores.state_fields import StateSnapshot
from floodwall.stores.user_states import UserLimitStore, UserStateStore

__all__ = ["MemoryStates"]


class MemoryStates(MemoryParts, UserStateStore, UserLimitStore):
    """``UserStates`` and ``UserLimits`` in this process's memory."""

    def _init_states(self) -> None:
        self._states = {}
        self._revoked = {}
        self._kill_switches = {}
        # Listing → its user ids, sorted.
        self._indexes: dict[str, list[str]] = {}

    async def _read_state(self, keys: SubjectKeys) -> StateSnapshot:
        """The subject's kill-switch fields and revoked credential ids."""
        now_ms = await self.now_ms()
        revoked = self._revoked.get(keys.revoked, {})
        return StateSnapshot(
            dict(self._states.get(keys.state, {})),
            now_ms,
            {cid: expiry for cid, expiry in revoked.items() if expiry > now_ms},
        )

    async def _read_states(self, keys: Sequence[SubjectKeys]) -> list[StateSnapshot]:
        """Many subjects' kill-switch fields."""
        return [await self._read_state(subject) for subject in keys]

    async def _claim_reset(self, keys: SubjectKeys, *, reset_id: str, claim: bool) -> bool:
        """As ``claim_reset.lua``."""
        state = self._states.get(keys.state, {})
        if state.get("reset_id") != reset_id:
            return False
        claimed = state.get("reset_notified") == reset_id
        if claim == claimed:
            return False
        if claim:
            state["reset_notified"] = reset_id
        else:
            del state["reset_notified"]
        return True

    async def _lapse_block(
        self, keys: SubjectKeys, *, blocked_until: str, fields: Sequence[str]
    ) -> bool | None:
        """As ``lapse_block.lua``."""
        state = self._states.get(keys.state, {})
        if state.get("blocked_until") != blocked_until:
            return None
        self._kill_switches.pop(keys.state, None)
        for name in fields:
            state.pop(name, None)
        if len(state) <= 1:
            self._states.pop(keys.state, None)
            return True
        return False

    async def _update_state(
        self,
        keys: SubjectKeys,
        *,
        user_id: str,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        delete: Sequence[str] = (),
        reset_bucket: bool = False,
    ) -> StateSnapshot:
        """Set and delete fields in one step, as ``update_state.lua`` does."""
        if reset_bucket:
            self._buckets.pop(keys.bucket, None)
        self._kill_switches.pop(keys.state, None)
        now_ms = await self.now_ms()
        state = self._states.setdefault(keys.state, {})
        state["user_id"] = user_id
        state.update(assign or {})
        for field, offset in (assign_now_plus_ms or {}).items():
            state[field] = str(now_ms + offset)
        for field in delete:
            state.pop(field, None)
        if len(state) <= 1:
            del self._states[keys.state]
            state = {}
        return StateSnapshot(dict(state), now_ms)

    async def _revoke_credential(
        self, keys: SubjectKeys, *, credential_id: str, expires_at_ms: int
    ) -> None:
        """Remember a revoked credential id until its expiry."""
        now_ms = await self.now_ms()
        revoked = self._revoked.setdefault(keys.revoked, {})
        revoked[credential_id] = expires_at_ms
        for stale in [cid for cid, expiry in revoked.items() if expiry <= now_ms]:
            del revoked[stale]

    async def _set_index(self, index: Listing, user_id: str, *, present: bool) -> None:
        """Keep a sorted list of user ids per index."""
        members = self._indexes.setdefault(index, [])
        position = bisect.bisect_left(members, user_id)
        found = position < len(members) and members[position] == user_id
        if present and not found:
            members.insert(position, user_id)
        elif not present and found:
            del members[position]

    async def _list_index(self, index: Listing, *, after: str | None, count: int) -> list[str]:
        """A page of an index, in id order."""
        members = self._indexes.get(index, [])
        start = 0 if after is None else bisect.bisect_right(members, after)
        return members[start : start + count]

    async def _update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        indexes: Sequence[Listing] = (),
    ) -> list[StateSnapshot | StoreCommandError]:
        """``_update_state`` and ``_set_index`` of each subject."""
        results: list[StateSnapshot | StoreCommandError] = []
        for keys, user_id in subjects:
            results.append(
                await self._update_state(
                    keys, user_id=user_id, assign=assign, assign_now_plus_ms=assign_now_plus_ms
                )
            )
            for index in indexes:
                await self._set_index(index, user_id, present=True)
        return results
