"""Run the ``floodwall`` command as a real process, the way an operator runs it."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Done:
    """What a command left: its exit status and its output."""

    status: int
    stdout: str
    stderr: str

    @property
    def warnings(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if "warning" in line]


def environment(redis_url: str, **env: str) -> dict[str, str]:
    """This process's environment without its ``FLOODWALL_*`` variables, naming the store."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("FLOODWALL_")}
    return base | {"FLOODWALL_REDIS_URL": redis_url, "PYTHONIOENCODING": "utf-8"} | env


async def floodwall_command(redis_url: str, *args: str | bytes, **env: str) -> Done:
    """``floodwall ARGS`` on the store at ``redis_url``, with ``env`` set."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "floodwall.cli",
        *args,
        env=environment(redis_url, **env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdout, stderr = await process.communicate()
    assert process.returncode is not None
    # Strict: the command must write nothing a UTF-8 terminal cannot take.
    return Done(process.returncode, stdout.decode(), stderr.decode())
