"""The exceptions floodwall raises.

::

    FloodwallError
     ├── ConfigurationError      settings or options that cannot work together
     ├── IdentityUnavailable     a token the identity provider's keys cannot verify now
     └── StorageError            the store failed; the fail mode decides what a request sees
          ├── StoreUnavailable   no answer: connection refused or dropped, a timeout
          └── StoreCommandError  an answer that is an error: one command failed (a script
                                 error, a reply the client cannot read)

Every backend turns its own errors into these in one place, so callers handle one tree. Only
``StoreUnavailable`` feeds the circuit breaker: one subject whose command fails is that
subject's problem, never "the store is down" for everyone else.
"""

from __future__ import annotations

__all__ = [
    "ConfigurationError",
    "FloodwallError",
    "IdentityUnavailable",
    "StorageError",
    "StoreCommandError",
    "StoreUnavailable",
]


class FloodwallError(Exception):
    """Base class of every floodwall error."""


class ConfigurationError(FloodwallError):
    """Settings or options that cannot work together."""


class IdentityUnavailable(FloodwallError):
    """A bearer token's key is not at hand and could not be fetched in time: the request
    is refused with 503 rather than taken for an anonymous client."""


class StorageError(FloodwallError):
    """The store could not answer; the fail mode decides what the request sees."""


class StoreUnavailable(StorageError):
    """The store did not answer in time, or could not be reached."""


class StoreCommandError(StorageError):
    """The store answered with an error, or with a reply that cannot be read."""
