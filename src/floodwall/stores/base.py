"""The ``Store`` protocol: what the service needs from a backend, with the same semantics
in every implementation (one shared test suite runs against each)."""

from __future__ import annotations

import contextlib
import heapq
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, NamedTuple, Protocol, TypeVar

from floodwall.core.decision import Decision
from floodwall.core.errors import StoreCommandError
from floodwall.stores.keys import Keys, SubjectKeys

__all__ = [
    "LEASE_MS",
    "TOP_READ_BUDGET",
    "AuditEntry",
    "StateSnapshot",
    "Store",
    "Subscription",
    "TopBlock",
    "Window",
    "most_refused",
    "per_block",
]

TOP_READ_BUDGET = 10_000
"""Members one ``top_refusals`` reads at most, over all its blocks."""

_Name = TypeVar("_Name", str, bytes)
_Count = TypeVar("_Count", int, float)


class TopBlock(NamedTuple):
    """A time block of a top board: ``seconds`` long, the ``number``-th since the epoch."""

    seconds: int
    number: int


def per_block(blocks: int) -> int:
    """How many of each block's largest members ``top_refusals`` adds up: all a block keeps
    (500) for a window of up to 20 blocks, at least the 312 largest of each of the 32
    blocks of the longest cover (``floodwall.top.cover``)."""
    return max(1, TOP_READ_BUDGET // max(1, blocks))


def most_refused(totals: Mapping[_Name, _Count], count: int) -> list[tuple[_Name, _Count]]:
    """The ``count`` largest totals, largest first; ties: the greater name first, as Redis
    ranks members (bytes, or their UTF-8 order for text). A partial selection: O(n log
    count), no sort of everything read."""
    return heapq.nlargest(count, totals.items(), key=lambda item: (item[1], item[0]))


@dataclass(frozen=True, slots=True)
class StateSnapshot:
    """A subject's kill-switch hash as stored, and the store's clock when it was read;
    ``revoked`` maps credential ids revoked one by one to their expiry (ms), where read."""

    fields: Mapping[str, str]
    now_ms: int
    revoked: Mapping[str, int] = field(default_factory=dict)


class Window(NamedTuple):
    """One route limit of a request: at most ``limit`` requests in any ``period_us``, counted
    at ``key`` (``SubjectKeys.window``); ``override`` names the field of the subject's state
    that replaces both (``"limit:period_us"``), or is empty."""

    key: str
    limit: int
    period_us: int
    override: str = ""


LEASE_MS: Final = 15_000
"""How long a concurrency slot is leased: a crashed worker's slots are free after this (a
live worker renews the leases of its requests). Shorter frees a crashed worker's users
sooner, and costs Redis more renewals (two commands per subject holding slots on a worker,
each renewal, renewals being a fixed fraction of the lease apart). It also lets a live
worker's slots lapse sooner while its renewals fail (Redis restarting, the worker stalled):
their subjects may then go beyond their limit until those requests end, as anyone may
while Redis is down (the fallback does not count requests in flight); never a lockout.
Long enough for a Redis restart, well within the minute the design promises."""


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audit record; ``id`` orders entries and serves as a pagination cursor."""

    id: str
    fields: Mapping[str, str]


class Subscription(Protocol):
    """Messages published by ``Store.publish``, in order."""

    async def next_message(self, wait: float) -> str | None:
        """The next message, or ``None`` after ``wait`` seconds; ``StorageError`` when
        the subscription broke (messages may have been lost)."""
        ...


class Store(Protocol):
    """A backend for buckets and kill-switch state.

    Times are the store's own clock (Redis ``TIME``), never the app server's; rates are
    tokens per second, bursts and costs tokens. Every method raises ``StoreUnavailable``
    when the backend does not answer and ``StoreCommandError`` when it answers with an
    error (see ``floodwall.core.errors``).
    """

    keys: Keys

    @property
    def crosses_subjects(self) -> bool:
        """Whether one check may also count a window of another subject (a route limit by
        the client's address beside the user's bucket): not on a Redis Cluster, whose
        scripts touch one slot."""
        ...

    async def start(self) -> None:
        """Connect and load scripts; safe to call more than once."""

    async def close(self) -> None:
        """Release connections."""

    async def check(
        self,
        keys: SubjectKeys,
        *,
        rate: float,
        burst: int,
        cost: int = 1,
        issued_at_ms: int | None = None,
        credential_id: str | None = None,
        reset_exempt: bool = False,
        windows: tuple[Window, ...] = (),
        concurrency: int | None = None,
        lease_ms: int = LEASE_MS,
    ) -> Decision:
        """Decide one request: kill-switch state first, then take ``cost`` tokens and count
        the request in every route limit's window, all or nothing.

        ``rate`` and ``burst`` are the default limit; a per-subject override in the state
        wins. ``issued_at_ms`` and ``credential_id`` describe the request's credential;
        ``reset_exempt`` marks the password-reset flow. A refusal's ``policy`` is 0 for the
        bucket, ``i`` for ``windows[i - 1]``. Where the subject has a concurrency limit of its
        own (in its state) or ``concurrency`` sets one, an allowed request holds one of its
        slots, ``Decision.lease``, leased for ``lease_ms``, until ``release``.
        """
        ...

    async def release(self, keys: SubjectKeys, token: str) -> None:
        """Give a concurrency slot back."""

    async def renew(self, leases: Sequence[tuple[SubjectKeys, str]], lease_ms: int) -> None:
        """Extend the leases of requests still in flight, in one round trip."""

    async def now_ms(self) -> int:
        """The store's clock, ms since the epoch."""
        ...

    async def read_state(self, keys: SubjectKeys) -> StateSnapshot:
        """The subject's kill-switch hash."""
        ...

    async def read_states(self, keys: Sequence[SubjectKeys]) -> list[StateSnapshot]:
        """Many subjects' hashes and revoked credential ids, in order, in one round trip."""
        ...

    async def claim_reset(self, keys: SubjectKeys, *, reset_id: str, claim: bool) -> bool:
        """Claim the user's current password reset for delivery to the app's hook (only one
        claim succeeds), or give a claim back (``claim=False``) after the hook failed."""
        ...

    async def lapse_block(
        self, keys: SubjectKeys, *, blocked_until: str, fields: Sequence[str]
    ) -> bool | None:
        """Delete a block's ``fields`` if ``blocked_until`` is still as read; ``None`` when it
        changed (nothing done), else whether the subject has no state left."""
        ...

    async def update_state(
        self,
        keys: SubjectKeys,
        *,
        user_id: str,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        delete: Sequence[str] = (),
        reset_bucket: bool = False,
    ) -> StateSnapshot:
        """Atomically set fields, set fields to the store's now plus an offset (ms), delete
        fields, and with ``reset_bucket`` refill the subject's bucket (its limit changed).

        The hash also keeps ``user_id`` (listings name users by it); it is deleted once no
        other field is left.
        """
        ...

    async def revoke_credential(
        self, keys: SubjectKeys, *, credential_id: str, expires_at_ms: int
    ) -> None:
        """Refuse one credential id until it would have expired anyway."""

    async def set_index(self, index: str, user_id: str, *, present: bool) -> None:
        """Add a user to, or remove one from, an index (``blocked``; ``users``: any state)."""

    async def list_index(self, index: str, *, after: str | None, count: int) -> list[str]:
        """Up to ``count`` user ids of an index in id order, strictly after ``after``."""
        ...

    async def publish(self, message: str) -> None:
        """Tell every worker's subscription about a change."""

    def subscription(self) -> contextlib.AbstractAsyncContextManager[Subscription]:
        """Subscribe to changes; the subscription is live once entered."""
        ...

    async def listeners(self) -> int:
        """How many subscriptions follow the changes now (running app workers)."""
        ...

    def describe(self) -> str:
        """Where the state lives, for operators; never a credential."""
        ...

    async def add_refusals(
        self,
        blocks: Sequence[TopBlock],
        counts: Mapping[str, int],
        *,
        ttl_seconds: int,
        keep: int,
        board: str = "subjects",
    ) -> None:
        """Add refusal counts to each time block of a board (``subjects``, ``networks``),
        each to expire after ``ttl_seconds``, then keep only each one's ``keep`` largest
        members."""

    async def top_refusals(
        self, blocks: Sequence[TopBlock], *, count: int, board: str = "subjects"
    ) -> list[tuple[str, int]]:
        """The ``count`` most refused members over the blocks, most refused first, adding
        up each block's ``per_block(len(blocks))`` largest members only: the cost is
        bounded by ``TOP_READ_BUDGET``, whatever was refused."""
        ...

    async def read_networks(self) -> dict[str, str]:
        """Every network block: CIDR → its stored block (JSON)."""
        ...

    async def read_network(self, cidr: str) -> str | None:
        """One network block (JSON), or ``None`` when none is stored for ``cidr``."""
        ...

    async def count_networks(self) -> int:
        """How many network blocks are stored (ended ones too)."""
        ...

    async def scan_networks(self, cursor: str | None, count: int) -> tuple[dict[str, str], str]:
        """A page of about ``count`` network blocks and the cursor of the next page, from
        ``cursor`` (``None``: the first page); the returned cursor is ``""`` after the last
        page. Each block stored for the whole scan comes at least once; one added or
        lifted meanwhile may come or not."""
        ...

    async def write_network(self, cidr: str, block: str | None) -> None:
        """Store a network block (JSON), or delete it (``None``)."""

    async def update_states(
        self,
        subjects: Sequence[tuple[SubjectKeys, str]],
        *,
        assign: Mapping[str, str] | None = None,
        assign_now_plus_ms: Mapping[str, int] | None = None,
        indexes: Sequence[str] = (),
    ) -> list[StateSnapshot | StoreCommandError]:
        """``update_state`` of many (keys, user id) with one change, and each user added to
        ``indexes``, in as few round trips as the backend allows; a subject whose update
        failed gets its error in place of its snapshot. ``StoreUnavailable`` when the store
        does not answer (some may be done: every update is idempotent)."""
        ...

    async def append_audits(
        self, records: Sequence[Mapping[str, str]], *, max_entries: int
    ) -> list[str]:
        """``append_audit`` of many records, in order, in as few round trips as possible."""
        ...

    async def read_config(self) -> dict[str, str]:
        """Settings changed at run time (the default limit), shared by every worker."""
        ...

    async def write_config(self, fields: Mapping[str, str], *, delete: Sequence[str] = ()) -> None:
        """Store settings changed at run time; ``delete`` removes fields."""

    async def append_audit(self, fields: Mapping[str, str], *, max_entries: int) -> str:
        """Append an audit record, keeping about the newest ``max_entries``; returns its id."""
        ...

    async def read_audit(self, *, before: str | None, count: int) -> list[AuditEntry]:
        """Up to ``count`` audit records, newest first, strictly older than ``before``."""
        ...
