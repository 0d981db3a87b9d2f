"""Top offenders at attack scale: a bounded heavy-hitter summary per worker, the top of it
flushed to the store every second into time blocks (10 s, 1 min, 10 min) kept trimmed.

**Counting** (the hot path) is a dict increment in a ``HeavyHitters`` summary: a
Misra-Gries summary of ``SUMMARY_SIZE`` (k) counters with a deferred decrement. The table
may grow to 2k entries; the next new subject makes it subtract the (k+1)-th largest count
from every counter and drop those left at 0 or below. That costs O(k log k) once per at
least k+1 new subjects: amortised, a few hundred nanoseconds per refusal (see
``benchmarks/top_flood.py``), and memory stays at most 2k entries whatever the attack.

**Flushing** adds each summary's ``PUBLISHED`` (P) largest counters (``ZINCRBY``) to the
current 10-second slice and to the minute and the ten minutes that hold it
(``blocks_of``), then trims each block to its ``KEPT`` (K) largest members
(``ZREMRANGEBYRANK``): three times the commands a slice alone took, one pipelined round
trip per block, each as short as a slice's flush was.

**Reading** ``top`` covers the window's slices with the fewest blocks (``cover``: at most
21 for an hour, 32 for any window, where slices alone were 361) and adds up each block's
M largest members, M = min(K, 10,000 / blocks): all of a block for windows of up to 20
blocks, at least the 312 largest otherwise. The stores read with plain ``ZREVRANGE`` a
few blocks per round trip (at most 1,000 members, under 0.2 ms of Redis) and rank in
Python with a partial selection: a read handles at most 10,000 members whatever was
refused, and holds Redis for no more than a round trip's share. Measured
(``tests/test_top_scale.py``): 0.9 ms for a minute after a million distinct subjects, 7 ms
for an hour of full blocks. It was one Lua script over up to 361 slices: 22 ms for the
full hour, every check queued behind it.

**Error bound.** A reported count is never above the true count. It is below by at most,
where N is one worker's refusals in one flush (one second) and S a block's total:

- N / (k + 1) per worker per flush, from the summary (each decrement by m removes at
  least (k + 1)·m of the N counted);
- for a subject outside that worker's P largest in that flush, its count there, which is
  at most N / (P + 1) + N / (k + 1);
- each time a flush trims a subject out of a block (it is not among the block's K
  largest), its count in that block then, at most S / (K + 1);
- for a subject outside the M largest of a block a read takes, its count in that block,
  at most S / (M + 1).

With k = 1,024, P = 100 and K = 500, a subject among the 100 heaviest of every flush and
the M heaviest of every block is under by at most N / 1,025 per worker per second: in the
test, a million distinct subjects and five heavy ones over ten flushes, each heavy count
is under by 480, within its bound of 1,171.

**Redis memory bound.** A block lives an hour after its last write, so the blocks alive
are those a write of the last hour can have touched: 361 slices, 61 minutes and 7 ten
minutes, 429 blocks of at most K members for each of the two boards (subjects,
networks): 2 x 429 x 500 = 429,000 members at most. ``MEMORY USAGE`` measures about 145
bytes per member of a 20-character id (a held long id is at most 98 characters), so about
62 MB in the worst case, an hour-long attack refusing more than 500 distinct subjects and
networks every 10 seconds (52 MB with slices alone).

**Networks.** Anonymous refusals are also counted by network in a second summary: the /24
of an IPv4 address, the /64 of an IPv6 one (anonymous IPv6 clients are already their /64),
so an operator sees a few refusing networks instead of 50,000 addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from floodwall.core.ids import held
from floodwall.stores.base import TopBlock

__all__ = [
    "BLOCK_SLICES",
    "KEPT",
    "PUBLISHED",
    "SLICE_SECONDS",
    "SUMMARY_SIZE",
    "HeavyHitters",
    "Offender",
    "RefusingNetwork",
    "blocks_of",
    "cover",
    "member",
    "network_of",
    "offender",
]

SLICE_SECONDS: Final = 10
SUMMARY_SIZE: Final = 1024
"""k: counters a summary keeps after a decrement (it holds at most 2k)."""
PUBLISHED: Final = 100
"""P: the largest counters of each summary added to the store per flush."""
KEPT: Final = 500
"""K: members a block keeps after each flush."""
BLOCK_SLICES: Final = (1, 6, 60)
"""The blocks a flush adds to, in slices: its 10-second slice, and the minute and the ten
minutes that hold it."""


def blocks_of(slice_id: int) -> list[TopBlock]:
    """The blocks a flush during slice ``slice_id`` adds its counts to."""
    return [TopBlock(SLICE_SECONDS * length, slice_id // length) for length in BLOCK_SLICES]


def cover(first: int, last: int) -> list[TopBlock]:
    """The fewest blocks that hold slices ``first`` to ``last``, no more and no less: from
    the left, the longest block that starts at the next slice and ends by ``last``. At most
    21 blocks for an hour's 361 slices, 32 for any window up to an hour (5 slices, 9
    minutes, 4 ten minutes, 9 minutes, 5 slices)."""
    blocks: list[TopBlock] = []
    slice_id = first
    while slice_id <= last:
        length = next(
            length
            for length in reversed(BLOCK_SLICES)
            if slice_id % length == 0 and slice_id + length - 1 <= last
        )
        blocks.append(TopBlock(SLICE_SECONDS * length, slice_id // length))
        slice_id += length
    return blocks


def member(subject: str, anonymous: bool) -> str:
    """The sorted-set member of a subject: users and addresses never collide; long ids are
    held short (see ``floodwall.core.ids``)."""
    return ("a:" if anonymous else "u:") + held(subject)


def network_of(address: str) -> str | None:
    """The network an anonymous subject is reported under: the /24 of an IPv4 address, the
    /64 an IPv6 client already is; ``None`` for anything else (a unix socket, no client).

    String work only, on the request path: ``client_identity`` wrote the address in its
    canonical form.
    """
    if address.endswith("/64") and ":" in address:
        return address
    head, dot, _ = address.rpartition(".")
    if dot and head.replace(".", "").isdigit():
        return head + ".0/24"
    return None


@dataclass(frozen=True, slots=True)
class Offender:
    """A subject and its refusals in the window asked for."""

    subject: str
    anonymous: bool
    refusals: int


@dataclass(frozen=True, slots=True)
class RefusingNetwork:
    """A network (a /24 or /64 in CIDR form) and the refusals of its anonymous clients."""

    network: str
    refusals: int


def offender(name: str, refusals: float) -> Offender:
    """Read a sorted-set member back."""
    kind, _, subject = name.partition(":")
    return Offender(subject, kind != "u", int(refusals))


class HeavyHitters:
    """A Misra-Gries summary with a deferred decrement: counts are never over, and under by
    at most (refusals added) / (k + 1); at most 2k entries."""

    __slots__ = ("_counts", "_size", "added")

    def __init__(self, size: int = SUMMARY_SIZE) -> None:
        self._counts: dict[str, int] = {}
        self._size = size
        self.added = 0
        """Refusals added since the last ``take`` (N of the error bound)."""

    def __len__(self) -> int:
        return len(self._counts)

    def add(self, name: str) -> None:
        """Count one refusal of ``name``."""
        counts = self._counts
        count = counts.get(name)
        self.added += 1
        if count is not None:
            counts[name] = count + 1
            return
        counts[name] = 1
        if len(counts) > 2 * self._size:
            self._decrement()

    def _decrement(self) -> None:
        # Subtract the (k+1)-th largest count m from every counter: the k+1 largest lose m
        # each, so the total subtracted over all decrements is at most N, and any one
        # subject's loss at most N / (k + 1). At most k counters stay above 0.
        counts = self._counts
        m = sorted(counts.values(), reverse=True)[self._size]
        self._counts = {name: count - m for name, count in counts.items() if count > m}

    def take(self, top: int) -> dict[str, int]:
        """The ``top`` largest counts, and start again from zero."""
        counts = self._counts
        self._counts = {}
        self.added = 0
        if len(counts) <= top:
            return counts
        ranked = sorted(counts.items(), key=lambda item: item[1], reverse=True)
        return dict(ranked[:top])
