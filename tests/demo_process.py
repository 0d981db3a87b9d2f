"""Run ``floodwall demo`` as a real process, the way a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness import find_free_port


@contextmanager
def demo_process(log_dir: Path, **env: str) -> Iterator[str]:
    """Start the demo on a free port with ``FLOODWALL_*`` variables ``env``; yield its URL."""
    port = find_free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    environment.update(env)
    log_path = log_dir / f"demo-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "floodwall.cli", "demo", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    httpx.post(url + "/login", json={}, timeout=1)
                    break
                except httpx.TransportError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the demo did not start:\n{log_path.read_text()}"
                        ) from None
                    time.sleep(0.1)
            yield url
        finally:
            process.terminate()
            process.wait(10)
