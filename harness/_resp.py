"""A minimal Redis client for the harness's own questions to a server.

It speaks just enough RESP2 for the replies the harness needs (simple, error,
integer, bulk) and keeps the harness free of redis-py, so the harness can check a
server even when the client library under test is broken.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence

HOST = "127.0.0.1"


class ReplyError(Exception):
    """Redis answered with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _encode(args: Sequence[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


def call(port: int, *args: str, timeout: float) -> str | int | None:
    """Send one command to ``127.0.0.1:port`` on a new connection; its reply."""
    with (
        socket.create_connection((HOST, port), timeout=timeout) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(_encode(args))
        line = reader.readline()
        if not line.endswith(b"\r\n"):
            raise ConnectionError(f"connection to port {port} closed mid-reply")
        kind, body = line[:1], line[1:-2].decode()
        if kind == b"+":
            return body
        if kind == b"-":
            raise ReplyError(body)
        if kind == b":":
            return int(body)
        if kind == b"$":
            size = int(body)
            if size < 0:
                return None
            data = reader.read(size + 2)
            if len(data) != size + 2:
                raise ConnectionError(f"connection to port {port} closed mid-reply")
            return data[:-2].decode()
        raise ConnectionError(f"unexpected reply from port {port}: {line!r}")
