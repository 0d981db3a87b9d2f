"""A minimal Redis client for the harness's own questions to a server.

It speaks just enough RESP2 for the replies the harness needs (simple, error,
integer, bulk) and keeps the harness free of redis-py, so the harness can check a
server even when the client library under test is broken.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Sequence
from typing import BinaryIO

HOST = "127.0.0.1"


class ReplyError(Exception):
    """Redis answered with an error reply (``-ERR ...``, ``-LOADING ...``)."""


def _encode(args: Sequence[str]) -> bytes:
    parts = [f"*{len(args)}\r\n".encode()]
    for arg in args:
        data = arg.encode()
        parts.append(b"$%d\r\n%b\r\n" % (len(data), data))
    return b"".join(parts)


Reply = str | int | None | list["Reply"]


def call(port: int, *args: str, timeout: float, tls: ssl.SSLContext | None = None) -> Reply:
    """Send one command to ``127.0.0.1:port`` on a new connection (over TLS with ``tls``);
    its reply."""
    with (
        _connect(port, timeout, tls) as sock,
        sock.makefile("rb") as reader,
    ):
        sock.sendall(_encode(args))
        return _read(reader, port)


def _read(reader: BinaryIO, port: int) -> Reply:
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
    if kind == b"*":
        count = int(body)
        return None if count < 0 else [_read(reader, port) for _ in range(count)]
    raise ConnectionError(f"unexpected reply from port {port}: {line!r}")


def _connect(port: int, timeout: float, tls: ssl.SSLContext | None) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout)
    if tls is None:
        return sock
    try:
        return tls.wrap_socket(sock, server_hostname=HOST)
    except BaseException:
        sock.close()
        raise
