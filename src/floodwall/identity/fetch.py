"""The fetch of an identity provider's key set: in a thread, bounded in time and size."""

from __future__ import annotations

import contextlib
import functools
import http.client
import json
import socket
import ssl
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Final

__all__ = ["Garbage", "Unreachable", "fetch_json"]


class Unreachable(Exception):
    """The provider did not answer in time, or answered with a server error."""


class Garbage(Exception):
    """The provider answered with something that is no usable key set."""


# After a failed fetch the next one waits this long at most (doubling from

_PASSING_STATUSES: Final = frozenset({408, 429})


def fetch_json(url: str, timeout: float, max_bytes: int) -> Any:
    """The provider's key set, parsed, fetched within ``timeout`` seconds in all and at
    most ``max_bytes`` long; ``Unreachable`` or ``Garbage`` when it is not."""
    watch = _Watch(time.monotonic() + timeout)
    opener = urllib.request.build_opener(_BoundedHandler(watch), _BoundedSecureHandler(watch))
    # The scheme is http or https: JwksIdentity checks it.
    request = urllib.request.Request(url, headers={"User-Agent": "floodwall"})  # noqa: S310
    # A socket timeout bounds one read, not an answer sent a byte at a time: at the
    # deadline the timer shuts the fetch's sockets, which ends any read at once.
    timer = threading.Timer(timeout, watch.cut)
    timer.daemon = True
    timer.start()
    try:
        body = _read(opener, request, timeout, max_bytes)
    except urllib.error.HTTPError as exc:
        if exc.code >= 500 or exc.code in _PASSING_STATUSES:
            raise Unreachable(f"the provider answered HTTP {exc.code}") from None
        raise Garbage(f"the identity provider answered HTTP {exc.code}") from None
    except (OSError, http.client.HTTPException, ValueError) as exc:
        # URLError, a refused connection and a timeout are all OSErrors; a TLS socket shut
        # at the deadline may raise ValueError.
        if watch.cut_off:
            raise Unreachable(f"the key set took longer than {timeout:g}s") from None
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise Unreachable(f"{type(reason).__name__}: {reason}") from None
    finally:
        timer.cancel()
    # A read the timer cut short may look like a whole answer.
    if watch.cut_off:
        raise Unreachable(f"the key set took longer than {timeout:g}s")
    try:
        return json.loads(body)
    except ValueError:
        raise Garbage("the identity provider's answer is not JSON") from None


def _read(
    opener: urllib.request.OpenerDirector,
    request: urllib.request.Request,
    timeout: float,
    max_bytes: int,
) -> bytes:
    too_large = f"the identity provider's key set is larger than {max_bytes} bytes"
    with opener.open(request, timeout=timeout) as response:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise Garbage(too_large)
        body = bytearray()
        while chunk := response.read1(65536):
            body += chunk
            if len(body) > max_bytes:
                raise Garbage(too_large)
    return bytes(body)


class _Watch:
    """The sockets of one fetch, shut at its deadline."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.cut_off = False
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()

    def add(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.append(sock)
            late = self.cut_off
        if late:
            _shut(sock)

    def cut(self) -> None:
        """Shut every socket of the fetch: its deadline has come."""
        with self._lock:
            self.cut_off = True
            sockets = list(self._sockets)
        for sock in sockets:
            _shut(sock)


def _shut(sock: socket.socket) -> None:
    # The plain socket's shutdown, also for TLS: SSLSocket.shutdown would unwrap the
    # connection under the reading thread; this ends its read with an error it handles.
    with contextlib.suppress(OSError):
        socket.socket.shutdown(sock, socket.SHUT_RDWR)


class _Bounded(http.client.HTTPConnection):
    """An HTTP connection that connects no later than its fetch's deadline and hands its
    socket to the fetch's watch."""

    def __init__(self, *args: Any, watch: _Watch, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._watch = watch

    def connect(self) -> None:
        self.timeout = max(self._watch.deadline - time.monotonic(), 0.001)
        super().connect()
        self._watch.add(self.sock)


class _BoundedSecure(_Bounded, http.client.HTTPSConnection):
    """``_Bounded`` over TLS: its ``connect`` wraps the socket before the watch gets it."""


class _BoundedHandler(urllib.request.HTTPHandler):
    def __init__(self, watch: _Watch) -> None:
        super().__init__()
        self._watch = watch

    def http_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        return self.do_open(functools.partial(_Bounded, watch=self._watch), req)


class _BoundedSecureHandler(urllib.request.HTTPSHandler):
    def __init__(self, watch: _Watch) -> None:
        self._tls = ssl.create_default_context()
        super().__init__(context=self._tls)
        self._watch = watch

    def https_open(self, req: urllib.request.Request) -> http.client.HTTPResponse:
        connection = functools.partial(_BoundedSecure, watch=self._watch)
        return self.do_open(connection, req, context=self._tls)
