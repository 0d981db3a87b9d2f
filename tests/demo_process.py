"""Run ``floodwall demo`` as a real process, the way a user starts it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import httpx

from harness import find_free_port, wait_until


@contextmanager
def demo_process(
    log_dir: Path, *, command: Sequence[str] = (sys.executable, "-m", "floodwall.cli"), **env: str
) -> Iterator[str]:
    """Start the demo on a free port with ``FLOODWALL_*`` variables ``env``; yield its URL.

    ``command`` is the floodwall command line to run (an installed ``floodwall`` script,
    say); by default this checkout's, with the test run's Python."""
    port = find_free_port()
    environment = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    environment.update(env)
    log_path = log_dir / f"demo-{port}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*command, "demo", "--port", str(port)],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_serving(process, url, log_path)
            yield url
        finally:
            process.terminate()
            process.wait(10)


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log_path: Path) -> None:
    """Wait until the demo at ``url`` answers HTTP, on ``/metrics``, which no limit
    counts; fail at once, with its log, if it exits first."""

    def log() -> str:
        return log_path.read_text(errors="replace")[-4000:]

    def serving() -> bool:
        try:
            httpx.get(url + "/metrics", timeout=1)
        except httpx.TransportError:
            if process.poll() is not None:
                raise RuntimeError(f"the demo did not start:\n{log()}") from None
            return False
        return True

    wait_until(serving, f"the demo answers at {url}", within=20, interval=0.05, details=log)
