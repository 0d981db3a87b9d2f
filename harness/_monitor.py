"""Watch what Redis runs (``MONITOR``), to count a code path's commands and round trips.

``redis-cli monitor`` writes into a file for the duration of a ``with`` (or ``async
with``) block, and the lines are read once the block ends. A separate process rather
than a thread of this one: under a benchmark's load MONITOR streams thousands of lines
a second, and reading them here would take the GIL from the code being measured.
"""

from __future__ import annotations

import asyncio
import contextlib
import pathlib
import re
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from types import TracebackType
from typing import Self

from harness._polling import wait_until, wait_until_async
from harness._resp import HOST, call
from harness._servers import death_signal_preexec

MONITOR_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
# "1700000000.123456 [0 127.0.0.1:50000] "evalsha" "..." ...": the client is "lua"
# for the commands a script runs.
_LINE = re.compile(r'^\d+\.\d+ \[\d+ ([^\]]+)\] "([^"]*)"')


def parse_monitor_line(line: str) -> tuple[str, str] | None:
    """(client, command) of a MONITOR line, the command in lower case; None for others."""
    match = _LINE.match(line)
    if match is None:
        return None
    return match.group(1), match.group(2).lower()


class RedisMonitor:
    """Every command the server on ``127.0.0.1:port`` runs while the block runs.

    Read ``lines`` after the block: the raw MONITOR lines, each with the client that
    sent the command (``lua`` inside scripts). The block's end is marked by an ``ECHO``
    on a connection of the monitor's own, so no command of the block is missed and
    none after it is counted; the marker itself is left out.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.lines: list[str] = []
        self._marker = f"floodwall-monitor-end-{uuid.uuid4().hex}"
        self._workdir: pathlib.Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._read_offset = 0

    @staticmethod
    def available() -> bool:
        """Whether ``redis-cli`` is on PATH (the benchmarks do without MONITOR then)."""
        return shutil.which("redis-cli") is not None

    def __enter__(self) -> Self:
        self._launch()
        try:
            wait_until(self._started, "redis-cli monitor starts", within=MONITOR_TIMEOUT)
        except BaseException:
            self._finish()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                self._mark_end()
                wait_until(self._ended, "redis-cli monitor sees the end", within=MONITOR_TIMEOUT)
        finally:
            self._finish()

    async def __aenter__(self) -> Self:
        self._launch()
        try:
            await wait_until_async(
                lambda: asyncio.to_thread(self._started),
                "redis-cli monitor starts",
                within=MONITOR_TIMEOUT,
            )
        except BaseException:
            self._finish()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            if exc_type is None:
                await asyncio.to_thread(self._mark_end)
                await wait_until_async(
                    lambda: asyncio.to_thread(self._ended),
                    "redis-cli monitor sees the end",
                    within=MONITOR_TIMEOUT,
                )
        finally:
            await asyncio.to_thread(self._finish)

    def _launch(self) -> None:
        binary = shutil.which("redis-cli")
        if binary is None:
            raise RuntimeError("redis-cli not found on PATH (apt-get install redis-server)")
        self._workdir = pathlib.Path(tempfile.mkdtemp(prefix="floodwall-monitor-"))
        with self._log.open("wb") as out:
            self._proc = subprocess.Popen(
                [binary, "-h", HOST, "-p", str(self.port), "monitor"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=death_signal_preexec(),
            )

    @property
    def _log(self) -> pathlib.Path:
        assert self._workdir is not None
        return self._workdir / "monitor.log"

    def _started(self) -> bool:
        # redis-cli prints OK once MONITOR is on; every later command is in the file.
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"redis-cli monitor exited:\n{self._log.read_text()[-2000:]}")
        return self._log.read_bytes().startswith(b"OK")

    def _mark_end(self) -> None:
        call(self.port, "ECHO", self._marker, timeout=MONITOR_TIMEOUT)

    def _ended(self) -> bool:
        # Only what was written since the last look (plus a marker's length, in case
        # the marker was cut in two): under load the file grows large.
        with self._log.open("rb") as file:
            file.seek(max(0, self._read_offset - len(self._marker)))
            text = file.read()
            self._read_offset = file.tell()
        return self._marker.encode() in text

    def _finish(self) -> None:
        """Stop redis-cli, keep the block's lines, remove the file; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._workdir is None:
            return
        lines = self._log.read_text(errors="replace").splitlines()
        shutil.rmtree(self._workdir, ignore_errors=True)
        self._workdir = None
        ends = [n for n, line in enumerate(lines) if self._marker in line]
        self.lines = lines[1 : ends[0]] if ends else lines[1:]


@contextlib.contextmanager
def client_commands(port: int) -> Iterator[list[str]]:
    """The names of the commands clients send while the block runs, in upper case.

    Commands a Lua script runs are left out: they cost no round trip. The list is
    filled when the block ends.
    """
    seen: list[str] = []
    with RedisMonitor(port) as monitor:
        yield seen
    for line in monitor.lines:
        parsed = parse_monitor_line(line)
        if parsed is not None and parsed[0] != "lua":
            seen.append(parsed[1].upper())
