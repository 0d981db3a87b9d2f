"""Users' states in domain terms, written once for every store over a few primitives.

A store keeps each user's state in one hash (``state_fields``) and two listings
(``Listing``). ``UserStateStore`` (the kill switch) and ``UserLimitStore`` (a user's own
limits) turn an operator's block, revocation, reset or limit into one atomic change of that
hash, keep the listings in step, and read the hash back as a ``UserState``. A store supplies
the primitives (``StatePrimitives``: ``_update_state`` and the rest), each one round trip or
one script.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence

from floodwall.core.errors import StoreCommandError
from floodwall.core.stored import Limit, WindowLimit
from floodwall.core.user_state import Listing, UserState
from floodwall.stores.keys import Keys, SubjectKeys
from floodwall.stores.state_fields import BLOCK_FIELDS, RESET_FIELDS, ROUTE_FIELD, StateSnapshot

__all__ = ["StatePrimitives", "UserLimitStore", "UserStateStore"]


def _block_fields(
    reason: str, actor: str, ttl_ms: int | None, offences: int | None
) -> tuple[dict[str, str], dict[str, int]]:
    # A block's fields: those set as given, and those set to the store's now plus ms.
    assign = {"reason": reason, "blocked_by": actor}
    if offences is not None:
        assign["auto_offences"] = str(offences)
    if ttl_ms is None:
        assign["blocked_until"] = "0"
    now_plus = {"blocked_at": 0} | ({} if ttl_ms is None else {"blocked_until": ttl_ms})
    return assign, now_plus


class StatePrimitives(abc.ABC):
    """What a store supplies to keep users' state, and the one change built on it."""

    keys: Keys

    # -- one change -----------------------------------------------------------------------

    async def _change(
        self,
        user_id: str,
        *,
        assign: Mapping[str, str] | None = None,
        now_plus_ms: Mapping[str, int] | None = None,
        delete: Sequence[str] = (),
        reset_bucket: bool = False,
    ) -> UserState:
        keys = self.keys.user(user_id)
        snapshot = await self._update_state(
            keys,
            user_id=user_id,
            assign=assign,
            assign_now_plus_ms=now_plus_ms,
            delete=delete,
            reset_bucket=reset_bucket,
        )
        # Resync finds users by this listing: one with revoked credential ids stays in it.
        present = bool(snapshot.fields) or bool((await self._read_states([keys]))[0].revoked)
        await self._set_index(Listing.USERS, user_id, present=present)
        return snapshot.user_state()

    # -- what a store supplies ------------------------------------------------------------

    @abc.abstractmethod
    async def _read_states(self, keys: Sequence[SubjectKeys]) -> list[StateSnapshot]:
        """Many subjects' hashes and revoked credential ids, in order, in one round trip."""

    @abc.abstractmethod
    async def _update_state(
        self,
        keys: SubjectKeys,
        *,
        user_id: str,
        assign: Mapping[str, str] | None,
        assign_now_plus_ms: Mapping[str, int] | None,
        delete: Sequence[str],
        reset_bucket: bool,
    ) -> StateSnapshot:
        """Atomically set fields, set fields to the store's now plus an offset (ms), delete
        fields, and with ``reset_bucket`` refill the subject's bucket (its limit changed).
        The hash also keeps ``user_id`` (listings name users by it); it is deleted once no
        other field is left."""

    @abc.abstractmethod
    async def _update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str],
        assign_now_plus_ms: Mapping[str, int],
        indexes: Sequence[Listing],
    ) -> list[StateSnapshot | StoreCommandError]:
        """``_update_state`` of many (keys, user id) with one change, and each user whose
        update succeeded added to ``indexes``."""

    @abc.abstractmethod
    async def _revoke_credential(
        self, keys: SubjectKeys, *, credential_id: str, expires_at_ms: int
    ) -> None:
        """Remember a revoked credential id until its expiry."""

    @abc.abstractmethod
    async def _claim_reset(self, keys: SubjectKeys, *, reset_id: str, claim: bool) -> bool:
        """As ``lua/claim_reset.lua``."""

    @abc.abstractmethod
    async def _lapse_block(
        self, keys: SubjectKeys, *, blocked_until: str, fields: Sequence[str]
    ) -> bool | None:
        """Delete a block's ``fields`` if ``blocked_until`` is still as read; ``None`` when
        it changed, else whether the subject has no state left."""

    @abc.abstractmethod
    async def _set_index(self, index: Listing, user_id: str, *, present: bool) -> None:
        """Add a user to, or remove one from, a listing."""

    @abc.abstractmethod
    async def _list_index(self, index: Listing, *, after: str | None, count: int) -> list[str]:
        """A page of a listing in id order, strictly after ``after``."""


class UserStateStore(StatePrimitives):
    """``UserStates`` of a store (``stores.protocols``): the kill switch, read and changed."""

    # -- reading --------------------------------------------------------------------------

    async def read_user(self, user_id: str) -> UserState:
        """The user's state and credential ids revoked one by one, on the store's clock."""
        return (await self._read_states([self.keys.user(user_id)]))[0].user_state()

    async def read_users(self, user_ids: Sequence[str]) -> list[UserState]:
        """Many users' states, in order, in one round trip where the store allows."""
        snapshots = await self._read_states([self.keys.user(user_id) for user_id in user_ids])
        return [snapshot.user_state() for snapshot in snapshots]

    async def list_users(self, listing: Listing, *, after: str | None, count: int) -> list[str]:
        """Up to ``count`` user ids of a listing in id order, strictly after ``after``."""
        return await self._list_index(listing, after=after, count=count)

    async def note_plan(self, user_id: str, plan: str) -> None:
        """Keep the plan the user's requests name with the user's state (no listing: a
        plan alone is nothing the kill switch acts on)."""
        await self._update_state(
            self.keys.user(user_id),
            user_id=user_id,
            assign={"plan": plan},
            assign_now_plus_ms=None,
            delete=(),
            reset_bucket=False,
        )

    async def unlist(self, listing: Listing, user_id: str) -> None:
        """Drop a user from a listing (a block that ended, seen by a listing)."""
        await self._set_index(listing, user_id, present=False)

    # -- the kill switch ------------------------------------------------------------------

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        actor: str,
        ttl_ms: int | None,
        offences: int | None = None,
    ) -> UserState:
        """Block the user for ``ttl_ms`` from the store's now (``None``: until unblocked);
        ``offences`` is auto-block's count, kept with the block."""
        assign, now_plus = _block_fields(reason, actor, ttl_ms, offences)
        state = await self._change(user_id, assign=assign, now_plus_ms=now_plus)
        await self._set_index(Listing.BLOCKED, user_id, present=True)
        return state

    async def block_many(
        self, user_ids: Sequence[str], *, reason: str, actor: str, ttl_ms: int | None
    ) -> list[UserState | StoreCommandError]:
        """``block`` of many users in as few round trips as the store allows; a user whose
        change failed gets its error in place of its state. ``StoreUnavailable`` when the
        store does not answer (some may be done: a block is idempotent)."""
        assign, now_plus = _block_fields(reason, actor, ttl_ms, None)
        outcomes = await self._update_states(
            [(self.keys.user(user_id), user_id) for user_id in user_ids],
            assign=assign,
            assign_now_plus_ms=now_plus,
            indexes=(Listing.USERS, Listing.BLOCKED),
        )
        return [
            outcome if isinstance(outcome, StoreCommandError) else outcome.user_state()
            for outcome in outcomes
        ]

    async def unblock(self, user_id: str) -> UserState:
        """Lift the user's block, and forget auto-block's count with it."""
        state = await self._change(user_id, delete=BLOCK_FIELDS)
        await self._set_index(Listing.BLOCKED, user_id, present=False)
        return state

    async def lapse_block(self, user_id: str, state: UserState) -> UserState | None:
        """Forget a block that has ended, as ``state`` read it; ``None`` when the block
        changed since (nothing done), else the state left."""
        if state.block_mark is None:
            return state
        keys = self.keys.user(user_id)
        emptied = await self._lapse_block(keys, blocked_until=state.block_mark, fields=BLOCK_FIELDS)
        if emptied is None:
            return None
        await self._set_index(Listing.BLOCKED, user_id, present=False)
        if emptied and not state.revoked:
            await self._set_index(Listing.USERS, user_id, present=False)
        return state.without_block(stored=not emptied)

    async def revoke(self, user_id: str) -> UserState:
        """Refuse every credential of the user issued up to the store's now."""
        return await self._change(user_id, now_plus_ms={"not_before": 0})

    async def revoke_credential(
        self, user_id: str, *, credential_id: str, expires_at_ms: int
    ) -> UserState:
        """Refuse one credential id until it would have expired anyway; the user's state
        after, revoked ids included."""
        keys = self.keys.user(user_id)
        await self._revoke_credential(
            keys, credential_id=credential_id, expires_at_ms=expires_at_ms
        )
        await self._set_index(Listing.USERS, user_id, present=True)
        return (await self._read_states([keys]))[0].user_state()

    async def require_reset(self, user_id: str, *, reset_id: str) -> UserState:
        """Refuse the user outside the password-reset flow, and every credential issued up
        to now, until ``clear_reset``; ``reset_id`` names this reset for its delivery."""
        return await self._change(
            user_id,
            assign={"reset_required": "1", "reset_id": reset_id},
            now_plus_ms={"not_before": 0},
        )

    async def clear_reset(self, user_id: str) -> UserState:
        """The user has set a new password."""
        return await self._change(user_id, delete=RESET_FIELDS)

    async def claim_reset(self, user_id: str, *, reset_id: str, claim: bool) -> bool:
        """Claim the user's current password reset for delivery to the app's hook (only one
        claim succeeds), or give a claim back (``claim=False``) after the hook failed."""
        return await self._claim_reset(self.keys.user(user_id), reset_id=reset_id, claim=claim)


class UserLimitStore(StatePrimitives):
    """``UserLimits`` of a store (``stores.protocols``): a user's own limits."""

    async def set_limit(self, user_id: str, limit: Limit | None) -> UserState:
        """Give the user a limit of their own (``None``: the default again), from a full
        bucket."""
        if limit is None:
            return await self._change(user_id, delete=("rate", "burst"), reset_bucket=True)
        rate, burst = limit
        assign = {"rate": repr(float(rate)), "burst": str(burst)}
        return await self._change(user_id, assign=assign, reset_bucket=True)

    async def set_shadow(self, user_id: str, enabled: bool) -> UserState:
        """Observe the user's limit without enforcing it, or enforce it again."""
        if enabled:
            return await self._change(user_id, assign={"shadow": "1"})
        return await self._change(user_id, delete=("shadow",))

    async def set_route_limit(
        self, user_id: str, route: str, window: WindowLimit | None
    ) -> UserState:
        """Give the user a limit of their own on one route (``None``: the app's again)."""
        name = ROUTE_FIELD + route
        if window is None:
            return await self._change(user_id, delete=(name,))
        return await self._change(user_id, assign={name: f"{window[0]}:{window[1]}"})

    async def set_concurrency(self, user_id: str, limit: int | None) -> UserState:
        """Give the user a limit of requests in flight of their own (``None``: none)."""
        if limit is None:
            return await self._change(user_id, delete=("concurrency",))
        return await self._change(user_id, assign={"concurrency": str(limit)})
