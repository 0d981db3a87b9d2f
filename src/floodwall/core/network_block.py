"""One blocked network, in domain terms; how a store writes it down is the store's
business (``floodwall.stores.network_fields``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from floodwall.core.stored import iso_time

__all__ = ["NetworkBlock"]


@dataclass(frozen=True, slots=True)
class NetworkBlock:
    """One blocked network (``10.0.0.0/8``, as ``str`` of an ``ipaddress`` network); times
    are the store's, in ms since the epoch (``None``: no end, or not known)."""

    network: str
    reason: str | None
    blocked_by: str | None
    blocked_at_ms: int | None
    blocked_until_ms: int | None

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
