"""What a request gets while the store cannot answer for it: the fail mode.

``closed``: 503. ``open``: the kill switch still holds from this worker's mirror, and the
limit and the request's route limits are enforced per process at this worker's share, so
all instances together hold about the limits.
"""

from __future__ import annotations

import math

from floodwall.core.clock import Clock
from floodwall.core.decision import Decision, Outcome
from floodwall.core.identity import Identity
from floodwall.core.stored import Limit
from floodwall.killswitch.mirror import KillSwitchMirror
from floodwall.stores.base import Window
from floodwall.stores.keys import SubjectKeys
from floodwall.stores.memory import MemoryStore

__all__ = ["Fallback"]


class Fallback:
    """Decides requests in-process by the fail mode."""

    __slots__ = ("_clock", "_instances", "_mirror", "_store", "closed")

    def __init__(
        self, *, closed: bool, instances: int, mirror: KillSwitchMirror, clock: Clock
    ) -> None:
        self.closed = closed
        self._instances = instances
        self._mirror = mirror
        self._clock = clock
        self._store = MemoryStore(clock=clock.wall)

    async def check(
        self,
        identity: Identity,
        keys: SubjectKeys,
        limit: Limit,
        cost: int,
        reset_exempt: bool,
        windows: tuple[Window, ...] = (),
    ) -> Decision:
        """This request's answer with no store."""
        rate, burst = limit
        if self.closed:
            return Decision(
                outcome=Outcome.UNAVAILABLE,
                rate=rate,
                burst=burst,
                remaining=0,
                retry_after=1.0,
                reset_after=1.0,
            )
        # The store is out of reach: this server's clock is the only one left.
        now_ms = int(self._clock.wall() * 1000)
        refusal = self._mirror.refusal(identity, reset_exempt, now_ms)
        if refusal is not None:
            return Decision(
                outcome=refusal,
                rate=rate,
                burst=burst,
                remaining=0,
                retry_after=0.0,
                reset_after=0.0,
            )
        if not identity.anonymous:
            user = self._mirror.get(identity.user_id)
            if user is not None and user.limit is not None:
                rate, burst = user.limit
        instances = self._instances
        return await self._store.check(
            keys,
            rate=rate / instances,
            burst=max(1, math.ceil(burst / instances)),
            cost=cost,
            reset_exempt=reset_exempt,
            # A user's own route limits live in the store: the app's hold meanwhile.
            windows=tuple(
                w._replace(limit=max(1, math.ceil(w.limit / instances)), own_route="")
                for w in windows
            ),
        )
