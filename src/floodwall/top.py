"""Top offenders: refusals counted per subject in-process, flushed to the store in batches.

Counting costs a dict increment on the request path and no round trip; a background task
adds the counts to one sorted set per time slice every second. Memory stays bounded: past
``max_subjects`` distinct subjects in one flush interval, further ones are counted together
under ``OTHERS``.
"""

from __future__ import annotations

from dataclasses import dataclass

from floodwall.ids import held

__all__ = ["OTHERS", "SLICE_SECONDS", "Offender", "RefusalCounter", "member", "offender"]

SLICE_SECONDS = 10
OTHERS = "*:others"


def member(subject: str, anonymous: bool) -> str:
    """The sorted-set member of a subject: users and addresses never collide; long ids are
    held short (see ``floodwall.ids``)."""
    return ("a:" if anonymous else "u:") + held(subject)


@dataclass(frozen=True, slots=True)
class Offender:
    """A subject and its refusals in the window asked for."""

    subject: str
    anonymous: bool
    refusals: int


def offender(name: str, refusals: float) -> Offender:
    """Read a sorted-set member back."""
    kind, _, subject = name.partition(":")
    return Offender(subject, kind != "u", int(refusals))


class RefusalCounter:
    """Refusals since the last flush, per subject."""

    __slots__ = ("_counts", "_max_subjects")

    def __init__(self, max_subjects: int = 10_000) -> None:
        self._counts: dict[str, int] = {}
        self._max_subjects = max_subjects

    def add(self, name: str) -> None:
        """Count one refusal of ``name`` (see ``member``)."""
        counts = self._counts
        if name in counts:
            counts[name] += 1
        elif len(counts) < self._max_subjects:
            counts[name] = 1
        else:
            counts[OTHERS] = counts.get(OTHERS, 0) + 1

    def take(self) -> dict[str, int]:
        """The counts so far, and start again from zero."""
        counts, self._counts = self._counts, {}
        return counts
