"""The exceptions floodwall raises.

::

    FloodwallError
     ├── ConfigurationError   settings or options that cannot work together
     └── StorageError         the store failed (Redis down, timed out, script error)

Every backend wraps its own errors into ``StorageError`` in one place, so callers handle one
type and the configured fail mode decides what a request sees.
"""

from __future__ import annotations

__all__ = ["ConfigurationError", "FloodwallError", "StorageError"]


class FloodwallError(Exception):
    """Base class of every floodwall error."""


class ConfigurationError(FloodwallError):
    """Settings or options that cannot work together."""


class StorageError(FloodwallError):
    """The store could not answer; the fail mode decides what the request sees."""
