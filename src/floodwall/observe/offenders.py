"""Offenders: refusals counted for ``top``, and auto-block of users who keep being limited.

Counting costs a dict increment or two on the request path (a heavy-hitter summary per
subject, and one per network for anonymous clients) and no round trip; a background task
adds the top of each summary to the store's current time blocks every second. See
``floodwall.observe.top`` for the error bound of the counts and the memory bound in Redis.
Auto-block blocks a user
refused more than ``auto_block_refusals`` times within ``auto_block_window`` seconds on
this worker, for a time that doubles with each offence.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Final, Protocol

from floodwall.core import rules
from floodwall.core.clock import Clock
from floodwall.core.decision import Decision, Outcome
from floodwall.core.errors import StorageError
from floodwall.core.identity import Identity
from floodwall.core.ids import held, is_long
from floodwall.core.user_state import UserState
from floodwall.observe.metrics import Metrics
from floodwall.observe.top import (
    KEPT,
    PUBLISHED,
    SLICE_SECONDS,
    HeavyHitters,
    Offender,
    RefusingNetwork,
    blocks_of,
    cover,
    network_of,
    offender,
)
from floodwall.settings import FloodwallSettings
from floodwall.stores.protocols import RefusalBoards

__all__ = ["AUTO_ACTOR", "Blocker", "Offenders"]

logger = logging.getLogger("floodwall")

FLUSH_SECONDS: Final = 1.0
AUTO_ACTOR: Final = "auto"
_MAX_WATCHED: Final = 10_000


class OffenderStore(RefusalBoards, Protocol):
    """The top boards, and a user's state: auto-block counts its offences there."""

    async def read_user(self, user_id: str) -> UserState:
        """The user's state."""
        ...


class Blocker(Protocol):
    """Who blocks a user for auto-block: the operator actions, so an auto-block is audited
    and reaches every worker like any other block."""

    async def block(
        self,
        user_id: str,
        *,
        reason: str,
        ttl_seconds: float | None = None,
        actor: str = ...,
        extra: Mapping[str, str] | None = None,
    ) -> object:
        """Block the user for ``ttl_seconds``."""
        ...


class Offenders:
    """Counts refusals per subject; answers ``top``; auto-blocks when configured."""

    def __init__(
        self,
        store: OffenderStore,
        *,
        actions: Blocker,
        settings: FloodwallSettings,
        metrics: Metrics,
        clock: Clock,
    ) -> None:
        self._store = store
        self._actions = actions
        self._settings = settings
        self._metrics = metrics
        self._clock = clock
        self.refusals = HeavyHitters()
        """Refusals per subject (``member``) since the last flush."""
        self.networks = HeavyHitters()
        """Refusals of anonymous clients per network since the last flush."""
        # Refusals per user in the current window: [start, count], per worker; long ids by
        # their digest (a tuple: no short id can equal it).
        self._offences: dict[str | tuple[str, str], list[float]] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()

    def clear(self) -> None:
        """Forget the refusals counted and the offences seen (``floodwall.testing.reset``)."""
        self.refusals = HeavyHitters()
        self.networks = HeavyHitters()
        self._offences.clear()

    def count(self, identity: Identity, decision: Decision, *, enforced: bool) -> None:
        """Count one refusal; an enforced limit may lead to an auto-block."""
        if identity.anonymous:
            self.refusals.add("a:" + held(identity.user_id))
            network = network_of(identity.user_id)
            if network is not None:
                self.networks.add(network)
        else:
            self.refusals.add("u:" + held(identity.user_id))
        threshold = self._settings.auto_block_refusals
        if (
            threshold is not None
            and enforced
            and decision.outcome is Outcome.LIMITED
            and not identity.anonymous
        ):
            self._note_offence(identity.user_id, threshold)

    # -- top ------------------------------------------------------------------------------

    async def run_flushes(self) -> None:
        """Flush counts every second until cancelled."""
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            await self.flush()

    async def flush(self) -> None:
        """Add the largest counts since the last flush to the store's current blocks."""
        counts = self.refusals.take(PUBLISHED)
        networks = self.networks.take(PUBLISHED)
        if not counts and not networks:
            return
        blocks = blocks_of(int(self._clock.wall()) // SLICE_SECONDS)
        ttl = int(rules.WINDOW_SECONDS.high)
        try:
            await self._store.add_refusals(blocks, counts, ttl_seconds=ttl, keep=KEPT)
            if networks:
                await self._store.add_refusals(
                    blocks, networks, ttl_seconds=ttl, keep=KEPT, board="networks"
                )
        except StorageError as exc:
            logger.debug("floodwall: flushing refusal counts failed: %s", exc)

    async def top(self, *, window_seconds: int = 60, limit: int = 10) -> list[Offender]:
        """The most refused subjects over the last ``window_seconds``, across workers."""
        rows = await self._top("subjects", window_seconds, limit)
        return [offender(name, refusals) for name, refusals in rows]

    async def top_networks(
        self, *, window_seconds: int = 60, limit: int = 10
    ) -> list[RefusingNetwork]:
        """The networks (/24, /64) whose anonymous clients were refused most."""
        rows = await self._top("networks", window_seconds, limit)
        return [RefusingNetwork(name, int(refusals)) for name, refusals in rows]

    async def _top(self, board: str, window_seconds: int, limit: int) -> list[tuple[str, int]]:
        window_seconds = rules.WINDOW_SECONDS.whole_number(window_seconds)
        limit = rules.PAGE_SIZE.whole_number(limit)
        await self.flush()
        now = int(self._clock.wall())
        blocks = cover((now - window_seconds) // SLICE_SECONDS, now // SLICE_SECONDS)
        return await self._store.top_refusals(blocks, count=limit, board=board)

    # -- auto-block -----------------------------------------------------------------------

    def _note_offence(self, user_id: str, threshold: int) -> None:
        now = self._clock.monotonic()
        key = ("#", held(user_id)) if is_long(user_id) else user_id
        window = self._offences.get(key)
        span = self._settings.auto_block_window
        if window is None or now - window[0] >= span:
            if len(self._offences) >= _MAX_WATCHED:
                # Windows that are over count for nothing: drop them, or all if none is.
                live = {k: w for k, w in self._offences.items() if now - w[0] < span}
                self._offences = live if len(live) < _MAX_WATCHED else {}
            self._offences[key] = [now, 1.0]
            return
        window[1] += 1
        if window[1] == threshold + 1:
            # Off the request path: blocking takes round trips the request must not wait for.
            task = asyncio.create_task(self._auto_block(user_id))
            self._side_tasks.add(task)
            task.add_done_callback(self._auto_block_done)

    def _auto_block_done(self, task: asyncio.Task[None]) -> None:
        self._side_tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            # Retrieved here, so it is logged once, now, and not as "Task exception was
            # never retrieved" whenever the task is collected.
            logger.error(
                "floodwall: auto-block of a user failed, so the user is not blocked: %s",
                type(exc).__name__,
                exc_info=exc,
            )

    async def _auto_block(self, user_id: str) -> None:
        settings = self._settings
        try:
            state = await self._store.read_user(user_id)
            # Bounded: a hand-written count must not make the power below endless.
            offences = min(max(state.auto_offences or 0, 0), 64)
            ttl = min(settings.auto_block_seconds * 2**offences, settings.auto_block_max_seconds)
            await self._actions.block(
                user_id,
                reason=(
                    f"auto-block: more than {settings.auto_block_refusals} refusals in "
                    f"{settings.auto_block_window:g} s (offence {offences + 1})"
                ),
                ttl_seconds=ttl,
                actor=AUTO_ACTOR,
                extra={"auto_offences": str(offences + 1)},
            )
            self._metrics.auto_blocks.inc()
        except StorageError as exc:
            logger.warning("floodwall: auto-block of a user failed: %s", exc)

    async def stop(self) -> None:
        """Let auto-blocks in flight finish: an operator's tools must not lose one."""
        if self._side_tasks:
            await asyncio.gather(*self._side_tasks, return_exceptions=True)
