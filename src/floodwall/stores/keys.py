"""The only place Redis key strings are built.

Every key of one subject shares a hash tag (``{u:<id>}`` for users, ``{a:<address>}`` for
anonymous clients), so the check script touches a single Redis Cluster slot. Ids are encoded
so no id can leave its tag or collide with another: bytes outside a small safe set are
percent-encoded, and ids whose encoding is long are replaced by ``#`` and a SHA-256 digest
(``#`` never appears in a percent-encoded id).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from floodwall.stores._resp import pack_parts

__all__ = ["Keys", "SubjectKeys", "encode_id"]

_SAFE: Final = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._@-")
_MAX_ENCODED: Final = 128


def encode_id(raw: str) -> str:
    """Encode an id for use inside a hash tag: injective, bounded, readable when plain."""
    # surrogatepass keeps ids decoded from non-UTF-8 bytes (surrogateescape) distinct.
    data = raw.encode("utf-8", "surrogatepass")
    # Encoding never shortens: a long id goes straight to its digest, in time linear in C,
    # where encoding a 15 KB id byte by byte first took about a millisecond.
    if 0 < len(data) <= _MAX_ENCODED:
        if all(byte in _SAFE for byte in data):
            return data.decode("ascii")
        encoded = "".join(chr(byte) if byte in _SAFE else f"%{byte:02X}" for byte in data)
        if len(encoded) <= _MAX_ENCODED:
            return encoded
    return "#" + hashlib.sha256(data).hexdigest()


@dataclass(frozen=True, slots=True)
class SubjectKeys:
    """The keys of one user or anonymous client; all in one cluster slot.

    ``packed`` is the three keys as RESP, in the check script's KEYS order: the hot path
    keeps subjects' keys in one cache, and a check only concatenates them.
    """

    bucket: str
    state: str
    revoked: str
    inflight: str
    packed: bytes = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        packed = pack_parts((self.bucket, self.state, self.revoked, self.inflight))
        object.__setattr__(self, "packed", packed)

    def window(self, route_id: str) -> str:
        """The moving window of one route limit (``RouteLimit.id``) for this subject."""
        return self.bucket.removesuffix(":bucket") + f":window:{route_id}"


class Keys:
    """Builds every key floodwall uses under one prefix."""

    __slots__ = ("audit", "config", "events", "networks", "prefix")

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.audit = f"{prefix}:audit"
        self.config = f"{prefix}:config"
        self.events = f"{prefix}:events"
        self.networks = f"{prefix}:networks"
        """A hash: blocked network (CIDR) → its block (JSON)."""

    def top_block(self, seconds: int, number: int, board: str = "subjects") -> str:
        """Refusal counts of one time block of a board (``subjects``, ``networks``), the
        ``number``-th block of ``seconds`` since the epoch. 10-second blocks keep the names
        slices had before longer blocks existed (``{top}:<number>``); longer ones name their
        length (``{top}:60s:<number>``). All share a hash tag: one pipeline reads them on a
        cluster."""
        block = str(number) if seconds == 10 else f"{seconds}s:{number}"
        if board == "subjects":
            return f"{self.prefix}:{{top}}:{block}"
        return f"{self.prefix}:{{top}}:{board}:{block}"

    def index(self, name: str) -> str:
        """A sorted set of user ids: ``blocked``, or ``users`` (any kill-switch state)."""
        return f"{self.prefix}:index:{name}"

    def replicated(self, near: str, *, cluster: bool) -> str:
        """The marker an operator's writes end with before ``WAIT`` (``Replication``): one
        key on a single Redis; on a Cluster, one in the slot of ``near`` (its hash tag, or
        the whole key where it has none), so it lands on the node that took the writes."""
        if not cluster:
            return f"{self.prefix}:replicated"
        start = near.find("{")
        end = near.find("}", start + 1)
        tag = near[start + 1 : end] if start != -1 and end > start + 1 else near
        return f"{self.prefix}:replicated:{{{tag}}}"

    def user(self, user_id: str) -> SubjectKeys:
        """The keys of an authenticated user."""
        return self._subject("u", user_id)

    def anonymous(self, address: str) -> SubjectKeys:
        """The keys of an anonymous client, by (grouped) address; never equal to a user's."""
        return self._subject("a", address)

    def _subject(self, kind: str, raw: str) -> SubjectKeys:
        base = f"{self.prefix}:{{{kind}:{encode_id(raw)}}}"
        return SubjectKeys(f"{base}:bucket", f"{base}:state", f"{base}:jti", f"{base}:inflight")
