"""Where floodwall reads time, injected so tests move it by hand instead of sleeping."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SYSTEM_CLOCK", "Clock"]


@dataclass(frozen=True, slots=True)
class Clock:
    """``wall``: seconds since the epoch (this server's; the store's clock decides every
    check it answers); ``monotonic``: seconds for intervals, never set back."""

    wall: Callable[[], float] = time.time
    monotonic: Callable[[], float] = time.perf_counter


SYSTEM_CLOCK = Clock()
