"""Memory as floodwall's store: ``MemoryStore`` and its parts by capability."""

from floodwall.stores.memory.store import MemoryStore

__all__ = ["MemoryStore"]
