"""How a network block is written down: its CIDR, and JSON of its details. Nothing
outside ``floodwall.stores`` reads or writes that JSON."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

from floodwall.core.network_block import NetworkBlock

__all__ = ["block_text", "read_block"]


def block_text(block: NetworkBlock) -> str:
    """The JSON a store keeps of a block."""
    return json.dumps(
        {
            "reason": block.reason,
            "blocked_by": block.blocked_by,
            "blocked_at": block.blocked_at_ms,
            "blocked_until": block.blocked_until_ms,
        },
        ensure_ascii=True,
    )


def read_block(cidr: str, text: str) -> NetworkBlock | None:
    """Read a stored block back; ``None`` when its CIDR is no network. A block whose
    details cannot be read is kept, with no end: a block must not lapse by accident."""
    try:
        network = str(ipaddress.ip_network(cidr, strict=False))
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
    return NetworkBlock(
        network,
        reason if isinstance(reason, str) else None,
        actor if isinstance(actor, str) else None,
        _whole(data.get("blocked_at")),
        _whole(data.get("blocked_until")),
    )


def _whole(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None
