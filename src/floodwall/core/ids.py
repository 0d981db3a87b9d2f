"""Ids are anyone's text, of any length: what caches, logs and counters hold of them.

Memory is bounded by bytes, not by count: 4,000 anonymous ids of 15 KB once took 59 MiB of
caches. An id longer than ``MAX_HELD`` characters is held as its start and a digest of the
whole, which still tells an operator which subject it was.
"""

from __future__ import annotations

import hashlib
from typing import Final

__all__ = ["MAX_HELD", "held", "is_long"]

MAX_HELD: Final = 256


def is_long(subject: str) -> bool:
    """Whether ``subject`` is too long to be held as it is."""
    return len(subject) > MAX_HELD


def held(subject: str) -> str:
    """``subject`` itself when short; else its first 64 characters, "…#" and 32 hex digits of
    its SHA-256 (98 characters). For reports and logs, not keys: a short id could spell it."""
    if not is_long(subject):
        return subject
    digest = hashlib.sha256(subject.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return f"{subject[:64]}…#{digest}"
