"""Poll until something holds: a server answers, news reaches another instance.

One loop for every wait of the harness, the tests and the benchmarks, so that each
states only what it waits for and for how long. A condition that can tell the wait
is hopeless (the process it waits for has exited) raises, and that ends the wait.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, overload

T = TypeVar("T")

INTERVAL = 0.01


def _timed_out(what: str, within: float, details: Callable[[], str] | None) -> TimeoutError:
    message = f"timed out after {within:g} s waiting until {what}"
    return TimeoutError(message if details is None else f"{message}\n{details()}")


def wait_until(
    condition: Callable[[], T],
    what: str,
    *,
    within: float,
    interval: float = INTERVAL,
    details: Callable[[], str] | None = None,
) -> T:
    """Call ``condition`` until it returns something true, and return that.

    Raises TimeoutError, saying ``what`` was awaited and then ``details()`` (a log
    tail, the last reply), if it is still false after ``within`` seconds. The
    condition is always asked once more after the deadline, so a slow machine that
    overslept still gets its answer.
    """
    deadline = time.monotonic() + within
    while not (result := condition()):
        if time.monotonic() > deadline:
            raise _timed_out(what, within, details)
        time.sleep(interval)
    return result


@overload
async def wait_until_async(
    condition: Callable[[], Awaitable[T]],
    what: str,
    *,
    within: float,
    interval: float = ...,
    details: Callable[[], str] | None = ...,
) -> T: ...
@overload
async def wait_until_async(
    condition: Callable[[], T],
    what: str,
    *,
    within: float,
    interval: float = ...,
    details: Callable[[], str] | None = ...,
) -> T: ...
async def wait_until_async(
    condition: Callable[[], Any],
    what: str,
    *,
    within: float,
    interval: float = INTERVAL,
    details: Callable[[], str] | None = None,
) -> Any:
    """``wait_until`` for the event loop: sleeps with ``asyncio.sleep``, so the tasks
    that should make the condition true run meanwhile. ``condition`` may be async."""
    deadline = time.monotonic() + within
    while True:
        result = condition()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        if time.monotonic() > deadline:
            raise _timed_out(what, within, details)
        await asyncio.sleep(interval)
