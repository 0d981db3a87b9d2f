"""The hot path in memory: the check, decided exactly as ``lua/check.lua`` decides it (one
shared test suite runs against both), and the concurrency slots."""

from __future__ import annotations

import heapq
import itertools
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import NamedTuple

from floodwall.core.decision import Decision, Outcome, new_decision
from floodwall.core.killswitch import KillSwitch
from floodwall.core.stored import stored_limit
from floodwall.stores.base import LEASE_MS, Window
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.memory.parts import MemoryParts
from floodwall.stores.state_fields import ROUTE_FIELD

__all__ = ["MemoryBuckets"]

# The same slack as check.lua, so both stores decide boundary cases alike.
_SLACK_US = 1.0
# Default limits held at most: apps use a handful.
_HELD_LIMITS = 1024
_Counted = tuple[str, deque[float], float, int]
"""A window that will count the request: its key, times, period (µs) and limit."""


class _Limit(NamedTuple):
    """A subject's bucket limit for one check, in µs as check.lua counts."""

    rate: float
    burst: int
    shadow: bool
    interval: float
    capacity: float
    slack: float


def _limit_of(state: Mapping[str, str] | None, rate: float, burst: int) -> _Limit:
    if state is None:
        rate_value, burst_value, shadow = float(rate), burst, False
    else:
        # As check.lua: a stored limit the rule book refuses reads as absent.
        own = stored_limit(state.get("rate"), state.get("burst"))
        rate_value, burst_value = own if own is not None else (float(rate), burst)
        shadow = state.get("shadow") == "1"
    interval = 1_000_000 / rate_value
    slack = _SLACK_US if interval >= 2 * _SLACK_US else interval / 2
    return _Limit(rate_value, burst_value, shadow, interval, burst_value * interval, slack)


class MemoryBuckets(MemoryParts):
    """``Buckets`` in this process's memory."""

    def _init_buckets(self) -> None:
        self._buckets = {}
        # Requests in flight per subject: token → lease end (ms).
        self._inflight: dict[str, dict[str, int]] = {}
        self._lease_numbers = itertools.count()
        # Route limits' moving windows: admitted requests' times (µs), oldest first, and the
        # period (µs) they count over.
        self._windows: dict[str, tuple[deque[float], float]] = {}
        self._expiries: list[tuple[float, str]] = []
        # The default limits' _Limit, by (rate, burst): most subjects have no state, and
        # their checks then read nothing but the defaults, which repeat.
        self._default_limits: dict[tuple[float, int], _Limit] = {}

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
        """Decide one request exactly as ``check.lua`` does: the kill switch, the bucket,
        the route limits' windows, a concurrency slot; counted everywhere or nowhere."""
        now = float(round(self._clock() * 1_000_000))  # as _now_us, a call less
        now_ms = math.floor(now / 1000)
        self._expire(now)
        state = self._states.get(keys.state)
        if state is None:
            limit = self._default_limits.get((rate, burst)) or self._default_limit(rate, burst)
        else:
            limit = _limit_of(state, rate, burst)
        revoked = self._revoked.get(keys.revoked) if credential_id else None
        if state is not None or revoked:
            kill_switch = self._kill_switch(keys.state, state, revoked)
            outcome = kill_switch.refusal(
                issued_at_ms=issued_at_ms,
                credential_id=credential_id,
                reset_exempt=reset_exempt,
                now_ms=now_ms,
            )
            if outcome is not None:
                until = kill_switch.blocked_until_ms if outcome is Outcome.BLOCKED else None
                return _refused(outcome, limit, now_ms, until or 0)
        ahead = self._ahead(keys.bucket, limit, now)
        new_ahead = ahead + cost * limit.interval
        if new_ahead > limit.capacity + limit.slack:
            return _limited(limit, ahead, new_ahead)
        counted: list[_Counted] = []
        if windows:
            refused, counted = self._count_windows(windows, state, now, limit.shadow)
            if refused is not None:
                return refused
        own_concurrency = _number(state.get("concurrency")) if state else None
        in_flight_limit = concurrency if own_concurrency is None else own_concurrency
        leases = None
        if in_flight_limit is not None:
            leases = self._live_leases(keys.inflight, now_ms)
            if len(leases) >= in_flight_limit:
                return _too_many_in_flight(limit)
        # Every limit admits the request: it counts in all of them at once.
        self._store_bucket(keys.bucket, now, new_ahead)
        lease = ""
        if leases is not None:
            lease = f"{now:.0f}:{next(self._lease_numbers)}"
            leases[lease] = now_ms + lease_ms
        if counted:
            self._count(counted, now)
        return _allowed(limit, new_ahead, lease)

    def _default_limit(self, rate: float, burst: int) -> _Limit:
        if len(self._default_limits) >= _HELD_LIMITS:
            self._default_limits.clear()
        limit = self._default_limits[(rate, burst)] = _limit_of(None, rate, burst)
        return limit

    def _kill_switch(
        self, key: str, state: Mapping[str, str] | None, revoked: Mapping[str, int] | None
    ) -> KillSwitch:
        # The subject's fields read once per change (see MemoryParts._kill_switches), with
        # the credential ids revoked one by one, which change apart, when this check has one.
        kill_switch = self._kill_switches.get(key)
        if kill_switch is None:
            kill_switch = KillSwitch.from_fields(state or {})
            if state is not None:
                self._kill_switches[key] = kill_switch
        return kill_switch if not revoked else replace(kill_switch, revoked=revoked)

    def _ahead(self, key: str, limit: _Limit, now: float) -> float:
        # How far the bucket's next arrival is ahead of now (µs): its debt.
        bucket = self._buckets.get(key)
        if bucket is None or bucket[0] <= now:
            return 0.0
        ahead = bucket[0] - now
        if ahead > limit.capacity + limit.slack:
            # Only after a limit change: the old rate's debt does not carry over.
            ahead = limit.capacity
            self._store_bucket(key, now, ahead)
        return ahead

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
            own = (
                state.get(ROUTE_FIELD + window.own_route, "") if state and window.own_route else ""
            )
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

    def _count(self, counted: list[_Counted], now: float) -> None:
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

    def _live_leases(self, key: str, now_ms: int) -> dict[str, int]:
        # The subject's slots, without those whose lease ended (a crashed worker's).
        leases = self._inflight.setdefault(key, {})
        for token in [t for t, end in leases.items() if end <= now_ms]:
            del leases[token]
        return leases

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


def _allowed(limit: _Limit, new_ahead: float, lease: str) -> Decision:
    # Counted by the admission rule, slack included, as check.lua does.
    remaining = max(0, math.floor((limit.capacity + limit.slack - new_ahead) / limit.interval))
    return new_decision(
        outcome=Outcome.ALLOWED,
        rate=limit.rate,
        burst=limit.burst,
        remaining=remaining,
        retry_after=0.0,
        reset_after=math.ceil(new_ahead) / 1_000_000,
        shadow=limit.shadow,
        lease=lease,
    )


def _limited(limit: _Limit, ahead: float, new_ahead: float) -> Decision:
    return new_decision(
        outcome=Outcome.LIMITED,
        rate=limit.rate,
        burst=limit.burst,
        remaining=0,
        retry_after=math.ceil(new_ahead - limit.capacity) / 1_000_000,
        reset_after=math.ceil(ahead) / 1_000_000,
        shadow=limit.shadow,
    )


def _too_many_in_flight(limit: _Limit) -> Decision:
    return Decision(
        outcome=Outcome.CONCURRENCY_EXCEEDED,
        rate=limit.rate,
        burst=limit.burst,
        remaining=0,
        retry_after=1.0,
        reset_after=1.0,
        shadow=limit.shadow,
    )


def _refused(outcome: Outcome, limit: _Limit, now_ms: int, blocked_ms: int) -> Decision:
    return Decision(
        outcome=outcome,
        rate=limit.rate,
        burst=limit.burst,
        remaining=0,
        retry_after=max(0, blocked_ms - now_ms) / 1000 if blocked_ms > 0 else 0.0,
        reset_after=0.0,
        blocked_until=blocked_ms / 1000 if blocked_ms > 0 else None,
        shadow=limit.shadow,
    )


def _number(value: str | None) -> float | None:
    # As Lua's tonumber: what cannot be read counts as absent.
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None
