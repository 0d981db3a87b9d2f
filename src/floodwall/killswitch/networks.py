"""Network blocks: each worker's copy, and the lookup every request makes while one exists.

Blocks are stored by the store (``NetworkBlockStore``), one per CIDR. A change names its
network on the change feed, and each worker reads and applies that one entry; a resync
reloads them all, a page at a time, built aside and swapped in. They keep holding while
the store is down. A request is matched against its client address (after
trusted-proxy resolution, as the ASGI scope has it) with one dict lookup per distinct
prefix length blocked in its address family: a handful of lookups, however many networks
are blocked. With no block at all the middleware tests one attribute (``any``) and goes on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Mapping
from typing import Final

from floodwall.core.network_block import NetworkBlock

__all__ = ["NetworkBlock", "NetworkBlocks", "NetworkListing", "NetworkRebuild"]

_MAPPED_PREFIX: Final = b"\x00" * 10 + b"\xff\xff"


_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# Blocks of one address family by prefix length, then by network address (an int).
_ByLength = dict[int, dict[int, NetworkBlock]]
# One lookup table per address family: (mask, network int → block), most specific first.
_Table = list[tuple[int, dict[int, NetworkBlock]]]


def _held(block: NetworkBlock, now_ms: float) -> tuple[_Network, NetworkBlock | None]:
    """A stored block as the mirror keeps it: its network, and the block when it holds at
    ``now_ms`` (``None``: it ran out)."""
    network = ipaddress.ip_network(block.network)
    # A block that ran out stays stored until lifted or made room for; mirrored, it
    # would keep every request looking its address up.
    return network, block if block.active(now_ms) else None


class _Blocks:
    """Blocks by CIDR and the per-family lookup tables, changed one network at a time."""

    __slots__ = ("by_cidr", "v4", "v6")

    def __init__(self) -> None:
        self.by_cidr: dict[str, NetworkBlock] = {}
        self.v4: _ByLength = {}
        self.v6: _ByLength = {}

    def set(self, network: _Network, block: NetworkBlock | None) -> bool:
        """Keep ``block`` for ``network`` (``None``: keep none); whether a prefix length
        came or went (the lookup table's order changed)."""
        by_length = self.v4 if network.version == 4 else self.v6
        address = int(network.network_address)
        entries = by_length.get(network.prefixlen)
        if block is not None:
            self.by_cidr[block.network] = block
            if entries is None:
                by_length[network.prefixlen] = {address: block}
                return True
            entries[address] = block
            return False
        self.by_cidr.pop(str(network), None)
        if entries is None or entries.pop(address, None) is None or entries:
            return False
        del by_length[network.prefixlen]
        return True

    def table(self, version: int) -> _Table:
        bits = 32 if version == 4 else 128
        full = (1 << bits) - 1
        by_length = self.v4 if version == 4 else self.v6
        return [
            (full ^ ((1 << (bits - length)) - 1), entries)
            for length, entries in sorted(by_length.items(), reverse=True)
        ]


class NetworkRebuild:
    """A full reload of the blocks, fed a page at a time and swapped in whole by
    ``finish``. A change applied meanwhile (``NetworkBlocks.apply``) is newer than what the
    reload may have read of that network, so it wins."""

    __slots__ = ("_fresh", "_owner", "_touched")

    def __init__(self, owner: NetworkBlocks) -> None:
        self._owner = owner
        self._fresh = _Blocks()
        self._touched: dict[_Network, NetworkBlock | None] = {}

    def add(self, stored: Mapping[str, NetworkBlock | None]) -> None:
        """Mirror a page of stored blocks (CIDR → block; ``None``: the CIDR is no network)."""
        now_ms = self._owner.wall() * 1000
        for stored_block in stored.values():
            if stored_block is not None:
                network, block = _held(stored_block, now_ms)
                if block is not None:
                    self._fresh.set(network, block)

    def touched(self, network: _Network, block: NetworkBlock | None) -> None:
        self._touched[network] = block

    def finish(self) -> None:
        """Swap the reloaded blocks in, with the changes applied since the reload began."""
        for network, block in self._touched.items():
            self._fresh.set(network, block)
        self._owner.swap(self._fresh)
        self._owner.rebuilds.discard(self)

    def __enter__(self) -> NetworkRebuild:
        return self

    def __exit__(self, *exc: object) -> None:
        # Abandoned (the store failed): the last copy keeps holding.
        self._owner.rebuilds.discard(self)


class NetworkBlocks:
    """This worker's mirror of the network blocks, and the request-time lookup."""

    __slots__ = ("_blocks", "_v4", "_v6", "any", "rebuilds", "wall")

    def __init__(self, *, wall: Callable[[], float]) -> None:
        self.wall = wall
        self._blocks = _Blocks()
        self._v4: _Table = []
        self._v6: _Table = []
        self.rebuilds: set[NetworkRebuild] = set()
        """Reloads under way, each told of every change applied until it finishes."""
        self.any = False
        """Whether any network is blocked: the only test a request makes when none is."""

    def __len__(self) -> int:
        return len(self._blocks.by_cidr)

    def rebuild(self) -> NetworkRebuild:
        """Begin a full reload (a context manager; ``finish`` swaps it in)."""
        rebuild = NetworkRebuild(self)
        self.rebuilds.add(rebuild)
        return rebuild

    def replace(self, stored: Mapping[str, NetworkBlock | None]) -> None:
        """Mirror the stored blocks (``Store.read_networks``) at once."""
        with self.rebuild() as rebuild:
            rebuild.add(stored)
            rebuild.finish()

    def apply(self, cidr: str, stored: NetworkBlock | None) -> None:
        """Mirror one network's stored block (``Store.read_network``; ``None``: lifted),
        with no other network read or touched."""
        if stored is not None:
            network, block = _held(stored, self.wall() * 1000)
        else:
            try:
                network, block = ipaddress.ip_network(cidr, strict=False), None
            except ValueError:
                return
        for rebuild in self.rebuilds:
            rebuild.touched(network, block)
        if self._blocks.set(network, block):
            # A prefix length came or went: a new list, so a lookup never sees half of one.
            if network.version == 4:
                self._v4 = self._blocks.table(4)
            else:
                self._v6 = self._blocks.table(6)
        self.any = bool(self._blocks.by_cidr)

    def swap(self, blocks: _Blocks) -> None:
        # Built aside and swapped in: a request never sees half a table.
        self._blocks, self._v4, self._v6 = blocks, blocks.table(4), blocks.table(6)
        self.any = bool(blocks.by_cidr)

    def blocks(self) -> list[NetworkBlock]:
        """The mirrored blocks that hold now, in address order."""
        now_ms = self.wall() * 1000
        held = [block for block in self._blocks.by_cidr.values() if block.active(now_ms)]
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
            if block is not None and block.active(self.wall() * 1000):
                return block
        return None


class NetworkListing:
    """The stored blocks that hold at ``now_ms``, gathered a page at a time
    (``Store.scan_networks``), listed in address order; the mirror is left as it is."""

    __slots__ = ("_held", "_now_ms")

    def __init__(self, now_ms: float) -> None:
        self._now_ms = now_ms
        self._held: dict[str, tuple[tuple[int, int, int], NetworkBlock]] = {}

    def add(self, stored: Mapping[str, NetworkBlock | None]) -> None:
        """List a page of stored blocks (CIDR → block; ``None``: the CIDR is no network)."""
        for stored_block in stored.values():
            if stored_block is None:
                continue
            network, block = _held(stored_block, self._now_ms)
            if block is not None:
                order = (network.version, int(network.network_address), network.prefixlen)
                self._held[block.network] = (order, block)

    def blocks(self) -> list[NetworkBlock]:
        """The listed blocks in address order."""
        return [block for _, block in sorted(self._held.values(), key=lambda entry: entry[0])]


def _order(cidr: str) -> tuple[int, int, int]:
    network = ipaddress.ip_network(cidr)
    return network.version, int(network.network_address), network.prefixlen
