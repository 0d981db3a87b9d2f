"""Operator actions: block (one user, many at once, a network), revoke, reset, limits; each
checked against the rule book, applied in the store, published to every worker and
audited.

The admin API, the CLI and Python callers all come through ``OperatorActions``, so they
accept and refuse the same values with the same message. Its actions are grouped by what
they act on: users' kill switch (``user_actions``), limits (``limit_actions``), networks
(``network_actions``), over the parts they share (``action_parts``).
"""

from __future__ import annotations

from floodwall.control.action_parts import PYTHON_ACTOR, ActionStore
from floodwall.control.limit_actions import DefaultLimitActions
from floodwall.control.network_actions import NetworkActions
from floodwall.control.user_actions import BulkBlockResult, UserActions, bulk_counts

__all__ = ["PYTHON_ACTOR", "ActionStore", "BulkBlockResult", "OperatorActions", "bulk_counts"]


class OperatorActions(UserActions, DefaultLimitActions, NetworkActions):
    """What an operator can do to users, networks and the default limits."""
