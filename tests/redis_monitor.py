"""Watch what clients send to a real Redis (MONITOR), to count a code path's round trips."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import redis


@contextmanager
def client_commands(url: str) -> Iterator[list[str]]:
    """Collect the names of the commands clients send while the block runs.

    Commands a Lua script runs are left out: they cost no round trip.
    """
    sentinel_text = f"floodwall-monitor-done-{uuid.uuid4().hex}"
    seen: list[str] = []
    ready = threading.Event()
    # Connected before watching, so its own handshake is not counted.
    sentinel = redis.Redis.from_url(url)
    sentinel.ping()

    def watch() -> None:
        with redis.Redis.from_url(url).monitor() as monitor:  # type: ignore[no-untyped-call]
            ready.set()
            for command in monitor.listen():
                text = str(command["command"])
                if sentinel_text in text:
                    return
                if command.get("client_type") != "lua":
                    seen.append(text.split(" ", 1)[0].upper())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        if not ready.wait(10):
            raise RuntimeError("MONITOR did not start")
        yield seen
    finally:
        # Always end the watching thread, or a failing test would hang the run.
        sentinel.echo(sentinel_text)
        sentinel.close()
        watcher.join(10)
