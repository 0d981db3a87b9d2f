"""``MemoryStore``: the embedded store, with the same semantics as ``lua/check.lua``.

It serves one process (the demo, tests, single-worker apps). Its clock is injectable so
refill can be tested without sleeping.

Its length mirrors ``RedisStore`` method for method (the Store protocol): the same
semantics, proven by one shared test suite.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import heapq
import itertools
import math
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

from floodwall.core.decision import Decision, Outcome, new_decision
from floodwall.core.errors import StoreCommandError
from floodwall.core.killswitch import KillSwitch
from floodwall.core.stored import stored_limit
from floodwall.core.user_state import Listing
from floodwall.stores.base import (
    LEASE_MS,
    AuditEntry,
    TopBlock,
    Window,
    most_refused,
    per_block,
)
from floodwall.stores.keys import Keys, SubjectKeys
from floodwall.stores.state_fields import StateSnapshot
from floodwall.stores.user_states import UserStateStore

__all__ = ["MemoryStore"]

# The same slack as check.lua, so both stores decide boundary cases alike.
_SLACK_US = 1.0
_Counted = tuple[str, deque[float], float, int]
"""A window that will count the request: its key, times, period (µs) and limit."""


class MemoryStore(UserStateStore):
    """Buckets and kill-switch state in this process's memory."""

    def __init__(
        self, *, prefix: str = "floodwall", clock: Callable[[], float] = time.time
    ) -> None:
        self.keys = Keys(prefix)
        self.crosses_subjects = True
        """Every key is in one process: a check may count any subject's windows."""
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        # Requests in flight per subject: token → lease end (ms).
        self._inflight: dict[str, dict[str, int]] = {}
        self._lease_numbers = itertools.count()
        # Route limits' moving windows: admitted requests' times (µs), oldest first, and the
        # period (µs) they count over.
        self._windows: dict[str, tuple[deque[float], float]] = {}
        self._expiries: list[tuple[float, str]] = []
        self._states: dict[str, dict[str, str]] = {}
        self._revoked: dict[str, dict[str, int]] = {}
        self._indexes: dict[str, list[str]] = {}
        self._subscribers: set[asyncio.Queue[str]] = set()
        self._audit: deque[AuditEntry] = deque()
        self._audit_ids = itertools.count(1)
        self._config: dict[str, str] = {}
        # (board, block) → the block's counts, and when it expires.
        self._top: dict[tuple[str, TopBlock], tuple[dict[str, int], float]] = {}
        self._networks: dict[str, str] = {}

    async def start(self) -> None:
        """Nothing to connect."""

    async def close(self) -> None:
        """Nothing to release."""

    def _now_us(self) -> int:
        # round, not int: a clock given in float seconds is exact to the µs only when rounded.
        return round(self._clock() * 1_000_000)

    async def now_ms(self) -> int:
        """This process's clock, ms since the epoch."""
        return self._now_us() // 1000

    async def check(
        self,
        keys: SubjectKeys,
        *,
        rate: float,
        burst: int,
        cost: int = 1,
        issued_at_ms: int | None = None,
        credential_id: str | None = None,
        reset_exempt: bool = False,
        windows: tuple[Window, ...] = (),
        concurrency: int | None = None,
        lease_ms: int = LEASE_MS,
    ) -> Decision:
        """Decide one request exactly as ``check.lua`` does."""
        now = float(round(self._clock() * 1_000_000))  # as _now_us, a call less
        now_ms = math.floor(now / 1000)
        self._expire(now)
        state = self._states.get(keys.state)
        revoked = self._revoked.get(keys.revoked) if credential_id else None
        if state is None:
            # Most subjects have no kill-switch state: nothing to read but the defaults.
            rate_value, capacity_tokens, shadow = float(rate), burst, False
        else:
            # As check.lua: a stored limit the rule book refuses reads as absent.
            own = stored_limit(state.get("rate"), state.get("burst"))
            rate_value, capacity_tokens = own if own is not None else (float(rate), burst)
            shadow = state.get("shadow") == "1"
        if state is not None or revoked:
            kill_switch = KillSwitch.from_fields(state or {}, revoked)
            outcome = kill_switch.refusal(
                issued_at_ms=issued_at_ms,
                credential_id=credential_id,
                reset_exempt=reset_exempt,
                now_ms=now_ms,
            )
            if outcome is not None:
                until = kill_switch.blocked_until_ms if outcome is Outcome.BLOCKED else None
                return _refused(outcome, rate_value, capacity_tokens, shadow, now_ms, until or 0)

        interval = 1_000_000 / rate_value
        capacity = capacity_tokens * interval
        slack = _SLACK_US if interval >= 2 * _SLACK_US else interval / 2
        ahead = 0.0
        bucket = self._buckets.get(keys.bucket)
        if bucket is not None and bucket[0] > now:
            ahead = bucket[0] - now
            if ahead > capacity + slack:
                # Only after a limit change: the old rate's debt does not carry over.
                ahead = capacity
                self._store_bucket(keys.bucket, now, ahead)
        new_ahead = ahead + cost * interval
        if new_ahead > capacity + slack:
            return new_decision(
                outcome=Outcome.LIMITED,
                rate=rate_value,
                burst=capacity_tokens,
                remaining=0,
                retry_after=math.ceil(new_ahead - capacity) / 1_000_000,
                reset_after=math.ceil(ahead) / 1_000_000,
                shadow=shadow,
            )
        counted: list[_Counted] = []
        if windows:
            refused, counted = self._count_windows(windows, state, now, shadow)
            if refused is not None:
                return refused
        own_concurrency = _number(state.get("concurrency")) if state else None
        limit_in_flight = concurrency if own_concurrency is None else own_concurrency
        leases = None
        if limit_in_flight is not None:
            leases = self._inflight.setdefault(keys.inflight, {})
            for token in [t for t, end in leases.items() if end <= now_ms]:
                del leases[token]
            if len(leases) >= limit_in_flight:
                return Decision(
                    outcome=Outcome.CONCURRENCY_EXCEEDED,
                    rate=rate_value,
                    burst=capacity_tokens,
                    remaining=0,
                    retry_after=1.0,
                    reset_after=1.0,
                    shadow=shadow,
                )
        self._store_bucket(keys.bucket, now, new_ahead)
        lease = ""
        if leases is not None:
            lease = f"{now:.0f}:{next(self._lease_numbers)}"
            leases[lease] = now_ms + lease_ms
        for key, times, period, limit in counted:
            times.append(now)
            while len(times) > limit:
                # A lowered limit keeps only the last `limit`, as check.lua's list does.
                times.popleft()
            if key not in self._windows:
                # One expiry per window, moved on when it comes (see _expire): one per
                # request would hold a day-long period's every request in the heap.
                heapq.heappush(self._expiries, (now + period, key))
            self._windows[key] = (times, period)
        # Counted by the admission rule above, slack included, as check.lua does.
        remaining = max(0, math.floor((capacity + slack - new_ahead) / interval))
        return new_decision(
            outcome=Outcome.ALLOWED,
            rate=rate_value,
            burst=capacity_tokens,
            remaining=remaining,
            retry_after=0.0,
            reset_after=math.ceil(new_ahead) / 1_000_000,
            shadow=shadow,
            lease=lease,
        )

    def _count_windows(
        self,
        windows: tuple[Window, ...],
        state: dict[str, str] | None,
        now: float,
        shadow: bool,
    ) -> tuple[Decision | None, list[_Counted]]:
        # The first window that refuses, or those that will count the request.
        counted = []
        for policy, window in enumerate(windows, start=1):
            limit, period = window.limit, float(window.period_us)
            own = state.get(window.override, "") if state and window.override else ""
            own_limit, sep, own_period = own.partition(":")
            if sep and own_limit.isdigit() and own_period.isdigit():
                limit, period = int(own_limit), float(own_period)
            times = self._windows.get(window.key, (deque(), period))[0]
            while times and times[0] <= now - period:
                times.popleft()
            if len(times) >= limit:
                wait = max(1, math.ceil(times[0] + period - now)) / 1_000_000
                refused = Decision(
                    outcome=Outcome.LIMITED,
                    rate=limit * 1_000_000 / period,
                    burst=limit,
                    remaining=0,
                    retry_after=wait,
                    reset_after=wait,
                    shadow=shadow,
                    policy=policy,
                )
                return refused, []
            counted.append((window.key, times, period, limit))
        return None, counted

    async def release(self, keys: SubjectKeys, token: str) -> None:
        """Give a concurrency slot back."""
        leases = self._inflight.get(keys.inflight)
        if leases is not None:
            leases.pop(token, None)
            if not leases:
                del self._inflight[keys.inflight]

    async def renew(self, leases: Sequence[tuple[SubjectKeys, str]], lease_ms: int) -> None:
        """Extend the leases of requests still in flight."""
        now_ms = await self.now_ms()
        for keys, token in leases:
            held = self._inflight.get(keys.inflight)
            if held is not None and token in held:
                held[token] = now_ms + lease_ms

    def _store_bucket(self, key: str, now: float, ahead: float) -> None:
        expires_at = now + max(1, math.ceil(ahead / 1000)) * 1000
        self._buckets[key] = (now + ahead, expires_at)
        heapq.heappush(self._expiries, (expires_at, key))

    def _expire(self, now: float) -> None:
        # Buckets vanish once full again, as Redis keys do with PX; the heap finds them.
        while self._expiries and self._expiries[0][0] <= now:
            _, key = heapq.heappop(self._expiries)
            bucket = self._buckets.get(key)
            if bucket is not None:
                if bucket[1] <= now:
                    del self._buckets[key]
                continue
            window = self._windows.get(key)
            if window is not None:
                ends = window[0][-1] + window[1]
                if ends <= now:
                    # The window's last request is older than its period: nothing to count.
                    del self._windows[key]
                else:
                    heapq.heappush(self._expiries, (ends, key))

    def bucket_count(self) -> int:
        """How many buckets are held (expired ones are dropped first)."""
        self._expire(float(self._now_us()))
        return len(self._buckets)

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

    async def publish(self, message: str) -> None:
        """Deliver to every subscription of this store."""
        for queue in list(self._subscribers):
            queue.put_nowait(message)

    async def receivers(self) -> int:
        """Subscriptions of this store (all in this process)."""
        return len(self._subscribers)

    def describe(self) -> str:
        """Where the state lives."""
        return f"in-memory store of this process only, key prefix {self.keys.prefix}"

    @contextlib.asynccontextmanager
    async def subscription(self) -> AsyncIterator[_QueueSubscription]:
        """An in-process subscription."""
        queue: asyncio.Queue[str] = asyncio.Queue()
        self._subscribers.add(queue)
        try:
            yield _QueueSubscription(queue)
        finally:
            self._subscribers.discard(queue)

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """Add to each in-memory block and keep its largest members (ties: the greater
        member, as Redis ranks them); blocks older than the TTL are dropped."""
        now = self._clock()
        for block in blocks:
            block_counts, _ = self._top.get((board, block), ({}, 0.0))
            for name, count in counts.items():
                block_counts[name] = block_counts.get(name, 0) + count
            if len(block_counts) > keep:
                block_counts = dict(most_refused(block_counts, keep))
            self._top[(board, block)] = (block_counts, now + ttl_seconds)
        for stale in [key for key, (_, until) in self._top.items() if until <= now]:
            del self._top[stale]

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """Add up each block's largest members and rank, as the Redis store does."""
        totals: dict[str, float] = {}
        read = per_block(len(blocks))
        for block in blocks:
            counts = self._top.get((board, block), ({}, 0.0))[0]
            for name, refusals in most_refused(counts, read):
                totals[name] = totals.get(name, 0) + refusals
        return [(name, int(total)) for name, total in most_refused(totals, count)]

    async def read_networks(self) -> dict[str, str]:
        """Every network block."""
        return dict(self._networks)

    async def read_network(self, cidr: str) -> str | None:
        """One network block."""
        return self._networks.get(cidr)

    async def count_networks(self) -> int:
        """How many network blocks are stored."""
        return len(self._networks)

    async def scan_networks(self, cursor: str | None, count: int) -> tuple[dict[str, str], str]:
        """The blocks in CIDR text order after ``cursor``, the last one's CIDR the next
        cursor: a block stored throughout comes exactly once, whatever changes meanwhile."""
        names = sorted(self._networks)
        start = 0 if cursor is None else bisect.bisect_right(names, cursor)
        page = names[start : start + count]
        last = start + count >= len(names)
        return {name: self._networks[name] for name in page}, "" if last else page[-1]

    async def write_network(self, cidr: str, block: str | None) -> None:
        """Store or delete a network block."""
        if block is None:
            self._networks.pop(cidr, None)
        else:
            self._networks[cidr] = block

    async def _update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        indexes: Sequence[Listing] = (),
    ) -> list[StateSnapshot | StoreCommandError]:
        """``update_state`` and ``set_index`` of each subject."""
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

    async def append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """``append_audit`` of each record."""
        return [await self.append_audit(fields, max_entries=max_entries) for fields in records]

    async def read_config(self) -> dict[str, str]:
        """Run-time settings."""
        return dict(self._config)

    async def write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """Store run-time settings."""
        self._config.update(fields)
        for name in delete:
            self._config.pop(name, None)

    async def append_audit(self, fields: Mapping[str, str], *, max_entries: int) -> str:
        """Append a record, dropping the oldest beyond ``max_entries``."""
        entry = AuditEntry(f"{await self.now_ms()}-{next(self._audit_ids)}", dict(fields))
        self._audit.append(entry)
        while len(self._audit) > max_entries:
            self._audit.popleft()
        return entry.id

    async def read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """Newest first, strictly older than ``before``."""
        entries: list[AuditEntry] = []
        for entry in reversed(self._audit):
            if before is not None and _audit_order(entry.id) >= _audit_order(before):
                continue
            entries.append(entry)
            if len(entries) == count:
                break
        return entries


class _QueueSubscription:
    __slots__ = ("_queue",)

    def __init__(self, queue: asyncio.Queue[str]) -> None:
        self._queue = queue

    async def next_message(self, wait: float) -> str | None:
        try:
            return await asyncio.wait_for(self._queue.get(), wait)
        except TimeoutError:
            return None


def _refused(
    outcome: Outcome, rate: float, burst: int, shadow: bool, now_ms: int, blocked_ms: int = 0
) -> Decision:
    return Decision(
        outcome=outcome,
        rate=rate,
        burst=burst,
        remaining=0,
        retry_after=max(0, blocked_ms - now_ms) / 1000 if blocked_ms > 0 else 0.0,
        reset_after=0.0,
        blocked_until=blocked_ms / 1000 if blocked_ms > 0 else None,
        shadow=shadow,
    )


def _number(value: str | None) -> float | None:
    # As Lua's tonumber: what cannot be read counts as absent.
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _audit_order(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)
