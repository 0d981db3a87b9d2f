"""What memory keeps beside users' state: network blocks, the audit trail, the top boards,
run-time settings; each as the Redis store keeps it."""

from __future__ import annotations

import bisect
import itertools
from collections import deque
from collections.abc import Mapping, Sequence

from floodwall.core.network_block import NetworkBlock
from floodwall.stores.audit_fields import AuditTrailStore
from floodwall.stores.base import AuditEntry, TopBlock, most_refused, per_block
from floodwall.stores.live_config import LiveConfigStore
from floodwall.stores.memory.parts import MemoryParts

__all__ = ["MemoryRecords"]


class MemoryRecords(MemoryParts, AuditTrailStore, LiveConfigStore):
    """``NetworkBlockStore``, ``AuditTrail``, ``RefusalBoards`` and ``LiveConfig`` in memory."""

    def _init_records(self) -> None:
        self._audit: deque[AuditEntry] = deque()
        self._audit_ids = itertools.count(1)
        self._config: dict[str, str] = {}
        # (board, block) → the block's counts, and when it expires.
        self._top: dict[tuple[str, TopBlock], tuple[dict[str, int], float]] = {}
        # Blocks as written: a memory store has no other writer.
        self._networks: dict[str, NetworkBlock | None] = {}

    async def read_networks(self) -> dict[str, NetworkBlock | None]:
        """Every network block."""
        return dict(self._networks)

    async def read_network(self, cidr: str) -> NetworkBlock | None:
        """One network block."""
        return self._networks.get(cidr)

    async def count_networks(self) -> int:
        """How many network blocks are stored."""
        return len(self._networks)

    async def scan_networks(
        self, cursor: str | None, count: int
    ) -> tuple[dict[str, NetworkBlock | None], str]:
        """The blocks in CIDR text order after ``cursor``, the last one's CIDR the next
        cursor: a block stored throughout comes exactly once, whatever changes meanwhile."""
        names = sorted(self._networks)
        start = 0 if cursor is None else bisect.bisect_right(names, cursor)
        page = names[start : start + count]
        last = start + count >= len(names)
        return {name: self._networks[name] for name in page}, "" if last else page[-1]

    async def write_network(self, cidr: str, block: NetworkBlock | None) -> None:
        """Store or delete a network block."""
        if block is None:
            self._networks.pop(cidr, None)
        else:
            self._networks[cidr] = block

    async def _append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """Append each record, dropping the oldest beyond ``max_entries``."""
        now_ms = await self.now_ms()
        ids = []
        for fields in records:
            entry = AuditEntry(f"{now_ms}-{next(self._audit_ids)}", dict(fields))
            self._audit.append(entry)
            ids.append(entry.id)
        while len(self._audit) > max_entries:
            self._audit.popleft()
        return ids

    async def _read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """Newest first, strictly older than ``before``."""
        entries: list[AuditEntry] = []
        for entry in reversed(self._audit):
            if before is not None and _audit_order(entry.id) >= _audit_order(before):
                continue
            entries.append(entry)
            if len(entries) == count:
                break
        return entries

    async def _read_config(self) -> dict[str, str]:
        """Run-time settings."""
        return dict(self._config)

    async def _write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """Store run-time settings."""
        self._config.update(fields)
        for name in delete:
            self._config.pop(name, None)

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """Add to each in-memory block and keep its largest members (ties: the greater
        member, as Redis ranks them); blocks older than the TTL are dropped."""
        now = self._clock()
        for block in blocks:
            block_counts, _ = self._top.get((board, block), ({}, 0.0))
            for name, count in counts.items():
                block_counts[name] = block_counts.get(name, 0) + count
            if len(block_counts) > keep:
                block_counts = dict(most_refused(block_counts, keep))
            self._top[(board, block)] = (block_counts, now + ttl_seconds)
        for stale in [key for key, (_, until) in self._top.items() if until <= now]:
            del self._top[stale]

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """Add up each block's largest members and rank, as the Redis store does."""
        totals: dict[str, float] = {}
        read = per_block(len(blocks))
        for block in blocks:
            counts = self._top.get((board, block), ({}, 0.0))[0]
            for name, refusals in most_refused(counts, read):
                totals[name] = totals.get(name, 0) + refusals
        return [(name, int(total)) for name, total in most_refused(totals, count)]


def _audit_order(entry_id: str) -> tuple[int, int]:
    millis, _, sequence = entry_id.partition("-")
    return int(millis), int(sequence or 0)
