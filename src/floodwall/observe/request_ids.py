"""Request ids: the caller's when it is sane, else one made where a line or an answer
needs one."""

from __future__ import annotations

import itertools
import os
import re
from typing import Final

from floodwall.core.types import Scope

__all__ = ["RequestIds"]

_SANE: Final = re.compile(r"[A-Za-z0-9._:-]{1,128}")


class RequestIds:
    """The ids of one middleware's requests, in the header ``header`` (``None``: none)."""

    __slots__ = ("_counter", "_prefix", "header")

    def __init__(self, header: str | None) -> None:
        self.header = header.encode("latin-1") if header else None
        """The header's name, as the ASGI scope spells it; ``None`` when ids are off."""
        # Unique, not secret: a random prefix per middleware and a counter, cheaper than
        # asking the kernel for random bytes on every request.
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count()

    def given(self, scope: Scope) -> str | None:
        """The caller's id, when ids are on and it is sane: a hostile one must not reach
        the logs. A sane one is the app's too (``request.state.request_id``)."""
        header = self.header
        if header is None:
            return None
        for key, value in scope.get("headers", ()):
            if key == header:
                text = bytes(value).decode("latin-1")
                if _SANE.fullmatch(text) is None:
                    return None
                scope.setdefault("state", {})["request_id"] = text
                return text
        return None

    def needed(self, given: str | None) -> str | None:
        """An id for a refusal's answer and log line, or a logged request: the caller's,
        or a new one. A request that just passes keeps the caller's id, or gets none."""
        if given is not None or self.header is None:
            return given
        return self.new()

    def new(self) -> str:
        """A new id."""
        return f"{self._prefix}{next(self._counter):08x}"

    def headers(self, request_id: str | None) -> list[tuple[bytes, bytes]]:
        """The header that hands ``request_id`` back to the client, if any."""
        if request_id is None or self.header is None:
            return []
        return [(self.header, request_id.encode())]
