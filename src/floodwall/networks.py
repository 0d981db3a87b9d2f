"""Network blocks: each worker's copy, and the lookup every request makes while one exists.

Blocks are stored in one hash (``Keys.networks``: CIDR → JSON), published on the change
feed and reloaded whole by every worker on each change and each resync, so they keep
holding while the store is down. A request is matched against its client address (after
trusted-proxy resolution, as the ASGI scope has it) with one dict lookup per distinct
prefix length blocked in its address family: a handful of lookups, however many networks
are blocked. With no block at all the middleware tests one attribute (``any``) and goes on.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from floodwall.stored import iso_time

__all__ = ["NetworkBlock", "NetworkBlocks"]

_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"


@dataclass(frozen=True, slots=True)
class NetworkBlock:
    """One blocked network; times are the store's, in ms since the epoch (``None``: no
    end, or not known)."""

    network: str
    reason: str | None
    blocked_by: str | None
    blocked_at_ms: int | None
    blocked_until_ms: int | None

    def stored(self) -> str:
        """The JSON kept in the store."""
        return json.dumps(
            {
                "reason": self.reason,
                "blocked_by": self.blocked_by,
                "blocked_at": self.blocked_at_ms,
                "blocked_until": self.blocked_until_ms,
            },
            ensure_ascii=True,
        )

    @classmethod
    def from_stored(cls, cidr: str, text: str) -> NetworkBlock | None:
        """Read a stored block back; ``None`` when its CIDR is no network. A block whose
        details cannot be read is kept, with no end: a block must not lapse by accident."""
        try:
            network = ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            return None
        try:
            data: Any = json.loads(text)
        except ValueError:
            data = None
        if not isinstance(data, dict):
            data = {}
        reason = data.get("reason")
        actor = data.get("blocked_by")
        return cls(
            str(network),
            reason if isinstance(reason, str) else None,
            actor if isinstance(actor, str) else None,
            _whole(data.get("blocked_at")),
            _whole(data.get("blocked_until")),
        )

    def active(self, now_ms: float) -> bool:
        """Whether the block holds at ``now_ms``."""
        return self.blocked_until_ms is None or self.blocked_until_ms > now_ms

    def to_json(self) -> dict[str, Any]:
        """The admin API's and ``--json``'s shape of a block."""
        return {
            "network": self.network,
            "reason": self.reason,
            "blocked_by": self.blocked_by,
            "blocked_at": iso_time(self.blocked_at_ms),
            "blocked_until": iso_time(self.blocked_until_ms),
        }


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# One table per address family: (mask, network int → block), most specific first.
_Table = list[tuple[int, dict[int, NetworkBlock]]]


def _table(blocks: Iterable[NetworkBlock], version: int) -> _Table:
    bits = 32 if version == 4 else 128
    by_length: dict[int, dict[int, NetworkBlock]] = {}
    for block in blocks:
        network = ipaddress.ip_network(block.network)
        if network.version == version:
            entry = by_length.setdefault(network.prefixlen, {})
            entry[int(network.network_address)] = block
    full = (1 << bits) - 1
    return [
        (full ^ ((1 << (bits - length)) - 1), entries)
        for length, entries in sorted(by_length.items(), reverse=True)
    ]


class NetworkBlocks:
    """This worker's mirror of the network blocks, and the request-time lookup."""

    __slots__ = ("_blocks", "_v4", "_v6", "_wall", "any")

    def __init__(self, *, wall: Callable[[], float]) -> None:
        self._wall = wall
        self._blocks: dict[str, NetworkBlock] = {}
        self._v4: _Table = []
        self._v6: _Table = []
        self.any = False
        """Whether any network is blocked: the only test a request makes when none is."""

    def __len__(self) -> int:
        return len(self._blocks)

    def replace(self, stored: Mapping[str, str]) -> None:
        """Mirror the stored blocks (``Store.read_networks``)."""
        blocks: dict[str, NetworkBlock] = {}
        now_ms = self._wall() * 1000
        for cidr, text in stored.items():
            block = NetworkBlock.from_stored(cidr, text)
            # A block that ran out stays stored until lifted or made room for; mirrored, it
            # would keep every request looking its address up.
            if block is not None and block.active(now_ms):
                blocks[block.network] = block
        # Built aside and swapped in: a request never sees half a table.
        v4, v6 = _table(blocks.values(), 4), _table(blocks.values(), 6)
        self._blocks, self._v4, self._v6 = blocks, v4, v6
        self.any = bool(blocks)

    def blocks(self) -> list[NetworkBlock]:
        """The mirrored blocks that hold now, in address order."""
        now_ms = self._wall() * 1000
        held = [block for block in self._blocks.values() if block.active(now_ms)]
        return sorted(held, key=lambda b: _order(b.network))

    def match(self, host: str) -> NetworkBlock | None:
        """The block that holds now for the client address ``host``, if any."""
        try:
            packed = socket.inet_pton(socket.AF_INET, host)
            table = self._v4
        except OSError:
            try:
                packed = socket.inet_pton(socket.AF_INET6, host.partition("%")[0])
            except OSError:
                return None
            if packed[:12] == _MAPPED_PREFIX:
                packed = packed[12:]
                table = self._v4
            else:
                table = self._v6
        address = int.from_bytes(packed, "big")
        for mask, entries in table:
            block = entries.get(address & mask)
            if block is not None and block.active(self._wall() * 1000):
                return block
        return None


def _order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr)
    return network.version, int(network.network_address), network.prefixlen
