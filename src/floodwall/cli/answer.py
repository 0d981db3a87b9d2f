"""What a command found or did, as the output needs it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from floodwall.core.stored import Limit
from floodwall.stores.base import Replicas

__all__ = ["Answer"]


@dataclass(frozen=True, slots=True)
class Answer:
    """What a command found or did, and what the operator needs to judge it: the store it
    read, the default limits there, and (for an action) how many app workers received it
    and how many replicas of the store's primary acknowledged it."""

    result: Any
    store: str
    prefix: str
    configured: Limit
    live: Limit | None
    acted: bool = False
    received_by: int | None = None
    replicas: Replicas = field(default_factory=lambda: Replicas(0, 0))
