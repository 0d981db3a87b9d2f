"""Operator actions on users' kill switch: block (one user or many at once), unblock,
revoke, require or clear a password reset; and reading a user's status, the blocked users
and the audit log."""

from __future__ import annotations

import logging
import math
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

from floodwall.control.action_parts import PYTHON_ACTOR, ActionParts, check_change, ttl_ms
from floodwall.core import rules
from floodwall.core.errors import StoreCommandError
from floodwall.core.stored import iso_time
from floodwall.core.user_state import Listing, UserState
from floodwall.killswitch.audit import AuditRecord
from floodwall.killswitch.status import UserStatus

__all__ = ["BulkBlockResult", "UserActions", "bulk_counts"]

logger = logging.getLogger("floodwall")

# Revoked credential ids with no known expiry are remembered this long.
DEFAULT_CREDENTIAL_LIFETIME_MS: Final = 7 * 24 * 3600 * 1000


@dataclass(frozen=True, slots=True)
class BulkBlockResult:
    """What a bulk block did to one user: blocked (until when, ms on the store's clock;
    ``None`` for no end), or the error that one user's update met."""

    user_id: str
    blocked: bool
    blocked_until_ms: int | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        """The admin API's and ``--json``'s shape of a result."""
        return {
            "user_id": self.user_id,
            "blocked": self.blocked,
            "blocked_until": iso_time(self.blocked_until_ms),
            "error": self.error,
        }


def bulk_counts(results: Sequence[BulkBlockResult]) -> tuple[int, int]:
    """How many distinct users a bulk block blocked, and how many it failed to: an id
    asked for twice has two results but is one user."""
    blocked = {result.user_id for result in results if result.blocked}
    failed = {result.user_id for result in results if not result.blocked}
    return len(blocked), len(failed)


def _offences(extra: Mapping[str, str] | None) -> int | None:
    # Auto-block's count is the one thing a block keeps beside its reason.
    if not extra:
        return None
    unknown = sorted(set(extra) - {"auto_offences"})
    if unknown:
        raise ValueError(f"a block keeps only auto_offences beside its reason, not {unknown}")
    try:
        return int(extra["auto_offences"])
    except ValueError:
        raise ValueError("a block's auto_offences is a whole number") from None


class UserActions(ActionParts):
    """What an operator can do to a user's kill switch, and read of it."""

    async def status(self, user_id: str) -> UserStatus:
        """The user's block, revocation, reset and limit status."""
        rules.USER_ID.check(user_id)
        return self._status(user_id, await self._store.read_user(user_id))

    async def blocked(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[UserStatus], str | None]:
        """A page of blocked users in id order, and the cursor of the next page."""
        limit = rules.PAGE_SIZE.whole_number(limit)
        page: list[UserStatus] = []
        cursor = after
        while len(page) < limit:
            ids = await self._store.list_users(
                Listing.BLOCKED, after=cursor, count=limit - len(page)
            )
            if not ids:
                return page, None
            for user_id, state in await self._readable_states(ids):
                status = self._status(user_id, state)
                if status.blocked:
                    page.append(status)
                else:
                    # A temporary block ran out: drop it from the listing as we pass.
                    await self._store.unlist(Listing.BLOCKED, user_id)
            cursor = ids[-1]
        return page, cursor

    async def _readable_states(self, ids: Sequence[str]) -> list[tuple[str, UserState]]:
        """The states of ``ids`` in one read; when one cannot be read (a key of another type
        written by hand, say), each alone, leaving out and logging the unreadable ones: one
        damaged user must not take the whole listing down."""
        try:
            states = await self._store.read_users(ids)
        except StoreCommandError:
            pass
        else:
            return list(zip(ids, states, strict=True))
        readable: list[tuple[str, UserState]] = []
        for user_id in ids:
            try:
                readable.append((user_id, await self._store.read_user(user_id)))
            except StoreCommandError as exc:
                logger.warning("left out of the listing: the state of user %r: %s", user_id, exc)
        return readable

    async def audit_log(
        self, *, before: str | None = None, limit: int = 100
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of audit records, newest first, and the cursor of the next page."""
        return await self.audit.page(before=before, limit=limit)

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = PYTHON_ACTOR,
        extra: Mapping[str, str] | None = None,
    ) -> UserStatus:
        """Refuse every request of the user (403), for ``ttl_seconds`` or until unblocked.

        ``extra`` fields are stored with the block: auto-block keeps its count there
        (``auto_offences``).
        """
        rules.REASON.check(reason)
        ttl = ttl_ms(ttl_seconds)
        offences = _offences(extra)
        check_change(user_id, reason)
        state = await self._store.block(
            user_id, reason=reason, actor=actor, ttl_ms=ttl, offences=offences
        )
        return await self._changed(user_id, "block", actor, state, reason=reason, expires_in_ms=ttl)

    async def block_many(
        self,
        user_ids: Sequence[str],
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = PYTHON_ACTOR,
    ) -> list[BulkBlockResult]:
        """Block up to ``rules.BULK_USER_IDS`` users at once, as ``block`` does each: the
        store's writes pipelined, the change published in a few messages, one audit entry
        per user. The input is checked whole first (nothing is done if any id is refused);
        a user whose update fails is reported in its result, the others are blocked."""
        rules.BULK_USER_IDS.whole_number(len(user_ids))
        for user_id in user_ids:
            rules.USER_ID.check(user_id)
        rules.REASON.check(reason)
        ttl = ttl_ms(ttl_seconds)
        unique = list(dict.fromkeys(user_ids))
        outcomes = await self._store.block_many(unique, reason=reason, actor=actor, ttl_ms=ttl)
        done: dict[str, UserState] = {}
        results: dict[str, BulkBlockResult] = {}
        for user_id, outcome in zip(unique, outcomes, strict=True):
            if isinstance(outcome, StoreCommandError):
                results[user_id] = BulkBlockResult(user_id, False, error=str(outcome))
                continue
            done[user_id] = outcome
            until = outcome.kill_switch.blocked_until_ms
            results[user_id] = BulkBlockResult(user_id, True, until or None)
        await self._feed.users_changed(done)
        await self.audit.record_many(
            actor,
            "block",
            [
                (user_id, None if ttl is None else state.now_ms + ttl, state.now_ms)
                for user_id, state in done.items()
            ],
            reason=reason,
        )
        return [results[user_id] for user_id in user_ids]

    async def unblock(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Lift a block; unblocking a user who is not blocked changes nothing."""
        # An operator's unblock also forgives auto-block's escalation: the block was a
        # mistake, or is over by decision; an auto-block that runs out keeps counting.
        check_change(user_id, reason)
        state = await self._store.unblock(user_id)
        return await self._changed(user_id, "unblock", actor, state, reason=reason)

    async def revoke(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Refuse (401) every credential of the user issued up to now."""
        check_change(user_id, reason)
        state = await self._store.revoke(user_id)
        return await self._changed(user_id, "revoke", actor, state, reason=reason)

    async def revoke_credential(
        self,
        user_id: str,
        credential_id: str,
        *,
        expires_at: float | None = None,
        actor: str = PYTHON_ACTOR,
        reason: str | None = None,
    ) -> UserStatus:
        """Refuse one credential (by its id, a JWT's ``jti``) until it would expire anyway
        (``expires_at``, seconds since the epoch; at most ten years ahead)."""
        rules.USER_ID.check(user_id)
        rules.CREDENTIAL_ID.check(credential_id)
        rules.REASON.optional(reason)
        now_ms = await self._store.now_ms()
        if expires_at is None:
            expires_ms = now_ms + DEFAULT_CREDENTIAL_LIFETIME_MS
        else:
            # An expiry in the past still records the revocation; one beyond the rule
            # book's horizon is refused like any other ttl.
            ahead = max(1.0, float(expires_at) - now_ms / 1000)
            expires_ms = now_ms + math.ceil(rules.TTL_SECONDS.number(ahead) * 1000)
        state = await self._store.revoke_credential(
            user_id, credential_id=credential_id, expires_at_ms=expires_ms
        )
        # Every worker's mirror learns the id, so it is refused while the store is down too.
        await self._feed.user_changed(user_id, state)
        await self.audit.record(
            actor,
            "revoke-credential",
            user_id,
            reason=reason,
            expires_ms=expires_ms,
            detail=f"credential_id={credential_id}",
            now_ms=now_ms,
        )
        return self._status(user_id, state)

    async def require_password_reset(
        self, user_id: str, *, actor: str = PYTHON_ACTOR, reason: str | None = None
    ) -> UserStatus:
        """Refuse the user (403) outside the reset flow until cleared; revokes too."""
        check_change(user_id, reason)
        state = await self._store.require_reset(user_id, reset_id=uuid.uuid4().hex)
        status = await self._changed(user_id, "require-password-reset", actor, state, reason=reason)
        # Delivered here when this process has the hook; else by the app process that
        # claims it first (see ResetNotifier).
        await self._resets.consider(user_id, state)
        return status

    async def clear_password_reset(self, user_id: str, *, actor: str = PYTHON_ACTOR) -> UserStatus:
        """The user has set a new password: let them in again."""
        check_change(user_id, None)
        state = await self._store.clear_reset(user_id)
        return await self._changed(user_id, "clear-password-reset", actor, state)
