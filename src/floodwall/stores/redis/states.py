"""Users' state on Redis: the primitives ``UserStateStore`` builds its domain methods on,
each one script or one pipelined round trip (``lua/update_state.lua`` and its kin)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from floodwall.core.errors import StoreCommandError
from floodwall.core.user_state import Listing
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.redis.parts import (
    RedisClient,
    RedisParts,
    decode,
    encode,
    script,
    storage_errors,
    translate,
)
from floodwall.stores.state_fields import StateSnapshot
from floodwall.stores.user_states import UserLimitStore, UserStateStore

__all__ = ["RedisStates"]

# Subjects per pipeline of a bulk update: 200 scripts and their replies are about 100 KB.
BULK_BATCH: Final = 200


def _update_args(
    assign: Mapping[str, str], assign_now_plus_ms: Mapping[str, int], delete: Sequence[str]
) -> list[bytes | str | int]:
    # ARGV[2 ...] of update_state.lua (ARGV[1] is the user id).
    args: list[bytes | str | int] = [len(assign), len(assign_now_plus_ms)]
    for field, value in assign.items():
        args += [field, encode(value)]
    for field, offset in assign_now_plus_ms.items():
        args += [field, offset]
    return args + list(delete)


def _snapshot_of(reply: Any) -> StateSnapshot:
    # update_state.lua's reply: now (ms), then the hash's fields and values.
    now_ms, *flat = reply
    fields = {decode(flat[i]): decode(flat[i + 1]) for i in range(0, len(flat), 2)}
    return StateSnapshot(fields, int(now_ms))


class RedisStates(RedisParts, UserStateStore, UserLimitStore):
    """``UserStates`` and ``UserLimits`` on Redis: one hash per user, two sorted sets of
    user ids (the listings)."""

    def _init_states(self, client: RedisClient) -> None:
        self._update = client.register_script(script("update_state.lua"))
        self._revoke = client.register_script(script("revoke.lua"))
        self._claim_reset_script = client.register_script(script("claim_reset.lua"))
        self._lapse_block_script = client.register_script(script("lapse_block.lua"))

    async def _read_states(self, keys: Sequence[SubjectKeys]) -> list[StateSnapshot]:
        """HGETALL of each hash, its revoked ids and TIME, pipelined: one round trip on a
        single Redis."""
        if not keys:
            return []
        with storage_errors():
            now = await self.now_ms()
            async with self._client.pipeline(transaction=False) as pipe:
                for subject in keys:
                    pipe.hgetall(subject.state)
                    pipe.zrangebyscore(subject.revoked, f"({now}", "+inf", withscores=True)
                replies = await pipe.execute()
        return [
            StateSnapshot(
                {decode(k): decode(v) for k, v in fields.items()},
                now,
                {decode(cid): int(expiry) for cid, expiry in revoked},
            )
            for fields, revoked in zip(replies[::2], replies[1::2], strict=True)
        ]

    async def _claim_reset(self, keys: SubjectKeys, *, reset_id: str, claim: bool) -> bool:
        """One ``EVALSHA`` of ``claim_reset.lua``."""
        with storage_errors():
            reply = await self._claim_reset_script(keys=(keys.state,), args=(reset_id, int(claim)))
        return bool(reply)

    async def _lapse_block(
        self, keys: SubjectKeys, *, blocked_until: str, fields: Sequence[str]
    ) -> bool | None:
        """One ``EVALSHA`` of ``lapse_block.lua``."""
        with storage_errors():
            left = await self._lapse_block_script(keys=(keys.state,), args=(blocked_until, *fields))
        return None if left < 0 else left == 0

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
        """One ``EVALSHA`` of ``update_state.lua``."""
        args = [encode(user_id), *_update_args(assign or {}, assign_now_plus_ms or {}, delete)]
        with storage_errors():
            touched = (keys.state, keys.bucket) if reset_bucket else (keys.state,)
            reply = await self._update(keys=touched, args=args)
        return _snapshot_of(reply)

    async def _revoke_credential(
        self, keys: SubjectKeys, *, credential_id: str, expires_at_ms: int
    ) -> None:
        """One ``EVALSHA`` of ``revoke.lua``."""
        with storage_errors():
            await self._revoke(keys=(keys.revoked,), args=(encode(credential_id), expires_at_ms))

    async def _set_index(self, index: Listing, user_id: str, *, present: bool) -> None:
        """Members all score 0, so an index pages in id order with ZRANGEBYLEX."""
        key = self.keys.index(index)
        with storage_errors():
            if present:
                await self._client.zadd(key, {encode(user_id): 0})
            else:
                await self._client.zrem(key, encode(user_id))

    async def _list_index(self, index: Listing, *, after: str | None, count: int) -> list[str]:
        """A page of an index after ``after``."""
        low = b"-" if after is None else b"(" + encode(after)
        with storage_errors():
            members = await self._client.zrangebylex(
                self.keys.index(index), low, b"+", start=0, num=count
            )
        return [decode(member) for member in members]

    async def _update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        indexes: Sequence[Listing] = (),
    ) -> list[StateSnapshot | StoreCommandError]:
        """``update_state.lua`` of each subject, pipelined in batches of ``BULK_BATCH``
        subjects, then one ZADD per index of the subjects whose update succeeded: 1,000
        users in a few round trips. A subject whose script fails is in no index, so a
        listing never names a user whose state it cannot read."""
        args = _update_args(assign or {}, assign_now_plus_ms or {}, ())
        results: list[StateSnapshot | StoreCommandError] = []
        with storage_errors():
            # The script is loaded first: a pipeline cannot reload it halfway.
            await self._client.script_load(self._update.script)
            for start in range(0, len(subjects), BULK_BATCH):
                batch = subjects[start : start + BULK_BATCH]
                async with self._client.pipeline(transaction=False) as pipe:
                    for keys, user_id in batch:
                        pipe.evalsha(self._update.sha, 1, keys.state, encode(user_id), *args)
                    replies = await pipe.execute(raise_on_error=False)
                updated: dict[Any, Any] = {}
                for (_, user_id), reply in zip(batch, replies, strict=True):
                    if not isinstance(reply, Exception):
                        results.append(_snapshot_of(reply))
                        updated[encode(user_id)] = 0
                        continue
                    error = translate(reply)
                    if not isinstance(error, StoreCommandError):
                        raise error from reply
                    results.append(error)
                if updated and indexes:
                    async with self._client.pipeline(transaction=False) as pipe:
                        for index in indexes:
                            pipe.zadd(self.keys.index(index), updated)
                        await pipe.execute()
        return results
