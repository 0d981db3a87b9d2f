"""What Redis keeps beside users' state: network blocks (a hash), the audit trail (a
capped stream), the top boards (sorted sets per time block), run-time settings (a hash)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from floodwall.core.network_block import NetworkBlock
from floodwall.stores import network_fields
from floodwall.stores.audit_fields import AuditTrailStore
from floodwall.stores.base import AuditEntry, TopBlock, most_refused, per_block
from floodwall.stores.live_config import LiveConfigStore
from floodwall.stores.redis.parts import RedisParts, decode, encode, storage_errors
from floodwall.stores.redis.states import BULK_BATCH

__all__ = ["RedisRecords"]

# Members one round trip of a top read asks for at most (see ``top_refusals``).
_TOP_ROUND_TRIP: Final = 1_000


class RedisRecords(RedisParts, AuditTrailStore, LiveConfigStore):
    """``NetworkBlockStore``, ``AuditTrail``, ``RefusalBoards`` and ``LiveConfig`` on Redis."""

    async def read_networks(self) -> dict[str, NetworkBlock | None]:
        """HGETALL of the network blocks."""
        with storage_errors():
            raw = await self._client.hgetall(self.keys.networks)
        return _blocks(raw)

    async def read_network(self, cidr: str) -> NetworkBlock | None:
        """HGET of one network block."""
        with storage_errors():
            raw = await self._client.hget(self.keys.networks, cidr)
        return None if raw is None else network_fields.read_block(cidr, decode(raw))

    async def count_networks(self) -> int:
        """HLEN of the network blocks."""
        with storage_errors():
            return int(await self._client.hlen(self.keys.networks))

    async def scan_networks(
        self, cursor: str | None, count: int
    ) -> tuple[dict[str, NetworkBlock | None], str]:
        """HSCAN of the network blocks: Redis's cursor, ``0`` once the scan is over."""
        with storage_errors():
            reply: Any = await self._client.hscan(self.keys.networks, int(cursor or 0), count=count)
        after, raw = reply
        return _blocks(raw), str(after or "")

    async def write_network(self, cidr: str, block: NetworkBlock | None) -> None:
        """HSET or HDEL one network block."""
        with storage_errors():
            if block is None:
                await self._client.hdel(self.keys.networks, cidr)
            else:
                text = network_fields.block_text(block)
                await self._client.hset(self.keys.networks, cidr, encode(text))

    async def _append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """XADD each record to the capped stream, pipelined."""
        ids: list[str] = []
        with storage_errors():
            for start in range(0, len(records), BULK_BATCH):
                async with self._client.pipeline(transaction=False) as pipe:
                    for fields in records[start : start + BULK_BATCH]:
                        encoded: dict[Any, Any] = {k: encode(v) for k, v in fields.items()}
                        pipe.xadd(self.keys.audit, encoded, maxlen=max_entries, approximate=True)
                    ids += [decode(entry_id) for entry_id in await pipe.execute()]
        return ids

    async def _read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """XREVRANGE from ``before`` (exclusive) down."""
        high = "+" if before is None else f"({before}"
        with storage_errors():
            rows = await self._client.xrevrange(self.keys.audit, high, "-", count=count)
        return [
            AuditEntry(decode(entry_id), {decode(k): decode(v) for k, v in data.items()})
            for entry_id, data in rows or ()
            if entry_id is not None and data is not None
        ]

    async def _read_config(self) -> dict[str, str]:
        """HGETALL of the config hash."""
        with storage_errors():
            raw = await self._client.hgetall(self.keys.config)
        return {decode(k): decode(v) for k, v in raw.items()}

    async def _write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """HSET into the config hash, and HDEL."""
        with storage_errors():
            if fields:
                mapping: dict[Any, Any] = dict(fields)
                await self._client.hset(self.keys.config, mapping=mapping)
            if delete:
                await self._client.hdel(self.keys.config, *delete)

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """ZINCRBY each count into a block, trim it to its ``keep`` largest
        (ZREMRANGEBYRANK) and EXPIRE it: one pipelined round trip per block, so that checks
        run between them (100 counts are about 0.2 ms of Redis)."""
        with storage_errors():
            for block in blocks:
                key = self.keys.top_block(block.seconds, block.number, board)
                async with self._client.pipeline(transaction=False) as pipe:
                    for name, count in counts.items():
                        pipe.zincrby(key, count, encode(name))
                    pipe.zremrangebyrank(key, 0, -(keep + 1))
                    pipe.expire(key, ttl_seconds)
                    await pipe.execute()

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """A ZREVRANGE of each block's largest members, a few blocks a round trip, added up
        and ranked here.

        Plain commands, not a script: Redis 7.0 spends about 0.18 us a member on a
        ZREVRANGE WITHSCORES, a Lua script ten times that (the reply turned into a table,
        then sorted), and checks of other clients run between round trips. One round trip
        reads at most ``_TOP_ROUND_TRIP`` members (under 0.2 ms of Redis)."""
        read = per_block(len(blocks))
        step = max(1, _TOP_ROUND_TRIP // read)
        totals: dict[bytes, float] = {}
        with storage_errors():
            for start in range(0, len(blocks), step):
                async with self._client.pipeline(transaction=False) as pipe:
                    for block in blocks[start : start + step]:
                        key = self.keys.top_block(block.seconds, block.number, board)
                        pipe.zrevrange(key, 0, read - 1, withscores=True)
                    replies: list[list[tuple[bytes, float]]] = await pipe.execute()
                for rows in replies:
                    for name, refusals in rows:
                        totals[name] = totals.get(name, 0.0) + refusals
        return [(decode(name), int(total)) for name, total in most_refused(totals, count)]


def _blocks(raw: Mapping[Any, Any]) -> dict[str, NetworkBlock | None]:
    # The hash's entries, read as blocks.
    return {
        (cidr := decode(key)): network_fields.read_block(cidr, decode(value))
        for key, value in raw.items()
    }
