"""Top offenders at attack scale: a bounded heavy-hitter summary per worker, the top of it
flushed to the store every second into 10-second slices that are kept trimmed.

**Counting** (the hot path) is a dict increment in a ``HeavyHitters`` summary: a
Misra-Gries summary of ``SUMMARY_SIZE`` (k) counters with a deferred decrement. The table
may grow to 2k entries; the next new subject makes it subtract the (k+1)-th largest count
from every counter and drop those left at 0 or below. That costs O(k log k) once per at
least k+1 new subjects: amortised, a few hundred nanoseconds per refusal (see
``benchmarks/top_flood.py``), and memory stays at most 2k entries whatever the attack.

**Flushing** adds each summary's ``PUBLISHED`` (P) largest counters to the current slice
(``ZINCRBY``), then trims the slice to its ``KEPT`` (K) largest members
(``ZREMRANGEBYRANK``). **Reading** ``top`` adds up the window's slices (at most
``3600 / 10 + 1`` = 361) in ``lua/top.lua``, taking only each slice's M largest members,
M = min(K, 10,000 / slices): all of a slice for windows up to 3 minutes, the 27 largest
for an hour. A read handles at most 10,000 members, whatever was refused: 4 ms for a
minute after a million distinct subjects, 22 ms for a full hour (``tests/test_top_scale.py``).

**Error bound.** A reported count is never above the true count. It is below by at most,
where N is one worker's refusals in one flush (one second) and S a slice's total:

- N / (k + 1) per worker per flush, from the summary (each decrement by m removes at
  least (k + 1)·m of the N counted);
- for a subject outside that worker's P largest in that flush, its count there, which is
  at most N / (P + 1) + N / (k + 1);
- for a subject outside a slice's K largest after a flush (or outside the M a read takes),
  its count in that slice, at most S / (K + 1) (or S / (M + 1)).

With k = 1,024, P = 100 and K = 500, a subject among the 100 heaviest of every flush and
the M heaviest of every slice is under by at most N / 1,025 per worker per second: in the
test, a million distinct subjects and five heavy ones over ten flushes, each heavy count
is under by 480, within its bound of 1,171.

**Redis memory bound.** Two boards (subjects, networks), each at most 361 slices of K
members: 2 x 361 x 500 = 361,000 members at most. ``MEMORY USAGE`` measures about 145
bytes per member of a 20-character id (a held long id is at most 98 characters), so about
52 MB in the worst case, an hour-long attack refusing more than 500 distinct subjects and
networks every 10 seconds; slices expire an hour after their last write.

**Networks.** Anonymous refusals are also counted by network in a second summary: the /24
of an IPv4 address, the /64 of an IPv6 one (anonymous IPv6 clients are already their /64),
so an operator sees a few refusing networks instead of 50,000 addresses.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from floodwall.ids import held

__all__ = [
    "KEPT",
    "PUBLISHED",
    "SLICE_SECONDS",
    "SUMMARY_SIZE",
    "HeavyHitters",
    "Offender",
    "RefusingNetwork",
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
"""K: members a slice keeps after each flush."""


def member(subject: str, anonymous: bool) -> str:
    """The sorted-set member of a subject: users and addresses never collide; long ids are
    held short (see ``floodwall.ids``)."""
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
